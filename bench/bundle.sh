#!/usr/bin/env bash
# bench/bundle.sh: `ferry bundle push` against `skopeo sync` of the same corpus
# into the same Debian docker-registry (CNCF Distribution 2.8.2), in one run,
# rounds interleaved (ferry, skopeo, ferry, ...). Also: this machine's disk
# write limit (dd conv=fdatasync) in the same run, the push of the 1 GiB
# layer against it, ferry's peak RSS while pushing it, re-push of an
# unchanged bundle against skopeo's re-sync, and the bundle's size against
# the sum of its unique blobs.
#
#   bench/bundle.sh                     # ROUNDS=3; results in bench/results/bundle-<time>/
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
export CORPUS=${CORPUS:-/var/tmp/ferry-corpus}
OUT=${OUT:-$HERE/results/bundle-$(date -u +%Y%m%dT%H%M%SZ)}
ROUNDS=${ROUNDS:-3}
PORT=5001
REG=127.0.0.1:$PORT
# ferry's own registry, for the same pushes without Distribution's ingest
# rate as the ceiling.
FERRY_PORT=5003
FERRY_REG=127.0.0.1:$FERRY_PORT
mkdir -p "$OUT"
RAW=$OUT/raw.tsv
printf 'what\tround\tseconds\tmax_rss_kib\tbytes\n' >"$RAW"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

log "packages"
need=(skopeo docker-registry umoci debootstrap pigz jq curl)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] || apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
[ -f "$CORPUS/MANIFEST.tsv" ] || { log "corpus -> $CORPUS"; "$SHARED/bench/make-corpus.sh"; }

log "build ferry (release)"
(cd "$ROOT" && cargo build --release --locked -p ferry)
FERRY=${FERRY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry}
TAGS=$(awk -F'\t' 'NR>1{print $1}' "$CORPUS/MANIFEST.tsv")
# The 1 GiB layer's file (the largest blob), for Distribution's ingest ceiling.
BIG_BLOB=$(find "$CORPUS/oci/blobs/sha256" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)


spec() { # tags... -> a ferry.yaml over the corpus layout
    echo "images:"
    for t in "$@"; do
        printf '  - ref: oci:%s:%s\n    repository: bench/%s\n    tag: latest\n' "$CORPUS/oci" "$t" "$t"
    done
}
log "bundles"
# shellcheck disable=SC2086
spec $TAGS >"$OUT/corpus.yaml"
spec bigblob >"$OUT/bigblob.yaml"
STATE=$OUT/state
"$FERRY" -q --state "$STATE" bundle create -f "$OUT/corpus.yaml" -o "$OUT/corpus.ferry"
"$FERRY" -q --state "$STATE" bundle create -f "$OUT/bigblob.yaml" -o "$OUT/bigblob.ferry"
"$FERRY" bundle inspect --json "$OUT/corpus.ferry" >"$OUT/corpus.inspect.json"
"$FERRY" bundle inspect --json "$OUT/bigblob.ferry" >"$OUT/bigblob.inspect.json"

reset_registry() { "$SHARED/bench/lib/distribution-ctl.sh" reset "$PORT" >/dev/null; }
export FERRY FERRY_BENCH_STATE=$OUT/ferry-serve
reset_ferry() { "$HERE/lib/ferry-ctl.sh" reset "$FERRY_PORT" >/dev/null; }
timed() { # what round bytes cmd...
    local what=$1 round=$2 bytes=$3 tf=$OUT/time.$$; shift 3
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$tf" "$@" >>"$OUT/commands.log" 2>&1 || { log "FAILED: $what"; return 1; }
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\t%s\n' "$what" "$round" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" "$(tail -1 "$tf")" "$bytes" >>"$RAW"
    rm -f "$tf"
}
CORPUS_BYTES=$(jq .blob_bytes "$OUT/corpus.inspect.json")
BIG_BYTES=$(jq .blob_bytes "$OUT/bigblob.inspect.json")
# Commands as arrays, not functions: /usr/bin/time runs programs.
push=("$FERRY" -q --state "$STATE" bundle push --insecure --to "$REG/ferry" --out "$OUT/site")
push_ferry=("$FERRY" -q --state "$STATE" bundle push --insecure --to "$FERRY_REG/ferry" --out "$OUT/site")
sync=("$SHARED/bench/lib/sk" skopeo sync --all --preserve-digests --src dir --dest docker --dest-tls-verify=false "$CORPUS/dir" "$REG/skopeo")

