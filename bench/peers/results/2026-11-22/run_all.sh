#!/usr/bin/env bash
# The runs behind docs/benchmarks.md "Peers on CPU", in order; each writes
# NAME.json (rows), NAME.md (tables), NAME.log (progress) and NAME.uptime
# (load average before and after) into this directory.
set -u
cd "$(dirname "$0")/../../../.."
R=bench/peers/results/2026-11-22
PY=build/peers-venv/bin/python
run() {
  local name=$1; shift
  uptime > $R/$name.uptime
  /usr/bin/time -f '%e s wall' $PY bench/peers/run_peers.py "$@" --json $R/$name.json \
    > $R/$name.md 2> $R/$name.log
  uptime >> $R/$name.uptime
}
run n1024 --N 1024 --D 64,128 --dtype fp32 --runs 10
run n4096d64 --N 4096 --D 64 --dtype fp32,bf16 --runs 7 --variants dense,causal
run n4096d64v --N 4096 --D 64 --dtype fp32,bf16 --runs 5 \
  --variants sliding_window,document,softcap,alibi,sigmoid,gqa
run n4096d128 --N 4096 --D 128 --dtype fp32,bf16 --runs 5
run n16k --N 16384 --D 128 --variants causal,sliding_window,document,softcap,alibi \
  --dtype fp32,bf16 --runs 3
