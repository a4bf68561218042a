#!/usr/bin/env bash
# bench/registry.sh: ferry's registry against Debian's docker-registry (CNCF
# Distribution 2.8.2) on this machine, in one run, interleaved round by round
# (A B A B ...) so that a noisy machine does not bias the ratios.
#
#   bench/registry.sh                      # everything; results in bench/results/registry-<time>/
#   ROUNDS=1 WRK_DURATION=10 bench/registry.sh   # quicker
#
# It (1) installs the Debian packages it needs, (2) builds the corpus with
# ../shared/bench/make-corpus.sh into $CORPUS if missing, (3) builds ferry in
# release mode, (4) runs ../shared/bench/compare.sh with skopeo as the client
# (push of each image, sync of the whole corpus, re-sync, wrk/hey GETs), (5) the
# same push and sync with ferry's own client when `ferry copy` exists,
# (6) measures the machine's ceiling for the blob GET test: nginx serving the
# same 1 GiB file to the same wrk command (bench/lib/nginx-ceiling.sh),
# (7) measures each server's idle and peak RSS with small and with 1 GiB blobs.
# Prints the ratio tables; BENCHMARKS.md records a run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
export CORPUS=${CORPUS:-/var/tmp/ferry-corpus}
OUT=${OUT:-$HERE/results/registry-$(date -u +%Y%m%dT%H%M%SZ)}
export ROUNDS=${ROUNDS:-3} WRK_DURATION=${WRK_DURATION:-15}
export FERRY_BENCH_STATE=$OUT/state
PORT=5002
mkdir -p "$OUT" "$FERRY_BENCH_STATE"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

log "packages"
need=(skopeo wrk hey docker-registry umoci debootstrap pigz jq curl openssl zstd iperf3 nginx-light)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] || apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"

if [ ! -f "$CORPUS/MANIFEST.tsv" ]; then
    log "corpus -> $CORPUS"
    "$SHARED/bench/make-corpus.sh"
fi

log "build ferry (release)"
(cd "$ROOT" && cargo build --release --locked -p ferry)
export FERRY=${FERRY:-$ROOT/target/release/ferry}
[ -x "$FERRY" ] || FERRY=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry

FERRY_SPEC="ferry|http://127.0.0.1:$PORT|$HERE/lib/ferry-ctl.sh reset $PORT|$FERRY_BENCH_STATE/ferry-$PORT.pid"

log "compare, client skopeo: push sync repush wrk"
OUT=$OUT/skopeo TESTS="push sync repush wrk" "$SHARED/bench/compare.sh" 'distribution|distribution' "$FERRY_SPEC" >/dev/null

if "$FERRY" copy --help >/dev/null 2>&1; then
    log "compare, client ferry: push sync repush"
    # shellcheck disable=SC2016  # expanded by bench.sh's client_cmd
    export PUSH_CMD='"$FERRY" -q copy --insecure "oci:$OCI:$TAG" "docker://$HOST/$NS/$TAG:latest"'
    export SYNC_CMD='"$FERRY" -q copy --insecure --all-tags "oci:$OCI" "docker://$HOST/$NS"'
    OUT=$OUT/ferry-client TESTS="push sync repush" "$SHARED/bench/compare.sh" 'distribution|distribution' "$FERRY_SPEC" >/dev/null
    unset PUSH_CMD SYNC_CMD
fi

log "ceiling: nginx serving the 1 GiB blob to the same wrk"
BIG_BLOB=$(find "$CORPUS/oci/blobs/sha256" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
SHARED=$SHARED "$HERE/lib/nginx-ceiling.sh" "$BIG_BLOB" "$ROUNDS" "$OUT/nginx-ceiling.tsv" 2>>"$OUT/nginx.log"

log "memory"
"$HERE/lib/rss.sh" "$OUT/rss.tsv"

{
    echo "# ferry registry vs Distribution, $(date -u +%FT%TZ)"
    echo
    echo "host: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(docker-registry --version); $(skopeo --version); ferry $("$FERRY" --version | awk '{print $2}')"
    echo "rounds: $ROUNDS, wrk duration ${WRK_DURATION}s, corpus $CORPUS"
    echo
    echo "## client skopeo"
    echo
    cat "$OUT/skopeo/compare.md"
    if [ -f "$OUT/ferry-client/compare.md" ]; then
        echo
        echo "## client ferry"
        echo
        cat "$OUT/ferry-client/compare.md"
    fi
    echo
    echo "## ceiling: GET 1 GiB blob c=16 (wrk -t2) from nginx, MB/s per round"
    echo
    column -t -s$'\t' "$OUT/nginx-ceiling.tsv" | sed 's/^/    /'
    echo
    echo "## memory (MiB)"
    echo
    column -t -s$'\t' "$OUT/rss.tsv" | sed 's/^/    /'
} | tee "$OUT/summary.md"
log "summary: $OUT/summary.md"
