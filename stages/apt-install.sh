#!/bin/bash
# apt-install.sh — installs Debian/Ubuntu packages from the image's suites
# (network stage), without recommends unless asked, and records the versions.
# Used for Ubuntu's nvidia-cuda-toolkit (its Recommends would pull the driver's
# libcuda1 into the image: never) and Debian's python3-torch.
#
# Reads:  PACKAGES          space-separated package names (required)
#         APT_RECOMMENDS    "1" installs recommended packages too (default "0")
# Leaves: /.imgbuild/lock.d/apt-STAGE.txt ("name version" of each requested package)
set -euo pipefail
me="apt-install"
die() { echo "$me: $*" >&2; exit 1; }

pkgs=${PACKAGES:-}
[ -n "${pkgs// /}" ] || die "PACKAGES is empty"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || die "apt-get update failed (is this stage network = true?)"
for p in $pkgs; do
	cand=$(apt-cache policy "${p%%=*}" 2>/dev/null | awk '/Candidate:/ {print $2}')
	[ -n "$cand" ] && [ "$cand" != "(none)" ] || die "no package '${p%%=*}' in the configured suites/components"
done
rec=--no-install-recommends
[ "${APT_RECOMMENDS:-0}" = 1 ] && rec=--install-recommends
# shellcheck disable=SC2086
apt-get install -y -q $rec $pkgs || die "apt-get install $pkgs failed"
apt-get clean
mkdir -p /.imgbuild/lock.d
for p in $pkgs; do
	dpkg-query -W -f='${Package} ${Version}\n' "${p%%=*}"
done >"/.imgbuild/lock.d/apt-${IMGBUILD_STAGE:-apt-install}.txt"
echo "$me: installed $(tr '\n' ' ' <"/.imgbuild/lock.d/apt-${IMGBUILD_STAGE:-apt-install}.txt")"
