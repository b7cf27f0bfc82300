#!/bin/sh
# Node set-up shared by the Vagrant workers and the netns lab (`tenet-lab up` runs it inside each node's
# namespace): the VXLAN underlay on Open vSwitch, the VLAN uplink, and the CNI plugin with its conflist.
# The agent itself is started afterwards (a systemd unit on the VMs, a process of the lab).
#
# Environment (defaults in brackets):
#   TUNNEL_IP, TUNNEL_PREFIX [24]  the node's underlay address
#   UNDERLAY_IF                    the interface toward the other nodes
#   UPLINK_IF                      the interface carrying VLAN networks (optional)
#   DATAPATH_TYPE [system]         netdev: userspace OVS, which tunnels through a bridge holding the address
#   OVSDB [unix:/var/run/openvswitch/db.sock]
#   TENET_AGENT [tenet-agent]      the agent's executable, for install-cni
#   CNI_BIN_DIR [/opt/cni/bin], CNI_CONF_DIR [/etc/cni/net.d], AGENT_SOCKET [/run/tenet/agent.sock]
#   CNI_TENANT, CNI_NETWORK        the network pods join by default (optional: CNI_NAMESPACE_MAP instead)
#   CNI_NAMESPACE_MAP              JSON {"k8s-namespace": "TENANT/NETWORK"} (optional)
#   CNI_KUBERNETES                 non-empty: the controller picks each pod's network (install-cni --kubernetes)
set -eu

: "${TUNNEL_IP:?set TUNNEL_IP}" "${UNDERLAY_IF:?set UNDERLAY_IF}"
TUNNEL_PREFIX=${TUNNEL_PREFIX:-24}
DATAPATH_TYPE=${DATAPATH_TYPE:-system}
OVSDB=${OVSDB:-unix:/var/run/openvswitch/db.sock}
TENET_AGENT=${TENET_AGENT:-tenet-agent}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
CNI_CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
AGENT_SOCKET=${AGENT_SOCKET:-/run/tenet/agent.sock}

vsctl() { ovs-vsctl --db="$OVSDB" --timeout=20 "$@"; }

ip link set "$UNDERLAY_IF" up
if [ "$DATAPATH_TYPE" = netdev ]; then
    # Userspace OVS sends VXLAN out through one of its own bridges: the address moves to br-phy's port.
    vsctl --may-exist add-br br-phy -- set bridge br-phy datapath_type=netdev \
        -- --may-exist add-port br-phy "$UNDERLAY_IF"
    ip addr flush dev "$UNDERLAY_IF"
    ip addr replace "$TUNNEL_IP/$TUNNEL_PREFIX" dev br-phy
    ip link set br-phy up
else
    ip addr replace "$TUNNEL_IP/$TUNNEL_PREFIX" dev "$UNDERLAY_IF"
fi
if [ -n "${UPLINK_IF:-}" ]; then
    ip link set "$UPLINK_IF" up
fi

# The reference plugins a conflist uses beside Tenet's (Debian puts them in /usr/lib/cni).
mkdir -p "$CNI_BIN_DIR"
for plugin in loopback portmap; do
    if [ -x "/usr/lib/cni/$plugin" ] && [ ! -e "$CNI_BIN_DIR/$plugin" ]; then
        ln -s "/usr/lib/cni/$plugin" "$CNI_BIN_DIR/$plugin"
    fi
done

set -- --bin-dir "$CNI_BIN_DIR" --conf-dir "$CNI_CONF_DIR" --socket "$AGENT_SOCKET"
if [ -n "${CNI_NAMESPACE_MAP:-}" ]; then
    set -- "$@" --namespace-map "$CNI_NAMESPACE_MAP"
fi
if [ -n "${CNI_TENANT:-}" ]; then
    set -- "$@" --tenant "$CNI_TENANT" --network "${CNI_NETWORK:?set CNI_NETWORK with CNI_TENANT}"
fi
if [ -n "${CNI_KUBERNETES:-}" ]; then
    set -- "$@" --kubernetes
fi
"$TENET_AGENT" install-cni "$@"
echo "node-setup: $TUNNEL_IP/$TUNNEL_PREFIX on ${UNDERLAY_IF} ($DATAPATH_TYPE datapath)${UPLINK_IF:+, uplink $UPLINK_IF}"
