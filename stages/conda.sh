#!/bin/bash
# conda.sh — installs the pinned Miniconda/Anaconda installer in batch mode
# (bash installer -b -p PREFIX), then the manifest's conda packages, and locks
# what was installed: `conda list --explicit --md5` into
# /.imgbuild/lock.d/conda-explicit.txt (re-installable with `conda create --file`).
#
# Reads:  CONDA_INPUT      name of the installer download (default "conda")
#         CONDA_PREFIX     install folder (default /opt/conda)
#         CONDA_PACKAGES   space-separated specs, e.g. "numpy=1.17 pyyaml magma-cuda100=2.5.2"
#         CONDA_CHANNELS   space-separated channels, in priority order, e.g. "pytorch defaults"
#                          or file:///... local channels; when set, only these are used
#                          (--override-channels); when empty, the installer's defaults
#         CONDA_LOCAL_CHANNELS  input names (a folder, or a tarball of one, holding
#                          linux-64/ and noarch/) used as file:// channels ahead of
#                          CONDA_CHANNELS: a pinned, offline package set
#         CONDA_OFFLINE    "1": pass --offline (local channels only, no network)
#         CONDA_CLEAN      "1" (default): conda clean -afy afterwards (smaller image)
#         CONDA_PYTHON_CHECK "fail" (default) | "warn" | "off": compare the installed
#                          python's X.Y with IMGBUILD_PYTHON ([stack] python)
# Network stage unless CONDA_OFFLINE=1.
# Leaves: /.imgbuild/lock.d/conda-explicit.txt, /.imgbuild/facts.d/python_version
set -euo pipefail
me="conda"
die() { echo "$me: $*" >&2; exit 1; }

inputs=${IMGBUILD_INPUTS:-/imgbuild/inputs}
installer=$inputs/${CONDA_INPUT:-conda}
prefix=${CONDA_PREFIX:-/opt/conda}
[ -f "$installer" ] || die "installer input '${CONDA_INPUT:-conda}' not found at $installer"
conda=$prefix/bin/conda

if [ -x "$conda" ]; then
	echo "$me: $prefix already holds conda (a retry): not reinstalling"
else
	[ ! -e "$prefix" ] || [ -z "$(ls -A "$prefix" 2>/dev/null)" ] ||
		die "$prefix exists and is not a conda install; refusing to install over it"
	rmdir "$prefix" 2>/dev/null || true
	bash "$installer" -b -p "$prefix" || die "installer $(basename "$installer") -b -p $prefix failed"
	[ -x "$conda" ] || die "no $conda after the installer ran"
fi

args=(-y)
chans=()
for name in ${CONDA_LOCAL_CHANNELS:-}; do
	in=$inputs/$name
	if [ -d "$in" ]; then
		chans+=("file://$in")
	elif [ -f "$in" ]; then
		dir=${IMGBUILD_WORK:-/imgbuild/work}/channels/$name
		rm -rf "$dir" && mkdir -p "$dir"
		tar -xf "$in" -C "$dir" --no-same-owner || die "cannot unpack channel $in"
		# One top folder (channel/linux-64/...) is the channel itself.
		[ -d "$dir/linux-64" ] || [ -d "$dir/noarch" ] || dir=$(find "$dir" -mindepth 2 -maxdepth 2 -type d \( -name linux-64 -o -name noarch \) -printf '%h\n' | head -n 1)
		[ -n "$dir" ] || die "channel input '$name' has no linux-64/ or noarch/"
		chans+=("file://$dir")
	else
		die "channel input '$name' not found at $in"
	fi
done
[ "${CONDA_OFFLINE:-0}" = 1 ] && args+=(--offline)
for c in ${CONDA_CHANNELS:-}; do chans+=("$c"); done
if [ ${#chans[@]} -gt 0 ]; then
	args+=(--override-channels)
	for c in "${chans[@]}"; do args+=(-c "$c"); done
fi
packages=${CONDA_PACKAGES:-}
if [ -n "${packages// /}" ]; then
	# shellcheck disable=SC2086
	"$conda" install "${args[@]}" $packages || die "conda install $packages failed"
fi

mkdir -p /.imgbuild/lock.d /.imgbuild/facts.d
"$conda" list --explicit --md5 >/.imgbuild/lock.d/conda-explicit.txt || die "conda list --explicit --md5 failed"
grep -q '^@EXPLICIT' /.imgbuild/lock.d/conda-explicit.txt || die "conda list --explicit printed no @EXPLICIT list"
# Every requested package must be in the lock (a spec conda silently skipped is a bug).
for spec in $packages; do
	name=${spec%%[=<> ]*}
	name=${name##*::}
	"$conda" list --explicit | grep -q "/$name-[0-9]" || die "package '$name' is not in conda list --explicit after the install"
done

pyver=$("$prefix/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') ||
	die "$prefix/bin/python does not run"
echo "$pyver" >/.imgbuild/facts.d/python_version
if [ -n "${IMGBUILD_PYTHON:-}" ]; then
	case "$pyver" in
	"$IMGBUILD_PYTHON" | "$IMGBUILD_PYTHON".*) ;;
	*)
		msg="$prefix/bin/python is $pyver, the manifest says python $IMGBUILD_PYTHON"
		case "${CONDA_PYTHON_CHECK:-fail}" in
		fail) die "$msg (pick the installer that ships it)" ;;
		warn) echo "$me: warning: $msg" >&2 ;;
		esac ;;
	esac
fi
if [ "${CONDA_CLEAN:-1}" = 1 ]; then
	"$conda" clean -afy >/dev/null || echo "$me: warning: conda clean failed" >&2
fi
n=$(grep -cE '^[a-z]+:' /.imgbuild/lock.d/conda-explicit.txt || true)
echo "$me: conda in $prefix, python $pyver, $n packages locked in /.imgbuild/lock.d/conda-explicit.txt"
