#!/bin/sh
# Installs the Debian packages imgbuild needs to build and test, and only the missing ones.
set -eu
pkgs="libarchive-dev libcurl4-openssl-dev libseccomp-dev libssl-dev libcmocka-dev pkg-config
clang clang-format libclang-rt-14-dev mmdebstrap debootstrap git zstd ccache signify-openbsd python3
uidmap arch-test gcc make ca-certificates curl busybox-static libarchive-tools libcap2-bin attr
zlib1g-dev podman skopeo umoci runc pigz
libacl1-dev libxml2-dev liblzma-dev libzstd-dev liblz4-dev libbz2-dev libnghttp2-dev libidn2-dev
libssh2-1-dev libpsl-dev libunistring-dev libbrotli-dev nettle-dev libc6-dev binutils
openmpi-bin python3-mpi4py slurmctld slurmd slurm-client munge iproute2
redis-server redis-tools"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "imgbuild: missing packages:$missing (run 'make deps' as root)" >&2
	exit 1
fi
echo "imgbuild: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
