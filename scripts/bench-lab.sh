#!/usr/bin/env bash
# Issue 14's figures on a `corral lab` of 3 machines booting real systemd: the time from no
# machines to the workshop app answering through the Ingress on every machine (lab create with
# the installer, apply, rollout, first answers), the part of it `corral lab create` takes, and
# the memory (RSS) of an agent host's Corral processes. Run as root on a quiet machine (no build,
# no test running), after `cargo build --release --workspace --bins`:
#
#   bash scripts/bench-lab.sh [runs]        # default 3 runs; BENCH_BIN_DIR=target/debug to compare
#
# Traffic goes only to the lab's own machines (10.77.k.0/24 on the lab's bridge).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
bin=$(realpath "${BENCH_BIN_DIR:-target/release}")
export PATH="$bin:$PATH"
for b in corral corral-controlplane corral-scheduler corral-agent corral-logger corral-proxy corral-build-images; do
  [[ -x $bin/$b ]] || { echo "bench-lab: $bin/$b missing: cargo build --release --workspace --bins" >&2; exit 1; }
done
images=$(mktemp -d)
lab=
cleanup() {
  [[ -z $lab ]] || corral lab delete "$lab" >/dev/null 2>&1 || true
  rm -rf "$images"
}
trap cleanup EXIT
corral-build-images --out "$images" >/dev/null

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

echo "run  lab-create-s  app-serving-s  agent-host-rss-MiB (agent proxy containerd shims)"
for run in $(seq "$runs"); do
  lab="bench$run"
  corral lab delete "$lab" >/dev/null 2>&1 || true
  t0=$(now)
  corral lab create "$lab" --machines 3 --images "$images" --bin-dir "$bin" >/dev/null
  created=$(since "$t0")
  export CORRAL_CONFIG=/var/lib/corral-lab/$lab/admin.kubeconfig
  corral apply -f examples/workshop/deploy-04/mi-deploy.yaml >/dev/null
  corral apply -f examples/workshop/deploy-05/mi-deploy-svc.yaml >/dev/null
  corral apply -f examples/workshop/deploy-05/mi-deploy-ingress.yaml >/dev/null
  corral rollout status deployment/mi-deploy --timeout=120s >/dev/null
  for ip in $(corral get nodes -o jsonpath='{.items[*].status.addresses[0].address}'); do
    deadline=$((SECONDS + 60))
    until curl -fsS --max-time 2 -H 'Host: mi-app.com' "http://$ip/" >/dev/null 2>&1; do
      ((SECONDS < deadline)) || { echo "bench-lab: the Ingress on $ip never answered" >&2; exit 1; }
      sleep 0.1
    done
  done
  serving=$(since "$t0")
  # Machine 1 is an agent host: its Corral processes' resident memory, in MiB.
  rss=$(corral lab exec "$lab-1" -- sh -c '
    for c in corral-agent corral-proxy containerd containerd-shim-runc-v2; do
      ps -C "$c" -o rss= | awk -v c="$c" "{s+=\$1} END {printf \"%s=%.1f \", c, s/1024}"
    done')
  total=$(echo "$rss" | tr ' ' '\n' | awk -F= 'NF==2 {s+=$2} END {printf "%.1f", s}')
  printf '%-4s %-13.1f %-14.1f %s (%s)\n' "$run" "$created" "$serving" "$total" "$rss"
  corral lab delete "$lab" >/dev/null
  lab=
done
