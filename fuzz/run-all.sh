#!/usr/bin/env bash
# Runs every target for $1 seconds (default 300), one at a time, with the arguments
# `cargo fuzz run <t> -s none` passes, over the binaries `cargo fuzz build -s none` made.
set -u
cd "$(dirname "$0")"
secs=${1:-300}
for t in signature webhook_parse host_envelope pools_file; do
  mkdir -p "corpus/$t" "artifacts/$t" logs
  ./target/x86_64-unknown-linux-gnu/release/$t -artifact_prefix="artifacts/$t/" \
    -max_total_time="$secs" -print_final_stats=1 "corpus/$t" > "logs/$t.log" 2>&1
  echo "$t exit=$?" >> logs/summary.txt
done
