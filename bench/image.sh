#!/usr/bin/env bash
# bench/image.sh: the writers of `ferry image build` against the tools people
# use today, one independent section per output family, rounds interleaved
# (ferry, tool, ferry, ...) so a noisy machine does not bias the ratios.
#
#   bench/image.sh                 # every section; results in bench/results/image-<time>/
#   bench/image.sh vdisk           # one section
#   ROUNDS=1 RAW=disk.raw bench/image.sh vdisk
#
# Sections:
#   vdisk  raw GPT disk -> qcow2 (ferry vs `qemu-img convert -O qcow2`) and
#          -> stream-optimized VMDK (ferry vs `qemu-img convert -O vmdk -o
#          subformat=streamOptimized`): time, size, and each output checked
#          with `qemu-img compare` against the raw disk. The raw disk is $RAW,
#          or a synthetic 2 GiB GPT disk whose root partition is an ext4 made
#          with `mke2fs -d` from $SRC (default /usr/lib/x86_64-linux-gnu,
#          ~700 MB of real shared libraries), the rest sparse.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$HERE/results/image-$(date -u +%Y%m%dT%H%M%SZ)}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"
RAW_TSV=$OUT/raw.tsv
[ -f "$RAW_TSV" ] || printf 'what\tround\tseconds\tmax_rss_kib\tbytes\n' >"$RAW_TSV"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

need_packages() {
    local missing=() p
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] || apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
}

# timed WHAT ROUND OUTPUT CMD...: one row of raw.tsv (wall time, peak RSS,
# size of OUTPUT afterwards).
timed() {
    local what=$1 round=$2 output=$3 tf=$OUT/time.$$ t0 t1; shift 3
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$tf" "$@" >>"$OUT/commands.log" 2>&1 || { log "FAILED: $what"; return 1; }
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\t%s\n' "$what" "$round" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" \
        "$(tail -1 "$tf")" "$(stat -c %s "$output")" >>"$RAW_TSV"
    rm -f "$tf"
}

# median_of WHAT COLUMN: the median of a raw.tsv column over the rounds.
median_of() {
    awk -F'\t' -v w="$1" -v c="$2" '$1==w{print $c}' "$RAW_TSV" | sort -g |
        awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'
}

section_vdisk() {
    log "vdisk: packages"
    need_packages qemu-utils gdisk e2fsprogs time
    log "vdisk: build the writers (release)"
    (cd "$ROOT" && cargo build --release --locked -p ferry-image --example vdisk)
    local vdisk=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/vdisk
    local work=$OUT/vdisk raw=${RAW:-}
    mkdir -p "$work"
    if [ -z "$raw" ]; then
        raw=$work/disk.raw
        local src=${SRC:-/usr/lib/x86_64-linux-gnu} root_start=$((65 << 20))
        log "vdisk: synthetic 2 GiB GPT disk, ext4 root from $src"
        rm -f "$raw"
        truncate -s 2G "$raw"
        sgdisk -n1:2048:+64M -t1:ef00 -n2:0:0 -t2:8300 "$raw" >/dev/null
        local root_sectors
        root_sectors=$(sgdisk -i2 "$raw" | awk '/^Partition size/{print $3}')
        mke2fs -q -F -t ext4 -d "$src" -E offset=$root_start "$raw" $((root_sectors / 2))k
    fi
    local allocated
    allocated=$(du -B1 "$raw" | cut -f1)
    log "vdisk: raw disk $raw: $(stat -c %s "$raw") bytes, $allocated allocated"
    for r in $(seq 1 "$ROUNDS"); do
        log "vdisk: round $r"
        rm -f "$work"/*.qcow2 "$work"/*.vmdk
        timed qcow2-ferry "$r" "$work/ferry.qcow2" "$vdisk" qcow2 "$raw" "$work/ferry.qcow2"
        timed qcow2-qemu-img "$r" "$work/qemu.qcow2" qemu-img convert -f raw -O qcow2 "$raw" "$work/qemu.qcow2"
        timed vmdk-ferry "$r" "$work/ferry.vmdk" "$vdisk" vmdk "$raw" "$work/ferry.vmdk"
        timed vmdk-qemu-img "$r" "$work/qemu.vmdk" qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$raw" "$work/qemu.vmdk"
    done
    log "vdisk: outputs equal the raw disk"
    for f in ferry.qcow2 qemu.qcow2 ferry.vmdk qemu.vmdk; do
        qemu-img compare -q -f raw "$raw" "$work/$f" || { log "vdisk: $f differs from the raw disk"; return 1; }
    done
    {
        echo "## vdisk ($ROUNDS rounds, medians; raw disk $(stat -c %s "$raw") bytes, $allocated allocated; $(nproc) cores)"
        echo
        echo "| output | ferry s | qemu-img s | time ratio | ferry bytes | qemu-img bytes | size ratio | ferry peak RSS KiB |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
        for kind in qcow2 vmdk; do
            local ft qt fb qb
            ft=$(median_of "$kind-ferry" 3) qt=$(median_of "$kind-qemu-img" 3)
            fb=$(median_of "$kind-ferry" 5) qb=$(median_of "$kind-qemu-img" 5)
            printf '| %s | %s | %s | %.2f | %s | %s | %.3f | %s |\n' "$kind" "$ft" "$qt" \
                "$(awk -v a="$ft" -v b="$qt" 'BEGIN{print a/b}')" "$fb" "$qb" \
                "$(awk -v a="$fb" -v b="$qb" 'BEGIN{print a/b}')" "$(median_of "$kind-ferry" 4)"
        done
        echo
    } | tee -a "$OUT/summary.md"
    rm -f "$work"/*.qcow2 "$work"/*.vmdk
    [ -n "${RAW:-}" ] || rm -f "$raw"
}

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(vdisk)
for section in "${sections[@]}"; do
    "section_$section"
done
log "results in $OUT"
