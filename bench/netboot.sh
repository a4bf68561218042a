#!/bin/bash
# bench/netboot.sh - ferry's netboot serving against the tools it replaces.
#
#   sudo bench/netboot.sh                 # both parts
#   PARTS=http sudo bench/netboot.sh      # HTTP throughput only (no root needed)
#   PARTS=boot BOOTS=3 sudo bench/netboot.sh
#
# Part "http": the same 1 GiB file (a stand-in for a rootfs.squashfs:
# random bytes, so nothing compresses) served by `ferry netboot serve`
# (release build, file read in place from an ISO 9660 image) and by Debian's
# nginx (sendfile on, from a plain file), both on 127.0.0.1, to 32
# concurrent wrk connections, each request a random 4 MiB `Range`. Reports
# each server's throughput, the ratio, and ferry's peak RSS (VmHWM).
#
# Part "boot": QEMU (TCG) boot-to-poweroff with shared/harness/netboot's
# harness-b.sh, mode proxy (stock iPXE NIC ROM, site DHCP = busybox udhcpd):
# the seed flow (dnsmasq ProxyDHCP + `python3 -m http.server` + a
# hand-written boot.ipxe) against ferry (ProxyDHCP + per-host script +
# kernel/initrd from an ISO + config by token + ready event). Alternating
# runs; reports every time and the medians.
#
# Needs: wrk, nginx-light, xorriso (and for "boot" what the harness needs).
# Everything it starts is stopped by PID at exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
HARNESS="${HARNESS:-$ROOT/../shared/harness/netboot}"
WORK="${BENCH_DIR:-/tmp/ferry-bench-netboot}"
PARTS="${PARTS:-http boot}"
DURATION="${DURATION:-20}"; CONNS="${CONNS:-32}"; BOOTS="${BOOTS:-3}"
SIZE=$((1024 * 1024 * 1024)); CHUNK=$((4 * 1024 * 1024))
FERRY_PORT=18080; NGINX_PORT=18081
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FERRY="$CARGO_TARGET_DIR/release/ferry"

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

mkdir -p "$WORK"
echo "== building ferry (release)"
(cd "$ROOT" && cargo build --release -p ferry --quiet)

wait_http() { for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "nothing at $1" >&2; return 1; }

http_part() {
  local data="$WORK/http"
  mkdir -p "$data/tree/boot" "$data/nginx" "$data/state"
  if [ ! -s "$data/rootfs.squashfs" ] || [ "$(stat -c %s "$data/rootfs.squashfs")" != "$SIZE" ]; then
    echo "== writing the 1 GiB test file"
    head -c "$SIZE" /dev/urandom > "$data/rootfs.squashfs"
  fi
  if [ ! -s "$data/site.iso" ] || [ "$data/rootfs.squashfs" -nt "$data/site.iso" ]; then
    echo "== building site.iso (xorriso)"
    head -c 1000000 /dev/urandom > "$data/tree/boot/kernel"
    head -c 1000000 /dev/urandom > "$data/tree/boot/initrd"
    ln -f "$data/rootfs.squashfs" "$data/tree/rootfs.squashfs"
    xorriso -as mkisofs -R -J -o "$data/site.iso" "$data/tree" 2>/dev/null
  fi
  cat > "$data/netboot.yaml" <<YAML
server: {address: 127.0.0.1, http_port: $FERRY_PORT, http_listen: "127.0.0.1:$FERRY_PORT"}
dhcp: {mode: off}
profiles:
  bench:
    source: {iso: site.iso}
    cmdline: console=ttyS0
hosts:
  - {mac: "52:54:00:00:be:01", profile: bench}
YAML
  "$FERRY" -q --state "$data/state" netboot serve -c "$data/netboot.yaml" &
  local ferry_pid=$!; PIDS+=("$ferry_pid")
  wait_http "http://127.0.0.1:$FERRY_PORT/boot.ipxe"
  local token
  token=$(curl -fsS "http://127.0.0.1:$FERRY_PORT/boot/52-54-00-00-be-01.ipxe" | sed -n 's|.*/h/\([0-9a-f]*\)/files/kernel.*|\1|p')
  local ferry_url="http://127.0.0.1:$FERRY_PORT/h/$token/files/rootfs"

  cat > "$data/nginx/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $data/nginx/nginx.pid;
error_log $data/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $data/nginx/body;
  proxy_temp_path $data/nginx/proxy;
  fastcgi_temp_path $data/nginx/fastcgi;
  uwsgi_temp_path $data/nginx/uwsgi;
  scgi_temp_path $data/nginx/scgi;
  server { listen 127.0.0.1:$NGINX_PORT; root $data; }
}
CONF
  nginx -p "$data/nginx" -c "$data/nginx/nginx.conf" &
  PIDS+=($!)
  local nginx_url="http://127.0.0.1:$NGINX_PORT/rootfs.squashfs"
  wait_http "$nginx_url"

  # the same bytes from both
  [ "$(curl -fsS -r 123456789-123556788 "$ferry_url" | sha256sum)" = "$(curl -fsS -r 123456789-123556788 "$nginx_url" | sha256sum)" ] \
    || { echo "ferry and nginx serve different bytes" >&2; exit 1; }

  cat > "$data/range.lua" <<LUA
