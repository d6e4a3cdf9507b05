#!/usr/bin/env bash
# run-systemd.sh: deploy/ under a real systemd. Boots Debian's kernel under qemu (the kernel
# and initramfs of tests/vm/run-v2.sh, cached in $BUILD/vm) with this machine's own Debian
# systemd as pid 1, on an overlay root (this machine's root read-only below, a tmpfs above)
# with cgroup v2; the checkout is shared read-only at /mnt/src. In the guest, a test unit
# installs agentbox, deploy/agentbox-serve, agentbox.service and agentbox.socket as
# docs/deploy.md says, and runs tests/vm/systemd (socket activation, restart, Delegate=yes,
# drain on stop, the hardening options) against them; then the guest powers off. Prints the
# suite's tally and one closing line "systemd: N passed, N failed, N skipped". Without root,
# qemu, busybox-static, cpio or systemd, or when the kernel cannot be fetched, it says why in
# one line and counts one skip.
#
# env: AGENTBOX (binary under test), BUILD (kernel cache: $BUILD/vm), PYTHON, VM_TIMEOUT
# (seconds, default 1200).
set -u
cd "$(dirname "$0")/../.."
: "${AGENTBOX:?}" "${BUILD:=build}" "${PYTHON:=/usr/bin/python3}" "${VM_TIMEOUT:=1200}"
label=systemd

skip() {
  echo "systemd VM: skipped: $*"
  echo "$label: 0 passed, 0 failed, 1 skipped"
  exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (qemu shares / with the guest)"
for tool in qemu-system-x86_64 busybox cpio; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (make deps)"
done
[ -x /lib/systemd/systemd ] || skip "systemd is not installed on this machine (make deps)"
busybox_bin=$(command -v busybox)
ldd "$busybox_bin" 2>&1 | grep -q "not a dynamic" || skip "busybox is not static (busybox-static)"
. tests/vm/kernel.sh

job=$(mktemp -d /tmp/agentbox-systemd.XXXXXX)
out=$(mktemp /tmp/agentbox-systemd-out.XXXXXX)
trap 'rm -rf "$job" "$out"' EXIT
mkdir "$job/src" "$job/units"
cp -- "$AGENTBOX" "$job/agentbox" || skip "cannot copy $AGENTBOX"
cat >"$job/units/agentbox-vmtest.target" <<'EOF'
[Unit]
Description=agentbox: the systemd test (tests/vm/run-systemd.sh)
Requires=basic.target agentbox-vmtest.service
After=basic.target agentbox-vmtest.service
AllowIsolate=yes
EOF
cat >"$job/units/agentbox-vmtest.service" <<'EOF'
[Unit]
Description=agentbox: tests/vm/systemd against deploy/ under this systemd
After=basic.target
[Service]
Type=oneshot
ExecStart=/bin/sh /mnt/job.sh
StandardOutput=journal+console
EOF
cat >"$job/job.sh" <<EOF
exec >/mnt/job.log 2>&1
echo "vm: systemd \$(systemctl --version | head -1) is pid 1 (\$(cat /proc/1/comm)); cgroup2 controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
cd /mnt/src && [ -f tests/pyrun.py ] || { echo "vm: the checkout is not at /mnt/src in the guest"; systemctl --no-block poweroff; exit 1; }
export AGENTBOX=/mnt/agentbox AGENTBOX_DATA_DIR=/mnt/src HOME=/root AGENTBOX_IN_VM=1 AGENTBOX_SYSTEMD_VM=1
"$PYTHON" tests/pyrun.py tests/vm/systemd/ $label-vm
echo "vm: job exit \$?"
systemctl --no-block poweroff
EOF

echo "systemd VM: kernel $kver under qemu (TCG), systemd $(/lib/systemd/systemd --version | awk 'NR==1 {print $2}') as pid 1"
timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
  -nographic -no-reboot -kernel "$vm/$kver/vmlinuz" -initrd "$vm/$kver/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 lsm=landlock,yama agentbox.systemd systemd.unit=agentbox-vmtest.target systemd.show_status=0" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=${job//,/,,},mount_tag=job,security_model=none" \
  -virtfs "local,path=${PWD//,/,,},mount_tag=src,security_model=none,readonly=on,multidevs=remap" \
  </dev/null 2>&1 |
  tr -d '\r' >"$out"
rc=${PIPESTATUS[0]}
# the guest's console has systemd's boot; the job's own output is in the job directory
grep -E '(^|[^a-z-])vm:' "$out"
touch "$job/job.log"
grep -E '(^|[^a-z-])vm:|^ERROR:|^FAIL:|^Traceback|^  File|^[A-Za-z]*Error|\.\.\. skipped|: [0-9]+ passed|^AssertionError' "$job/job.log"
cat "$job/job.log" >>"$out"
line=$(grep -E "^$label-vm: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped" "$out" | tail -1)
if [ -z "$line" ]; then
  echo "systemd VM: the suite reported nothing (qemu exit $rc); the last lines:"
  tail -30 "$out"
  echo "$label: 0 passed, 1 failed, 0 skipped"
  exit 0
fi
echo "${line/#$label-vm/$label}"
