#!/bin/sh
# The controller VM: etcd, and tenet-controller as the systemd unit tenet-controller.service on that etcd,
# with its API and OpenFlow listener on every address. Runs after common.sh.
#
# Environment (defaults in brackets):
#   TENET_REPO [/opt/tenet]
#   EXAMPLE_TENANTS [1]   1: create the tenants blue and red with the netns lab's networks, unless blue exists
set -eu

TENET_REPO=${TENET_REPO:-/opt/tenet}
VENV=$TENET_REPO/.venv
EXAMPLE_TENANTS=${EXAMPLE_TENANTS:-1}
API=http://127.0.0.1:8780

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
systemctl enable --now etcd

# Tokens: made once. The admin token normally came from the host through common.sh; made here otherwise.
install -d -m 0700 /etc/tenet
if [ ! -s /etc/tenet/admin-token ]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >/etc/tenet/admin-token)
fi
# The agents' node tokens (vagrant/.tenet/NODE-token from the host): each registers and serves only its node.
# Written again on every run, so a worker added later gets its token listed (the restart below loads it).
(umask 077 && python3 - /etc/tenet/admin-token "$TENET_REPO/vagrant/.tenet" >/etc/tenet/tokens.json.new <<'EOF'
import json, pathlib, sys
token = open(sys.argv[1]).read().strip()
nodes = {}
for file in sorted(pathlib.Path(sys.argv[2]).glob("*-token")):
    if file.name != "admin-token":
        nodes[file.name[: -len("-token")]] = [file.read_text().strip()]
print(json.dumps({"admin": [token], "tenants": {}, "nodes": nodes}, indent=2))
EOF
)
mv /etc/tenet/tokens.json.new /etc/tenet/tokens.json

# Settings for the unit (it reads them with EnvironmentFile=); the unit's own defaults are the same.
cat >/etc/tenet/controller.env <<'EOF'
TENET_STORE=etcd://127.0.0.1:2379
TENET_API_HOST=0.0.0.0
TENET_API_PORT=8780
TENET_OFP_HOST=0.0.0.0
TENET_OFP_PORT=6653
TENET_TOKEN_FILE=/etc/tenet/tokens.json
TENET_LOG_LEVEL=info
EOF
install -m 0644 "$TENET_REPO/vagrant/systemd/tenet-controller.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable tenet-controller.service
systemctl restart tenet-controller.service

tenetctl() { "$VENV/bin/tenetctl" "$@" --server "$API" --token-file /etc/tenet/admin-token; }
tries=0
until tenetctl node ls >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        journalctl -u tenet-controller.service -n 50 --no-pager >&2
        echo "controller: the API did not answer on $API within 60 s" >&2
        exit 1
    fi
    sleep 1
done

# The netns lab's default tenants (lab/cluster.py), so pods on the workers have networks to join.
if [ "$EXAMPLE_TENANTS" = 1 ] && ! tenetctl tenant show blue >/dev/null 2>&1; then
    for tenant in blue red; do
        tenetctl tenant create "$tenant"
    done
    tenetctl network create blue/web --encap vxlan --vni 5001 --subnet 10.1.0.0/24
    tenetctl network create blue/db --encap vlan --vlan 101 --subnet 10.2.0.0/24
    tenetctl network create red/web --encap vxlan --vni 6001 --subnet 10.1.0.0/24
    tenetctl network create red/db --encap vlan --vlan 201 --subnet 10.2.0.0/24
fi
echo "controller: API on :8780, OpenFlow on :6653, store etcd://127.0.0.1:2379"
