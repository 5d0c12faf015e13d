#!/bin/bash
# check.sh — the image's acceptance test, the last stage of a manifest.
# With CHECK_COMMAND set it runs just that (bash -c) and passes on its status:
# the demo's check is CHECK_COMMAND = "hello". Without it, it checks the deep-
# learning stack: imports torch and torchvision, prints their versions,
# torch.version.cuda and the compiled arch list, and when a GPU driver is bound
# (/dev/nvidiactl present) runs a small tensor op on the GPU.
#
# Reads:  CHECK_COMMAND     shell command to run instead of the torch check
#         CHECK_MODULES     modules to import (default "torch torchvision")
#         PYTHON            interpreter (default: python on PATH, else python3)
#         CHECK_REQUIRE_GPU "1": fail when no GPU is usable (default: GPU part skipped)
#         IMGBUILD_CUDA     when set, torch.version.cuda must match it and torch must
#                           have been built with CUDA
#         CHECK_MPI         "1": torch.distributed.is_mpi_available() must be True, and a
#                           two-rank allreduce of CPU tensors with the MPI backend, started
#                           by the image's mpirun, must give the right sum (the seed's
#                           reason to build torch from source)
set -euo pipefail
me="check"
die() { echo "$me: $*" >&2; exit 1; }

if [ -n "${CHECK_COMMAND:-}" ]; then
	echo "$me: running: $CHECK_COMMAND"
	rc=0
	bash -c "$CHECK_COMMAND" || rc=$?
	[ "$rc" -eq 0 ] || die "'$CHECK_COMMAND' exited $rc"
	echo "$me: ok"
	exit 0
fi

if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif command -v python >/dev/null; then py=python
else py=python3; fi
command -v "$py" >/dev/null || die "no $py on PATH ($PATH)"

gpu=0
[ -e /dev/nvidiactl ] && gpu=1
if [ "$gpu" = 1 ] && [ ! -e /dev/nvidia-uvm ]; then
	echo "$me: warning: /dev/nvidia-uvm is missing (nvidia_uvm not loaded?): CUDA will fail with CUDA_ERROR_UNKNOWN" >&2
fi

cd /
CHECK_GPU=$gpu CHECK_MODULES=${CHECK_MODULES:-torch torchvision} \
	CHECK_REQUIRE_GPU=${CHECK_REQUIRE_GPU:-0} EXPECT_CUDA=${IMGBUILD_CUDA:-} \
	"$py" - <<'PY' || die "acceptance test failed"
import importlib, os, sys

def fail(msg):
    print("check: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)

mods = {}
for name in os.environ["CHECK_MODULES"].split():
    try:
        mods[name] = importlib.import_module(name)
    except Exception as e:  # report which one and why
        fail("import %s: %s: %s" % (name, type(e).__name__, e))
    print("check: %s %s from %s" % (name, getattr(mods[name], "__version__", "?"),
                                    os.path.dirname(getattr(mods[name], "__file__", "?") or "?")))
print("check: python %s" % sys.version.split()[0])

torch = mods.get("torch")
if torch is None:
    sys.exit(0)
cuda = getattr(getattr(torch, "version", None), "cuda", None)
print("check: torch.version.cuda = %s" % cuda)
want = os.environ.get("EXPECT_CUDA", "")
if want:
    if not cuda:
        fail("torch was built without CUDA, the manifest says CUDA %s" % want)
    if not (cuda == want or cuda.startswith(want + ".")):
        fail("torch.version.cuda is %s, the manifest says %s" % (cuda, want))
# torch.cuda.get_arch_list() exists from torch 1.7 on; older builds: the stage's fact.
archs = None
if hasattr(torch.cuda, "get_arch_list"):
    try:
        archs = torch.cuda.get_arch_list()
    except Exception as e:
        archs = None
        print("check: get_arch_list(): %s" % e)
if archs is None and os.path.exists("/.imgbuild/facts.d/torch_archs"):
    archs = "TORCH_CUDA_ARCH_LIST=" + open("/.imgbuild/facts.d/torch_archs").read().strip()
print("check: compiled archs: %s" % (archs if archs is not None else "unknown"))

if os.environ["CHECK_GPU"] != "1":
    if os.environ["CHECK_REQUIRE_GPU"] == "1":
        fail("no GPU driver bound (/dev/nvidiactl missing) and CHECK_REQUIRE_GPU=1")
    print("check: no GPU driver bound: GPU test skipped")
    sys.exit(0)
if not cuda:
    fail("a GPU is bound but torch has no CUDA")
if not torch.cuda.is_available():
    fail("a GPU is bound but torch.cuda.is_available() is False (driver too old for CUDA %s?)" % cuda)
dev = torch.cuda.current_device()
cap = torch.cuda.get_device_capability(dev)
print("check: GPU %s, compute capability %d.%d" % (torch.cuda.get_device_name(dev), cap[0], cap[1]))
if isinstance(archs, list) and archs:
    sm = "sm_%d%d" % cap
    ok = sm in archs or any(a.startswith("compute_") and int(a[8:]) <= cap[0] * 10 + cap[1] for a in archs)
    if not ok:
        fail("this GPU is %s but torch was compiled for %s: 'no kernel image is available'" % (sm, " ".join(archs)))
x = torch.arange(1 << 20, dtype=torch.float32, device="cuda")
y = (x * 2 + 1).sum().item()
n = 1 << 20
expect = float(n * (n - 1) + n)
if abs(y - expect) > expect * 1e-5:
    fail("GPU sum %r, expected %r" % (y, expect))
m = torch.mm(torch.ones(64, 64, device="cuda"), torch.ones(64, 64, device="cuda"))
if m[0, 0].item() != 64.0:
    fail("GPU matmul gave %r" % m[0, 0].item())
print("check: GPU tensor ops ok")
PY
if [ "${CHECK_MPI:-0}" = 1 ]; then
	"$py" -c 'import sys, torch.distributed as d; ok = d.is_available() and d.is_mpi_available()
print("check: torch.distributed.is_mpi_available() = %s" % ok); sys.exit(0 if ok else 1)' ||
		die "torch was built without the MPI backend (USE_DISTRIBUTED=1 USE_MPI=1 and openmpi in the conda packages)"
	command -v mpirun >/dev/null || die "no mpirun on PATH: the MPI backend needs Open MPI's launcher"
	# Stages run as root, on builders with fewer cores than ranks.
	out=$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
		mpirun -np 2 "$(command -v "$py")" -c '
import torch, torch.distributed as dist
dist.init_process_group("mpi")
r, n = dist.get_rank(), dist.get_world_size()
t = torch.full((1024,), float(r + 1))
dist.all_reduce(t)
want = n * (n + 1) / 2
ok = bool((t == want).all())
print("check: mpi allreduce rank %d of %d: %s (sum %s, want %s)" % (r, n, "ok" if ok else "WRONG", t[0].item(), want), flush=True)
raise SystemExit(0 if ok and n == 2 else 1)' 2>&1) || { echo "$out" >&2; die "two-rank allreduce with the MPI backend failed"; }
	echo "$out" | grep '^check: mpi allreduce'
	[ "$(echo "$out" | grep -c '^check: mpi allreduce rank [01] of 2: ok')" = 2 ] || die "the MPI allreduce did not report two right ranks"
fi
echo "$me: ok"
