#!/usr/bin/env bash
# Debian's packages of the Kubernetes node components the tests carry in a
# bundle (containerd, runc, the CNI plugins, kubectl) and a static busybox
# for the small test images, downloaded (`apt-get download`) and unpacked
# (`dpkg-deb -x`) once, cached outside the checkout and keyed by this
# script and the packages' versions:
#   ~/.cache/ferry-tests/k8s-debs/<key>/root/...    the unpacked files
#   ~/.cache/ferry-tests/k8s-debs/<key>/versions    "package version" lines
# Prints the directory. Debian ships no kubelet, kubeadm or crictl; the
# tests stand in small executables that print their version for those.
set -euo pipefail

PACKAGES="containerd runc containernetworking-plugins kubernetes-client busybox-static"

# shellcheck disable=SC2086
versions=$(apt-cache show --no-all-versions $PACKAGES | grep -E '^(Package|Version):' | paste -d' ' - -)
key=$( (cat "$0"; echo "$versions") | sha256sum | cut -c1-16)
cache=${FERRY_TEST_CACHE:-$HOME/.cache/ferry-tests}/k8s-debs/$key
if [ -e "$cache/versions" ]; then
    echo "$cache"
    exit 0
fi
tmp=$cache.partial
rm -rf "$tmp"
mkdir -p "$tmp/debs" "$tmp/root"
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086
(cd "$tmp/debs" && apt-get download -q $PACKAGES) >&2
for deb in "$tmp"/debs/*.deb; do
    dpkg-deb -x "$deb" "$tmp/root"
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >> "$tmp/versions.partial"
done
rm -rf "$tmp/debs"
mv "$tmp/versions.partial" "$tmp/versions"
mv "$tmp" "$cache"
trap - EXIT
echo "$cache"
