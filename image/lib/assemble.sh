# Sourced by image/build: loop-free assembly of the SD-card image, and build-info.txt.
# Uses: R W OUT NAME BOOT_MB XZ SDE COMMIT RELEASE_DATES log die stage_time

assemble_image() {
    local t0 boot_dir img boot_img root_img used_mb root_mb total_mb
    t0=$(date +%s)
    mkdir -p "$OUT"
    img="$OUT/$NAME.img"
    boot_dir="$W/bootfs"
    boot_img="$W/boot.vfat"
    root_img="$W/root.ext4"
    rm -rf "$boot_dir" "$boot_img" "$root_img" "$img" "$img.xz" "$img.bmap"

    # /boot/firmware's contents (GPU firmware, config.txt, cmdline.txt, kernel, initrd, dtbs)
    # go to the FAT partition; the root file system keeps the empty mount point.
    mkdir -p "$boot_dir"
    [ -f "$R/boot/firmware/config.txt" ] || die "no /boot/firmware/config.txt in the rootfs (raspi-firmware)"
    mv "$R"/boot/firmware/* "$boot_dir"/
    find "$boot_dir" -exec touch -h -d "@$SDE" {} +

    # FAT32 boot partition, filled with mtools (no mount)
    mkfs.vfat -C -F 32 -n RASPIFIRM -i "${COMMIT:0:8}" "$boot_img" $((BOOT_MB * 1024)) >/dev/null
    mcopy -s -m -i "$boot_img" "$boot_dir"/* ::/ || die "mcopy to the boot partition failed"

    # ext4 root partition from the directory (mkfs.ext4 -d), 25 % + 256 MiB free; it grows to the
    # card at first boot
    used_mb=$(( $(du -sxm "$R" | cut -f1) ))
    root_mb=$(( used_mb * 5 / 4 + 256 ))
    E2FSPROGS_FAKE_TIME="$SDE" mkfs.ext4 -q -F -L RASPIROOT -d "$R" "$root_img" "${root_mb}M" \
        || die "mkfs.ext4 -d failed"

    # MBR (the Pi 4 firmware boots from a FAT partition of type 0x0c), 1 MiB aligned
    total_mb=$(( 1 + BOOT_MB + root_mb ))
    truncate -s "${total_mb}M" "$img"
    sfdisk --quiet "$img" <<SFDISK || die "sfdisk failed"
label: dos
label-id: 0x${COMMIT:8:8}
unit: sectors

start=2048, size=$((BOOT_MB * 2048)), type=c, bootable
start=$(( 2048 + BOOT_MB * 2048 )), size=$((root_mb * 2048)), type=83
SFDISK
    dd if="$boot_img" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
    dd if="$root_img" of="$img" bs=1M seek=$((1 + BOOT_MB)) conv=notrunc,sparse status=none
    rm -f "$boot_img" "$root_img"
    # the boot files go back, so the work rootfs stays a faithful copy of the image
    mv "$boot_dir"/* "$R/boot/firmware/"
    RAW_BYTES=$(stat -c %s "$img")
    ROOT_MB=$root_mb
    log "image: $img ($((RAW_BYTES / 1048576)) MiB: boot ${BOOT_MB} MiB, root ${root_mb} MiB of which ${used_mb} MiB used)"
    stage_time assemble "$t0"

    # check_host made sure bmaptool is there: a missing .bmap is an error, never skipped
    bmaptool create -o "$img.bmap" "$img" || die "bmaptool create failed"
    if [ "$XZ" = 1 ]; then
        t0=$(date +%s)
        log "xz -T0 -6 (a few minutes)"
        xz -T0 -6 -k -f "$img"
        XZ_BYTES=$(stat -c %s "$img.xz")
        log "compressed: $img.xz ($((XZ_BYTES / 1048576)) MiB)"
        stage_time xz "$t0"
    fi
    (cd "$OUT" && sha256sum "$NAME.img"* > SHA256SUMS)
}

write_build_info() {
    {
        echo "name: $NAME"
        echo "source: $SOURCE_DESC"
        echo "commit: $COMMIT"
        echo "SOURCE_DATE_EPOCH: $SDE"
        echo "base key: $BASE_KEY (cached: $BASE_CACHED) $BASE_TAR"
        echo "mirrors:"; printf '  %s\n' "${MIRRORS[@]}"
        printf '  %s\n' "${RELEASE_DATES[@]}"
        echo "break-unit: $BREAK_UNIT"
        echo "raw bytes: ${RAW_BYTES:-?}"
        echo "xz bytes: ${XZ_BYTES:-not compressed}"
        echo "root partition MiB (before growth): ${ROOT_MB:-?}"
        for s in base appliance assemble xz; do echo "time $s: ${TIMES[$s]:-skipped/cached} s"; done
        echo "time total: $(( $(date +%s) - T_START )) s"
    } > "$OUT/build-info.txt"
    cat "$OUT/build-info.txt" >&2
}
