#!/usr/bin/env bash
# Installs what Corral needs on a fresh Debian machine (as root): the Debian packages for
# building (protoc), running (containerd, runc, CNI plugins, iptables, iproute2) and testing
# (busybox-static for the test images, docker-registry for pull tests), and a Rust toolchain
# check. Safe to run again: it only installs what is missing.
set -euo pipefail

packages=(
  protobuf-compiler containerd runc containernetworking-plugins iptables iproute2
  util-linux busybox-static skopeo umoci docker-registry ca-certificates curl procps
  # a third-party client in the tests: Python grpcio stubs generated from the .proto
  python3 python3-grpcio python3-protobuf protobuf-compiler-grpc
  # tests/tests/kubectl.rs: a venv for the Python kubernetes client (from PyPI)
  python3-venv
  # etcd's protos import protobuf's well-known types; the etcd store's tests run real etcd
  libprotobuf-dev etcd-server etcd-client
  # tests/tests/dashboard.rs drives the dashboard in headless Chromium (DevTools protocol)
  chromium
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's etcd-server starts a host etcd on 2379; Corral's tests start their own.
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && [[ -d /run/systemd/system ]]; then
    systemctl disable --now etcd.service >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
# tests/tests/kubectl.rs drives Corral with the real kubectl (Debian's kubernetes-client is
# v1.20; the test unpacks that one apart itself).
if ! command -v kubectl >/dev/null; then
  arch=$(dpkg --print-architecture)
  echo "setup: installing kubectl v1.33.1 to /usr/local/bin"
  curl -fsSLo /usr/local/bin/kubectl "https://dl.k8s.io/release/v1.33.1/bin/linux/${arch}/kubectl"
  chmod 0755 /usr/local/bin/kubectl
fi
# The test images and the runtime need these paths.
for bin in protoc containerd runc /usr/lib/cni/bridge /bin/busybox; do
  command -v "$bin" >/dev/null || [[ -x $bin ]] || { echo "setup: $bin missing after install" >&2; exit 1; }
done
sysctl -qw net.ipv4.ip_forward=1 || true
echo "setup: ok"
