#!/usr/bin/env bash
# Installs Corral on this host as systemd services, from binaries already built (no download).
# Idempotent: run it again after a rebuild or a settings change; a unit is restarted only when
# one of its files (binary, unit, env file, config) changed since it was last (re)started.
#
#   sudo bash scripts/install.sh server                 # control plane + scheduler + agent + proxy
#   sudo bash scripts/install.sh server --cluster-init  # the same on an embedded etcd (first server)
#   sudo CORRAL_TOKEN=K10... bash scripts/install.sh server --server https://FIRST:7443   # next servers
#   sudo bash scripts/install.sh server --datastore-endpoint https://E1:2379,... [--token T] \
#        --datastore-cafile F --datastore-certfile F --datastore-keyfile F   # external etcd
#   sudo CORRAL_URL=https://SERVER:7443 CORRAL_TOKEN=K10... bash scripts/install.sh agent
#   bash scripts/install.sh render server|agent DIR [server flags]   # only write the files (tests)
#
# Server flags: --cluster-init runs etcd (Debian's etcd-server) as corral-etcd.service with TLS
# for clients and peers, its CA made here; --server URL joins the servers of URL: the server
# token (--token or CORRAL_TOKEN: /var/lib/corral/server-token of a server, K10<hash>::server:<secret>)
# gets the etcd CA and makes this host an etcd member. --datastore-* are passed to the control
# plane as they are (an etcd run elsewhere); the next servers on it give the same --token.
#
# Settings (environment):
#   CORRAL_URL                  https://HOST:7443 of the server, or several comma-separated (makes an agent)
#   CORRAL_TOKEN | CORRAL_TOKEN_FILE   join token (the server's /var/lib/corral/controlplane/agent-token);
#                               for `server --server`, the server token
#   INSTALL_CORRAL_BIN_DIR      built binaries (default ../target/release or ../target/debug)
#   INSTALL_CORRAL_NODE_NAME    node name (default: the hostname)
#   INSTALL_CORRAL_NODE_IP      node address (default: the agent picks one; the server's --tls-san)
#   INSTALL_CORRAL_NODE_INTERFACE   interface whose address is the node's
#   INSTALL_CORRAL_POD_NETWORK  host-gw (default) | vxlan | none
#   INSTALL_CORRAL_EXEC         extra flags: for corral-controlplane (server) or corral-agent (agent)
#   INSTALL_CORRAL_SKIP_APT     do not install missing Debian packages
#   INSTALL_CORRAL_SKIP_START   write and enable, start nothing
#   INSTALL_CORRAL_WAIT         seconds to wait for the units to be active (default 180)
set -euo pipefail

# Test knob, not for users: Type=simple units for binaries built without sd-notify.
UNIT_TYPE=${INSTALL_CORRAL_UNIT_TYPE:-notify}
ROOT= # where files go: / for an install, a directory for `render`

BIN=/usr/local/bin
ETC=/etc/corral
UNIT_DIR=/etc/systemd/system
DATA=/var/lib/corral
SOCK=/run/corral/containerd/containerd.sock
CLUSTER_CIDR=10.42.0.0/16
HASH_DIR=$DATA/install
BINARIES=(corral-controlplane corral-scheduler corral-agent corral-logger corral-proxy corral)
SERVER_UNITS=(corral-containerd corral-controlplane corral-scheduler corral-agent corral-proxy)
NODE_UNITS=(corral-containerd corral-agent corral-proxy)
PACKAGES=(containerd runc containernetworking-plugins iptables iproute2 kmod)
ETCD_DIR=$DATA/etcd
ETCD_TLS=$ETCD_DIR/tls
# The long form of the server token, for the next servers (written by every server on etcd).
SERVER_TOKEN_FILE=$DATA/server-token
# Which datastore a server uses: sqlite (default), init (embedded etcd, first server), join
# (embedded etcd, joining JOIN_URL) or external (--datastore-endpoint).
DATASTORE=sqlite
JOIN_URL=
GIVEN_TOKEN=
DATASTORE_ARGS=()

