#!/usr/bin/env bash
# The stage recipes (stages/*.sh), tested without the engine: each runs the way
# the engine runs a stage (script at /imgbuild/stage.sh, read-only inputs under
# /imgbuild/inputs, /imgbuild/work, /imgbuild/ccache, a clean environment) in a
# Debian bookworm minbase root, on an overlay per scenario, against the fixtures
# of tests/fixtures/make-fixtures.sh. All mounts are made inside
# `unshare --mount --pid --fork`, never in the host's namespace.
# The bookworm root is cached in $IMGBUILD_TEST_CACHE (default /var/cache/imgbuild-test).
source "$(dirname "$0")/../lib.sh"
require_root
for t in unshare chroot mmdebstrap; do
	command -v $t >/dev/null || { skip "no $t"; finish; }
done

# ---------------------------------------------------------------- the root
pkgs="python3,python3-setuptools,gcc,g++,make,ccache,file"
cache=${IMGBUILD_TEST_CACHE:-/var/cache/imgbuild-test}
mkdir -p "$cache"
key=$(echo "bookworm minbase $pkgs" | sha256sum | cut -c1-12)
roottar=$cache/recipes-root-$key-$(date -u +%Y%m%d).tar
if [ ! -f "$roottar" ]; then
	find "$cache" -maxdepth 1 -name "recipes-root-$key-*.tar" -type f -delete
	diag "bootstrapping the bookworm root (cached in $roottar)"
	# The .tar suffix tells mmdebstrap to make a tarball: the temporary name must keep it.
	rm -rf --one-file-system "$roottar.tmp" "$roottar.tmp.tar"
	unshare --mount --propagation private mmdebstrap --quiet --variant=minbase --include="$pkgs" bookworm "$roottar.tmp.tar" >"$TMP/mmdebstrap.log" 2>&1 ||
		{ tail -n 20 "$TMP/mmdebstrap.log" | sed 's/^/# /'; not_ok "mmdebstrap bookworm"; finish; }
	mv "$roottar.tmp.tar" "$roottar"
fi
BASE=$TMP/base
mkdir -p "$BASE"
tar -xf "$roottar" -C "$BASE"
cp /etc/resolv.conf "$BASE/etc/resolv.conf" 2>/dev/null || true
ok "bookworm minbase root with $pkgs"

FX=$TMP/fixtures
bash "$REPO/tests/fixtures/make-fixtures.sh" "$FX" >/dev/null
source "$FX/fixtures.env"
ok "fixtures generated"

# run_stage IMAGE SCRIPT INPUTDIR [VAR=VALUE...]: runs SCRIPT as a stage on the
# overlay IMAGE (created on first use; later stages of the same IMAGE see what
# earlier ones left). RO_VARLOG=1 mounts a read-only /var/log.
RUNNER='
set -e
base=$1 img=$2 script=$3 inputs=$4 work=$5 ccache=$6
shift 6
root=$img/root
mount -t overlay overlay -o "lowerdir=$base,upperdir=$img/upper,workdir=$img/ovlwork" "$root"
mkdir -p "$root/imgbuild/inputs" "$root/imgbuild/work" "$root/imgbuild/ccache"
touch "$root/imgbuild/stage.sh"
mount --bind "$inputs" "$root/imgbuild/inputs"
mount -o remount,bind,ro "$root/imgbuild/inputs"
mount --bind "$script" "$root/imgbuild/stage.sh"
mount -o remount,bind,ro "$root/imgbuild/stage.sh"
mount --bind "$work" "$root/imgbuild/work"
mount --bind "$ccache" "$root/imgbuild/ccache"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
if [ "${RO_VARLOG:-0}" = 1 ]; then mount -t tmpfs -o ro tmpfs "$root/var/log"; fi
exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root TZ=UTC LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH=1577836800 IMGBUILD_STAGE=test \
	IMGBUILD_INPUTS=/imgbuild/inputs IMGBUILD_WORK=/imgbuild/work CCACHE_DIR=/imgbuild/ccache \
	"$@" /bin/bash /imgbuild/stage.sh
