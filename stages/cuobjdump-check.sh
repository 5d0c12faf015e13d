#!/bin/bash
# cuobjdump-check.sh — lists the GPU code embedded in a CUDA binary with
# cuobjdump and fails unless every arch of the manifest is there as SASS
# (sm_XY cubin), plus PTX for each "+PTX" entry (what lets newer GPUs JIT it).
#
# Reads:  CHECK_BINARY   the binary (default /usr/local/bin/cuda-vector-add)
#         EXPECT_ARCHS   arch list like [stack] archs (default: IMGBUILD_ARCHS,
#                        else "3.0;3.5;5.0;6.1+PTX")
#         CUOBJDUMP      cuobjdump to use (default: on PATH, else /usr/local/cuda/bin/cuobjdump)
# Leaves: /.imgbuild/facts.d/sass_archs ("sm_30 sm_35 ..."), ptx_archs, and
#         ptx_jit = true when PTX is embedded
set -euo pipefail
me="cuobjdump-check"
die() { echo "$me: $*" >&2; exit 1; }

bin=${CHECK_BINARY:-/usr/local/bin/cuda-vector-add}
archs=${EXPECT_ARCHS:-${IMGBUILD_ARCHS:-3.0;3.5;5.0;6.1+PTX}}
[ -f "$bin" ] || die "$bin not found"
tool=${CUOBJDUMP:-}
if [ -z "$tool" ]; then
	if command -v cuobjdump >/dev/null; then tool=cuobjdump
	elif [ -x /usr/local/cuda/bin/cuobjdump ]; then tool=/usr/local/cuda/bin/cuobjdump
	else die "no cuobjdump on PATH or in /usr/local/cuda/bin"; fi
fi

# "ELF file    1: cuda-vector-add.1.sm_30.cubin" / "PTX file    1: cuda-vector-add.1.sm_61.ptx"
elf=$("$tool" --list-elf "$bin" 2>&1) || die "cuobjdump --list-elf $bin failed: $elf"
ptx=$("$tool" --list-ptx "$bin" 2>&1) || ptx=""
sass=$(echo "$elf" | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ' || true)
ptxs=$(echo "$ptx" | grep '^PTX file' | grep -o 'sm_[0-9]*\|compute_[0-9]*' | sed 's/compute_/sm_/' | sort -u | tr '\n' ' ' || true)
echo "$me: $bin: SASS ${sass:-none}; PTX ${ptxs:-none}"

missing=""
want_ptx=0
for a in ${archs//;/ }; do
	p=0
	case "$a" in *+PTX) p=1 a=${a%+PTX} ;; esac
	n=sm_${a/./}
	case " $sass " in *" $n "*) ;; *) missing="$missing $n(SASS)" ;; esac
	if [ "$p" = 1 ]; then
		want_ptx=1
		case " $ptxs " in *" $n "*) ;; *) missing="$missing $n(PTX)" ;; esac
	fi
done
[ -z "$missing" ] || die "$bin lacks:$missing (wanted $archs)"

mkdir -p /.imgbuild/facts.d
echo "${sass% }" >/.imgbuild/facts.d/sass_archs
if [ -n "$ptxs" ]; then
	echo "${ptxs% }" >/.imgbuild/facts.d/ptx_archs
	echo true >/.imgbuild/facts.d/ptx_jit
elif [ "$want_ptx" = 0 ]; then
	echo false >/.imgbuild/facts.d/ptx_jit
fi
echo "$me: all of $archs present"
