"""What the SD-card image does for a real Raspberry Pi 4, read from the image's own files (no build,
no network, issue 18): i2c-dev loaded at boot, the GPIO 2/3 I2C controller always bus 1 and the
GPIO 14/15 UART always /dev/serial0 (config.txt overlays checked with dtc/fdtoverlay against an
excerpt of Debian's own device tree), no boot delay from Wi-Fi without wlan0, and the build's and
smoke test's host-facing promises (packages, output folder, scratch clean-up)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from image_helpers import load_smoke, read_unit

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "image"
ROOTFS = IMAGE / "rootfs"
FIXTURES = Path(__file__).parent / "fixtures"
I2C_GPIO_NODE = "/soc/i2c@7e804000"

needs_dtc = pytest.mark.skipif(
    not (shutil.which("dtc") and shutil.which("fdtoverlay") and shutil.which("fdtget")),
    reason="device-tree-compiler (dtc, fdtoverlay, fdtget) not installed",
)


def _dtb(source: Path, out: Path) -> Path:
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(source)], check=True)
    return out


def _fdtget(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    result = subprocess.run(
        ["fdtget", "-t", kind, str(dtb), node, prop], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def _overlays(tmp_path: Path) -> list[Path]:
    sources = sorted((IMAGE / "boot/overlays").glob("*.dts"))
    return [_dtb(s, tmp_path / f"{s.stem}.dtbo") for s in sources]


def _apply(base: Path, overlays: list[Path], out: Path) -> subprocess.CompletedProcess[str]:
    command = ["fdtoverlay", "-i", str(base), "-o", str(out), *map(str, overlays)]
    return subprocess.run(command, capture_output=True, text=True)


def test_i2c_dev_is_loaded_at_boot() -> None:
    conf = ROOTFS / "etc/modules-load.d/appliance.conf"
    modules = [line.strip() for line in conf.read_text().splitlines()]
    assert "i2c-dev" in modules


def test_config_txt_names_every_overlay_the_image_ships() -> None:
    custom = (IMAGE / "boot/raspi-firmware-custom").read_text().splitlines()
    named = {line.split("=", 1)[1] for line in custom if line.startswith("dtoverlay=")}
    shipped = {p.stem for p in (IMAGE / "boot/overlays").glob("*.dts")}
    assert named == shipped == {"appliance-uart", "appliance-i2c"}
    assert [line for line in custom if line.startswith("[")][-1] == "[all]"  # nothing left scoped


@needs_dtc
def test_overlays_give_i2c_bus_1_and_the_pl011_on_gpio_14_15(tmp_path: Path) -> None:
    base = _dtb(FIXTURES / "bcm2711-rpi-4-b-excerpt.dts", tmp_path / "base.dtb")
    result = _apply(base, _overlays(tmp_path), tmp_path / "applied.dtb")
    assert result.returncode == 0, result.stderr
    applied = tmp_path / "applied.dtb"
    assert _fdtget(applied, "/aliases", "i2c1") == I2C_GPIO_NODE
    assert _fdtget(applied, "/aliases", "i2c0") == "/soc/i2c@7e205000"
    assert _fdtget(applied, "/soc/gpio@7e200000/uart0_gpio32", "brcm,pins", "u") == "14 15"
    assert _fdtget(applied, "/soc/gpio@7e200000/uart0_gpio32", "brcm,function", "u") == "4"
    assert _fdtget(applied, "/soc/serial@7e201000/bluetooth", "status") == "disabled"
    assert _fdtget(applied, "/soc/serial@7e215040", "status") == "disabled"
    assert _fdtget(applied, "/soc/serial@7e201000", "status") == "okay"


@needs_dtc
def test_a_label_overlay_cannot_apply_to_debians_device_tree(tmp_path: Path) -> None:
    """Why the image's overlays use target-path only: Debian's dtb has no __symbols__, so an
    overlay written like Raspberry Pi's disable-bt (&uart1 { ... }) does not apply."""
    base = _dtb(FIXTURES / "bcm2711-rpi-4-b-excerpt.dts", tmp_path / "base.dtb")
    label = tmp_path / "label.dts"
    label.write_text('/dts-v1/;\n/plugin/;\n&uart1 { status = "disabled"; };\n')
    result = _apply(base, [_dtb(label, tmp_path / "label.dtbo")], tmp_path / "out.dtb")
    assert result.returncode != 0
    for dtbo in _overlays(tmp_path):
        source = subprocess.run(
            ["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtbo)], capture_output=True, text=True
        ).stdout
        assert "__fixups__" not in source, dtbo.name


def _rule(path: Path, marker: str) -> str:
    lines = [line for line in path.read_text().splitlines() if marker in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_serial0_is_named_by_the_uarts_device_tree_node() -> None:
    rule = _rule(IMAGE / "udev/75-appliance-serial.rules", 'SYMLINK+="serial0"')
    assert 'PROGRAM="/usr/bin/readlink -e /sys%p/device/of_node"' in rule
    patterns = re.search(r'RESULT=="([^"]+)"', rule)
    assert patterns is not None
    of_node = "/sys/firmware/devicetree/base/soc/serial@7e201000"
    mini = "/sys/firmware/devicetree/base/soc/serial@7e215040"
    alternatives = patterns.group(1).split("|")
    for node in (of_node, mini):
        assert any(fnmatch.fnmatchcase(node, p) for p in alternatives), node
    other = "/sys/firmware/devicetree/base/soc/serial@7e201400"  # UART2..5: never serial0
    assert not any(fnmatch.fnmatchcase(other, p) for p in alternatives)


def test_modemmanager_keeps_off_both_pi_uarts() -> None:
    rules = (IMAGE / "udev/75-appliance-serial.rules").read_text().splitlines()
    ignored = [r for r in rules if "ttyAMA" in r and "ID_MM_PORT_IGNORE" in r]
    assert len(ignored) == 1
    kernel = re.search(r'KERNEL=="([^"]+)"', ignored[0])
    assert kernel is not None
    for tty in ("ttyAMA0", "ttyS1"):  # the PL011 and Debian's name for the mini UART
        assert any(fnmatch.fnmatchcase(tty, p) for p in kernel.group(1).split("|")), tty


def test_wpa_supplicant_is_started_by_wlan0_and_never_waited_for() -> None:
    dropin = read_unit(ROOTFS / "etc/systemd/system/wpa_supplicant@.service.d/appliance.conf")
    assert dropin["BindsTo"] == ["sys-subsystem-net-devices-%i.device"]
    assert dropin["ConditionPathExists"] == ["/etc/wpa_supplicant/wpa_supplicant-%I.conf"]
    rule = _rule(ROOTFS / "etc/udev/rules.d/77-appliance-wifi.rules", "SYSTEMD_WANTS")
    assert 'ENV{SYSTEMD_WANTS}+="wpa_supplicant@$name.service"' in rule
    assert 'KERNEL=="wlan[0-9]*"' in rule and 'TAG+="systemd"' in rule
    # nothing enables it (that would make multi-user.target want it and wait for the device)
    for script in (ROOTFS / "usr/local/sbin/appliance-firstboot", IMAGE / "lib/appliance-layer.sh"):
        for line in script.read_text().splitlines():
            if "wpa_supplicant@" in line and not line.lstrip().startswith("#"):
                assert "enable" not in line and "start" not in line, line
    assert not list(ROOTFS.rglob("*.wants/wpa_supplicant*"))


def test_network_online_is_any_interface_not_every_one() -> None:
    dropin = ROOTFS / "etc/systemd/system/systemd-networkd-wait-online.service.d/appliance.conf"
    exec_start = read_unit(dropin)["ExecStart"]
    assert exec_start[0] == ""  # resets Debian's ExecStart
    assert exec_start[1].split()[0] == "/lib/systemd/systemd-networkd-wait-online"
    assert "--any" in exec_start[1].split()


def test_build_help_lists_every_host_package_after_apt_get_update() -> None:
    result = subprocess.run(
        ["bash", str(IMAGE / "build"), "--help"], capture_output=True, text=True, check=True
    )
    text = result.stdout
    assert text.index("apt-get update") < text.index("apt-get install")
    for package in ("bmap-tools", "curl", "device-tree-compiler", "mmdebstrap", "qemu-user-static"):
        assert package in text, package
    build = (IMAGE / "build").read_text()
    missing_message = build[build.index('die "missing on the host') :]
    missing_message = missing_message[: missing_message.index('"\n') + 1]
    for package in ("apt-get update", "bmap-tools", "curl", "device-tree-compiler"):
        assert package in missing_message, package
    checked = re.search(r"for cmd in (.*?); do", build, re.S)
    assert checked is not None
    for command in ("bmaptool", "curl", "dtc", "fdtoverlay"):
        assert command in checked.group(1).split(), command


def test_build_output_defaults_to_a_git_ignored_folder_in_the_project() -> None:
    build = (IMAGE / "build").read_text()
    assert 'BUILD_DIR="${IMAGE_BUILD_DIR:-$IMAGE_DIR/out}"' in build
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "image/out/appliance-rpi4-arm64/x.img"]
    )
    assert ignored.returncode == 0


