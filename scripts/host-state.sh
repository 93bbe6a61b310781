#!/usr/bin/env bash
# Prints a normalised snapshot of this host's state, so that `diff` of a snapshot taken before
# installing Corral and one taken after uninstalling it shows what was left behind: links,
# addresses, routes (all tables), rules, iptables (every table and variant, no counters),
# /run/netns, mounts, cgroups outside systemd's, listening sockets, process names, systemd
# units, and files under /etc /usr/local /var/lib /run (volatile ones excluded). Run as root.
#
#   bash scripts/host-state.sh >before; ...; bash scripts/host-state.sh >after; diff before after
#   HOST_STATE_EXCLUDE='^/var/lib/foo' adds paths to leave out (an extended regex).
set -uo pipefail

section() { printf '\n## %s\n' "$1"; }

exclude='^/(var/lib/(apt|dpkg|dhcp|systemd/(timers|coredump|catalog))|var/cache|var/log|run/(agetty\.reload|systemd/(journal|transient|units|seats|sessions|users|inhibit|ask-password|propagate|netif/leases)|user|udev|log|lock|utmp|credentials)|etc/ld\.so\.cache)(/|$)'
[[ -z ${HOST_STATE_EXCLUDE:-} ]] || exclude="($exclude)|($HOST_STATE_EXCLUDE)"

section links
ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//; s/ (alias|altname) .*//' |
  awk '{out = $1; for (i = 2; i <= NF; i++) if ($i != "state" && $(i - 1) != "state") out = out " " $i; print out}' |
  sed -E 's/\\ +brd.*//' | sort
section addresses
ip -o addr show | awk '{print $2, $3, $4}' | sort
section routes
# Without the local table: the kernel derives it from the addresses above.
ip -4 route show table all | grep -v ' table local ' | sed -E 's/ expires [0-9]+sec//' | sort
ip -6 route show table all | grep -v ' table local ' | sed -E 's/ expires [0-9]+sec//' | sort
section "ip rules"
ip -4 rule show | sort
ip -6 rule show | sort
for family in iptables ip6tables; do
  for variant in -legacy -nft; do
    command -v "$family$variant-save" >/dev/null || continue
    section "$family$variant"
    # Without counters; a table with no rule and only accepting chains is the same as none
    # (iptables-nft keeps empty tables registered), so it is left out.
    "$family$variant-save" 2>/dev/null | grep -v '^#' | sed -E 's/ \[[0-9]+:[0-9]+\]$//' |
      awk '/^\*/ {buf = $0 "\n"; keep = 0; next}
        /^:/ {buf = buf $0 "\n"; if ($2 != "ACCEPT") keep = 1; next}
        /^COMMIT/ {if (keep) printf "%s%s\n", buf, $0; next}
        {buf = buf $0 "\n"; keep = 1}'
  done
done
section /run/netns
ls -A /run/netns 2>/dev/null | sort
section mounts
awk '{print $5, $(NF - 2)}' /proc/self/mountinfo | sort
section cgroups
find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d \
  ! -path '*.slice*' ! -path '*.scope*' ! -path '*.service*' ! -path '*.mount*' 2>/dev/null | sort
section "listening sockets"
ss -Hlntu 2>/dev/null | awk '{print $1, $5}' | sort -u
section processes
# Names only (PIDs change), without kernel threads and this script's own pipeline.
ps -e -o pid=,ppid=,comm= | awk -v self=$$ '
  { pid[NR] = $1; ppid[NR] = $2; comm[NR] = $3; parent[$1] = $2 }
  END {
    for (i = 1; i <= NR; i++) {
      if (pid[i] == 2 || ppid[i] == 2) continue
      p = pid[i]; mine = 0
      for (k = 0; k < 64 && p > 1; k++) { if (p == self) { mine = 1; break }; p = parent[p] }
      if (!mine) print comm[i]
    }
  }' | sort -u
if command -v systemctl >/dev/null; then
  # Loaded units and their load state, not whether they run: installing may start a unit of
  # the host (network-online.target) that was idle, which is no trace of Corral.
  section "systemd units"
  systemctl list-units --all --no-legend --plain 2>/dev/null |
    awk '$1 !~ /^(session-|user@|user-|user-runtime-dir@|run-)/ {print $1, $2}' | sort
  section "systemd unit files"
  systemctl list-unit-files --no-legend 2>/dev/null | awk '{print $1, $2}' | sort
fi
section files
find /etc /usr/local /var/lib /run -xdev \( -type f -o -type d -o -type l -o -type s \) \
  -printf '%p %y %m\n' 2>/dev/null | grep -Ev "${exclude/(\/|\$)/( |/)}" | sort
section "file contents (/etc, /usr/local)"
find /etc /usr/local -xdev -type f -print0 2>/dev/null | grep -zEv "$exclude" |
  xargs -0 -r sha256sum 2>/dev/null | sort -k2
