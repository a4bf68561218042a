#!/usr/bin/env bash
# bench/image.sh: `ferry image build`'s output writers against the host
# tools they replace, on one real rootfs, rounds interleaved.
#
# Section "squashfs": ferry's squashfs writer (crates/ferry-image
# examples/squashfs.rs: the rootfs tar applied to a stage, then the
# writer, then the read-back verify, each phase timed) against
# `mksquashfs DIR OUT -comp zstd -b 128K -processors 2 -noappend` on the
# same rootfs extracted as root (owners, devices, xattrs), with the same
# compressor, level (zstd 15, mksquashfs's default and ferry's), block
# size and processor count. Targets (issue 9): ferry's write ≤ 1.0×
# mksquashfs's time, image within 1% of its size.
#
#   ROOTFS_TAR=/work/scratch/rootfs.tar bench/image.sh   # ROUNDS=3; results in bench/results/image-<time>/
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROOTFS_TAR=${ROOTFS_TAR:-/work/scratch/rootfs.tar}
OUT=${OUT:-$HERE/results/image-$(date -u +%Y%m%dT%H%M%SZ)}
WORK=${WORK:-/var/tmp/ferry-bench-image}
ROUNDS=${ROUNDS:-3}
PROCESSORS=${PROCESSORS:-2}
mkdir -p "$OUT" "$WORK"
RAW=$OUT/raw.tsv
printf 'what\tround\tseconds\tmax_rss_kib\tbytes\n' >"$RAW"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[ -f "$ROOTFS_TAR" ] || { echo "ROOTFS_TAR=$ROOTFS_TAR: no such file (a rootfs tar, e.g. from mmdebstrap)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root: mksquashfs needs the rootfs extracted with its owners and devices" >&2; exit 2; }
dpkg-query -W -f='${Status}' squashfs-tools 2>/dev/null | grep -q 'install ok installed' \
    || apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends squashfs-tools

log "build the squashfs example (release)"
(cd "$ROOT" && cargo build --release --locked -p ferry-image --example squashfs)
SQUASHFS=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/squashfs

log "extract $ROOTFS_TAR for mksquashfs"
rm -rf "$WORK/rootdir" && mkdir -p "$WORK/rootdir"
tar --xattrs --xattrs-include='*' --numeric-owner -xpf "$ROOTFS_TAR" -C "$WORK/rootdir"

timed() { # what round output cmd...
    local what=$1 round=$2 output=$3 tf=$OUT/time.$$; shift 3
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$tf" "$@" >>"$OUT/commands.log" 2>&1 || { log "FAILED: $what"; return 1; }
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\t%s\n' "$what" "$round" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" "$(tail -1 "$tf")" "$(stat -c %s "$output")" >>"$RAW"
    rm -f "$tf"
}

for r in $(seq 1 "$ROUNDS"); do
    log "round $r: ferry (apply, write, verify)"
    rm -f "$WORK/ferry.squashfs"
    echo "== ferry round $r" >>"$OUT/commands.log"
    timed "ferry" "$r" "$WORK/ferry.squashfs" "$SQUASHFS" "$ROOTFS_TAR" "$WORK/ferry.squashfs" \
        --stage "$WORK/stage" --processors "$PROCESSORS"
    # The example's own phase times: the writer alone is what mksquashfs does.
    for phase in write verify; do
        secs=$(awk -F'\t' -v p="$phase" '$1==p{v=$2} END{print v}' "$OUT/commands.log")
        printf 'ferry %s\t%s\t%s\t0\t%s\n' "$phase" "$r" "$secs" "$(stat -c %s "$WORK/ferry.squashfs")" >>"$RAW"
    done
    log "round $r: mksquashfs"
    rm -f "$WORK/mksquashfs.squashfs"
    echo "== mksquashfs round $r" >>"$OUT/commands.log"
    timed "mksquashfs" "$r" "$WORK/mksquashfs.squashfs" mksquashfs "$WORK/rootdir" "$WORK/mksquashfs.squashfs" \
        -comp zstd -b 128K -processors "$PROCESSORS" -noappend -quiet -no-progress
done

python3 - "$RAW" >"$OUT/summary.md" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]).read().splitlines()[1:]:
    what, _, secs, rss, nbytes = line.split("\t")
    rows.setdefault(what, []).append((float(secs), int(rss), int(nbytes)))
def med(what, i=0):
    return statistics.median(r[i] for r in rows[what])
def rng(what):
    s = [r[0] for r in rows[what]]
    return f"{statistics.median(s):.1f} s [{min(s):.1f}-{max(s):.1f}]"
w, v, mk = med("ferry write"), med("ferry verify"), med("mksquashfs")
fs, ms = med("ferry", 2), med("mksquashfs", 2)
print("| squashfs (zstd 15, 128 KiB blocks, 2 processors) | ferry | mksquashfs | ratio | target |")
print("| --- | --- | --- | --- | --- |")
print(f"| write, wall time | {rng('ferry write')} | {rng('mksquashfs')} | {w/mk:.2f}× | ≤ 1.0× |")
print(f"| write + read-back verify | {statistics.median(a[0] + b[0] for a, b in zip(rows['ferry write'], rows['ferry verify'])):.1f} s | – | {(w+v)/mk:.2f}× | |")
print(f"| image size, bytes | {fs:.0f} | {ms:.0f} | {(fs/ms-1)*100:+.2f}% | within 1% |")
print(f"| peak RSS (ferry: tar apply + write + verify) | {max(r[1] for r in rows['ferry'])/1024:.0f} MiB | {max(r[1] for r in rows['mksquashfs'])/1024:.0f} MiB | | |")
PY
cat "$OUT/summary.md"
log "summary: $OUT/summary.md"
