#!/usr/bin/env bash
# corral-uninstall.sh: removes Corral from this host, leaving it as it was before the
# installer ran: corral-killall.sh (processes, mounts, netns, links, routes, iptables rules),
# then the units, /etc/corral, /var/lib/corral (data, etcd, images, CNI state), /run/corral and the
# binaries. Debian packages the installer added (containerd, runc, ...) stay. Run as root.
set -uo pipefail

BIN=/usr/local/bin
UNIT_DIR=/etc/systemd/system
UNITS=(corral-proxy.service corral-agent.service corral-scheduler.service
  corral-controlplane.service corral-etcd.service corral-containerd.service corral-server.target
  corral-node.target)

((EUID == 0)) || {
  echo "[corral-uninstall] error: run as root" >&2
  exit 1
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
killall=$BIN/corral-killall.sh
[[ -x $killall ]] || killall=$here/killall.sh
# A server on the embedded etcd leaves it first, so the other members count a quorum without
# it (etcd refuses if that would cost the quorum: then remove it later with etcdctl).
etcd_tls=/var/lib/corral/etcd/tls
if [[ -f $etcd_tls/client.crt && -x $BIN/corral-controlplane ]]; then
  env -u CORRAL_TOKEN "$BIN/corral-controlplane" etcd-leave --dir "$etcd_tls" >&2 ||
    echo "[corral-uninstall] warning: could not leave the etcd cluster (see above): remove this member with etcdctl member remove" >&2
fi
if [[ -f $killall ]]; then bash "$killall"; else echo "[corral-uninstall] warning: no corral-killall.sh" >&2; fi

if command -v systemctl >/dev/null; then
  systemctl disable -q corral-server.target corral-node.target 2>/dev/null
  for u in "${UNITS[@]}"; do rm -f "$UNIT_DIR/$u"; done
  rm -rf "$UNIT_DIR"/corral-*.service.d "$UNIT_DIR"/corral-*.target.d
  systemctl daemon-reload
  systemctl reset-failed "${UNITS[@]}" 2>/dev/null
fi
# The installer masked Debian's etcd.service for corral-etcd: give it back as it was.
if [[ -f /var/lib/corral/install/masked-etcd.service ]] && command -v systemctl >/dev/null; then
  systemctl unmask etcd.service >/dev/null 2>&1
fi
rm -rf /etc/corral /var/lib/corral /run/corral
for b in corral-controlplane corral-scheduler corral-agent corral-logger corral-proxy corral corral-killall.sh; do
  rm -f "$BIN/$b"
done
echo "[corral-uninstall] Corral removed" >&2
rm -f "$BIN/corral-uninstall.sh"
