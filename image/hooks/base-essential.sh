#!/bin/sh
# mmdebstrap --essential-hook: runs once the Essential packages are unpacked, before the kernel
# and initramfs-tools are installed. Diverts update-initramfs so that the kernel's postinst and
# the initramfs trigger do not each run mkinitramfs under qemu-user (~15 min each, NOTES.md);
# hooks/base-customize.sh restores it and runs it exactly once.
set -eu
ROOT="$1"
# Kernel modules a Pi 4 gateway cannot use are never unpacked (kernel-modules.cfg: dpkg path
# filters, kept on the card so kernel updates on the gateway leave them out too).
install -m 0644 "$(dirname "$0")/kernel-modules.cfg" "$ROOT/etc/dpkg/dpkg.cfg.d/appliance-kernel-modules"
# Documentation likewise (docs.cfg); the Essential packages' is already unpacked: removed here.
install -m 0644 "$(dirname "$0")/docs.cfg" "$ROOT/etc/dpkg/dpkg.cfg.d/appliance-docs"
find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOT/usr/share/man" "$ROOT/usr/share/info" "$ROOT/usr/share/lintian" -mindepth 1 -delete 2>/dev/null || true
find "$ROOT/usr/share/locale" -mindepth 1 ! -type d ! -name locale.alias -delete 2>/dev/null || true
chroot "$ROOT" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.distrib \
    --add /usr/sbin/update-initramfs
cat > "$ROOT/usr/sbin/update-initramfs" <<'STUB'
#!/bin/sh
echo "update-initramfs: deferred by the image build (runs once in the customize hook)" >&2
exit 0
STUB
chmod 755 "$ROOT/usr/sbin/update-initramfs"
