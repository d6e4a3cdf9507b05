# kernel.sh: sourced by tests/vm/run-v2.sh and tests/vm/run-systemd.sh (cwd: the checkout).
# Unpacks (does not install) Debian's current kernel package into $BUILD/vm/KVER with an
# initramfs of busybox, the virtio/9p/overlay modules and tests/vm/init, rebuilding the
# initramfs when tests/vm/init changed. Needs skip() and busybox_bin from its caller; sets vm
# and kver. Never starts a VM.
vm=$PWD/$BUILD/vm
mkdir -p "$vm"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || skip "no linux-image-amd64 in the apt cache (apt-get update)"
kver=${pkg#linux-image-}
if [ ! -f "$vm/$kver/vmlinuz" ]; then
  rm -rf "$vm/dl" && mkdir -p "$vm/dl"
  (cd "$vm/dl" && apt-get download "$pkg" >/dev/null 2>&1) || skip "apt-get download $pkg failed"
  dpkg-deb -x "$vm"/dl/*.deb "$vm/dl/root" || skip "cannot unpack $pkg"
  mods=$vm/dl/root/lib/modules/$kver/kernel
  mkdir -p "$vm/$kver/initrd/bin" "$vm/$kver/initrd/lib/modules" "$vm/$kver/initrd/"{proc,sys,dev,mnt}
  for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
           drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci fs/netfs/netfs \
           fs/fscache/fscache net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay; do
    cp "$mods/$m.ko" "$vm/$kver/initrd/lib/modules/" || skip "$pkg has no $m.ko"
  done
  cp "$busybox_bin" "$vm/$kver/initrd/bin/busybox"
  install -m 0755 tests/vm/init "$vm/$kver/initrd/init"
  (cd "$vm/$kver/initrd" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$vm/$kver/initrd.gz"
  cp "$vm/dl/root/boot/vmlinuz-$kver" "$vm/$kver/vmlinuz"
  rm -rf "$vm/dl" "$vm/$kver/initrd"
fi
# the init may have changed since the cache was made
if ! zcat "$vm/$kver/initrd.gz" | cpio -i --to-stdout init 2>/dev/null | cmp -s - tests/vm/init; then
  tmpi=$(mktemp -d)
  (cd "$tmpi" && zcat "$vm/$kver/initrd.gz" | cpio -id 2>/dev/null && install -m 0755 "$OLDPWD/tests/vm/init" init &&
    find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$vm/$kver/initrd.gz.new" &&
    mv "$vm/$kver/initrd.gz.new" "$vm/$kver/initrd.gz"
  rm -rf "$tmpi"
fi

