#!/bin/sh
# Checks the kernel modules left by kernel-modules.cfg (run by base-customize.sh, on the host):
# no module left needs a symbol that only a filtered-out module exports (depmod -e on the
# filtered tree against the kernel package's full tree), and every module of the initramfs list
# is there. Debian's System.map is a stub, so the kernel's own exports are taken as the symbols
# that no module of the full tree exports.
set -eu
ROOT="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for dir in "$ROOT"/lib/modules/*/; do
    kver="$(basename "$dir")"
    deb="$(ls "$ROOT"/var/cache/apt/archives/linux-image-"$kver"_*.deb 2>/dev/null | head -1)"
    [ -n "$deb" ] || { echo "check-kernel-modules: no linux-image-$kver .deb in the apt cache" >&2; exit 1; }
    dpkg-deb -x "$deb" "$tmp/full"
    unknown() {  # $1: a root; prints "symbol module" for each symbol no module there exports
        depmod -n -e -F "$ROOT/boot/System.map-$kver" -b "$1" "$kver" 2>&1 >/dev/null \
            | sed -n 's/^depmod: WARNING: \(.*\) needs unknown symbol \(.*\)$/\2 \1/p' | LC_ALL=C sort
    }
    unknown "$tmp/full" | cut -d' ' -f1 | LC_ALL=C sort -u > "$tmp/kernel-exports"
    unknown "$ROOT" > "$tmp/left"
    LC_ALL=C join -v1 "$tmp/left" "$tmp/kernel-exports" > "$tmp/broken"
    if [ -s "$tmp/broken" ]; then
        echo "check-kernel-modules: modules left whose symbols come from filtered-out modules" \
             "(filter them too in image/hooks/kernel-modules.cfg):" >&2
        cut -d' ' -f2 "$tmp/broken" | sed "s|^$ROOT||" | sort | uniq -c >&2
        exit 1
    fi
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$ROOT/etc/initramfs-tools/modules" | while read -r mod _; do
        modinfo -b "$ROOT" -k "$kver" "$mod" >/dev/null 2>&1 \
            || { echo "check-kernel-modules: initramfs module $mod is missing" >&2; exit 1; }
    done
    echo "kernel modules $kver: $(find "$dir" -name '*.ko*' | wc -l) of" \
         "$(find "$tmp/full/lib/modules/$kver" -name '*.ko*' | wc -l), $(du -sm "$dir" | cut -f1) of" \
         "$(du -sm "$tmp/full/lib/modules/$kver" | cut -f1) MiB; no unresolved symbols" >&2
    rm -rf "$tmp/full"
done
