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
#   squashfs  ferry's squashfs writer (examples/squashfs.rs: the rootfs tar
#          applied to a stage, then the writer, then the read-back verify,
#          each phase timed) vs `mksquashfs DIR OUT -comp zstd -b 128K
#          -processors 2 -noappend` on the same rootfs extracted as root
#          (owners, devices, xattrs): same compressor, level (zstd 15,
#          mksquashfs's default and ferry's), block size and processor count.
#          Targets (issue 9): write <= 1.0x mksquashfs's time, size within 1%.
#          The rootfs is $ROOTFS_TAR (default: scripts/test-os.sh's tarball).
#   build  the whole `ferry image build` (every format: squashfs, netboot set,
#          ISO, raw, qcow2, OVA) from a rootfs tarball imported into a fresh
#          state, for each tarball in $BUILD_TARS (default: the test OS, and
#          $ROOTFS_TAR if it is another one): wall time and peak RSS, to show
#          the memory is flat in the rootfs size (target: <= 256 MiB).
#   k8s    the whole Kubernetes node image build (OVA + qcow2 + netboot set)
#          from an imported bundle, as docs/image-kubernetes.md tells it:
#          the test OS, Debian's containerd, runc, CNI plugins and kubectl
#          (kubectl's binary also stands in for kubelet and kubeadm, for
#          their size), and the seven kubeadm images of Kubernetes 1.30.4
#          made as busybox plus incompressible data of their real sizes
#          (about 190 MB in all), preloaded. Wall time, peak RSS, and each
#          step's share (what `ferry image build` prints), so the slowest
#          step is visible.
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

section_squashfs() {
    local ROOTFS_TAR=${ROOTFS_TAR:-$("$ROOT/scripts/test-os.sh")}
    local WORK=${WORK:-/var/tmp/ferry-bench-image}
    local PROCESSORS=${PROCESSORS:-2}
    mkdir -p "$WORK"
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

    for r in $(seq 1 "$ROUNDS"); do
        log "round $r: ferry (apply, write, verify)"
        rm -f "$WORK/ferry.squashfs"
        echo "== ferry round $r" >>"$OUT/commands.log"
        timed "ferry" "$r" "$WORK/ferry.squashfs" "$SQUASHFS" "$ROOTFS_TAR" "$WORK/ferry.squashfs" \
            --stage "$WORK/stage" --processors "$PROCESSORS"
        # The example's own phase times: the writer alone is what mksquashfs does.
        for phase in write verify; do
            secs=$(awk -F'\t' -v p="$phase" '$1==p{v=$2} END{print v}' "$OUT/commands.log")
            printf 'ferry %s\t%s\t%s\t0\t%s\n' "$phase" "$r" "$secs" "$(stat -c %s "$WORK/ferry.squashfs")" >>"$RAW_TSV"
        done
        log "round $r: mksquashfs"
        rm -f "$WORK/mksquashfs.squashfs"
        echo "== mksquashfs round $r" >>"$OUT/commands.log"
        timed "mksquashfs" "$r" "$WORK/mksquashfs.squashfs" mksquashfs "$WORK/rootdir" "$WORK/mksquashfs.squashfs" \
            -comp zstd -b 128K -processors "$PROCESSORS" -noappend -quiet -no-progress
    done

    python3 - "$RAW_TSV" >"$OUT/summary-squashfs.md" <<'PY'
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
    cat "$OUT/summary-squashfs.md"
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

section_build() {
    log "build: the ferry binary (release)"
    (cd "$ROOT" && cargo build --release --locked -p ferry)
    local ferry=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry
    local work=$OUT/build tars=()
    mkdir -p "$work"
    if [ -n "${BUILD_TARS:-}" ]; then
        read -r -a tars <<<"$BUILD_TARS"
    else
        tars=("$("$ROOT/scripts/test-os.sh")")
        [ -n "${ROOTFS_TAR:-}" ] && [ "$ROOTFS_TAR" != "${tars[0]}" ] && tars+=("$ROOTFS_TAR")
    fi
    printf 'name: bench\nbase: os/bench:1\nformats: [squashfs, netboot, iso, raw, qcow2, ova]\n' >"$work/image.yaml"
    local r tar i=0
    for tar in "${tars[@]}"; do
        i=$((i + 1))
        local size_mb
        size_mb=$(( $(stat -c %s "$tar") / 1000000 ))
        for r in $(seq 1 "$ROUNDS"); do
            rm -rf "$work/state" "$work/out"
            "$ferry" -q --state "$work/state" image import "$tar" --tag os/bench:1
            log "build: rootfs $i ($size_mb MB tar), round $r"
            echo "== build rootfs $i round $r" >>"$OUT/commands.log"
            timed "build-$i-${size_mb}MB" "$r" "$work/out/bench.ova" \
                env SOURCE_DATE_EPOCH=1700000000 "$ferry" --state "$work/state" image build -f "$work/image.yaml" -o "$work/out" --json
        done
    done
    rm -rf "$work/state" "$work/out"
    python3 - "$RAW_TSV" >"$OUT/summary-build.md" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]).read().splitlines()[1:]:
    what, _, secs, rss, nbytes = line.split("\t")
    if what.startswith("build-"):
        rows.setdefault(what, []).append((float(secs), int(rss)))
