#!/usr/bin/env bash
# Builds the real OS the image tests boot: a Debian 12 root filesystem
# (mmdebstrap) with a kernel, systemd, live-boot and GRUB for BIOS and
# UEFI, as a tarball for `ferry image import`. Slow (minutes, network), so
# it is cached outside the checkout, keyed by this script's content:
#   ~/.cache/ferry-tests/os/<key>/rootfs.tar
# Prints the tarball's path. Needs root (mmdebstrap's root mode).
#
# To keep QEMU boots under TCG short, the kernel keeps only the module
# directories a VM needs and the initramfs lists its modules
# (MODULES=list) instead of carrying most of them.
set -euo pipefail

PACKAGES=linux-image-amd64,systemd,systemd-sysv,udev,live-boot,grub-pc-bin,grub-efi-amd64-bin,busybox,iputils-ping,ca-certificates,openssh-server,dbus
MIRROR=${FERRY_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

key=$( (cat "$0"; echo "$MIRROR $SUITE") | sha256sum | cut -c1-16)
cache=${FERRY_TEST_CACHE:-$HOME/.cache/ferry-tests}/os/debian-12-$key
if [ -s "$cache/rootfs.tar" ]; then
    echo "$cache/rootfs.tar"
    exit 0
fi
mkdir -p "$cache"
command -v mmdebstrap >/dev/null || {
    echo "test-os.sh: mmdebstrap is missing (apt-get install mmdebstrap)" >&2
    exit 1
}
tmp=$cache/rootfs.tar.partial
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT

# Kernel module directories a QEMU/vSphere VM needs; the rest is dropped.
# kernel/block holds t10-pi, without which sd_mod (USB sticks, SCSI disks)
# does not load.
keep_modules='kernel/fs kernel/lib kernel/crypto kernel/arch kernel/block kernel/drivers/block kernel/drivers/scsi kernel/drivers/ata kernel/drivers/cdrom kernel/drivers/virtio kernel/drivers/net/virtio_net.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/ethernet/intel kernel/drivers/net/vmxnet3 kernel/drivers/usb/storage kernel/drivers/usb/host kernel/drivers/usb/core kernel/drivers/usb/common kernel/drivers/message kernel/drivers/firmware kernel/drivers/char kernel/drivers/input kernel/drivers/hid kernel/drivers/md kernel/net/core kernel/net/ipv4 kernel/net/ipv6 kernel/net/packet kernel/net/unix kernel/net/netfilter kernel/net/bridge kernel/net/802 kernel/net/llc kernel/drivers/nvme kernel/drivers/tty'

SOURCE_DATE_EPOCH=1700000000 mmdebstrap --mode=root --variant=minbase --format=tar \
    --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='
        set -e
        for k in "$1"/usr/lib/modules/*; do
            v=$(basename "$k")
            mkdir "$1/tmp/keep"
            for m in '"$keep_modules"'; do
                [ -e "$k/$m" ] || continue
                mkdir -p "$1/tmp/keep/$(dirname "$m")"
                mv "$k/$m" "$1/tmp/keep/$m"
            done
            rm -rf "$k/kernel"
            mv "$1/tmp/keep/kernel" "$k/kernel"
            rmdir "$1/tmp/keep"
            chroot "$1" depmod "$v"
        done
        printf "MODULES=list\nCOMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/ferry-test.conf"
        printf "%s\n" virtio_pci virtio_blk virtio_scsi virtio_net sd_mod sr_mod cdrom isofs \
            squashfs overlay loop ext4 vfat nls_cp437 nls_ascii nls_utf8 ata_piix ata_generic ahci \
            ehci_pci uhci_hcd xhci_pci usb_storage uas e1000 e1000e vmxnet3 vmw_pvscsi mptspi mptsas sym53c8xx \
            > "$1/etc/initramfs-tools/modules"
        chroot "$1" update-initramfs -u -k all
        rm -f "$1"/etc/ssh/ssh_host_*
    ' \
    "$SUITE" "$tmp" "$MIRROR" >&2
mv "$tmp" "$cache/rootfs.tar"
trap - EXIT
echo "$cache/rootfs.tar"