for r in $(seq 1 "$ROUNDS"); do
    # The disk's write rate on this VM drifts between runs, so it is measured
    # in every round, next to the pushes it is compared with.
    log "round $r: disk write limit: dd 2 GiB conv=fdatasync"
    timed "dd" "$r" 2147483648 dd if=/dev/zero of="$OUT/dd.bin" bs=1M count=2048 conv=fdatasync status=none
    rm -f "$OUT/dd.bin"
    log "round $r: ferry bundle push (cold, then again)"
    reset_registry; rm -rf "$STATE/push-resume"
    timed "ferry push corpus" "$r" "$CORPUS_BYTES" "${push[@]}" "$OUT/corpus.ferry"
    timed "ferry re-push corpus" "$r" 0 "${push[@]}" "$OUT/corpus.ferry"
    log "round $r: skopeo sync (cold, then again)"
    reset_registry
    timed "skopeo sync corpus" "$r" "$CORPUS_BYTES" "${sync[@]}"
    timed "skopeo re-sync corpus" "$r" 0 "${sync[@]}"
    log "round $r: ferry bundle push of the 1 GiB layer"
    reset_registry; rm -rf "$STATE/push-resume"
    timed "ferry push bigblob" "$r" "$BIG_BYTES" "${push[@]}" "$OUT/bigblob.ferry"
    # What Distribution can ingest at best: the same layer as one PUT from curl.
    log "round $r: curl -T of the 1 GiB layer into Distribution (its ingest ceiling)"
    reset_registry
    timed "curl put bigblob" "$r" "$(stat -c %s "$BIG_BLOB")" "$HERE/lib/put-blob.sh" "$REG" ceiling/big "$BIG_BLOB"
    log "round $r: ferry bundle push into ferry serve (corpus, 1 GiB layer)"
    reset_ferry; rm -rf "$STATE/push-resume"
    timed "ferry push corpus into ferry" "$r" "$CORPUS_BYTES" "${push_ferry[@]}" "$OUT/corpus.ferry"
    reset_ferry; rm -rf "$STATE/push-resume"
    timed "ferry push bigblob into ferry" "$r" "$BIG_BYTES" "${push_ferry[@]}" "$OUT/bigblob.ferry"
done
"$SHARED/bench/lib/distribution-ctl.sh" stop "$PORT" >/dev/null
"$HERE/lib/ferry-ctl.sh" stop "$FERRY_PORT" >/dev/null

python3 - "$RAW" "$OUT/corpus.inspect.json" >"$OUT/summary.md" <<'PY'
import json, statistics, sys
raw, inspect = sys.argv[1], json.load(open(sys.argv[2]))
rows = {}
for line in open(raw).read().splitlines()[1:]:
    what, _, secs, rss, nbytes = line.split("\t")
    rows.setdefault(what, []).append((float(secs), int(rss), int(nbytes)))
def med(what, i=0):
    return statistics.median(r[i] for r in rows[what])
def rng(what):
    s = [r[0] for r in rows[what]]
    return f"{statistics.median(s):.2f} s [{min(s):.2f}-{max(s):.2f}]"
fp, sk = med("ferry push corpus"), med("skopeo sync corpus")
rp, rs = med("ferry re-push corpus"), med("skopeo re-sync corpus")
def mbs(what):
    return statistics.median(r[2] / 1e6 / r[0] for r in rows[what])
dd = mbs("dd")
big = rows["ferry push bigblob"]
big_mbs = mbs("ferry push bigblob")
big_rss = max(r[1] for r in big) / 1024
push_rss = max(r[1] for r in rows["ferry push corpus"]) / 1024
overhead = inspect["file_bytes"] / inspect["blob_bytes"] - 1
print("| measurement | ferry | skopeo | ratio | target |")
print("| --- | --- | --- | --- | --- |")
print(f"| push of the whole corpus ({inspect['blob_bytes']/1e9:.2f} GB) into Distribution | {rng('ferry push corpus')} | {rng('skopeo sync corpus')} | {sk/fp:.2f}× faster | ≥ 5× |")
print(f"| re-push of an unchanged bundle / re-sync | {rng('ferry re-push corpus')} | {rng('skopeo re-sync corpus')} | {rs/rp:.2f}× faster | ≥ 1× |")
dds = [r[2] / 1e6 / r[0] for r in rows["dd"]]
print(f"| this disk's write limit (dd 2 GiB, conv=fdatasync, every round), MB/s | {dd:.0f} [{min(dds):.0f}-{max(dds):.0f}] | – | – | |")
print(f"| 1 GiB layer image pushed into Distribution, MB/s | {big_mbs:.0f} | – | {big_mbs/dd*100:.0f}% of dd's {dd:.0f} MB/s | ≥ 60% |")
print(f"| Distribution's ceiling: the 1 GiB layer alone as one `curl -T` PUT | – | – | {rng('curl put bigblob')} = {mbs('curl put bigblob'):.0f} MB/s; 5× skopeo would be the whole corpus in {sk/5:.2f} s | |")
fb = mbs("ferry push bigblob into ferry")
print(f"| same into ferry serve, MB/s | {fb:.0f} | – | {fb/dd*100:.0f}% of dd's {dd:.0f} MB/s | ≥ 60% |")
print(f"| whole corpus into ferry serve | {rng('ferry push corpus into ferry')} | – | {sk/med('ferry push corpus into ferry'):.2f}× skopeo into Distribution | |")
print(f"| ferry peak RSS pushing it / the corpus | {big_rss:.0f} MiB / {push_rss:.0f} MiB | – | – | ≤ 64 MiB |")
print(f"| bundle file vs its unique blobs | {inspect['file_bytes']} B vs {inspect['blob_bytes']} B | – | +{overhead*100:.3f}% | ≤ +1% |")
PY
cat "$OUT/summary.md"
log "summary: $OUT/summary.md"
