#!/bin/bash
# mpi-check.sh — the MPI image's acceptance test: installs mpi-allreduce (the
# project's stages/mpi-allreduce.py, a download input) into PREFIX/bin, then runs
# it on two ranks with the image's own mpirun, and NPmpi (NetPIPE) for a few
# message sizes when it is installed. Works in a stage without network: the
# sandbox brings up lo, which is all Open MPI needs on one node.
#
# Reads:  MPI_ALLREDUCE   input name of mpi-allreduce.py (default "mpi-allreduce.py")
#         PREFIX          install prefix (default /usr/local)
#         MPI_RANKS       ranks for the test (default 2)
set -euo pipefail
me="mpi-check"
die() { echo "$me: $*" >&2; exit 1; }

src=${IMGBUILD_INPUTS:-/imgbuild/inputs}/${MPI_ALLREDUCE:-mpi-allreduce.py}
[ -f "$src" ] || die "input ${MPI_ALLREDUCE:-mpi-allreduce.py} not found at $src (list it in the stage's inputs)"
prefix=${PREFIX:-/usr/local}
command -v mpirun >/dev/null || die "no mpirun in the image (install openmpi-bin)"
python3 -c 'import mpi4py' 2>/dev/null || die "python3 cannot import mpi4py (install python3-mpi4py)"
install -D -m 0755 "$src" "$prefix/bin/mpi-allreduce"
# Stages run as root; a 2-core builder needs --oversubscribe for more ranks than cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
np=${MPI_RANKS:-2}
out=$(mpirun -np "$np" "$prefix/bin/mpi-allreduce" 2>&1) || { echo "$out" >&2; die "mpirun -np $np mpi-allreduce failed"; }
echo "$out"
echo "$out" | grep -q "^allreduce ok: $np ranks" || die "mpi-allreduce did not report a right sum"
if command -v NPmpi >/dev/null; then
	out=$(cd /tmp && mpirun -np 2 NPmpi -n 3 -u 4096 -p 0 2>&1) || { echo "$out" >&2; die "mpirun -np 2 NPmpi failed"; }
	echo "$out" | grep -E 'bytes .* Mbps' | tail -n 2
	echo "$out" | grep -qE '4096 bytes .* Mbps' || die "NPmpi did not reach 4096 bytes"
fi
echo "$me: ok ($(mpirun --version 2>&1 | head -n 1))"
