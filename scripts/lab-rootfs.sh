#!/usr/bin/env bash
# Builds (once) the Debian rootfs that `corral lab` machines boot: debootstrap minbase with
# systemd as init and the packages a Corral host needs, so the installer finds them present
# (lab machines have no route out). Prints the rootfs path on stdout.
#
#   bash scripts/lab-rootfs.sh            # build if missing, print the path
#   LAB_ROOTFS_CACHE=/dir bash scripts/lab-rootfs.sh
#
# The cache key is a hash of this file: editing it builds a new rootfs beside the old one.
# Needs debootstrap and systemd-container (installed when missing) and the Debian mirror of
# /etc/apt/sources.list.d; ~3 minutes and ~700 MB the first time.
set -euo pipefail

cache=${LAB_ROOTFS_CACHE:-/var/cache/corral-lab}
suite=bookworm
packages=(
  systemd systemd-sysv dbus iproute2 kmod procps iptables util-linux
  containerd runc containernetworking-plugins busybox-static ca-certificates
  etcd-server etcd-client
)

key=$(sha256sum "$0" | cut -c1-12)
rootfs="$cache/rootfs-$suite-$key"
if [[ -f $rootfs/.corral-lab-ready ]]; then
  echo "$rootfs"
  exit 0
fi

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if ((${#need[@]})); then
  echo "lab-rootfs: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ -f $rootfs/.corral-lab-ready ]]; then # built while we waited
  echo "$rootfs"
  exit 0
fi

mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
mirror=${mirror:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
mirror=${LAB_MIRROR:-${mirror:-http://deb.debian.org/debian}}

tmp="$rootfs.tmp"
cleanup() {
  for m in proc sys dev/pts dev; do umount "$tmp/$m" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
rm -rf "$tmp"
echo "lab-rootfs: debootstrap $suite from $mirror into $tmp" >&2
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
  "$suite" "$tmp" "$mirror" >&2

# Lab machines are hosts of their own: no Debian containerd running at boot (Corral runs its
# own, and the installer's tests check it leaves another one alone by starting it on purpose).
chroot "$tmp" systemctl disable containerd.service >/dev/null 2>&1 || true
# etcd comes from Debian as on a real server host (`install.sh server --cluster-init` runs it as
# corral-etcd.service); Debian's own etcd.service would take ports 2379/2380: masked.
chroot "$tmp" systemctl mask etcd.service >/dev/null 2>&1 || true
chroot "$tmp" systemctl enable systemd-networkd.service >/dev/null 2>&1
# Inside systemd-nspawn the cgroup v1 controllers are mounted read-only: remount them
# writable before anything runs containers (machine-hosts.md).
cat >"$tmp/etc/systemd/system/cgroup-rw.service" <<'EOF'
[Unit]
Description=Remount cgroup v1 controllers writable (nested containers)
DefaultDependencies=no
Before=sysinit.target containerd.service corral-containerd.service
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d" || true; done'

[Install]
WantedBy=sysinit.target
EOF
chroot "$tmp" systemctl enable cgroup-rw.service >/dev/null 2>&1
# Root logs in on the console without a password (it is a lab); no getty needed.
chroot "$tmp" passwd -d root >/dev/null
rm -f "$tmp/etc/machine-id" "$tmp/etc/hostname"
: >"$tmp/etc/machine-id"
apt-get -o Dir="$tmp" clean >/dev/null 2>&1 || rm -rf "$tmp"/var/cache/apt/archives/*.deb
touch "$tmp/.corral-lab-ready"
cleanup
trap - EXIT
mv "$tmp" "$rootfs"
echo "$rootfs"
