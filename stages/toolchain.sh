#!/bin/bash
# toolchain.sh — installs gcc/g++ of the manifest's [toolchain] version from the
# image's apt suites, makes them the default gcc/g++/cc/c++ with update-alternatives
# (the seed's gcc-6-beside-gcc-7 dance: CUDA 9.1 refuses gcc 7, CUDA 10.0 gcc 8),
# and installs ccache with its compiler links in /usr/lib/ccache.
# Network stage (apt), unless every package is already in the base.
#
# Reads:  IMGBUILD_GCC          major version, e.g. "6" (required; from [toolchain] gcc)
#         TOOLCHAIN_CCACHE      "1" (default) installs ccache, "0" skips it
#         TOOLCHAIN_PACKAGES    extra apt packages installed in the same step (optional)
# Leaves: /.imgbuild/facts.d/gcc_version (e.g. 6.5.0)
# Later stages get ccache by having /usr/lib/ccache first in [env] PATH; this
# stage only warns when it is not (a stage cannot change the next one's env).
set -euo pipefail
me="toolchain"
die() { echo "$me: $*" >&2; exit 1; }

v=${IMGBUILD_GCC:-}
[ -n "$v" ] || die "IMGBUILD_GCC is not set (add [toolchain] gcc = \"N\" to the manifest)"
case "$v" in *[!0-9.]* | '') die "IMGBUILD_GCC '$v' is not a version number" ;; esac
want_ccache=${TOOLCHAIN_CCACHE:-1}

pkgs="gcc-$v g++-$v"
[ "$want_ccache" = 1 ] && pkgs="$pkgs ccache"
pkgs="$pkgs ${TOOLCHAIN_PACKAGES:-}"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=""
for p in $pkgs; do installed "$p" || missing="$missing $p"; done

if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "apt-get update failed (is this stage network = true?)"
	for p in $missing; do
		cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
		if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
			suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-this suite}")
			die "$suite has no package '$p' (gcc $v is not in the configured suites/components)"
		fi
	done
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing || die "apt-get install$missing failed"
	apt-get clean
fi

for tool in gcc g++; do
	[ -x "/usr/bin/$tool-$v" ] || die "/usr/bin/$tool-$v missing after install"
done

# One alternative group "gcc" with g++ and the gcc helpers as slaves, so they
# always switch together. update-alternatives replaces the plain symlinks that
# the unversioned gcc/g++ packages own (/usr/bin/gcc -> gcc-7).
slaves=(--slave /usr/bin/g++ g++ "/usr/bin/g++-$v")
for t in gcov gcov-dump gcov-tool gcc-ar gcc-nm gcc-ranlib; do
	[ -e "/usr/bin/$t-$v" ] && slaves+=(--slave "/usr/bin/$t" "$t" "/usr/bin/$t-$v")
done
# The x86_64-linux-gnu- triplet names are what cmake and nvcc sometimes pick.
triplet=$(gcc-$v -dumpmachine 2>/dev/null || true)
if [ -n "$triplet" ]; then
	for t in gcc g++; do
		[ -e "/usr/bin/$triplet-$t-$v" ] && slaves+=(--slave "/usr/bin/$triplet-$t" "$triplet-$t" "/usr/bin/$triplet-$t-$v")
	done
fi
update-alternatives --quiet --install /usr/bin/gcc gcc "/usr/bin/gcc-$v" 1000 "${slaves[@]}" ||
	die "update-alternatives --install gcc-$v failed"
update-alternatives --quiet --set gcc "/usr/bin/gcc-$v" || die "update-alternatives --set gcc-$v failed"
update-alternatives --quiet --install /usr/bin/cc cc /usr/bin/gcc 1000
update-alternatives --quiet --set cc /usr/bin/gcc
update-alternatives --quiet --install /usr/bin/c++ c++ /usr/bin/g++ 1000
update-alternatives --quiet --set c++ /usr/bin/g++

major() { "$1" -dumpversion | cut -d. -f1; }
for tool in /usr/bin/gcc /usr/bin/g++ /usr/bin/cc /usr/bin/c++; do
	got=$(major "$tool") || die "$tool does not run"
	[ "$got" = "${v%%.*}" ] || die "$tool is gcc $got after the switch, not $v"
done

if [ "$want_ccache" = 1 ]; then
	command -v update-ccache-symlinks >/dev/null && update-ccache-symlinks
	[ -e /usr/lib/ccache/gcc ] && [ -e /usr/lib/ccache/g++ ] ||
		die "ccache installed but /usr/lib/ccache/gcc or g++ is missing"
	case ":$PATH:" in
	:/usr/lib/ccache:*) ;;
	*) echo "$me: warning: /usr/lib/ccache is not first in PATH; later stages compile without ccache (put it first in [env] PATH)" >&2 ;;
	esac
fi

mkdir -p /.imgbuild/facts.d
full=$(/usr/bin/gcc -dumpfullversion 2>/dev/null || /usr/bin/gcc -dumpversion)
echo "$full" >/.imgbuild/facts.d/gcc_version
note=""
[ "$want_ccache" = 1 ] && note=" (ccache links in /usr/lib/ccache)"
echo "$me: gcc/g++ $full are the defaults$note"
