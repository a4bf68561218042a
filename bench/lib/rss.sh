#!/usr/bin/env bash
# rss.sh OUT.tsv: idle and peak resident memory (VmHWM) of Distribution and
# ferry, each started fresh, measured after each step of the same work done
# with small and with 1 GiB blobs:
#   push small50 (50 small layers)      then push bigblob (two 1 GiB layers)
#   16 concurrent GETs of a 50 MB blob  then 16 concurrent GETs of a 1 GiB blob
# Memory flat in blob size means each 1 GiB step stays at its small step's peak.
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
mid=$(jq -r '.layers[0].digest' "$(manifest_of debian-base)")

measure() { # label port start-cmd pidfile
    local label=$1 port=$2 start=$3 pidf=$4 pid row t
    bash -c "$start" >/dev/null
    pid=$(cat "$pidf"); sleep 2
    row="$label\t$(mib "$(kib "$pid" VmRSS)")"
    for t in small50 bigblob debian-base; do
        "$SHARED/bench/lib/sk" skopeo copy -q --dest-tls-verify=false "oci:$OCI:$t" "docker://127.0.0.1:$port/rss/$t:latest"
        [ "$t" = debian-base ] || row="$row\t$(mib "$(kib "$pid" VmHWM)")"
    done
    wrk -t2 -c16 -d10s "http://127.0.0.1:$port/v2/rss/debian-base/blobs/$mid" >/dev/null
    row="$row\t$(mib "$(kib "$pid" VmHWM)")"
    wrk -t2 -c16 -d10s "http://127.0.0.1:$port/v2/rss/bigblob/blobs/$big" >/dev/null
    row="$row\t$(mib "$(kib "$pid" VmHWM)")"
    printf "$row\n" >>"$OUT"
    kill "$pid"; sleep 1
}
printf 'server\tidle\tpush_small50\tpush_1GiB\tget_50MB_c16\tget_1GiB_c16\n' >"$OUT"
measure distribution 5001 "$SHARED/bench/lib/distribution-ctl.sh reset 5001" "$SHARED/bench/state/dist-5001.pid"
measure ferry 5002 "$HERE/ferry-ctl.sh reset 5002" "$S/ferry-5002.pid"
