#!/usr/bin/env bash
# bwrap-shim: a stand-in for `agentbox exec` built on bubblewrap, for checking that the escape
# probes work and that the suite CAN fail (AGENTBOX=tests/escape/bwrap-shim.sh). It enforces no
# disk, memory or pids limit and writes a cell record marked "shim": never report its results
# as agentbox's. Options it does not know are ignored.
set -u
[ "${1:-}" = exec ] && shift
meta="" timeout="" seed=""
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    --meta) meta=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --workspace-from) seed=$2; shift 2 ;;
    --*) shift 2 ;;
  esac
done
ws=$(mktemp -d /tmp/abx-shimws-XXXXXX)
[ -n "$seed" ] && cp -a "$seed"/. "$ws"/
pre=()
[ -n "$timeout" ] && pre=(timeout -s KILL "$timeout")
"${pre[@]}" bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --ro-bind /etc /etc --symlink usr/bin /bin \
  --symlink usr/sbin /sbin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --dev /dev --proc /proc \
  --tmpfs /tmp --bind "$ws" /workspace --chdir /workspace --cap-drop ALL "$@"
rc=$?
rm -rf "$ws"
[ -n "$meta" ] && printf '{"status":"exited","exit_code":%d,"shim":true,"enforced":[],"unavailable":["memory","pids","disk_quota"]}\n' "$rc" >"$meta"
exit $rc