'
run_stage() {
	local image=$1 script=$2 inputs=$3
	shift 3
	local img=$TMP/img/$image
	mkdir -p "$img/upper" "$img/ovlwork" "$img/root" "$img/work" "$TMP/ccache"
	unshare --mount --pid --fork --propagation private bash -c "$RUNNER" runner \
		"$BASE" "$img" "$script" "$inputs" "$img/work" "$TMP/ccache" "$@"
}
run_stage_ro() { RO_VARLOG=1 run_stage "$@"; }
S=$REPO/stages
up() { echo "$TMP/img/$1/upper"; }	# what a stage left, seen from the host
inputs() {	# inputs NAME=PATH...: a fresh input folder (copies)
	local d
	d=$(mktemp -d "$TMP/inputs.XXXX")
	for kv in "$@"; do cp -a "${kv#*=}" "$d/${kv%%=*}"; done
	echo "$d"
}
clone() { git -c protocol.file.allow=always -c advice.detachedHead=false clone -q --recurse-submodules -b "$2" "$1" "$3"; }

# ---------------------------------------------------------------- static checks
bad=""
for f in "$S"/*.sh; do
	bash -n "$f" || bad="$bad $(basename "$f")(syntax)"
	[ "$(head -n 1 "$f")" = "#!/bin/bash" ] || bad="$bad $(basename "$f")(shebang)"
	grep -q '^set -euo pipefail$' "$f" || bad="$bad $(basename "$f")(set -euo pipefail)"
done
check "every stage: #!/bin/bash, set -euo pipefail, valid syntax${bad:+ -$bad}" test -z "$bad"
gcc -std=gnu11 -Wall -Wextra -Werror -O2 -o "$TMP/cuda-probe" "$REPO/tests/gpu/cuda-probe.c" -ldl
check_fails "cuda-probe without a driver: exit 2, libcuda.so.1 not found" 2 'libcuda.so.1 not found' env LD_LIBRARY_PATH=/nonexistent "$TMP/cuda-probe"

# ---------------------------------------------------------------- CUDA runfile
run10=$FX/cuda_10.0.130_410.48_fixture_linux.run
run92=$FX/cuda_9.2.148_396.37_fixture_linux.run
sh_in_root() { printf '#!/bin/bash\nset -euo pipefail\n%s\n' "$2" >"$TMP/sh-$1.sh"; echo "$TMP/sh-$1.sh"; }
in10=$(inputs cuda="$run10")
check_fails "fixture runfile refuses --driver" 3 'REFUSED: --driver' \
	run_stage rf "$(sh_in_root drv 'sh /imgbuild/inputs/cuda --silent --driver --toolkit')" "$in10"
check_fails "fixture runfile refuses a silent install without --toolkit" 3 'REFUSED: a silent install without --toolkit' \
	run_stage rf "$(sh_in_root notk 'sh /imgbuild/inputs/cuda --silent --override')" "$in10"
check_fails "fixture runfile refuses gcc 12 for CUDA 10.0 without --override" 7 'Unsupported compiler gcc 12' \
	run_stage rf "$(sh_in_root novr 'sh /imgbuild/inputs/cuda --silent --toolkit')" "$in10"
check_fails "cuda-runfile.sh: read-only /var/log fails clearly" 1 '/var/log is not writable' \
	run_stage_ro rf-ro "$S/cuda-runfile.sh" "$in10" IMGBUILD_CUDA=10.0
check_fails "cuda-runfile.sh: runfile 10.0 for [stack] cuda 9.2 fails" 1 "expected release 9.2" \
	run_stage rf-wrong "$S/cuda-runfile.sh" "$in10" IMGBUILD_CUDA=9.2
check_fails "cuda-runfile.sh refuses CUDA_RUNFILE_EXTRA=--driver" 1 "refusing to install the driver" \
	run_stage rf-drv "$S/cuda-runfile.sh" "$in10" IMGBUILD_CUDA=10.0 CUDA_RUNFILE_EXTRA=--driver

check "cuda-runfile.sh installs CUDA 10.0 toolkit-only (--silent --toolkit --toolkitpath --override)" \
	run_stage cu10 "$S/cuda-runfile.sh" "$in10" IMGBUILD_CUDA=10.0
u=$(up cu10)
check "  /usr/local/cuda -> cuda-10.0, nvcc, stub libcuda.so, cuda.h" bash -c "
	[ \"\$(readlink $u/usr/local/cuda)\" = /usr/local/cuda-10.0 ] && [ -x $u/usr/local/cuda-10.0/bin/nvcc ] &&
	[ -f $u/usr/local/cuda-10.0/lib64/stubs/libcuda.so ] && [ -f $u/usr/local/cuda-10.0/include/cuda.h ]"
check "  fact cuda_version = 10.0.130, installer logs removed, no libcuda.so.1 anywhere" bash -c "
	[ \"\$(cat $u/.imgbuild/facts.d/cuda_version)\" = 10.0.130 ] && [ ! -e $u/var/log/cuda-installer.log ] &&
	[ -z \"\$(find $u -name 'libcuda.so.1*')\" ]"
in92=$(inputs cuda="$run92")
check "cuda-runfile.sh installs CUDA 9.2 with the 9.x single-dash flags" \
	run_stage cu92 "$S/cuda-runfile.sh" "$in92" IMGBUILD_CUDA=9.2 CUDA_RUNFILE_STYLE=single
check "  /usr/local/cuda -> cuda-9.2" test "$(readlink "$(up cu92)/usr/local/cuda")" = /usr/local/cuda-9.2
check "stub libcuda.so links a build (LIBRARY_PATH=/usr/local/cuda/lib64/stubs)" run_stage cu10 \
	"$(sh_in_root link 'printf "int cuInit(unsigned);\nint main(void){return cuInit(0)==100?0:1;}\n" >/tmp/l.c
gcc -o /tmp/l /tmp/l.c -lcuda && ! /tmp/l 2>/dev/null')" "$in10" LIBRARY_PATH=/usr/local/cuda/lib64/stubs

# ---------------------------------------------------------------- cuDNN
incd=$(inputs cudnn="$FX/cudnn-10.0-linux-x64-v7.6.5.32.tgz")
check "cudnn.sh copies cuDNN 7.6.5 into the CUDA tree" run_stage cu10 "$S/cudnn.sh" "$incd" IMGBUILD_CUDNN=7.6.5
u=$(up cu10)/usr/local/cuda-10.0
check "  ALL headers (cudnn.h + cudnn_fixture_extra.h), libs with links, root-owned, world-readable" bash -c "
	[ -f $u/include/cudnn.h ] && [ -f $u/include/cudnn_fixture_extra.h ] &&
	[ \"\$(readlink $u/lib64/libcudnn.so)\" = libcudnn.so.7 ] && [ -f $u/lib64/libcudnn.so.7.6.5 ] &&
	[ -f $u/lib64/libcudnn_static.a ] &&
	[ \"\$(stat -c %u:%g:%a $u/include/cudnn_fixture_extra.h)\" = 0:0:644 ] &&
	[ \"\$(stat -c %u:%a $u/lib64/libcudnn.so.7.6.5)\" = 0:644 ] &&
	[ \"\$(cat $(up cu10)/.imgbuild/facts.d/cudnn_version)\" = 7.6.5 ]"
check_fails "cudnn.sh: 7.6.5 tarball for [stack] cudnn 7.6.4 fails" 1 "is cuDNN 7.6.5, the manifest says 7.6.4" \
	run_stage cu92 "$S/cudnn.sh" "$incd" IMGBUILD_CUDNN=7.6.4

# ---------------------------------------------------------------- env
check "env.sh writes PROFILE_VARS to /etc/profile.d/imgbuild.sh" run_stage cu10 "$S/env.sh" "$in10" \
	PROFILE_VARS="CUDA_HOME PATH LD_LIBRARY_PATH ODD" CUDA_HOME=/usr/local/cuda \
	PATH=/usr/local/cuda/bin:/usr/bin:/bin LD_LIBRARY_PATH=/usr/local/cuda/lib64 "ODD=it's \$HOME"
check "  sh reads it back exactly" bash -c "
	[ \"\$(env -i sh -c '. $(up cu10)/etc/profile.d/imgbuild.sh; printf %s:%s \"\$CUDA_HOME\" \"\$ODD\"')\" = \"/usr/local/cuda:it's \\\$HOME\" ]"
check_fails "env.sh refuses a stubs folder in LD_LIBRARY_PATH" 1 "names a stubs folder" \
	run_stage envbad "$S/env.sh" "$in10" PROFILE_VARS=LD_LIBRARY_PATH LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs
check_fails "env.sh: a PROFILE_VARS name that is not set fails" 1 "MISSING, which is not set" \
	run_stage envbad "$S/env.sh" "$in10" PROFILE_VARS=MISSING

# ---------------------------------------------------------------- conda
inco=$(inputs conda="$FX/Miniconda3-fixture-Linux-x86_64.sh" channel="$FX/conda-channel.tar")
check "conda.sh: batch install + packages from a local channel tarball, offline" run_stage cu10 "$S/conda.sh" "$inco" \
	CONDA_PREFIX=/opt/conda CONDA_PACKAGES="numpy pyyaml magma-cuda100=2.5.2" CONDA_LOCAL_CHANNELS=channel \
	CONDA_OFFLINE=1 IMGBUILD_PYTHON=3.7 CONDA_PYTHON_CHECK=warn
lock=$(up cu10)/.imgbuild/lock.d/conda-explicit.txt
check "  /.imgbuild/lock.d/conda-explicit.txt: @EXPLICIT, each package with #md5" bash -c "
	grep -q '^@EXPLICIT' $lock && grep -qE '/magma-cuda100-2.5.2-fixture_0.tar.bz2#[0-9a-f]{32}\$' $lock &&
	grep -qE '/numpy-1.18.1-fixture_0.tar.bz2#[0-9a-f]{32}\$' $lock && grep -q '/python-' $lock"
check_fails "conda.sh: a package missing from the channels fails" 1 "PackagesNotFoundError|conda install .* failed" \
	run_stage conda2 "$S/conda.sh" "$inco" CONDA_PACKAGES="no-such-pkg" CONDA_LOCAL_CHANNELS=channel CONDA_OFFLINE=1
check_fails "conda.sh: python X.Y differing from [stack] python fails by default" 1 "the manifest says python 3.7" \
	run_stage conda3 "$S/conda.sh" "$inco" CONDA_PACKAGES="numpy" CONDA_LOCAL_CHANNELS=channel CONDA_OFFLINE=1 IMGBUILD_PYTHON=3.7

# ---------------------------------------------------------------- python-project: torch + vision
clone "$FX/git/torch.git" v1.4.0 "$TMP/torch-src"
clone "$FX/git/vision.git" v0.5.0 "$TMP/vision-src"
inpy=$(inputs torch="$TMP/torch-src" vision="$TMP/vision-src")
ccpath=/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
archs="3.5;5.0;6.1+PTX"
check "python-project.sh builds the torch fixture from a source folder (USE_CUDA, arch list, ccache)" \
	run_stage cu10 "$S/python-project.sh" "$inpy" SOURCE=torch PATH="$ccpath" IMGBUILD_CUDA=10.0 IMGBUILD_CUDNN=7.6.5 \
	IMGBUILD_ARCHS="$archs" IMGBUILD_TORCH=1.4.0 MAX_JOBS=2
f=$(up cu10)/.imgbuild/facts.d
check "  facts torch_version 1.4.0, torch_commit = the tag's, torch_archs" bash -c "
	[ \"\$(cat $f/torch_version)\" = 1.4.0 ] && [ \"\$(cat $f/torch_commit)\" = $TORCH_COMMIT ] &&
	[ \"\$(cat $f/torch_archs)\" = '$archs' ]"
check "  torch.version.cuda = 10.0 and the arch list came from IMGBUILD_ARCHS" run_stage cu10 \
	"$(sh_in_root tv 'cd / && python3 -c "import torch; assert torch.version.cuda == \"10.0\", torch.version.cuda; assert torch.cuda.get_arch_list() == [\"sm_35\",\"sm_50\",\"sm_61\",\"compute_61\"], torch.cuda.get_arch_list()"')" "$inpy"
check "  the C extension went through ccache" bash -c "[ -n \"\$(find $TMP/ccache -type f -name '*[RM]' 2>/dev/null | head -n 1)\" ] || [ \"\$(find $TMP/ccache -type f | wc -l)\" -gt 2 ]"
check "  the source input stayed untouched (built in /imgbuild/work/src)" test ! -e "$inpy/torch/build"

check "python-project.sh builds vision with PROTECT_PACKAGE=torch (torch untouched)" \
	run_stage cu10 "$S/python-project.sh" "$inpy" SOURCE=vision PACKAGE=torchvision PROTECT_PACKAGE=torch \
	PATH="$ccpath" IMGBUILD_CUDA=10.0 IMGBUILD_ARCHS="$archs" IMGBUILD_TORCHVISION=0.5.0
cp -a "$TMP/img/cu10" "$TMP/img/cu10-copy"
check_fails "vision that replaces torch is caught: the stage fails loudly" 1 "REPLACED OR CHANGED torch" \
	run_stage cu10-copy "$S/python-project.sh" "$inpy" SOURCE=vision PACKAGE=torchvision PROTECT_PACKAGE=torch \
	IMGBUILD_CUDA=10.0 IMGBUILD_ARCHS="$archs" FIXTURE_VISION_REPLACES_TORCH=1
check_fails "vision that replaces torch is still caught on the retry (the first snapshot is kept)" 1 "REPLACED OR CHANGED torch" \
	run_stage cu10-copy "$S/python-project.sh" "$inpy" SOURCE=vision PACKAGE=torchvision PROTECT_PACKAGE=torch \
	IMGBUILD_CUDA=10.0 IMGBUILD_ARCHS="$archs" FIXTURE_VISION_REPLACES_TORCH=1
check "check.sh: torch + vision import, versions, CUDA 10.0, archs; no GPU so GPU part skipped" \
	run_stage cu10 "$S/check.sh" "$inpy" IMGBUILD_CUDA=10.0
check_fails "check.sh: torch.version.cuda 10.0 in a [stack] cuda 9.2 image fails" 1 "torch.version.cuda is 10.0, the manifest says 9.2" \
	run_stage cu10 "$S/check.sh" "$inpy" IMGBUILD_CUDA=9.2
check_fails "check.sh: CHECK_REQUIRE_GPU=1 without a GPU fails" 1 "no GPU driver bound" \
	run_stage cu10 "$S/check.sh" "$inpy" CHECK_REQUIRE_GPU=1
check_fails "python-project.sh: USE_CUDA without any arch list refuses to guess" 1 "neither TORCH_CUDA_ARCH_LIST nor \[stack\] archs" \
	run_stage nocuda "$S/python-project.sh" "$inpy" SOURCE=torch IMGBUILD_CUDA=10.0

# retry: the first install fails half-way; the engine's clean (cwd /imgbuild/work/src) then the retry
cleanscript=$(sh_in_root clean 'cd /imgbuild/work/src && python3 setup.py clean')
check_fails "retry: first attempt fails (FIXTURE_FAIL_ONCE)" 1 "failing on purpose" \
	run_stage retry "$S/python-project.sh" "$inpy" SOURCE=torch FIXTURE_FAIL_ONCE=/imgbuild/work/failed-once
check "retry: the stage's clean (python setup.py clean in /imgbuild/work/src) runs" run_stage retry "$cleanscript" "$inpy"
check "retry: the second attempt succeeds" \
	run_stage retry "$S/python-project.sh" "$inpy" SOURCE=torch FIXTURE_FAIL_ONCE=/imgbuild/work/failed-once
check_fails "retry without the engine's clean: first attempt fails" 1 "failing on purpose" \
	run_stage retry2 "$S/python-project.sh" "$inpy" SOURCE=torch FIXTURE_FAIL_ONCE=/imgbuild/work/failed-once
check "retry without the engine's clean: the recipe cleans the old tree itself and succeeds" \
	run_stage retry2 "$S/python-project.sh" "$inpy" SOURCE=torch FIXTURE_FAIL_ONCE=/imgbuild/work/failed-once
check_fails "a stale build/ is refused by the fixture (proves the clean matters)" 1 "stale build/" \
	run_stage retry3 "$(sh_in_root stale 'mkdir -p /tmp/s && cp -a /imgbuild/inputs/torch/. /tmp/s/ && mkdir -p /tmp/s/build && touch /tmp/s/build/PARTIAL && cd /tmp/s && python3 setup.py install')" "$inpy"

# tarball input (like the Debian pool's pytorch-vision_0.21.0.orig.tar.gz: one top folder)
(cd "$TMP/vision-src" && tar --exclude=.git -czf "$TMP/vision-0.5.0.tar.gz" --transform 's,^\.,vision-0.5.0,' .)
intar=$(inputs vision-tarball="$TMP/vision-0.5.0.tar.gz")
cp -a "$TMP/img/cu10" "$TMP/img/tarball"
check "python-project.sh builds from a tarball input (top folder unwrapped), CPU-only, torch protected" \
	run_stage tarball "$S/python-project.sh" "$intar" SOURCE=vision-tarball PACKAGE=torchvision \
	PYTHON=python3 EXPECT_VERSION=0.5.0 PROTECT_PACKAGE=torch
check "  fact torchvision_source_sha256 = the tarball's" test \
	"$(cat "$(up tarball)/.imgbuild/facts.d/torchvision_source_sha256")" = "$(sha256sum <"$TMP/vision-0.5.0.tar.gz" | cut -d' ' -f1)"

# ---------------------------------------------------------------- nvcc-probe / cuobjdump-check (fake tools)
# The real tools were exercised on a GPU machine; here: the flags and the parsing.
mkdir -p "$TMP/fakebin"
cat >"$TMP/fakebin/nvcc" <<'SH'
#!/bin/sh
[ "$1" = --version ] && { echo "Cuda compilation tools, release 9.1, V9.1.85"; exit 0; }
echo "$*" >/imgbuild/work/nvcc-args
while [ $# -gt 0 ]; do [ "$1" = -o ] && { echo fake >"$2"; }; shift; done
SH
cat >"$TMP/fakebin/cuobjdump" <<'SH'
#!/bin/sh
case "$1" in
--list-elf) for a in ${FAKE_SASS:-30 35 50 61}; do echo "ELF file    1: cuda-vector-add.1.sm_$a.cubin"; done ;;
--list-ptx) for a in ${FAKE_PTX:-61}; do echo "PTX file    1: cuda-vector-add.1.sm_$a.ptx"; done ;;
esac
SH
chmod +x "$TMP/fakebin/"*
infb=$(inputs nvcc="$TMP/fakebin/nvcc" cuobjdump="$TMP/fakebin/cuobjdump" cuda-probe.c="$REPO/tests/gpu/cuda-probe.c")
check "nvcc-probe.sh: gencode for 3.0;3.5;5.0;6.1+PTX, -cudart static" run_stage probe "$S/nvcc-probe.sh" "$infb" \
	NVCC=/imgbuild/inputs/nvcc IMGBUILD_ARCHS="3.0;3.5;5.0;6.1+PTX"
check "  the flags nvcc got" grep -q -- '-cudart static -gencode=arch=compute_30,code=sm_30 -gencode=arch=compute_35,code=sm_35 -gencode=arch=compute_50,code=sm_50 -gencode=arch=compute_61,code=sm_61 -gencode=arch=compute_61,code=compute_61' "$TMP/img/probe/work/nvcc-args"
check "cuobjdump-check.sh: all four SASS + PTX present -> ptx_jit = true" run_stage probe "$S/cuobjdump-check.sh" "$infb" \
	CUOBJDUMP=/imgbuild/inputs/cuobjdump IMGBUILD_ARCHS="3.0;3.5;5.0;6.1+PTX"
check "  facts sass_archs, ptx_jit" bash -c "[ \"\$(cat $(up probe)/.imgbuild/facts.d/ptx_jit)\" = true ] &&
	[ \"\$(cat $(up probe)/.imgbuild/facts.d/sass_archs)\" = 'sm_30 sm_35 sm_50 sm_61' ]"
check_fails "cuobjdump-check.sh: sm_30 missing fails" 1 'lacks: sm_30\(SASS\)' run_stage probe "$S/cuobjdump-check.sh" "$infb" \
	CUOBJDUMP=/imgbuild/inputs/cuobjdump IMGBUILD_ARCHS="3.0;3.5;5.0;6.1+PTX" FAKE_SASS="35 50 61"
check_fails "cuobjdump-check.sh: no PTX fails" 1 'lacks: sm_61\(PTX\)' run_stage probe "$S/cuobjdump-check.sh" "$infb" \
	CUOBJDUMP=/imgbuild/inputs/cuobjdump IMGBUILD_ARCHS="3.0;3.5;5.0;6.1+PTX" FAKE_PTX=" "
check "facts.sh: FACT_* and min_driver" run_stage probe "$S/facts.sh" "$infb" FACT_PTX_JIT=true IMGBUILD_MIN_DRIVER=390.46
check "  min_driver = 390.46, ptx_jit = true" bash -c "[ \"\$(cat $(up probe)/.imgbuild/facts.d/min_driver)\" = 390.46 ] &&
	[ \"\$(cat $(up probe)/.imgbuild/facts.d/ptx_jit)\" = true ]"
check "cuda-probe.sh compiles tests/gpu/cuda-probe.c in the image, installs /usr/local/bin/cuda-probe" \
	run_stage probe "$S/cuda-probe.sh" "$infb"
check "  it is there and executable" test -x "$(up probe)/usr/local/bin/cuda-probe"

# ---------------------------------------------------------------- toolchain (bookworm: gcc 12 in the base)
check "toolchain.sh IMGBUILD_GCC=12: defaults set without apt (all in the base)" \
	run_stage tc "$S/toolchain.sh" "$infb" IMGBUILD_GCC=12 PATH="$ccpath"
check "  gcc, g++, cc, c++ are 12 via alternatives; /usr/lib/ccache/gcc; fact gcc_version" run_stage tc \
	"$(sh_in_root tcv '[ "$(readlink /etc/alternatives/gcc)" = /usr/bin/gcc-12 ] && [ "$(g++ -dumpversion)" = 12 ] &&
	[ "$(cc -dumpversion)" = 12 ] && [ -e /usr/lib/ccache/gcc ] && grep -q "^12\." /.imgbuild/facts.d/gcc_version')" "$infb"

# ---------------------------------------------------------------- the network part: apt and the Debian pool
mirror=""
if [ -x "$IMGBUILD" ]; then mirror=$(host_debian_mirror || true); fi
if [ -z "$mirror" ]; then
	# The host's apt sources (read at test time, never written down).
	mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
fi
if [ -z "$mirror" ] || ! curl -sf -m 15 -o "$TMP/hello.tar.gz" "$mirror/pool/main/h/hello/hello_2.10.orig.tar.gz"; then
	skip "Debian mirror not reachable: hello, toolchain switch, apt-install, purge"
	finish
fi
check "hello_2.10.orig.tar.gz from the Debian pool has the pinned sha256" test \
	"$(sha256sum <"$TMP/hello.tar.gz" | cut -d' ' -f1)" = 31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b
inh=$(inputs hello="$TMP/hello.tar.gz")
check "deb-source.sh: GNU hello 2.10 configure/make/make install into /usr/local" \
	run_stage tc "$S/deb-source.sh" "$inh" SOURCE_TARBALL=hello INSTALL_CHECK=hello PATH="$ccpath"
check "check.sh CHECK_COMMAND=hello prints 'Hello, world!'" run_stage tc "$S/check.sh" "$inh" CHECK_COMMAND='hello | grep -qx "Hello, world!"'
check_fails "check.sh: a failing CHECK_COMMAND fails the stage" 1 "exited 3" run_stage tc "$S/check.sh" "$inh" CHECK_COMMAND='exit 3'
check_fails "toolchain.sh IMGBUILD_GCC=4: bookworm has no gcc-4, fails clearly" 1 "has no package 'gcc-4'" \
	run_stage tc4 "$S/toolchain.sh" "$infb" IMGBUILD_GCC=4
check "toolchain.sh IMGBUILD_GCC=11: installs gcc-11/g++-11 and switches the defaults (the gcc-6/7 dance)" \
	run_stage tc11 "$S/toolchain.sh" "$infb" IMGBUILD_GCC=11
check "  gcc/g++/cc/c++ -dumpversion = 11, gcc-12 still installed" run_stage tc11 \
	"$(sh_in_root tc11 '[ "$(gcc -dumpversion)" = 11 ] && [ "$(g++ -dumpversion)" = 11 ] && [ "$(c++ -dumpversion)" = 11 ] && [ -x /usr/bin/gcc-12 ]')" "$infb"
check_fails "apt-install.sh: an unknown package fails clearly" 1 "no package 'no-such-package-imgbuild'" \
	run_stage apt "$S/apt-install.sh" "$infb" PACKAGES="no-such-package-imgbuild"
check "apt-install.sh: PACKAGES=hello installs it and locks its version" run_stage apt "$S/apt-install.sh" "$infb" PACKAGES=hello IMGBUILD_STAGE=tools
check "  /.imgbuild/lock.d/apt-tools.txt names hello" grep -q '^hello ' "$(up apt)/.imgbuild/lock.d/apt-tools.txt"
run_stage apt "$S/cuda-probe.sh" "$infb" >/dev/null 2>&1
check "purge-toolkit.sh: purges hello, keeps /usr/local/bin/cuda-probe working" run_stage apt "$S/purge-toolkit.sh" "$infb" \
	PURGE_PACKAGES="hello" KEEP_FILES=/usr/local/bin/cuda-probe
check "  hello is gone" run_stage apt "$(sh_in_root gone '! dpkg -s hello >/dev/null 2>&1 && [ ! -e /usr/bin/hello ]')" "$infb"
finish
