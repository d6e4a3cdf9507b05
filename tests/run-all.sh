#!/usr/bin/env bash
# The whole test suite, as `make check` runs it (env: AGENTBOX, AGENTBOX_SAN, BUILD, PYTHON).
# 1. cmocka units, plain and under ASan+UBSan;
# 2. the Python suites that drive the real binary (tests/*/test_*.py), each as the calling
#    user and, when that is root, again as an unprivileged user (escape and usability suites);
# 3. the integration suites once more against the sanitizer binary;
# 4. the exec, escape, run, serve, batch and deploy suites in a cgroup v2-only VM (tests/vm/run-v2.sh);
# 5. deploy/'s units under a real systemd as pid 1, in a VM (tests/vm/run-systemd.sh).
# Ends with one tally line: "check: N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
: "${AGENTBOX:?}" "${BUILD:=build}" "${PYTHON:=/usr/bin/python3}"
export AGENTBOX_DATA_DIR=$PWD HELPERS_DIR=$PWD/$BUILD/helpers
tot_p=0 tot_f=0 tot_s=0 log=$(mktemp)
trap 'rm -f "$log"' EXIT

tally() { # adds the last "X: N passed, N failed, N skipped" line of $log
  local line; line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  local p f s
  p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
  s=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line")
  if [ -z "$line" ]; then f=1; p=0; echo "!! suite printed no tally"; fi
  tot_p=$((tot_p + ${p:-0})); tot_f=$((tot_f + ${f:-0})); tot_s=$((tot_s + ${s:-0}))
}
run() { # label, command...
  local label=$1; shift
  echo "==== $label"
  "$@" 2>&1 | tee "$log"
  tally
}

run "units" bash tests/run-units.sh $(ls "$BUILD"/tests/test_* 2>/dev/null)
run "units (asan+ubsan)" bash tests/run-units.sh $(ls "$BUILD"/san/tests/test_* 2>/dev/null)

# The unprivileged runs need a tree user nobody can read. A checkout below a private
# directory (/root/...) is not one: then the binary, the data and the tests are staged in a
# world-readable temporary copy, removed at the end.
unpriv_root=$PWD
if [ "$(id -u)" = 0 ] && ! runuser -u nobody -- test -x "$AGENTBOX" 2>/dev/null; then
  unpriv_root=$(mktemp -d /tmp/agentbox-check.XXXXXX)
  chmod 755 "$unpriv_root"
  for f in * .[!.]*; do
    case "$f" in .git|build|build-*|"$BUILD") ;; *) cp -a "$f" "$unpriv_root/" ;; esac
  done
  cp -a "$AGENTBOX" "$unpriv_root/" 2>/dev/null || true
  mkdir -p "$unpriv_root/$BUILD" && cp -a "$BUILD/helpers" "$unpriv_root/$BUILD/" 2>/dev/null || true
  chmod -R a+rX "$unpriv_root"
  trap 'rm -f "$log"; rm -rf "$unpriv_root"' EXIT
  echo "(unprivileged suites run from a readable copy in $unpriv_root)"
fi
unpriv_bin=$AGENTBOX
[ "$unpriv_root" != "$PWD" ] && unpriv_bin=$unpriv_root/$(basename "$AGENTBOX")

for dir in tests/*/; do
  ls "$dir"test_*.py >/dev/null 2>&1 || continue
  name=$(basename "$dir")
  run "$name" env AGENTBOX="$AGENTBOX" "$PYTHON" tests/pyrun.py "$dir" "$name"
  if [ "$(id -u)" = 0 ] && [ -f "$dir/.unprivileged" ]; then
    run "$name (unprivileged)" runuser -u nobody -- env -C "$unpriv_root" HOME=/tmp \
      AGENTBOX="$unpriv_bin" AGENTBOX_DATA_DIR="$unpriv_root" \
      HELPERS_DIR="$unpriv_root/$BUILD/helpers" AGENTBOX_TEST_UNPRIVILEGED=1 \
      "$PYTHON" tests/pyrun.py "$dir" "$name-unprivileged"
  fi
  if [ -n "${AGENTBOX_SAN:-}" ] && [ -f "$dir/.sanitizer" ]; then
    run "$name (asan+ubsan binary)" env AGENTBOX="$AGENTBOX_SAN" ASAN_OPTIONS=detect_leaks=1 \
      "$PYTHON" tests/pyrun.py "$dir" "$name-asan"
  fi
done

# A slot keeps its last cell's empty cgroups for the next one: the run leaves none behind.
[ "$(id -u)" = 0 ] && "$PYTHON" tests/release_cgroups.py

# Six of the suites again on a cgroup v2-only kernel, in a VM (this host is v1).
run "cgroup v2 (exec, escape, run, serve, batch, deploy suites in a VM)" env AGENTBOX="$AGENTBOX" BUILD="$BUILD" \
  PYTHON="$PYTHON" bash tests/vm/run-v2.sh
# deploy/agentbox.service and agentbox.socket under systemd as init (this host has none).
run "systemd (deploy units under systemd as pid 1, in a VM)" env AGENTBOX="$AGENTBOX" BUILD="$BUILD" \
  PYTHON="$PYTHON" bash tests/vm/run-systemd.sh

echo "check: $tot_p passed, $tot_f failed, $tot_s skipped"
[ "$tot_f" -eq 0 ]
