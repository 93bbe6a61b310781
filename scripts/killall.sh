#!/usr/bin/env bash
# corral-killall.sh: stops Corral on this host and removes everything it runs or set up at
# run time: its units, the containers of Corral's containerd (never another containerd's),
# their mounts and network namespaces, Corral's links, routes (protocol 77) and iptables rules
# (chains CORRAL-*, rules whose comment says corral, portmap's chains for network "corral").
# Files and data stay (corral-uninstall.sh removes them). Run as root; safe to run twice.
set -uo pipefail

SOCK=/run/corral/containerd/containerd.sock
NETNS_DIR=${CORRAL_NETNS_DIR:-/run/netns}
BRIDGE=${CORRAL_BRIDGE:-corral0}
VXLAN=corral.1
ROUTE_PROTO=77

info() { echo "[corral-killall] $*" >&2; }
((EUID == 0)) || {
  echo "[corral-killall] error: run as root" >&2
  exit 1
}

stop_units() {
  command -v systemctl >/dev/null || return 0
  systemctl stop corral-server.target corral-node.target 2>/dev/null
  systemctl stop corral-proxy.service corral-agent.service corral-scheduler.service \
    corral-controlplane.service corral-etcd.service corral-containerd.service 2>/dev/null
  return 0
}

# Every process whose command line names Corral's containerd socket: its shims (and a
# containerd started by hand on it).
corral_shims() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $SOCK " && echo "${p#/proc/}"
  done
}

descendants() { # PID...: the PIDs and all their descendants
  local all=" $* " changed=1 pid ppid
  while ((changed)); do
    changed=0
    while read -r pid ppid; do
      if [[ $all == *" $ppid "* && $all != *" $pid "* ]]; then
        all+="$pid "
        changed=1
      fi
    done < <(ps -e -o pid=,ppid=)
  done
  echo $all
}