print("| whole build, every format | wall time, median [min-max] | peak RSS, max of rounds | target |")
print("| --- | --- | --- | --- |")
for what, r in rows.items():
    s = [x[0] for x in r]
    print(f"| rootfs {what.split('-', 2)[2]} tar | {statistics.median(s):.1f} s [{min(s):.1f}-{max(s):.1f}] | {max(x[1] for x in r)/1024:.0f} MiB | <= 256 MiB, flat |")
PY
    cat "$OUT/summary-build.md"
}

section_k8s() {
    log "k8s: the ferry binary (release)"
    (cd "$ROOT" && cargo build --release --locked -p ferry)
    local ferry=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry
    local work=$OUT/k8s debs os
    debs=$("$ROOT/scripts/test-k8s-debs.sh")
    os=$("$ROOT/scripts/test-os.sh")
    rm -rf "$work"
    mkdir -p "$work/files" "$work/bin/bin"
    # The components, shaped as their releases ship them, tagged with the
    # versions of the shipped matrix's 1.30.4 row.
    cp "$debs"/root/usr/bin/{containerd,containerd-shim-runc-v2,ctr} "$work/bin/bin/"
    tar -C "$work/bin" -czf "$work/files/containerd-1.7.13-linux-amd64.tar.gz" bin
    cp "$debs/root/usr/sbin/runc" "$work/files/runc"
    tar -C "$debs/root/usr/lib/cni" -czf "$work/files/cni-plugins-linux-amd64-v1.3.0.tgz" .
    for b in kubelet kubeadm kubectl; do cp "$debs/root/usr/bin/kubectl" "$work/files/$b"; done
    printf '#!/bin/sh\necho crictl version v1.28.0\n' >"$work/crictl" && chmod +x "$work/crictl"
    tar -C "$work" -czf "$work/files/crictl-v1.28.0-linux-amd64.tar.gz" crictl
    # The site registry the bundle is made from (images imported into it).
    "$ferry" -q --state "$work/src" image import "$os" --tag os/debian:12
    local name size i=0
    for image in kube-apiserver:v1.30.4:30 kube-controller-manager:v1.30.4:30 kube-scheduler:v1.30.4:20 \
        kube-proxy:v1.30.4:30 coredns/coredns:v1.11.1:15 pause:3.9:1 etcd:3.5.15-0:60; do
        i=$((i + 1))
        name=${image%:*}; size=${image##*:}
        mkdir -p "$work/img/bin"
        cp "$debs/root/bin/busybox" "$work/img/bin/busybox"
        head -c "$((size * 1000000))" /dev/urandom >"$work/img/data"
        tar -C "$work/img" -cf "$work/img.tar" .
        "$ferry" -q --state "$work/src" image import "$work/img.tar" --tag "$name"
        rm -rf "$work/img" "$work/img.tar"
    done
    "$ferry" --state "$work/src" serve --listen 127.0.0.1:0 >"$work/serve.log" 2>&1 &
    local serve=$! addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's|^ferry registry on http://\([^ ]*\).*|\1|p' "$work/serve.log" | head -1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$work/serve.log" >&2; kill "$serve"; exit 1; }
    {
        printf 'hosts:\n  "%s": {plain_http: true}\nimages:\n' "$addr"
        for image in kube-apiserver:v1.30.4 kube-controller-manager:v1.30.4 kube-scheduler:v1.30.4 \
            kube-proxy:v1.30.4 coredns/coredns:v1.11.1 pause:3.9 etcd:3.5.15-0; do
            printf '  - {ref: "%s/%s", repository: "%s"}\n' "$addr" "$image" "${image%:*}"
        done
        printf 'os_images:\n  - ref: %s/os/debian:12\nfiles:\n' "$addr"
        printf '  - {path: files/kubelet, repository: k8s/kubelet, tag: v1.30.4}\n'
        printf '  - {path: files/kubeadm, repository: k8s/kubeadm, tag: v1.30.4}\n'
        printf '  - {path: files/kubectl, repository: k8s/kubectl, tag: v1.30.4}\n'
        printf '  - {path: files/containerd-1.7.13-linux-amd64.tar.gz, repository: k8s/containerd, tag: 1.7.13}\n'
        printf '  - {path: files/runc, repository: k8s/runc, tag: 1.1.12}\n'
        printf '  - {path: files/cni-plugins-linux-amd64-v1.3.0.tgz, repository: k8s/cni-plugins, tag: 1.3.0}\n'
        printf '  - {path: files/crictl-v1.28.0-linux-amd64.tar.gz, repository: k8s/crictl, tag: v1.28.0}\n'
    } >"$work/ferry.yaml"
    (cd "$work" && "$ferry" -q bundle create -f ferry.yaml -o k8s.ferry)
    kill "$serve"; wait "$serve" 2>/dev/null || true
    rm -rf "$work/src"
    cat >"$work/k8s-node.yaml" <<'YAML'
name: k8s-node
base: os/debian:12
registry_mirrors: {registry: "registry.site:5000/mirror"}
kubernetes:
  version: 1.30.4
  components:
    kubelet: {artifact: k8s/kubelet:v1.30.4}
    kubeadm: {artifact: k8s/kubeadm:v1.30.4}
    kubectl: {artifact: k8s/kubectl:v1.30.4}
    containerd: {artifact: k8s/containerd:1.7.13}
    runc: {artifact: k8s/runc:1.1.12}
    cni_plugins: {artifact: k8s/cni-plugins:1.3.0}
    crictl: {artifact: k8s/crictl:v1.28.0}
YAML
    local r
    for r in $(seq 1 "$ROUNDS"); do
        rm -rf "$work/state" "$work/out"
        "$ferry" -q --state "$work/state" bundle import "$work/k8s.ferry"
        log "k8s: node image build (ova, qcow2, netboot), round $r"
        echo "== k8s round $r" >>"$OUT/commands.log"
        timed "k8s-node" "$r" "$work/out/k8s-node.ova" \
            sh -c 'SOURCE_DATE_EPOCH=1700000000 "$1" --state "$2/state" image build -f "$2/k8s-node.yaml" \
                -o "$2/out" --format ova,qcow2,netboot --json >"$2/report-$3.json"' sh "$ferry" "$work" "$r"
    done
    rm -rf "$work/state" "$work/out" "$work/files" "$work/bin" "$work/k8s.ferry" "$work/crictl"
    python3 - "$RAW_TSV" "$work" "$ROUNDS" >"$OUT/summary-k8s.md" <<'PY'
import json, statistics, sys
raw, work, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.split("\t") for l in open(raw).read().splitlines()[1:] if l.startswith("k8s-node\t")]
secs = [float(r[2]) for r in rows]
rss = max(int(r[3]) for r in rows)
steps = {}
for r in range(1, rounds + 1):
    for s in json.load(open(f"{work}/report-{r}.json"))["steps"]:
        steps.setdefault(s["step"], []).append(s["seconds"])
total = sum(statistics.median(v) for v in steps.values())
print("| Kubernetes node image (ova, qcow2, netboot) | wall time, median [min-max] | peak RSS, max of rounds |")
print("| --- | --- | --- |")
print(f"| from an imported bundle | {statistics.median(secs):.1f} s [{min(secs):.1f}-{max(secs):.1f}] | {rss/1024:.0f} MiB |")
print()
print("| step | median | share |")
print("| --- | --- | --- |")
for step, v in sorted(steps.items(), key=lambda kv: -statistics.median(kv[1])):
    print(f"| {step} | {statistics.median(v):.1f} s | {100*statistics.median(v)/total:.0f}% |")
PY
    cat "$OUT/summary-k8s.md"
}

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(squashfs vdisk build k8s)
for section in "${sections[@]}"; do
    "section_$section"
done
log "results in $OUT"
