# Sourced by image/build: the appliance layer on top of the cached base, and the manifests.
# Uses: IMAGE_DIR REPO BUILD_DIR NAME OUT BASE_TAR WORKTREE IMAGE_WORKTREE BREAK_UNIT log die stage_time

PLATFORMS=(--platform manylinux2014_aarch64)
for _x in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${_x}_aarch64"); done

# Commands inside the arm64 root run under qemu-user (binfmt) with a clean environment: the host's
# PIP_* variables (local wheel mirrors) must not leak into the image.
in_root() {
    chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        SOURCE_DATE_EPOCH="$SDE" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 "$@"
}

export_source() {
    # The appliance and image files come from the commit (git archive HEAD), so two builds of one
    # commit install the same files. --worktree: the whole work tree instead (uncommitted changes
    # included); --image-worktree: HEAD, with image/ and docs/IMAGE.md from the work tree.
    SRC="$W/src"
    mkdir -p "$SRC"
    COMMIT="$(git -C "$REPO" rev-parse HEAD)"
    SDE="$(git -C "$REPO" log -1 --format=%ct HEAD)"
    git -C "$REPO" archive HEAD | tar -x -C "$SRC"
    SOURCE_DESC="git archive $COMMIT"
    if [ "$WORKTREE" = 1 ]; then
        (cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -c) | tar -x -C "$SRC"
        SOURCE_DESC="work tree at $COMMIT (git status: $(git -C "$REPO" status --porcelain | wc -l) changed)"
    elif [ "$IMAGE_WORKTREE" = 1 ]; then
        rm -rf "$SRC/image"
        (cd "$REPO" && git ls-files -co --exclude-standard -z -- image docs/IMAGE.md \
            | tar --null -T - -c) | tar -x -C "$SRC"
        SOURCE_DESC="git archive $COMMIT + image/ from the work tree"
    fi
    export SOURCE_DATE_EPOCH="$SDE"
    log "source: $SOURCE_DESC; SOURCE_DATE_EPOCH=$SDE ($(date -u -d "@$SDE" +%FT%TZ))"
}

fetch_wheels() {
    # Pinned, hash-checked arm64 wheels, downloaded on the host (cached across builds).
    WHEELS="$BUILD_DIR/cache/wheels-arm64"
    mkdir -p "$WHEELS"
    env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null python3 -m pip download \
        --isolated --quiet --no-deps --require-hashes --dest "$WHEELS" --only-binary=:all: \
        "${PLATFORMS[@]}" --python-version 3.11 --implementation cp --abi cp311 \
        -r "$SRC/image/requirements-arm64.txt" \
        || die "pip download of image/requirements-arm64.txt failed"
    log "wheels: $(ls "$WHEELS" | wc -l) in $WHEELS"
    # the project's own wheel, built from the exported source
    DIST="$W/dist"
    mkdir -p "$DIST"
    (cd "$SRC" && python3 -m pip wheel --quiet --no-deps --wheel-dir "$DIST" .) \
        || die "building the appliance wheel failed"
    APP_WHEEL="$(ls "$DIST"/*.whl)"
    log "appliance wheel: $(basename "$APP_WHEEL")"
}

# The first release (docs/IMAGE.md "Appliance updates over the air"): the pinned wheels and the
# appliance wheel in /opt/appliance/wheels (the pool later releases are built from), a venv in
# /opt/appliance/releases/<version>, its release-manifest.json (every wheel with its sha256,
# written last: the release is complete), and the `current` and `confirmed` links to it.
install_venv() {
    local opt=/opt/appliance version venv
    version="$(basename "$APP_WHEEL" | cut -d- -f2)"
    venv="$opt/releases/$version"
    mkdir -p "$R$opt/wheels" "$R$opt/releases"
    python3 - "$SRC/image/requirements-arm64.txt" "$WHEELS" "$APP_WHEEL" "$R$opt/wheels" \
        > "$W/release-manifest.json" <<'PY' || die "the first release's wheels do not match the lock"
import hashlib, json, re, shutil, sys
from pathlib import Path
lock, cache, app, pool = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
pinned = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", Path(lock).read_text()))
wheels = {}
for path in [*sorted(cache.glob("*.whl")), app]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if path == app or digest in pinned:  # the cache keeps wheels of older locks too
        wheels[path.name] = digest
        shutil.copyfile(path, pool / path.name)
version = app.name.split("-")[1]
print(json.dumps({"format": "appliance-release/1", "version": version,
                  "wheels": dict(sorted(wheels.items()))}, indent=1))
PY
    in_root /usr/bin/python3 -m venv "$venv"
    install -m 0644 "$SRC/image/requirements-arm64.txt" "$R/tmp/requirements-arm64.txt"
    in_root "$venv/bin/python" -m pip install --quiet --no-index --no-deps \
        --require-hashes --find-links "$opt/wheels" -r /tmp/requirements-arm64.txt \
        || die "pip install of the pinned wheels in the image failed"
    rm -f "$R/tmp/requirements-arm64.txt"
    in_root "$venv/bin/python" -m pip install --quiet --no-index --no-deps \
        "$opt/wheels/$(basename "$APP_WHEEL")" || die "pip install of the appliance wheel failed"
    in_root "$venv/bin/python" -m pip check || die "pip check in the image venv failed"
    install -m 0644 "$W/release-manifest.json" "$R$venv/release-manifest.json"
    ln -sfn "releases/$version" "$R$opt/current"
    ln -sfn "releases/$version" "$R$opt/confirmed"
    # Imports every runtime module that needs a native library (arm64 wheels, under qemu-user).
    in_root "$venv/bin/python" -c '
import numpy, scipy.signal, aiohttp, pydantic, yarl, ai_edge_litert.interpreter, serial_asyncio
import appliance.cli, appliance.app
print("imports ok: numpy", numpy.__version__, "scipy", scipy.__version__)' \
        || die "the appliance does not import in the image (arm64)"
    in_root "$opt/confirmed/bin/python" -m appliance.ota.release.guard "$opt" \
        | grep -q "running $version" || die "the release guard does not see release $version"
    ln -sf /opt/appliance/current/bin/appliance "$R/usr/local/bin/appliance"
}

