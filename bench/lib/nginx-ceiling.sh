#!/usr/bin/env bash
# bench/lib/nginx-ceiling.sh FILE ROUNDS OUT.tsv: what this machine can carry
# at best for "GET one big blob, 16 connections": nginx serving FILE as a
# static file, with sendfile on and off, measured with the same wrk command
# line as ../shared/bench (-t2 -c16, WRK_DURATION seconds). A server that is
# faster than nginx here would have to beat the client and the loopback TCP
# path, which no server controls; the ratio target for blob GET is judged
# against this ceiling.
set -euo pipefail
file=$1 rounds=$2 out=$3
SHARED=${SHARED:?}
WRK_DURATION=${WRK_DURATION:-15}
port=5098
dir=$(mktemp -d)
trap 'nginx -c "$dir/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$dir"' EXIT
chmod 755 "$dir" # nginx workers run as an unprivileged user
mkdir -p "$dir/www"
ln -s "$(realpath "$file")" "$dir/www/blob"
cat "$file" >/dev/null # page cache, as for the registries
printf 'server\tround\tMB/s\n' >"$out"
for r in $(seq 1 "$rounds"); do
    for sendfile in on off; do
        cat >"$dir/nginx.conf" <<CONF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile $sendfile;
    server { listen 127.0.0.1:$port; root $dir/www; }
}
CONF
        nginx -c "$dir/nginx.conf"
        sleep 0.5
        j=$(wrk -t2 -c16 -d"${WRK_DURATION}s" --timeout 120s -s "$SHARED/bench/lib/wrk-report.lua" \
            "http://127.0.0.1:$port/blob" | sed -n 's/^WRKJSON //p')
        nginx -c "$dir/nginx.conf" -s stop
        sleep 1
        printf 'nginx sendfile %s\t%s\t%s\n' "$sendfile" "$r" \
            "$(jq -r '.bytes/1e6/(.duration_us/1e6)|round' <<<"$j")" >>"$out"
    done
done