local size, chunk = $SIZE, $CHUNK
local n = 0
function setup(thread) n = n + 1; thread:set("seed", n) end
function init(args) math.randomseed(seed * 7919) end
function request()
  local start = math.random(0, size / chunk - 1) * chunk
  return wrk.format("GET", nil, { Range = "bytes=" .. start .. "-" .. (start + chunk - 1) })
end
function response(status) if status ~= 206 then error("status " .. status) end end
LUA
  cat "$data/rootfs.squashfs" > /dev/null   # both read from the page cache
  local threads=2 rounds="${ROUNDS:-3}" r out sum_n=0 sum_f=0 rn rf
  echo "== wrk -t$threads -c$CONNS -d${DURATION}s, random 4 MiB ranges of a 1 GiB file; $rounds alternating rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  for r in $(seq "$rounds"); do
    for server in nginx ferry; do
      local url=$nginx_url; [ $server = ferry ] && url=$ferry_url
      out=$(wrk -t$threads -c"$CONNS" -d"${DURATION}s" -s "$data/range.lua" "$url")
      local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      echo "round $r $server: $(echo "$out" | awk '/Transfer\/sec/ {print $2}')/s, $rps req/s$(echo "$out" | grep -E 'Non-2xx|timeout' | tr -s ' ' | sed 's/^/,/' | tr '\n' ' ')"
      if [ $server = nginx ]; then sum_n=$(awk -v a="$sum_n" -v b="$rps" 'BEGIN{print a+b}'); else sum_f=$(awk -v a="$sum_f" -v b="$rps" 'BEGIN{print a+b}'); fi
    done
  done
  awk -v f="$sum_f" -v n="$sum_n" -v c="$CHUNK" -v k="$rounds" 'BEGIN { printf "mean: nginx %.0f MiB/s, ferry %.0f MiB/s: ferry = %.1f%% of nginx\n", n/k*c/1048576, f/k*c/1048576, 100*f/n }'
  echo "ferry peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$ferry_pid/status)"
}

boot_part() {
  local data="$WORK/boot"
  mkdir -p "$data/tree/boot"
  local hstate="$data/harness"
  if [ ! -s "$hstate/out/vmlinuz" ]; then CACHE="$hstate/cache" "$HARNESS/build-initramfs.sh" "$hstate/out" >/dev/null; fi
  cp "$hstate/out/vmlinuz" "$data/tree/boot/kernel"; cp "$hstate/out/initrd.img" "$data/tree/boot/initrd"
  xorriso -as mkisofs -R -J -o "$data/site.iso" "$data/tree" 2>/dev/null
  cat > "$data/netboot.yaml" <<YAML
server: {address: 10.99.0.2, interface: br0, http_port: 8080}
boot_once: false
profiles:
  bench:
    source: {iso: site.iso}
    cmdline: console=ttyS0 panic=5 BOOTIF={{ host.bootif }} config_url={{ config_url }} events_url={{ events_url }}
    user_data: "#cloud-config"
hosts:
  - {mac: "52:54:00:12:34:56", profile: bench}
YAML
  local hook="ip netns exec \$NS_SRV $FERRY -q --state $data/state netboot serve -c $data/netboot.yaml >\$RUN/ferry.log 2>&1 &"
  local py=() fe=() i t out
  for i in $(seq "$BOOTS"); do
    out=$(NETBOOT_HARNESS_STATE="$hstate" MODES=proxy "$HARNESS/harness-b.sh" || true)
    t=$(sed -n 's/.*boot-to-poweroff seconds: proxy:\([0-9.]*\).*/\1/p' <<<"$out")
    echo "python http.server + dnsmasq, run $i: ${t:-FAIL} s  $(grep -o 'ipxe@.*' <<<"$out" | head -1)"; py+=("${t:-999}")
    out=$(NETBOOT_HARNESS_STATE="$hstate" MODES=proxy DNSMASQ=0 EXTERNAL_HTTP=1 HOOK="$hook" "$HARNESS/harness-b.sh" || true)
    t=$(sed -n 's/.*boot-to-poweroff seconds: proxy:\([0-9.]*\).*/\1/p' <<<"$out")
    echo "ferry, run $i: ${t:-FAIL} s  $(grep -o 'ipxe@.*' <<<"$out" | head -1)"; fe+=("${t:-999}")
  done
  median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
  echo "boot-to-poweroff median: python $(median "${py[@]}") s, ferry $(median "${fe[@]}") s (load $(cut -d' ' -f1-3 /proc/loadavg))"
}

for part in $PARTS; do
  case $part in http) http_part ;; boot) boot_part ;; *) echo "unknown part $part" >&2; exit 2 ;; esac
done
