#!/bin/sh
# Installs Tenet's CNI plugin on a Kubernetes node; the agent DaemonSet's init container runs it from the image
# (/opt/tenet/install-cni.sh) with the node's directories mounted at the same paths as on the node.
#
# The plugin is the `cni` package (standard library only) run by the node's own /usr/bin/python3: this copies
# the package to $TENET_CNI_LIB/cni on the node (replacing the old copy in one rename), then `tenet-agent
# install-cni` writes the launcher $CNI_BIN_DIR/tenet, which runs the package from there, and the conflist
# $CNI_CONF_DIR/10-tenet.conflist naming the cluster network (`cluster_network`, TENANT/NETWORK, of the
# controller's settings file $TENET_CONFIG) and the agent's socket $TENET_SOCKET.
set -eu

lib=${TENET_CNI_LIB:-/opt/tenet-cni}
bin_dir=${CNI_BIN_DIR:-/opt/cni/bin}
conf_dir=${CNI_CONF_DIR:-/etc/cni/net.d}
config=${TENET_CONFIG:-/etc/tenet/controller.yaml}
socket=${TENET_SOCKET:-/var/run/tenet/agent.sock}

network=$(python3 - "$config" <<'PY'
import sys
import yaml
try:
    with open(sys.argv[1]) as handle:
        settings = yaml.safe_load(handle) or {}
except (OSError, yaml.YAMLError) as error:
    sys.exit(f"install-cni: {sys.argv[1]}: {error}")
network = settings.get("cluster_network") if isinstance(settings, dict) else None
if not isinstance(network, str) or network.count("/") != 1 or "" in network.split("/"):
    sys.exit(f"install-cni: {sys.argv[1]}: cluster_network: want TENANT/NETWORK, got {network!r}")
print(network)
PY
)
tenant=${network%/*}
name=${network#*/}

source=$(python3 -c 'import os, cni; print(os.path.dirname(cni.__file__))')
# Each install is a directory of its own; $lib/cni is a symlink to the current one, replaced in one rename,
# so a plugin starting meanwhile imports the old copy or the new one, never a mix or nothing.
version=cni-$(date +%Y%m%d%H%M%S)-$$
mkdir -p "$lib"
rm -rf "${lib:?}/$version" "$lib/.cni.link"
cp -R "$source" "$lib/$version"
find "$lib/$version" -name __pycache__ -prune -exec rm -rf {} +
if [ -d "$lib/cni" ] && [ ! -L "$lib/cni" ]; then rm -rf "$lib/cni"; fi
ln -s "$version" "$lib/.cni.link"
mv -T "$lib/.cni.link" "$lib/cni"
for old in "$lib"/cni-*; do
    if [ "$old" != "$lib/$version" ]; then rm -rf "$old"; fi
done

# With the copy first on the path, the launcher written points at the copy, not at this image's packages
# (the console script, not `python3 -m`, which would put the working directory first).
PYTHONPATH="$lib" exec tenet-agent --socket "$socket" install-cni \
    --bin-dir "$bin_dir" --conf-dir "$conf_dir" --tenant "$tenant" --network "$name"
