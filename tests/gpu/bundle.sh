#!/usr/bin/env bash
# Makes imgbuild portable to a machine that lacks its libraries (the GPU test machine
# runs Ubuntu 24.04 without libarchive or libseccomp): copies build/imgbuild and every
# shared library it needs, except glibc's own, into OUTDIR, with a wrapper that sets
# LD_LIBRARY_PATH. glibc itself stays the host's: Debian 12 builds need glibc >= 2.36.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: tests/gpu/bundle.sh OUTDIR}
mkdir -p "$out/lib" "$out/bin"
cp build/imgbuild "$out/bin/imgbuild.real"
[ -x build/cuda-probe ] && cp build/cuda-probe "$out/bin/"
ldd build/imgbuild | awk '/=> \// {print $3}' | while read -r lib; do
	case "$(basename "$lib")" in
	libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*) continue ;;
	esac
	cp -L "$lib" "$out/lib/"
done
cat >"$out/bin/imgbuild" <<'WRAP'
#!/bin/sh
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/imgbuild.real" "$@"
WRAP
chmod +x "$out/bin/imgbuild"
du -sh "$out" | awk '{print "bundle: " $1}'
