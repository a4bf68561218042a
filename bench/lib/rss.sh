#!/usr/bin/env bash
# rss.sh OUT.tsv: idle and peak resident memory of Distribution and ferry,
# each started fresh, after pushing small blobs only (small50) and after
# pushing and serving 1 GiB blobs (bigblob, then 16 concurrent GETs of its
# 1 GiB layer). Flat memory means peak-after-big is close to peak-after-small.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED:-$(cd "$HERE/../../../shared" && pwd)}
OUT=$1
OCI=$CORPUS/oci
S=$FERRY_BENCH_STATE
kib() { awk -v k="$2" '$1==k":"{print $2}' "/proc/$1/status"; }
mib() { echo $(( $1 / 1024 )); }
manifest_of() { echo "$OCI/blobs/sha256/$(jq -r --arg t "$1" '.manifests[]|select(.annotations["org.opencontainers.image.ref.name"]==$t).digest' "$OCI/index.json" | cut -d: -f2)"; }
big=$(jq -r '.layers[0].digest' "$(manifest_of bigblob)")

measure() { # label port start-cmd pidfile
    local label=$1 port=$2 start=$3 pidf=$4 pid idle small peak
    bash -c "$start" >/dev/null
    pid=$(cat "$pidf"); sleep 2
    idle=$(kib "$pid" VmRSS)
    "$SHARED/bench/lib/sk" skopeo copy -q --dest-tls-verify=false "oci:$OCI:small50" "docker://127.0.0.1:$port/rss/small50:latest"
    small=$(kib "$pid" VmHWM)
    "$SHARED/bench/lib/sk" skopeo copy -q --dest-tls-verify=false "oci:$OCI:bigblob" "docker://127.0.0.1:$port/rss/bigblob:latest"
    wrk -t2 -c16 -d10s "http://127.0.0.1:$port/v2/rss/bigblob/blobs/$big" >/dev/null
    peak=$(kib "$pid" VmHWM)
    printf '%s\t%s\t%s\t%s\n' "$label" "$(mib "$idle")" "$(mib "$small")" "$(mib "$peak")" >>"$OUT"
    kill "$pid"; sleep 1
}
printf 'server\tidle_rss\tpeak_after_small_blobs\tpeak_after_1GiB_blobs\n' >"$OUT"
measure distribution 5001 "$SHARED/bench/lib/distribution-ctl.sh reset 5001" "$SHARED/bench/state/dist-5001.pid"
measure ferry 5002 "$HERE/ferry-ctl.sh reset 5002" "$S/ferry-5002.pid"