# The config.txt overlays of image/boot/overlays/ (docs/IMAGE.md "Pins"): compiled on the host,
# checked against every Pi 4 device tree on the card, installed to /boot/firmware/overlays/ and
# named in config.txt through /etc/default/raspi-firmware-custom, which raspi-firmware appends
# again whenever it regenerates config.txt (kernel updates).
install_boot_config() {
    local fw="$R/boot/firmware" dts dtb checked=0
    install -d "$fw/overlays"
    for dts in "$SRC"/image/boot/overlays/*.dts; do
        dtc -q -I dts -O dtb -o "$fw/overlays/$(basename "$dts" .dts).dtbo" "$dts" \
            || die "dtc $dts failed"
    done
    for dtb in "$fw"/bcm2711-rpi-*.dtb; do
        [ -f "$dtb" ] || continue
        check_overlays "$dtb"
        checked=$((checked + 1))
    done
    [ "$checked" -gt 0 ] || die "no bcm2711 device tree in /boot/firmware to check the overlays on"
    install -m 0644 "$SRC/image/boot/raspi-firmware-custom" "$R/etc/default/raspi-firmware-custom"
    # exactly what z50-raspi-firmware appends (it cannot run here: this chroot has no mounts)
    printf '\n# Inserted by /etc/default/raspi-firmware-custom\n%s\n' \
        "$(cat "$R/etc/default/raspi-firmware-custom")" >> "$fw/config.txt"
    log "overlays: $(cd "$fw/overlays" && echo *.dtbo) apply to $checked device trees; config.txt:"
    grep -E '^(dtoverlay|enable_uart|device_tree)' "$fw/config.txt" >&2 || true
}

check_overlays() {  # $1: a device tree; the overlays apply to it and give what the docs promise
    local out="$W/overlay-check.dtb" name
    name="$(basename "$1")"
    fdtoverlay -i "$1" -o "$out" "$R"/boot/firmware/overlays/appliance-*.dtbo \
        || die "the overlays do not apply to $name (fdtoverlay)"
    [ "$(fdtget "$out" /aliases i2c1)" = /soc/i2c@7e804000 ] \
        || die "$name + overlays: alias i2c1 is not the GPIO 2/3 controller"
    [ "$(fdtget -t u "$out" /soc/gpio@7e200000/uart0_gpio32 brcm,pins)" = "14 15" ] \
        || die "$name + overlays: the PL011's pins are not GPIO 14/15"
    [ "$(fdtget "$out" /soc/serial@7e201000/bluetooth status)" = disabled ] \
        || die "$name + overlays: Bluetooth still holds the PL011"
    [ "$(fdtget "$out" /soc/serial@7e215040 status)" = disabled ] \
        || die "$name + overlays: the mini UART is still enabled"
    rm -f "$out"
}

install_system_files() {
    # overlay: units, firstboot, sshd, journald, networkd, nftables, sudoers, udev
    cp -r --no-preserve=ownership "$SRC/image/rootfs/." "$R/"
    chmod 0440 "$R/etc/sudoers.d/admin"
    chmod 0755 "$R/usr/local/sbin/appliance-firstboot"
    install -m 0644 "$SRC/image/udev/75-appliance-serial.rules" "$R/etc/udev/rules.d/"
    install_boot_config
    install -d -m 0750 "$R/etc/appliance"
    install -m 0644 "$SRC/examples/gateway.toml" "$R/etc/appliance/gateway.toml.example"
    [ -f "$SRC/docs/IMAGE.md" ] && install -m 0644 "$SRC/docs/IMAGE.md" "$R/opt/appliance/IMAGE.md"

    # users: the service user (serial + I2C groups only) and the key-only admin
    in_root sh -c 'getent group i2c >/dev/null || groupadd --system i2c'
    in_root useradd --system --user-group --home-dir /var/lib/appliance --no-create-home \
        --shell /usr/sbin/nologin --groups dialout,i2c --comment "edge appliance" appliance
    in_root chgrp appliance /etc/appliance
    # the service builds new releases beside the running one and switches the links (ReadWritePaths)
    in_root chown -R appliance:appliance /opt/appliance
    in_root useradd --create-home --shell /bin/bash --groups sudo,adm,systemd-journal --comment "appliance admin" admin
    in_root passwd -l admin >/dev/null
    in_root passwd -l root >/dev/null

    if [ "$BREAK_UNIT" = 1 ]; then
        log "TEST ONLY (--break-unit): appliance.service ExecStart=/bin/false"
        sed -i 's|^ExecStart=.*|ExecStart=/bin/false|' "$R/etc/systemd/system/appliance.service"
    fi

    systemctl --root="$R" enable appliance-firstboot.service appliance.service nftables.service \
        systemd-networkd.service systemd-resolved.service systemd-timesyncd.service ssh.service \
        >/dev/null 2>&1 || die "systemctl enable in the image failed"
    # would prompt on the console for locale/timezone/root password at first boot
    systemctl --root="$R" mask systemd-firstboot.service >/dev/null 2>&1

    # machine-specific state is made at first boot, never shipped
    rm -f "$R"/etc/ssh/ssh_host_*
    : > "$R/etc/machine-id"
    rm -f "$R/var/lib/dbus/machine-id"
    echo appliance > "$R/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tappliance\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' \
        > "$R/etc/hosts"
    # build-time leftovers
    rm -rf "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/* "$R"/tmp/* "$R"/root/.cache
    find "$R/var/log" -type f -exec truncate -s 0 {} +
}

write_manifests() {
    mkdir -p "$OUT"
    dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Package}:${Architecture}\t${Version}\n' \
        | LC_ALL=C sort > "$OUT/packages.txt"
    # sha256, mode and owner of every appliance file, sorted: venv + defaults + units + config
    python3 - "$R" > "$OUT/appliance-files.sha256" <<'PY'
import hashlib, os, stat, sys
root = sys.argv[1]
paths = ["opt/appliance", "etc/appliance", "etc/systemd/system/appliance.service",
         "etc/systemd/system/appliance-firstboot.service", "etc/systemd/system/ssh.service.d",
         "etc/systemd/journald.conf.d", "etc/systemd/network", "etc/ssh/sshd_config.d",
         "etc/sudoers.d/admin", "etc/udev/rules.d", "etc/nftables.conf", "etc/nftables.d",
         "usr/local/sbin/appliance-firstboot", "usr/local/bin/appliance",
         "etc/modules-load.d/appliance.conf", "etc/default/raspi-firmware-custom",
         "etc/systemd/system/wpa_supplicant@.service.d",
         "etc/systemd/system/systemd-networkd-wait-online.service.d",
         "boot/firmware/overlays", "boot/firmware/config.txt"]
out = []
def add(rel):
    full = os.path.join(root, rel)
    st = os.lstat(full)
    meta = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"
    if stat.S_ISLNK(st.st_mode):
        out.append(f"{'link:' + os.readlink(full):<64}  {meta} /{rel}")
    elif stat.S_ISREG(st.st_mode):
        with open(full, "rb") as f:
            out.append(f"{hashlib.sha256(f.read()).hexdigest()}  {meta} /{rel}")
for p in paths:
    full = os.path.join(root, p)
    if os.path.isdir(full) and not os.path.islink(full):
        for d, dirs, files in os.walk(full):
            for name in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
                add(os.path.relpath(os.path.join(d, name), root))
    elif os.path.lexists(full):
        add(p)
print("\n".join(sorted(out, key=lambda l: l.rsplit(" /", 1)[1])))
PY
    log "manifests: $(wc -l < "$OUT/packages.txt") packages, $(wc -l < "$OUT/appliance-files.sha256") appliance files"
}

build_appliance_layer() {
    local t0
    t0=$(date +%s)
    W="$BUILD_DIR/work/$NAME"
    R="$W/rootfs"
    rm -rf "$W"
    mkdir -p "$R"
    tar -C "$R" --numeric-owner --xattrs --xattrs-include='*' -xpf "$BASE_TAR"
    # the chroot has no /dev mounted (no mounts at all): the few nodes pip/venv open
    local made=() node
    [ -c "$R/dev/null" ] || { mknod -m 666 "$R/dev/null" c 1 3; made+=("$R/dev/null"); }
    [ -c "$R/dev/urandom" ] || { mknod -m 666 "$R/dev/urandom" c 1 9; made+=("$R/dev/urandom"); }
    export_source
    fetch_wheels
    install_venv
    for node in "${made[@]}"; do rm -f "$node"; done
    install_system_files
    write_manifests
    stage_time appliance "$t0"
}
