#!/bin/sh
# mmdebstrap --customize-hook for the cached base: boot configuration, then mkinitramfs once.
# Everything appliance-specific is done later (image/build, appliance layer), so that a change to
# the appliance never invalidates this (slow) base.
set -eu
ROOT="$1"

# Mounts by label: the same root= works on the Pi (mmcblk0p2), over USB (sda2) and in qemu (vda2).
cat > "$ROOT/etc/fstab" <<'FSTAB'
# <file system>   <mount point>   <type>  <options>                               <dump> <pass>
LABEL=RASPIROOT   /               ext4    rw,noatime,errors=remount-ro             0      1
# fmask/dmask 0077: provisioning files (and secrets until first boot scrubs them) are root-only
LABEL=RASPIFIRM   /boot/firmware  vfat    rw,noatime,fmask=0077,dmask=0077,nofail  0      2
FSTAB

# raspi-firmware writes /boot/firmware/{config.txt,cmdline.txt}; its defaults say
# root=/dev/mmcblk0p2 and (outside a Pi) cma=64M, which the file itself warns can make a Pi 4
# unbootable. The console stays on HDMI (tty0): the Pi's UART (GPIO 14/15) is kept for a SIM800
# modem (image/udev/75-appliance-serial.rules).
cat >> "$ROOT/etc/default/raspi-firmware" <<'RPI'

# --- set by the appliance image build (image/hooks/base-customize.sh) ---
ROOTPART=LABEL=RASPIROOT
CMA=0
CONSOLES="tty0"
RPI

# Only the modules needed to find and mount the root file system: Pi 4 SD card (sdhci-iproc),
# USB mass storage (VL805 xHCI on PCIe), and virtio for the qemu smoke test. MODULES=most would
# copy hundreds of modules and take ~15 min under emulation; MODULES=dep cannot work in a chroot.
cat >> "$ROOT/etc/initramfs-tools/modules" <<'MODS'
# --- appliance image: root device drivers (MODULES=list) ---
ext4
crc32c_generic
mmc_block
sdhci_iproc
sdhci_pltfm
bcm2835
bcm2835_dma
pcie_brcmstb
reset_raspberrypi
xhci_pci
usb_storage
uas
sd_mod
virtio_blk
virtio_pci
virtio_mmio
virtio_scsi
vfat
nls_cp437
nls_ascii
MODS
# FSTYPE: the fsck hook cannot probe the root device from a chroot; without it the initramfs
# carries no e2fsck and the root file system (mounted rw by cmdline.txt) is never checked.
printf 'MODULES=list\nFSTYPE=ext4\n' > "$ROOT/etc/initramfs-tools/conf.d/appliance"

# Restore the real update-initramfs and run it once: its post-update hook (raspi-firmware) copies
# the kernel, initrd and device trees to /boot/firmware and writes config.txt and cmdline.txt.
rm -f "$ROOT/usr/sbin/update-initramfs"
chroot "$ROOT" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.distrib \
    --remove /usr/sbin/update-initramfs
chroot "$ROOT" update-initramfs -c -k all
"$(dirname "$0")/check-kernel-modules.sh" "$ROOT"
DEB_MAINT_PARAMS=configure chroot "$ROOT" /etc/kernel/postinst.d/z50-raspi-firmware
ls -l "$ROOT/boot" "$ROOT/boot/firmware" >&2
cat "$ROOT/boot/firmware/cmdline.txt" "$ROOT/boot/firmware/config.txt" >&2
