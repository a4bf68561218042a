#!/usr/bin/env bash
# Builds ferry's release binary: x86-64 Linux, glibc 2.17 and later (RHEL 7,
# Ubuntu 14.04 and every later distribution), stripped, with its sha256:
#
#   scripts/release.sh            # -> dist/ferry-<version>-x86_64-linux-gnu{,.sha256}
#
# The binary is linked against glibc 2.17's symbol versions by zig's C
# toolchain through cargo-zigbuild (target x86_64-unknown-linux-gnu.2.17),
# both from PyPI, pinned below and installed into a virtualenv outside the
# checkout (~/.cache/ferry-release/venv): this machine needs no internet
# but the package registries. Paths of the build machine are remapped out
# of the binary, so the same sources give the same bytes wherever they are
# checked out.
#
# Built: x86_64 (glibc >= 2.17). Not yet: aarch64 (the same command with
# aarch64-unknown-linux-gnu.2.17 once its Rust standard library is installed
# here), musl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ZIGLANG=0.17.1
CARGO_ZIGBUILD=0.24.1
TARGET=x86_64-unknown-linux-gnu
GLIBC=2.17
VENV=${FERRY_RELEASE_VENV:-$HOME/.cache/ferry-release/venv}

if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "ziglang==$ZIGLANG" ||
    ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "cargo-zigbuild==$CARGO_ZIGBUILD"; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q "ziglang==$ZIGLANG" "cargo-zigbuild==$CARGO_ZIGBUILD" >&2
fi
export PATH=$VENV/bin:$PATH

cd "$ROOT"
version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ferry"))')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export RUSTFLAGS="--remap-path-prefix=$ROOT=/ferry --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo ${RUSTFLAGS:-}"
cargo zigbuild --locked --profile dist -p ferry --target "$TARGET.$GLIBC" >&2

mkdir -p dist
out=dist/ferry-$version-x86_64-linux-gnu
cp "$CARGO_TARGET_DIR/$TARGET/dist/ferry" "$out.partial"
mv "$out.partial" "$out"
(cd dist && sha256sum "$(basename "$out")" >"$(basename "$out").sha256")
echo "$ROOT/$out"
