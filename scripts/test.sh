#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust installed:
# installs the Debian packages and the Python packages the tests use, then
# checks formatting and lints, then runs every test. `.ci/run` calls exactly
# this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s\n' "$*"; }

log "Debian packages (scripts/debian-packages.txt)"
mapfile -t wanted < <(grep -v '^\s*#' scripts/debian-packages.txt | sed '/^\s*$/d' | sort -u)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "all ${#wanted[@]} installed"
fi

log "Python packages (scripts/python-requirements.txt) in target/test-venv"
venv=$PWD/target/test-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/python-requirements.txt
export FERRY_TEST_PYTHON=$venv/bin/python

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

log "cargo test"
cargo test --locked --workspace --no-fail-fast

log "all tests passed"
