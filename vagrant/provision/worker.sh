#!/bin/sh
# A worker VM: the node set-up of node-setup.sh (the same script the netns lab runs in each node namespace),
# on the kernel datapath, then tenet-agent as the systemd unit tenet-agent.service. Runs after common.sh.
#
# Environment (defaults in brackets):
#   NODE_NAME, TUNNEL_IP, CONTROLLER_IP   this node's name and underlay address; the controller's address
#   UNDERLAY_IF [the interface holding TUNNEL_IP], UPLINK_IF [the one other NIC without the default route]
#   CNI_TENANT [blue], CNI_NETWORK [web]  the network the CNI config puts pods on
#   TENET_REPO [/opt/tenet]
set -eu

: "${NODE_NAME:?set NODE_NAME}" "${TUNNEL_IP:?set TUNNEL_IP}" "${CONTROLLER_IP:?set CONTROLLER_IP}"
TENET_REPO=${TENET_REPO:-/opt/tenet}
VENV=$TENET_REPO/.venv

# The kernel datapath: the module must load, and OVS must be running before the node set-up talks to it.
modprobe openvswitch
systemctl enable --now openvswitch-switch

# The agent's own node token: it registers this node and manages the endpoints on it, nothing else.
NODE_TOKEN=$TENET_REPO/vagrant/.tenet/$NODE_NAME-token
if [ ! -s "$NODE_TOKEN" ]; then
    echo "worker: no $NODE_TOKEN (the Vagrantfile makes it in vagrant/.tenet/ on the host)" >&2
    exit 1
fi
install -d -m 0700 /etc/tenet
install -m 0600 "$NODE_TOKEN" /etc/tenet/node-token

# Vagrant configured the underlay address; the uplink NIC it left without one.
if [ -z "${UNDERLAY_IF:-}" ]; then
    UNDERLAY_IF=$(ip -o -4 addr show to "$TUNNEL_IP/32" | awk '{print $2; exit}')
    if [ -z "$UNDERLAY_IF" ]; then
        echo "worker: no interface holds $TUNNEL_IP; set UNDERLAY_IF" >&2
        exit 1
    fi
fi
if [ -z "${UPLINK_IF:-}" ]; then
    management=$(ip -o -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
    candidates=
    for path in /sys/class/net/*; do
        name=${path##*/}
        # Physical NICs only (OVS's own devices have no `device`): not the management NIC, not the underlay.
        if [ -e "$path/device" ] && [ "$name" != "$management" ] && [ "$name" != "$UNDERLAY_IF" ]; then
            candidates="$candidates $name"
        fi
    done
    # shellcheck disable=SC2086 # split the names
    set -- $candidates
    if [ "$#" -ne 1 ]; then
        echo "worker: want one NIC for the VLAN uplink, found ${*:-none}; set UPLINK_IF" >&2
        exit 1
    fi
    UPLINK_IF=$1
fi

DATAPATH_TYPE=system TUNNEL_IP=$TUNNEL_IP UNDERLAY_IF=$UNDERLAY_IF UPLINK_IF=$UPLINK_IF \
    TENET_AGENT=$VENV/bin/tenet-agent CNI_BIN_DIR=/opt/cni/bin CNI_CONF_DIR=/etc/cni/net.d \
    AGENT_SOCKET=/run/tenet/agent.sock CNI_TENANT=${CNI_TENANT:-blue} CNI_NETWORK=${CNI_NETWORK:-web} \
    sh "$TENET_REPO/vagrant/provision/node-setup.sh"

# Settings for the unit (EnvironmentFile=): the agent's flags are made of these.
cat >/etc/tenet/agent.env <<EOF
TENET_NODE=$NODE_NAME
TENET_TUNNEL_IP=$TUNNEL_IP
TENET_UPLINK=$UPLINK_IF
TENET_CONTROLLER=http://$CONTROLLER_IP:8780
TENET_OPENFLOW=tcp:$CONTROLLER_IP:6653
TENET_TOKEN_FILE=/etc/tenet/node-token
TENET_DATAPATH_TYPE=system
TENET_SOCKET=/run/tenet/agent.sock
EOF
install -m 0644 "$TENET_REPO/vagrant/systemd/tenet-agent.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable tenet-agent.service
systemctl stop tenet-agent.service
rm -f /run/tenet/agent.sock  # a crash's leftover would look like a serving agent below
systemctl start tenet-agent.service

# The agent registers with the controller before it serves the socket; it retries until the controller is up.
tries=0
until [ -S /run/tenet/agent.sock ]; do
    tries=$((tries + 1))
    if [ "$tries" -ge 180 ]; then
        journalctl -u tenet-agent.service -n 50 --no-pager >&2
        echo "worker: tenet-agent did not serve /run/tenet/agent.sock within 180 s" >&2
        exit 1
    fi
    sleep 1
done
echo "worker: $NODE_NAME, tunnel $TUNNEL_IP on $UNDERLAY_IF, uplink $UPLINK_IF, agent up"
