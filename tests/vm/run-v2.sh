#!/usr/bin/env bash
# run-v2.sh: the exec, escape, run, serve, batch and deploy suites on a cgroup v2-only host,
# which this machine is not (its controllers are bound to v1). Boots Debian's kernel under qemu
# (software emulation, no KVM needed) with this machine's root shared read-only over 9p, a
# cgroup2-only /sys/fs/cgroup and a tmpfs /tmp, and runs the suites there as root against this
# checkout's binary; the checkout is shared on its own (read-only, at /mnt/src in the guest),
# so a clone anywhere (below /tmp, in a path with spaces) works. Prints each suite's tally and
# one closing line "cgroupv2: N passed, N failed, N skipped" (run-all.sh adds it up). Without
# qemu, busybox-static or cpio (make deps installs them), or when Debian's kernel package
# cannot be fetched, it says why and counts one skip.
#
# env: AGENTBOX (binary under test), BUILD (kernel and initramfs cache: $BUILD/vm), PYTHON,
# HELPERS_DIR, VM_TIMEOUT (seconds, default 1200).
set -u
cd "$(dirname "$0")/../.."
: "${AGENTBOX:?}" "${BUILD:=build}" "${PYTHON:=/usr/bin/python3}" "${VM_TIMEOUT:=1200}"
: "${HELPERS_DIR:=$PWD/$BUILD/helpers}"
label=cgroupv2
suites="exec escape run serve batch deploy"
nsuites=6

skip() {
  echo "cgroup v2 VM: skipped: $*"
  echo "$label: 0 passed, 0 failed, 1 skipped"
  exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (qemu shares / with the guest)"
for tool in qemu-system-x86_64 busybox cpio; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (make deps)"
done
busybox_bin=$(command -v busybox)
ldd "$busybox_bin" 2>&1 | grep -q "not a dynamic" || skip "busybox is not static (busybox-static)"

# ---- the kernel and initramfs (cached in $BUILD/vm): sets vm and kver ----
. tests/vm/kernel.sh

# ---- the job: this checkout's suites, in the guest ----
# The guest sees the host's root read-only but gets a fresh /tmp, /run and /dev, so the
# checkout (which may be a clone below /tmp, its path may have spaces) is shared on its own
# and appears at /mnt/src; paths below it are translated, and a binary or helpers directory
# outside it that the guest would not see (below /tmp, /run or /dev) is copied into the job.
job=$(mktemp -d /tmp/agentbox-vm.XXXXXX)
out=$(mktemp /tmp/agentbox-vm-out.XXXXXX)
trap 'rm -rf "$job" "$out"' EXIT
mkdir "$job/src"
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
n_copied=0
guest_path() { # host path -> where the guest sees it; prints it in $gp
  local p
  p=$(realpath -m -- "$1")
  case "$p" in
    "$PWD") gp=/mnt/src ;;
    "$PWD"/*) gp=/mnt/src/${p#"$PWD"/} ;;
    /tmp/* | /run/* | /dev/*)
      n_copied=$((n_copied + 1))
      mkdir -p "$job/copy$n_copied" && cp -a -- "$p" "$job/copy$n_copied/" || return 1
      gp=/mnt/copy$n_copied/$(basename -- "$p") ;;
    *) gp=$p ;;
  esac
}
guest_path "$AGENTBOX" && g_agentbox=$gp && guest_path "$HELPERS_DIR" && g_helpers=$gp &&
  guest_path "$PYTHON" && g_python=$gp || {
  echo "cgroup v2 VM: cannot stage $AGENTBOX or $HELPERS_DIR for the guest"
  echo "$label: 0 passed, 1 failed, 0 skipped"
  exit 0
}
cat >"$job/job.sh" <<EOF
cd /mnt/src && [ -f tests/pyrun.py ] || { echo "vm: the checkout is not at /mnt/src in the guest"; exit 1; }
export AGENTBOX=$(quote "$g_agentbox") AGENTBOX_DATA_DIR=/mnt/src HELPERS_DIR=$(quote "$g_helpers") HOME=/tmp AGENTBOX_IN_VM=1
for suite in $suites; do
  $(quote "$g_python") tests/pyrun.py tests/\$suite/ \$suite-$label
done
EOF
echo "cgroup v2 VM: kernel $kver under qemu (TCG), suites: $suites"
timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 3072 \
  -nographic -no-reboot -kernel "$vm/$kver/vmlinuz" -initrd "$vm/$kver/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 lsm=landlock,yama" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=${job//,/,,},mount_tag=job,security_model=none" \
  -virtfs "local,path=${PWD//,/,,},mount_tag=src,security_model=none,readonly=on,multidevs=remap" \
  </dev/null 2>&1 |
  tr -d '\r' | tee "$out" |
  grep -E '(^|[^a-z-])vm:|^ERROR:|^FAIL:|^Traceback|^  File|^[A-Za-z]*Error|\.\.\. skipped|: [0-9]+ passed'
rc=${PIPESTATUS[0]}
p=0 f=0 s=0 n=0
while read -r line; do
  n=$((n + 1))
  p=$((p + $(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")))
  f=$((f + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
  s=$((s + $(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<<"$line")))
done < <(grep -E "^(${suites// /|})-$label: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped" "$out")
if [ "$n" -ne "$nsuites" ]; then
  echo "cgroup v2 VM: $n of $nsuites suites reported (qemu exit $rc); the last lines:"
  tail -20 "$out"
  f=$((f + 1))
fi
grep -q "cgroup2 controllers: .*memory.*pids" "$out" || {
  echo "cgroup v2 VM: the guest had no memory and pids controllers on cgroup2"
  f=$((f + 1))
}
echo "$label: $p passed, $f failed, $s skipped"
