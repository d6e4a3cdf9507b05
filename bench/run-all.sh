#!/usr/bin/env bash
# `make bench`: every benchmark in turn (env AGENTBOX, PYTHON). Each prints medians and ratios
# against a reference measured in the same run; docs/benchmarks.md records the figures and
# the command behind each. Run on a quiet machine: other load inflates every median.
set -eu
cd "$(dirname "$0")/.."
: "${AGENTBOX:=$PWD/agentbox}" "${PYTHON:=/usr/bin/python3}"
export AGENTBOX
echo "== exec start-up (bench/bench_exec.py)"
"$PYTHON" bench/bench_exec.py --agentbox "$AGENTBOX"
echo "== LLM client (bench/bench_llm.py)"
"$PYTHON" bench/bench_llm.py --agentbox "$AGENTBOX"
echo "== agent loop (bench/bench_run.py)"
"$PYTHON" bench/bench_run.py
if [ -f bench/bench_serve.py ]; then
  echo "== supervisor (bench/bench_serve.py)"
  "$PYTHON" bench/bench_serve.py
fi
echo "== supervisor crash loop (bench/bench_crashloop.py)"
"$PYTHON" bench/bench_crashloop.py
echo "== egress proxy (bench/bench_egress.py)"
"$PYTHON" bench/bench_egress.py
