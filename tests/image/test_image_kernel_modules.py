"""The kernel modules the image leaves out (image/hooks/kernel-modules.cfg, dpkg path filters):
never a driver a Raspberry Pi 4 gateway or its USB peripherals need, and the filters are
installed before the kernel is unpacked and change the base's cache key. The build itself checks
the filtered tree with depmod (image/hooks/check-kernel-modules.sh)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOKS = REPO / "image" / "hooks"
KERNEL = "/lib/modules/6.1.0-57-arm64/kernel/"

# Module paths of Debian bookworm's linux-image-6.1.0-*-arm64
NEEDED = [
    # the Pi 4 itself: Ethernet, Wi-Fi, display, SD card, I2C/SPI, VideoCore services
    "drivers/net/ethernet/broadcom/genet/genet.ko",
    "drivers/net/wireless/broadcom/brcm80211/brcmfmac/brcmfmac.ko",
    "drivers/gpu/drm/vc4/vc4.ko",
    "drivers/gpu/drm/v3d/v3d.ko",
    "drivers/gpu/drm/drm.ko",
    "drivers/gpu/drm/display/drm_display_helper.ko",
    "drivers/media/cec/core/cec.ko",
    "sound/soc/snd-soc-core.ko",
    "sound/soc/codecs/snd-soc-hdmi-codec.ko",
    "drivers/mmc/host/sdhci-iproc.ko",
    "drivers/mmc/host/bcm2835.ko",
    "drivers/i2c/busses/i2c-bcm2835.ko",
    "drivers/i2c/i2c-dev.ko",
    "drivers/spi/spi-bcm2835.ko",
    "drivers/staging/vc04_services/vchiq.ko",
    "drivers/reset/reset-raspberrypi.ko",
    # USB: modems, serial adapters, Ethernet and Wi-Fi dongles, storage, cameras, audio, CAN
    "drivers/usb/serial/option.ko",
    "drivers/usb/serial/ftdi_sio.ko",
    "drivers/usb/serial/cp210x.ko",
    "drivers/usb/serial/ch341.ko",
    "drivers/usb/class/cdc-acm.ko",
    "drivers/net/usb/qmi_wwan.ko",
    "drivers/net/usb/r8152.ko",
    "drivers/net/wireless/realtek/rtl8xxxu/rtl8xxxu.ko",
    "drivers/net/wireless/mediatek/mt76/mt76x0/mt76x0u.ko",
    "drivers/net/wireless/ralink/rt2x00/rt2800usb.ko",
    "drivers/net/wireless/ath/ath9k/ath9k_htc.ko",
    "drivers/usb/storage/usb-storage.ko",
    "drivers/usb/storage/uas.ko",
    "drivers/usb/host/xhci-pci.ko",
    "drivers/scsi/scsi_mod.ko",
    "drivers/scsi/sd_mod.ko",
    "drivers/scsi/virtio_scsi.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/media/usb/uvc/uvcvideo.ko",
    "sound/usb/snd-usb-audio.ko",
    "drivers/net/can/usb/gs_usb.ko",
    "drivers/net/can/spi/mcp251x.ko",
    # common PCIe NICs for a CM4's slot
    "drivers/net/ethernet/intel/igb/igb.ko",
    "drivers/net/ethernet/intel/e1000e/e1000e.ko",
    "drivers/net/ethernet/realtek/r8169.ko",
]
FILTERED = [
    "drivers/gpu/drm/amd/amdgpu/amdgpu.ko",
    "drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko",
    "drivers/infiniband/core/ib_core.ko",
    "drivers/scsi/qla2xxx/qla2xxx.ko",
    "drivers/net/wireless/intel/iwlwifi/iwlwifi.ko",
    "drivers/media/dvb-core/dvb-core.ko",
]


def _rules(name: str = "kernel-modules.cfg") -> list[tuple[str, str]]:
    lines = (HOOKS / name).read_text().splitlines()
    rules = [tuple(line.split("=", 1)) for line in lines if line.startswith("path-")]
    assert rules and all(kind in ("path-exclude", "path-include") for kind, _ in rules)
    return rules


def _kept(path: str, name: str = "kernel-modules.cfg") -> bool:
    """dpkg's filter: fnmatch without FNM_PATHNAME ('*' crosses '/'), the last match decides."""
    kept = True
    for kind, pattern in _rules(name):
        if fnmatch.fnmatchcase(path, pattern):
            kept = kind == "path-include"
    return kept


@pytest.mark.parametrize("module", NEEDED)
def test_a_module_the_pi_needs_is_kept(module: str) -> None:
    assert _kept(KERNEL + module)


@pytest.mark.parametrize("module", FILTERED)
def test_other_machines_drivers_are_filtered(module: str) -> None:
    assert not _kept(KERNEL + module)


def test_only_kernel_modules_are_filtered() -> None:
    for _, pattern in _rules():
        assert pattern.startswith("*/kernel/"), pattern


def test_filters_installed_before_the_kernel_and_in_the_base_key() -> None:
    essential = (HOOKS / "base-essential.sh").read_text()
    assert re.search(r"kernel-modules\.cfg.*/etc/dpkg/dpkg\.cfg\.d/", essential)
    customize = (HOOKS / "base-customize.sh").read_text()
    assert customize.index("update-initramfs -c") < customize.index("check-kernel-modules.sh")
    build = (REPO / "image" / "build").read_text()
    key = build[build.index("base_key() {") : build.index("build_base() {")]
    assert "kernel-modules.cfg" in key and "check-kernel-modules.sh" in key and "docs.cfg" in key
    assert re.search(r"docs\.cfg.*/etc/dpkg/dpkg\.cfg\.d/", essential)


def test_docs_filtered_but_copyrights_kept() -> None:
    assert not _kept("/usr/share/doc/openssh-server/README.Debian.gz", "docs.cfg")
    assert not _kept("/usr/share/man/man8/sshd.8.gz", "docs.cfg")
    assert not _kept("/usr/share/locale/de/LC_MESSAGES/apt.mo", "docs.cfg")
    assert _kept("/usr/share/doc/openssh-server/copyright", "docs.cfg")
    assert _kept("/usr/share/zoneinfo/UTC", "docs.cfg")
    assert _kept("/usr/lib/python3.11/locale.py", "docs.cfg")
