#!/bin/sh
# Every VM of the Vagrant lab: Debian packages, then Tenet from the repository (synced to /opt/tenet) in the
# virtualenv /opt/tenet/.venv, and a login profile that finds tenetctl and the controller.
#
# Environment: CONTROLLER_IP (the controller's underlay address), TENET_REPO [/opt/tenet]
set -eu

: "${CONTROLLER_IP:?set CONTROLLER_IP}"
TENET_REPO=${TENET_REPO:-/opt/tenet}
VENV=$TENET_REPO/.venv

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# openvswitch-switch runs the kernel datapath here: the VMs' kernel has the openvswitch module.
apt-get install -y -qq --no-install-recommends \
    openvswitch-switch python3-venv python3-dev gcc iproute2 iputils-ping ethtool iperf3 tcpdump curl \
    containernetworking-plugins >/dev/null

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Editable: after `vagrant rsync`, restarting a service runs the new code.
"$VENV/bin/python" -m pip install --quiet -e "$TENET_REPO"

# The admin token the Vagrantfile made on the host: the controller accepts it, the agents and tenetctl send it.
install -d -m 0700 /etc/tenet
if [ -f "$TENET_REPO/vagrant/.tenet/admin-token" ]; then
    install -m 0600 "$TENET_REPO/vagrant/.tenet/admin-token" /etc/tenet/admin-token
fi
cat >/etc/profile.d/tenet.sh <<EOF
# Tenet's commands and the controller's API (written by vagrant/provision/common.sh).
PATH=$VENV/bin:\$PATH
TENET_SERVER=http://$CONTROLLER_IP:8780
export PATH TENET_SERVER
if [ -r /etc/tenet/admin-token ]; then
    TENET_TOKEN=\$(cat /etc/tenet/admin-token)
    export TENET_TOKEN
fi
EOF
"$VENV/bin/tenetctl" --help >/dev/null
echo "common: Tenet installed in $VENV"
