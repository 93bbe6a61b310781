#!/usr/bin/env bash
# Runs one fuzz target with the settings used for the recorded figures (see README.md):
#   bash fuzz/run.sh <target> [runs]
# New inputs go to fuzz/target/corpus/<target> (ignored by git); the checked-in seeds in
# fuzz/corpus/<target> are only read. Crashes land in fuzz/artifacts/<target>/. No sanitizer:
# the code under test is safe Rust (the workspace forbids unsafe) and runs 2-3x faster without.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh <target> [runs]}
runs=${2:-10000000}
case $target in
  decode) max_len=2048 dict=decode ;;
  selector) max_len=256 dict=selector ;;
  jsonpath) max_len=512 dict=jsonpath ;;
  apply_merge) max_len=2048 dict=json ;;
  quantity) max_len=64 dict=quantity ;;
  codec) max_len=1024 dict=json ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
mkdir -p "target/corpus/$target"
exec nice -n 15 cargo +nightly fuzz run -O --debug-assertions --sanitizer none "$target" \
  "target/corpus/$target" "corpus/$target" -- \
  -dict="dict/$dict.dict" -runs="$runs" -max_len="$max_len" -rss_limit_mb=2048 \
  -print_final_stats=1