kill_shims() {
  local shims pids id deadline=$((SECONDS + 20))
  mapfile -t shims < <(corral_shims)
  ((${#shims[@]})) || return 0
  # Shim sockets live in /run/containerd/s whatever the state dir (containerd's rule: the
  # SHA-256 of "<containerd address>/<namespace>/<id>"); remember them to remove them after.
  for pid in "${shims[@]}"; do
    id=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n '/^-id$/{n;p;q}')
    [[ -n $id ]] || continue
    SHIM_SOCKETS+=("/run/containerd/s/$(printf '%s' "$SOCK/corral/$id" | sha256sum | cut -c1-64)")
    # runc's state: the runc shim keeps it under /run/containerd/runc/<namespace> too.
    SHIM_SOCKETS+=("/run/containerd/runc/corral/$id")
  done
  pids=$(descendants "${shims[@]}")
  info "killing ${#shims[@]} containerd shims and their containers"
  kill -9 $pids 2>/dev/null
  while ((SECONDS < deadline)) && [[ -n $(corral_shims) ]]; do sleep 0.2; done
}

# Mount points under the given prefixes, deepest first.
mounts_under() {
  awk '{print $5}' /proc/self/mountinfo | sort -u -r | while read -r m; do
    for prefix in "$@"; do
      [[ $m == "$prefix" || $m == "$prefix"/* ]] && echo "$m" && break
    done
  done
}

unmount_all() {
  local m
  for m in $(mounts_under /run/corral /var/lib/corral); do umount "$m" 2>/dev/null || umount -l "$m"; done
  for m in "$NETNS_DIR"/corral-*; do
    [[ -e $m ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    rm -f "$m"
  done
  # The agent bind-mounts the netns directory on itself (as `ip netns` does); left empty,
  # it goes.
  if [[ -d $NETNS_DIR && -z $(ls -A "$NETNS_DIR") ]]; then
    while mountpoint -q "$NETNS_DIR"; do umount "$NETNS_DIR" || break; done
    rmdir "$NETNS_DIR" 2>/dev/null
  fi
}

delete_links() {
  local l
  for l in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}'); do
    ip link delete "$l" 2>/dev/null
  done
  for l in "$BRIDGE" "$VXLAN"; do
    ip link show "$l" >/dev/null 2>&1 && ip link delete "$l"
  done
  ip -4 route flush table all proto "$ROUTE_PROTO" 2>/dev/null
  ip -6 route flush table all proto "$ROUTE_PROTO" 2>/dev/null
  return 0
}

# iptables-save text on stdin -> the iptables-restore --noflush text removing Corral's part.
iptables_removal() {
  awk '
    function flush_table() {
      if (table == "") return
      # portmap: per-pod chains that network "corral" made, found by the comment on the jump.
      for (i = 1; i <= n; i++) {
        if (rule_chain[i] ~ /^CNI-/ && rule[i] ~ /--comment .*corral/ && target[i] ~ /^CNI-DN-/) dead[target[i]] = 1
      }
      # portmap top-level chains go only when no other network has a jump left in them.
      others = 0
      for (i = 1; i <= n; i++) {
        if (rule_chain[i] == "CNI-HOSTPORT-DNAT" && !(target[i] in dead)) others = 1
      }
      if (!others) for (c in chains) if (c ~ /^CNI-HOSTPORT-/) dead[c] = 1
      for (c in chains) if (c ~ /^CORRAL-/) dead[c] = 1
      out = ""
      for (i = 1; i <= n; i++) {
        if (rule_chain[i] in dead) continue
        if ((target[i] in dead) || rule[i] ~ /--comment [^-]*corral/) out = out "-D " substr(rule[i], 4) "\n"
      }
      for (c in dead) out = out "-F " c "\n"
      for (c in dead) out = out "-X " c "\n"
      if (out != "") printf "*%s\n%sCOMMIT\n", table, out
      table = ""; n = 0; delete chains; delete dead; delete rule; delete rule_chain; delete target
    }
    /^\*/ { table = substr($0, 2); next }
    /^:/ { chains[substr($1, 2)] = 1; next }
    /^-A / {
      n++; rule[n] = $0; rule_chain[n] = $2; target[n] = ""
      for (j = 3; j < NF; j++) if ($j == "-j" || $j == "-g") target[n] = $(j + 1)
      next
    }
    /^COMMIT/ { flush_table() }
  '
}

clean_iptables() {
  local family variant save restore text
  for family in iptables ip6tables; do
    for variant in -legacy -nft ""; do
      save=$family$variant-save restore=$family$variant-restore
      command -v "$save" >/dev/null || continue
      # Without variants, the plain command is the only one.
      [[ -z $variant ]] && { command -v "$family-legacy-save" >/dev/null || command -v "$family-nft-save" >/dev/null; } && continue
      text=$("$save" 2>/dev/null | iptables_removal)
      [[ -z $text ]] && continue
      info "removing Corral's rules with $restore"
      "$restore" --noflush <<<"$text" || info "warning: $restore failed on: $text"
    done
  done
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/corral /sys/fs/cgroup/*/corral; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# What the shims left in /run/containerd (its path is fixed in containerd), then the
# directories they made if nothing else is in them.
remove_shim_state() {
  local s
  for s in "${SHIM_SOCKETS[@]}"; do rm -rf "$s"; done
  rmdir /run/containerd/s /run/containerd/runc/corral /run/containerd/runc /run/containerd 2>/dev/null
  return 0
}

# iptables-nft leaves its tables registered once they are empty; an empty table whose chains
# all accept is the same as none, so it goes (with nft, when installed).
remove_empty_nft_tables() {
  command -v nft >/dev/null || return 0
  local family table
  for family in ip ip6; do
    for table in filter nat mangle raw; do
      nft list table "$family" "$table" >/dev/null 2>&1 || continue
      nft list table "$family" "$table" | grep -Eq '^\s+(meta|ip|ip6|tcp|udp|counter|jump|goto|oifname|iifname|ct|mark|fib|xt)\b|policy drop' ||
        nft delete table "$family" "$table"
    done
  done
}

SHIM_SOCKETS=()
stop_units
kill_shims
unmount_all
delete_links
clean_iptables
remove_cgroups
remove_shim_state
remove_empty_nft_tables
rm -rf /run/corral
info "done"