def test_build_fails_loudly_without_release_dates_or_bmap() -> None:
    build = (IMAGE / "build").read_text()
    assert '[ -n "$date" ] || die' in build
    assemble = (IMAGE / "lib/assemble.sh").read_text()
    assert 'bmaptool create -o "$img.bmap" "$img" || die' in assemble
    assert "command -v bmaptool" not in assemble  # never silently skipped again


@pytest.mark.parametrize("keep", [False, True])
def test_smoke_deletes_its_scratch_unless_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool
) -> None:
    smoke = load_smoke()
    image = tmp_path / "test.img"
    image.write_bytes(b"\0" * 512)
    work = tmp_path / "scratch"

    def fake_smoke(args: object, image: Path, work: Path) -> int:
        (work / "disk.img").write_bytes(b"disk")
        (work / "id_ed25519").write_text("PRIVATE KEY")
        return 0

    monkeypatch.setattr(smoke.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(smoke, "smoke", fake_smoke)
    argv = ["smoke", str(image), "--work", str(work), *(["--keep"] if keep else [])]
    monkeypatch.setattr(smoke.sys, "argv", argv)
    assert smoke.main() == 0
    assert work.exists() == keep
    assert smoke.DEFAULT_IMAGE.is_relative_to(REPO / "image/out")


@needs_dtc
def test_smoke_vm_device_tree_has_the_pi_node_paths(tmp_path: Path) -> None:
    """The VM's device tree (qemu virt's, made Pi-like by image/smoke) carries the PL011 and an
    I2C bus at the Pi 4's node paths, and the image's I2C alias overlay applies to it."""
    smoke = load_smoke()
    source = (FIXTURES / "qemu-virt-excerpt.dts").read_text()
    pi_like = tmp_path / "vm.dts"
    pi_like.write_text(smoke.pi_like_device_tree(source))
    base = _dtb(pi_like, tmp_path / "vm.dtb")
    i2c = _dtb(IMAGE / "boot/overlays/appliance-i2c.dts", tmp_path / "i2c.dtbo")
    result = _apply(base, [i2c], tmp_path / "applied.dtb")
    assert result.returncode == 0, result.stderr
    applied = tmp_path / "applied.dtb"
    assert _fdtget(applied, "/aliases", "i2c1") == I2C_GPIO_NODE
    assert _fdtget(applied, I2C_GPIO_NODE, "compatible") == "i2c-gpio"
    assert _fdtget(applied, "/soc/serial@7e201000", "compatible").startswith("arm,pl011")
    assert _fdtget(applied, "/chosen", "stdout-path") == "/soc/serial@7e201000"
    # the PL011 keeps its real address through the soc bus's ranges
    assert _fdtget(applied, "/soc", "ranges", "x") == "7e201000 0 9000000 1000"
