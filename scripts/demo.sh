#!/usr/bin/env bash
# The main job: sets everything up on a fresh Debian machine (as root), builds Corral, creates a
# 4-node local cluster with the workshop images, deploys the workshop's app behind a Service and
# an Ingress, waits for the rollout, and fetches the page through the Ingress a few times.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> building Corral"
cargo build --workspace --bins --quiet
bin=target/debug
export PATH="$PWD/$bin:$PATH"

echo "==> building the workshop images (OCI archives from busybox-static)"
corral-build-images --out target/images >/dev/null
ls target/images

cluster=${CORRAL_DEMO_CLUSTER:-workshop}
corral cluster delete "$cluster" >/dev/null 2>&1 || true
echo "==> corral cluster create $cluster --agents 3"
corral cluster create "$cluster" --agents 3 --images target/images

echo "==> corral get nodes -o wide"
corral get nodes -o wide
echo "==> corral apply (Deployment, Service, Ingress)"
corral apply -f examples/workshop/deploy-04/mi-deploy.yaml
corral apply -f examples/workshop/deploy-05/mi-deploy-svc.yaml
corral apply -f examples/workshop/deploy-05/mi-deploy-ingress.yaml
corral rollout status deployment/mi-deploy --timeout=120s
echo "==> corral get pods -o wide"
corral get pods -o wide
corral get replicaset
corral get ep
corral get ingress

echo "==> the page through the Ingress (Host: mi-app.com), on every node"
for ip in $(corral get nodes -o jsonpath='{.items[*].status.addresses[0].address}'); do
  for i in 1 2 3; do
    page=$(curl -fsS --max-time 5 -H 'Host: mi-app.com' "http://$ip/" || echo "(no answer)")
    echo "node $ip: $(echo "$page" | tr -s ' \n' ' ' | sed -e 's/<[^>]*>/ /g' | tr -s ' ' | cut -c1-120)"
  done
done

echo "==> corral top pods (each agent samples every 5 s; figures come from the second sample)"
for _ in $(seq 30); do
  if [ "$(corral top pods 2>/dev/null | grep -c mi-deploy)" -ge 3 ]; then break; fi
  sleep 1
done
corral top pods || true
corral top nodes || true

echo "==> corral dashboard (the live picture: open the URL in a browser that trusts the CA file)"
corral dashboard
echo
echo "The cluster keeps running: try the workshop's commands with 'corral' (PATH=$PWD/$bin:\$PATH)."
echo "Remove it with: $bin/corral cluster delete $cluster"