info() { echo "[corral-install] $*" >&2; }
fatal() {
  echo "[corral-install] error: $*" >&2
  exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- settings ---------------------------------------------------------------------------

# The server flags after the role: --cluster-init, --server URL, --token T, --datastore-*.
parse_server_flags() {
  local init=0
  while (($#)); do
    case $1 in
    --cluster-init) DATASTORE=init init=1 ;;
    --server)
      (($# >= 2)) || fatal "--server needs a URL"
      DATASTORE=join JOIN_URL=$2
      shift
      ;;
    --server=*) DATASTORE=join JOIN_URL=${1#*=} ;;
    --token)
      (($# >= 2)) || fatal "--token needs a value"
      GIVEN_TOKEN=$2
      shift
      ;;
    --token=*) GIVEN_TOKEN=${1#*=} ;;
    --datastore-endpoint | --datastore-cafile | --datastore-certfile | --datastore-keyfile)
      (($# >= 2)) || fatal "$1 needs a value"
      [[ $1 != --datastore-endpoint ]] || DATASTORE=external
      DATASTORE_ARGS+=("$1" "$2")
      shift
      ;;
    *) fatal "unknown flag ${1@Q} (server flags: --cluster-init, --server URL, --token T, --datastore-endpoint E, --datastore-cafile/certfile/keyfile F)" ;;
    esac
    shift
  done
  ((init == 0 || ${#JOIN_URL} == 0)) || fatal "--cluster-init and --server: give one (the first server, or a next one)"
  ((${#DATASTORE_ARGS[@]} == 0)) || [[ $DATASTORE == external && -z $JOIN_URL && $init == 0 ]] ||
    fatal "--datastore-* flags name an etcd run elsewhere: not with --cluster-init or --server"
  # Servers joining others take the server token from the environment as agents take theirs.
  [[ $DATASTORE != external ]] || GIVEN_TOKEN=${GIVEN_TOKEN:-${CORRAL_TOKEN:-}}
  if [[ $DATASTORE == join ]]; then
    [[ $JOIN_URL =~ ^https://[^[:space:]/,]+(:[0-9]+)?/?$ ]] ||
      fatal "--server ${JOIN_URL@Q}: must be https://HOST[:PORT] of a server installed with --cluster-init or --server"
    JOIN_URL=${JOIN_URL%/}
    GIVEN_TOKEN=${GIVEN_TOKEN:-${CORRAL_TOKEN:-}}
    if [[ -z $GIVEN_TOKEN && -n ${CORRAL_TOKEN_FILE:-} ]]; then
      [[ -r $CORRAL_TOKEN_FILE ]] || fatal "CORRAL_TOKEN_FILE $CORRAL_TOKEN_FILE: cannot read it"
      GIVEN_TOKEN=$(tr -d '[:space:]' <"$CORRAL_TOKEN_FILE")
    fi
    [[ -n $GIVEN_TOKEN || -n $ROOT ]] ||
      fatal "--server needs the server token (--token or CORRAL_TOKEN: $SERVER_TOKEN_FILE on a server)"
  fi
  if [[ -n $GIVEN_TOKEN ]]; then
    [[ $GIVEN_TOKEN =~ ^[A-Za-z0-9:._-]+$ ]] || fatal "server token: unexpected characters (expected K10<hash>::server:<secret>)"
    [[ $DATASTORE == join || $DATASTORE == external ]] ||
      fatal "--token is for servers that join others (--server URL or --datastore-endpoint)"
  fi
}

# The secret of a server token: K10<hash>::server:<secret> or the bare secret.
token_secret() {
  if [[ $1 =~ ^K10[0-9a-f]{64}::server:(.+)$ ]]; then echo "${BASH_REMATCH[1]}"; else echo "$1"; fi
}

parse_flags() {
  if [[ $ROLE == server ]]; then
    parse_server_flags "$@"
  elif (($#)); then
    fatal "the agent role takes no flags (settings are environment variables; got ${1@Q})"
  fi
}

parse_role() {
  ROLE=${1:-}
  if [[ -z $ROLE ]]; then
    ROLE=$([[ -n ${CORRAL_URL:-} ]] && echo agent || echo server)
  fi
  case $ROLE in
  server)
    [[ -z ${CORRAL_URL:-} ]] || fatal "CORRAL_URL is set: a server does not join another (use the agent role)"
    ;;
  agent)
    [[ -n ${CORRAL_URL:-} ]] || fatal "the agent role needs CORRAL_URL=https://SERVER:7443"
    local url urls
    IFS=, read -r -a urls <<<"$CORRAL_URL"
    ((${#urls[@]})) || fatal "CORRAL_URL ${CORRAL_URL@Q}: must be https://HOST[:PORT][,https://...]"
    for url in "${urls[@]}"; do
      [[ $url =~ ^https://[^[:space:]/,]+(:[0-9]+)?/?$ ]] ||
        fatal "CORRAL_URL ${CORRAL_URL@Q}: each server must be https://HOST[:PORT] (comma-separated)"
    done
    ;;
  *) fatal "role ${ROLE@Q}: must be server or agent" ;;
  esac
  case ${INSTALL_CORRAL_POD_NETWORK:=host-gw} in
  host-gw | vxlan | none) ;;
  *) fatal "INSTALL_CORRAL_POD_NETWORK ${INSTALL_CORRAL_POD_NETWORK@Q}: must be host-gw, vxlan or none" ;;
  esac
  if [[ -n ${INSTALL_CORRAL_NODE_NAME:-} && ! $INSTALL_CORRAL_NODE_NAME =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]]; then
    fatal "INSTALL_CORRAL_NODE_NAME ${INSTALL_CORRAL_NODE_NAME@Q}: must be a DNS-1123 subdomain"
  fi
  [[ $UNIT_TYPE == notify || $UNIT_TYPE == simple ]] || fatal "INSTALL_CORRAL_UNIT_TYPE: notify or simple"
}

# The join token of an agent: CORRAL_TOKEN, CORRAL_TOKEN_FILE, else the one already installed.
agent_token() {
  local token=${CORRAL_TOKEN:-}
  if [[ -z $token && -n ${CORRAL_TOKEN_FILE:-} ]]; then
    [[ -r $CORRAL_TOKEN_FILE ]] || fatal "CORRAL_TOKEN_FILE $CORRAL_TOKEN_FILE: cannot read it"
    token=$(tr -d '[:space:]' <"$CORRAL_TOKEN_FILE")
  fi
  if [[ -z $token && -r $ROOT$ETC/corral-agent.env ]]; then
    token=$(sed -n 's/^CORRAL_TOKEN=//p' "$ROOT$ETC/corral-agent.env")
  fi
  [[ -n $token ]] || fatal "the agent role needs CORRAL_TOKEN or CORRAL_TOKEN_FILE (the server's $DATA/controlplane/agent-token)"
  [[ $token =~ ^[A-Za-z0-9:._-]+$ ]] || fatal "CORRAL_TOKEN: unexpected characters (expected K10<hash>::<id>.<secret>)"
  echo "$token"
}

# The server's address for its certificate: the given one, else the given interface's, else
# the source of the default route, else the first global IPv4 of an up interface.
server_ip() {
  local ip=${INSTALL_CORRAL_NODE_IP:-}
  if [[ -z $ip && -n ${INSTALL_CORRAL_NODE_INTERFACE:-} ]]; then
    ip=$(ip -4 -o addr show dev "$INSTALL_CORRAL_NODE_INTERFACE" scope global 2>/dev/null |
      awk '{split($4, a, "/"); print a[1]; exit}')
    [[ -n $ip ]] || fatal "INSTALL_CORRAL_NODE_INTERFACE $INSTALL_CORRAL_NODE_INTERFACE: no IPv4 address"
  fi
  if [[ -z $ip ]]; then
    ip=$(ip -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
    [[ -z $ip ]] || ip=$(ip -4 -o addr show dev "$ip" scope global | awk '{split($4, a, "/"); print a[1]; exit}')
  fi
  if [[ -z $ip ]]; then
    ip=$(ip -4 -o addr show scope global up 2>/dev/null | awk '$2 != "lo" {split($4, a, "/"); print a[1]; exit}')
  fi
  echo "${ip:-127.0.0.1}"
}

find_bin_dir() {
  if [[ -n ${INSTALL_CORRAL_BIN_DIR:-} ]]; then
    echo "$INSTALL_CORRAL_BIN_DIR"
    return
  fi
  local d b ok
  for d in "$script_dir/../target/release" "$script_dir/../target/debug"; do
    ok=1
    for b in "${BINARIES[@]}"; do [[ -x $d/$b ]] || ok=0; done
    if ((ok)); then
      echo "$d"
      return
    fi
  done
  fatal "no built binaries next to the script: build them (cargo build --release) or set INSTALL_CORRAL_BIN_DIR"
}

# ---- file contents ----------------------------------------------------------------------

common_service() { # the [Service] settings every Corral unit shares
  cat <<EOF
EnvironmentFile=-$ETC/%N.env
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
Restart=always
RestartSec=5s
TimeoutStartSec=0
EOF
}

unit_containerd() {
  cat <<EOF
[Unit]
Description=Corral's containerd (own root, state and socket; not the host's)
Wants=network-online.target
After=network-online.target
PartOf=corral-server.target corral-node.target

[Service]
Type=$UNIT_TYPE
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$CONTAINERD --config $ETC/containerd/config.toml
# Stopping containerd leaves the shims and their containers running.
KillMode=process
Delegate=yes
OOMScoreAdjust=-999
$(common_service)
EOF
}

unit_etcd() {
  cat <<EOF
[Unit]
Description=Corral's etcd (the control planes' datastore; TLS for clients and peers)
Wants=network-online.target
After=network-online.target
PartOf=corral-server.target

[Service]
# etcd tells systemd when it serves (after it joined its cluster).
Type=notify
ExecStart=$ETCD_BIN --name $ETCD_NAME --data-dir $ETCD_DIR/data --logger zap --log-outputs stderr --listen-client-urls $ETCD_LISTEN_CLIENT --advertise-client-urls https://$NODE_ADDR:2379 --listen-peer-urls https://$NODE_ADDR:2380 --initial-advertise-peer-urls https://$NODE_ADDR:2380 --initial-cluster $ETCD_INITIAL_CLUSTER --initial-cluster-state $ETCD_STATE --initial-cluster-token $ETCD_CLUSTER_TOKEN --cert-file $ETCD_TLS/server.crt --key-file $ETCD_TLS/server.key --trusted-ca-file $ETCD_TLS/ca.crt --client-cert-auth --peer-cert-file $ETCD_TLS/server.crt --peer-key-file $ETCD_TLS/server.key --peer-trusted-ca-file $ETCD_TLS/ca.crt --peer-client-cert-auth
$(common_service)
EOF
}

unit_controlplane() {
  local wants=network-online.target
  ! embedded_etcd || wants+=" corral-etcd.service"
  cat <<EOF
[Unit]
Description=Corral control plane (API server, store, controllers)
Wants=$wants
After=$wants
PartOf=corral-server.target

[Service]
Type=$UNIT_TYPE
# The controllers' leader identity (in their Lease) starts with the host name.
Environment=HOSTNAME=%H
ExecStart=$BIN/corral-controlplane --listen 0.0.0.0:7443 --tls-san $NODE_ADDR --advertise-address $NODE_ADDR --write-kubeconfig $ETC/admin.kubeconfig --data-dir $DATA/controlplane --cluster-cidr $CLUSTER_CIDR --node-cidr-mask-size 24 --node-monitor-grace-seconds 40 --pod-eviction-seconds 300${STORE_ARGS:+ $STORE_ARGS}${SERVER_EXEC:+ $SERVER_EXEC}
$(common_service)
EOF
}

unit_scheduler() {
  cat <<EOF
[Unit]
Description=Corral scheduler
Wants=network-online.target corral-controlplane.service
After=network-online.target corral-controlplane.service
PartOf=corral-server.target

[Service]
Type=$UNIT_TYPE
ExecStart=$BIN/corral-scheduler --server https://127.0.0.1:7443 --kubeconfig $DATA/controlplane/tls/scheduler.kubeconfig
$(common_service)
EOF
}

unit_agent() {
  local after="network-online.target corral-containerd.service"
  [[ $ROLE == agent ]] || after+=" corral-controlplane.service"
  cat <<EOF
[Unit]
Description=Corral node agent (pods through Corral's containerd)
Wants=network-online.target corral-containerd.service
After=$after
PartOf=corral-server.target corral-node.target

[Service]
Type=$UNIT_TYPE
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$BIN/corral-agent $AGENT_ARGS
# Stopping or restarting the agent leaves its pods running; the next agent adopts them.
KillMode=process
Delegate=yes
$(common_service)
EOF
}

unit_proxy() {
  cat <<EOF
[Unit]
Description=Corral service proxy (ClusterIP, NodePort, Ingress)
Wants=network-online.target corral-agent.service
After=network-online.target corral-agent.service
PartOf=corral-server.target corral-node.target

[Service]
Type=$UNIT_TYPE
# The proxy uses the node's credentials, written by the agent once it joined.
ExecStartPre=/usr/bin/timeout 300 /bin/sh -c 'until [ -s $DATA/agent/kubeconfig ]; do sleep 1; done'
ExecStart=$BIN/corral-proxy --kubeconfig $DATA/agent/kubeconfig --node-name $PROXY_NODE_NAME${PROXY_SERVER:+ --server $PROXY_SERVER}
$(common_service)
EOF
}

unit_target() { # NAME DESCRIPTION UNITS...
  local description=$2
  shift 2
  local wants=("${@/%/.service}")
  cat <<EOF
[Unit]
Description=$description
Wants=${wants[*]}
After=${wants[*]}

[Install]
WantedBy=multi-user.target
EOF
}

containerd_config() {
  cat <<EOF
# Corral's containerd: its own root, state and socket, so a containerd or Docker of the host
# is left alone. Corral talks to it over gRPC in namespace "corral"; no CRI.
version = 2
root = "$DATA/containerd"
state = "/run/corral/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$DATA/containerd/opt"
EOF
}

env_file() { # UNIT
  echo "# Environment of $1.service, written by the Corral installer (mode 0600)."
  if [[ $1 == corral-agent && $ROLE == agent ]]; then
    echo "CORRAL_TOKEN=$TOKEN"
  fi
}

# Computes every setting the files are made of.
prepare() {
  CONTAINERD=$(command -v containerd || echo /usr/bin/containerd)
  NODE_ADDR=127.0.0.1
  SERVER_EXEC=
  STORE_ARGS=
  PROXY_SERVER=
  local args=()
  if [[ $ROLE == server ]]; then
    NODE_ADDR=$(server_ip)
    SERVER_EXEC=${INSTALL_CORRAL_EXEC:-}
    args+=(--server https://127.0.0.1:7443 --token-file "$DATA/controlplane/agent-token")
    prepare_datastore
  else
    TOKEN=$(agent_token)
    # As given: one server, or several comma-separated (the agent and proxy fail over).
    args+=(--server "$CORRAL_URL")
    PROXY_SERVER=$CORRAL_URL
  fi
  args+=(--containerd-socket "$SOCK" --data-dir "$DATA/agent" --images-dir "$DATA/agent/images")
  args+=(--cluster-cidr "$CLUSTER_CIDR" --pod-network "$INSTALL_CORRAL_POD_NETWORK")
  # containerd's overlayfs snapshotter cannot put its layers on an overlay root (a container
  # or nspawn machine booted over one): copy layers instead.
  if [[ -z $ROOT && $(stat -f -c %T /var/lib 2>/dev/null) == overlayfs ]]; then
    info "/var/lib is on overlayfs: the agent uses containerd's native snapshotter"
    args+=(--snapshotter native)
  fi
  [[ -z ${INSTALL_CORRAL_NODE_NAME:-} ]] || args+=(--node-name "$INSTALL_CORRAL_NODE_NAME")
  [[ -z ${INSTALL_CORRAL_NODE_IP:-} ]] || args+=(--node-ip "$INSTALL_CORRAL_NODE_IP")
  [[ -z ${INSTALL_CORRAL_NODE_INTERFACE:-} ]] || args+=(--node-interface "$INSTALL_CORRAL_NODE_INTERFACE")
  AGENT_ARGS="${args[*]}"
  [[ $ROLE == server || -z ${INSTALL_CORRAL_EXEC:-} ]] || AGENT_ARGS+=" $INSTALL_CORRAL_EXEC"
  # %H: the hostname, which is also the agent's default node name.
  PROXY_NODE_NAME=${INSTALL_CORRAL_NODE_NAME:-%H}
  if [[ $ROLE == server ]]; then UNITS=("${SERVER_UNITS[@]}"); else UNITS=("${NODE_UNITS[@]}"); fi
  if embedded_etcd; then UNITS=(corral-etcd "${UNITS[@]}"); fi
}

embedded_etcd() { [[ $ROLE == server && ($DATASTORE == init || $DATASTORE == join) ]]; }

# The embedded etcd's settings and the control plane's datastore flags.
prepare_datastore() {
  case $DATASTORE in
  sqlite) return ;;
  external)
    STORE_ARGS="${DATASTORE_ARGS[*]}"
    return
    ;;
  esac
  ETCD_BIN=$(command -v etcd || echo /usr/bin/etcd)
  ETCD_NAME=${INSTALL_CORRAL_NODE_NAME:-$(hostname)}
  [[ $ETCD_NAME =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] ||
    fatal "etcd member name ${ETCD_NAME@Q} (the host name): must be a DNS-1123 subdomain; set INSTALL_CORRAL_NODE_NAME"
  ETCD_LISTEN_CLIENT=https://127.0.0.1:2379
  [[ $NODE_ADDR == 127.0.0.1 ]] || ETCD_LISTEN_CLIENT+=",https://$NODE_ADDR:2379"
  ETCD_PEER_URL=https://$NODE_ADDR:2380
  # Member IDs derive from it: a cluster of its own, never one of the same names elsewhere.
  # Made once by setup_etcd (a render shows the placeholder); a joiner's etcd ignores it.
  ETCD_CLUSTER_TOKEN=$(cat "$ROOT$ETCD_DIR/initial-cluster-token" 2>/dev/null || echo corral)
  if [[ $DATASTORE == init ]]; then
    ETCD_STATE=new
    ETCD_INITIAL_CLUSTER=$ETCD_NAME=$ETCD_PEER_URL
  else
    ETCD_STATE=existing
    # Written by the join (etcd-join prints it); a render shows this member alone.
    ETCD_INITIAL_CLUSTER=$(cat "$ROOT$ETCD_DIR/initial-cluster" 2>/dev/null || echo "$ETCD_NAME=$ETCD_PEER_URL")
  fi
  # The control plane talks to its own host's member; with the etcd CA it adds the next servers.
  STORE_ARGS="--datastore-endpoint https://127.0.0.1:2379 --datastore-cafile $ETCD_TLS/ca.crt"
  STORE_ARGS+=" --datastore-certfile $ETCD_TLS/client.crt --datastore-keyfile $ETCD_TLS/client.key"
  STORE_ARGS+=" --etcd-ca-dir $ETCD_TLS"
}

# Writes every file under ROOT (/ for a real install).
write_files() {
  local root=$1 u
  mkdir -p "$root$UNIT_DIR" "$root$ETC/containerd"
  chmod 0700 "$root$ETC"
  for u in "${UNITS[@]}"; do
    put "$root$UNIT_DIR/$u.service" 0644 < <("unit_${u#corral-}")
    put "$root$ETC/$u.env" 0600 < <(env_file "$u")
  done
  if [[ $ROLE == server ]]; then
    put "$root$UNIT_DIR/corral-server.target" 0644 < <(unit_target x \
      "Corral server (control plane, scheduler, agent, proxy, containerd)" "${UNITS[@]}")
  fi
  put "$root$UNIT_DIR/corral-node.target" 0644 < <(unit_target x \
    "Corral node (agent, proxy, containerd)" "${NODE_UNITS[@]}")
  put "$root$ETC/containerd/config.toml" 0644 < <(containerd_config)
}

# put DEST MODE < content: replaces DEST only when its content or mode differs.
put() {
  local dest=$1 mode=$2 tmp
  tmp=$(mktemp "$dest.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f $dest ]] && cmp -s "$tmp" "$dest" && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$dest"
    info "wrote $dest"
  fi
}

# ---- host changes -----------------------------------------------------------------------

install_packages() {
  local missing=() p
  ! embedded_etcd || PACKAGES+=(etcd-server)
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ -n ${INSTALL_CORRAL_SKIP_APT:-} ]]; then
    info "missing packages ${missing[*]} (INSTALL_CORRAL_SKIP_APT is set: not installing them)"
    return 0
  fi
  info "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  # Debian's package starts the host's own containerd; Corral runs its own.
  if [[ " ${missing[*]} " == *" containerd "* ]]; then
    systemctl disable --now containerd.service >/dev/null 2>&1 || true
  fi
}

# Debian's etcd-server starts its own etcd.service (plaintext, on localhost:2379): Corral's
# corral-etcd.service takes those ports, so Debian's is stopped and masked (uninstall unmasks).
mask_debian_etcd() {
  [[ $(systemctl show -P LoadState etcd.service 2>/dev/null) == loaded ]] || return 0
  systemctl disable --now etcd.service >/dev/null 2>&1 || true
  systemctl mask etcd.service >/dev/null
  mkdir -p "$HASH_DIR"
  : >"$HASH_DIR/masked-etcd.service"
  info "stopped and masked Debian's etcd.service (corral-etcd.service runs etcd)"
}

# The embedded etcd's certificates: the first server makes the etcd CA; a joining server gets
# it through ServerJoin (authenticated by the server token), which also makes it a member.
setup_etcd() {
  local joined=$ETCD_DIR/initial-cluster
  mkdir -p "$ETCD_DIR"
  chmod 0700 "$ETCD_DIR"
  if [[ $DATASTORE == join && ! -d $ETCD_DIR/data/member ]]; then
    info "joining the servers of $JOIN_URL as etcd member $ETCD_NAME ($ETCD_PEER_URL)"
    CORRAL_SERVER_TOKEN="$GIVEN_TOKEN" controlplane_cmd etcd-join \
      --server "$JOIN_URL" --dir "$ETCD_TLS" --name "$ETCD_NAME" --peer-url "$ETCD_PEER_URL" \
      --san "$NODE_ADDR" >"$joined.tmp" || fatal "joining $JOIN_URL failed (see above)"
    mv -f "$joined.tmp" "$joined"
    prepare_datastore
  else
    if [[ $DATASTORE == init && ! -s $ETCD_DIR/initial-cluster-token ]]; then
      echo "corral-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" >"$ETCD_DIR/initial-cluster-token"
      prepare_datastore
    fi
    controlplane_cmd etcd-certs --dir "$ETCD_TLS" --name "$ETCD_NAME" --san "$NODE_ADDR" >/dev/null ||
      fatal "making etcd's certificates in $ETCD_TLS failed"
  fi
}

# corral-controlplane's subcommands; the control plane's own CORRAL_TOKEN (a server token that
# needs --datastore-endpoint) must not reach them from the installer's environment.
controlplane_cmd() { env -u CORRAL_TOKEN -u CORRAL_TOKEN_FILE "$BIN/corral-controlplane" "$@"; }

# A server that joins others keeps their server token where its control plane reads it.
write_server_token() {
  [[ -n $GIVEN_TOKEN ]] || return 0
  mkdir -p "$DATA/controlplane"
  chmod 0700 "$DATA/controlplane"
  put "$DATA/controlplane/server-token" 0600 < <(token_secret "$GIVEN_TOKEN")
}

install_binaries() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do
    [[ -x $dir/$b ]] || fatal "$dir/$b: missing or not executable (INSTALL_CORRAL_BIN_DIR=$dir)"
    if ! cmp -s "$dir/$b" "$BIN/$b"; then
      install -m 0755 "$dir/$b" "$BIN/$b.tmp"
      mv -f "$BIN/$b.tmp" "$BIN/$b"
      info "installed $BIN/$b"
    fi
  done
  install_script killall.sh "$dir" "$BIN/corral-killall.sh"
  install_script uninstall.sh "$dir" "$BIN/corral-uninstall.sh"
}

install_script() { # NAME BIN_DIR DEST: NAME from beside this script, else from BIN_DIR
  local src=$script_dir/$1
  [[ -f $src ]] || src=$2/$1
  [[ -f $src ]] || fatal "$1: not beside install.sh ($script_dir) nor in $2 (copy scripts/$1 with it)"
  cmp -s "$src" "$3" || {
    install -m 0755 "$src" "$3"
    info "installed $3"
  }
}

# The files a unit runs from; a change in any of them restarts the unit.
unit_files() {
  local u=$1
  echo "$UNIT_DIR/$u.service" "$ETC/$u.env"
  case $u in
  corral-containerd) echo "$CONTAINERD" "$ETC/containerd/config.toml" ;;
  corral-etcd) echo "$ETCD_BIN" "$ETCD_TLS/server.crt" "$ETCD_TLS/ca.crt" ;;
  *) echo "$BIN/$u" ;;
  esac
}

unit_hash() { sha256sum $(unit_files "$1") 2>/dev/null | sha256sum | cut -c1-64; }

# Roles switched: the other role's target is disabled, and an agent drops the server's units.
remove_other_role() {
  local u
  local drop=(corral-controlplane corral-scheduler corral-etcd)
  if [[ $ROLE == server ]]; then
    systemctl disable -q corral-node.target 2>/dev/null || true
    embedded_etcd && return
    drop=(corral-etcd) # a server on SQLite or an external etcd runs no etcd (its data stays)
  else
    systemctl disable -q corral-server.target 2>/dev/null || true
    rm -f "$UNIT_DIR/corral-server.target"
  fi
  for u in "${drop[@]}"; do
    if [[ -f $UNIT_DIR/$u.service ]]; then
      systemctl stop "$u" 2>/dev/null || true
      rm -f "$UNIT_DIR/$u.service" "$ETC/$u.env" "$HASH_DIR/$u"
      info "removed $u (not part of this host's role now)"
    fi
  done
}

start_units() {
  local target=$1 u restart=() h
  mkdir -p "$HASH_DIR"
  for u in "${UNITS[@]}"; do
    h=$(unit_hash "$u")
    if [[ -f $HASH_DIR/$u && $(<"$HASH_DIR/$u") == "$h" ]] && systemctl is-active -q "$u"; then
      continue
    fi
    restart+=("$u")
  done
  if ((${#restart[@]})); then
    info "starting ${restart[*]}"
    # In order, so the control plane is up before the scheduler and agent are restarted.
    systemctl restart --no-block "${restart[@]/%/.service}"
  else
    info "nothing changed; no unit restarted"
  fi
  systemctl start --no-block "$target"
  local ok=0
  wait_active "${UNITS[@]}" || ok=$?
  # Recorded for the units that run, so the next run restarts only what still fails.
  for u in "${restart[@]}"; do
    if systemctl is-active -q "$u"; then unit_hash "$u" >"$HASH_DIR/$u"; else rm -f "$HASH_DIR/$u"; fi
  done
  ((ok == 0)) || fatal "${FAILED[*]} did not start (see above; systemd keeps retrying: journalctl -u UNIT -f)"
}

# Waits (bounded) for every unit to be active; a unit that failed 3 times, or is not active in
# time, fails the install with its last journal lines.
wait_active() {
  local deadline=$((SECONDS + ${INSTALL_CORRAL_WAIT:-180})) u pending bad
  while :; do
    pending=() bad=()
    for u in "$@"; do
      systemctl is-active -q "$u" && continue
      pending+=("$u")
      if (($(systemctl show -P NRestarts "$u" 2>/dev/null || echo 0) >= 3)) ||
        [[ $(systemctl show -P ActiveState "$u") == failed ]]; then
        bad+=("$u")
      fi
    done
    ((${#pending[@]})) || break
    ((${#bad[@]} == 0 && SECONDS < deadline)) || {
      for u in "${bad[@]:-${pending[@]}}"; do
        echo "[corral-install] $u is not active ($(systemctl show -P ActiveState "$u")); its last log lines:" >&2
        journalctl -u "$u" -n 15 --no-pager -o cat >&2 || true
      done
      FAILED=("${bad[@]:-${pending[@]}}")
      return 1
    }
    sleep 1
  done
  info "active: $*"
}

main() {
  if [[ ${1:-} == render ]]; then # render ROLE DIR [FLAGS]: the files only, for tests and review
    parse_role "${2:-}"
    [[ -n ${3:-} ]] || fatal "usage: install.sh render server|agent DIR [server flags]"
    ROOT=$3
    parse_flags "${@:4}"
    prepare
    write_files "$3"
    return
  fi
  parse_role "${1:-}"
  parse_flags "${@:2}"
  ((EUID == 0)) || fatal "run as root"
  command -v systemctl >/dev/null || fatal "systemd is needed (systemctl not found)"
  local bin_dir
  bin_dir=$(find_bin_dir)
  install_packages
  prepare
  install_binaries "$bin_dir"
  mkdir -p "$DATA/agent/images" "$HASH_DIR"
  if embedded_etcd; then
    # A server that kept its cluster in SQLite would start an empty one on etcd.
    [[ ! -f $DATA/controlplane/corral.db || -d $ETCD_DIR/data/member ]] ||
      fatal "this host's cluster is in SQLite ($DATA/controlplane/corral.db): copy it to etcd with corral-controlplane migrate, or remove it, before --cluster-init or --server"
    mask_debian_etcd
    setup_etcd
  fi
  write_server_token
  remove_other_role
  write_files ""
  systemctl daemon-reload
  local target=corral-$([[ $ROLE == server ]] && echo server || echo node).target
  systemctl enable -q "$target"
  if [[ -n ${INSTALL_CORRAL_SKIP_START:-} ]]; then
    info "INSTALL_CORRAL_SKIP_START is set: $target enabled, not started"
    return
  fi
  start_units "$target"
  if [[ $ROLE == server ]]; then
    info "server ready: CORRAL_CONFIG=$ETC/admin.kubeconfig corral get nodes"
    if [[ $DATASTORE != sqlite ]]; then
      local long
      long=$(controlplane_cmd server-token --data-dir "$DATA/controlplane") ||
        fatal "reading the server token back from $DATA/controlplane"
      put "$SERVER_TOKEN_FILE" 0600 <<<"$long"
      info "join more servers with CORRAL_TOKEN=\$(cat $SERVER_TOKEN_FILE) install.sh server --server https://$NODE_ADDR:7443"
    fi
    info "join agents with CORRAL_URL=https://$NODE_ADDR:7443 CORRAL_TOKEN=\$(cat $DATA/controlplane/agent-token)"
  fi
}

main "$@"
