#!/usr/bin/env bash
# bench/mpi-startup.sh — start-up of an MPI job of 1, 2, 4 and 8 ranks, each rank
# its own `imgbuild run` sandbox (the hybrid model, docs/cluster.md), with the image
# cache cold (every run unpacks: the first rank unpacks, the others wait on the lock)
# and warm, beside the same program (stages/mpi-allreduce.py) run by the same host
# mpirun without imgbuild. The image is manifests/mpi-demo.toml, built once into
# BENCH_CACHE. RUNS warm runs a row (default 5), COLD_RUNS cold ones (default 1).
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-5}
COLD_RUNS=${COLD_RUNS:-1}
[ "$(id -u)" = 0 ] || bench_skip "needs root (builds an image)"
need_commands build run
command -v mpirun >/dev/null || bench_skip "no mpirun (openmpi-bin)"
/usr/bin/python3 -c 'import mpi4py' 2>/dev/null || bench_skip "no python3-mpi4py on the host (the row without imgbuild)"
export IMGBUILD_CACHE=$BENCH_CACHE/mpi
IMAGE=$BENCH_TMP/mpi-demo.tar
RUNCACHE=$BENCH_TMP/mpi-run-cache
cd "$BENCH_TMP" || exit 1
if [ ! -s "$IMAGE" ] || [ "$BENCH_REPO/manifests/mpi-demo.toml" -nt "$IMAGE" ]; then
	"$IMGBUILD" build "$BENCH_REPO/manifests/mpi-demo.toml" -o "$IMAGE" \
		--sign "$BENCH_REPO/tests/fixtures/imgbuild-test.sec" >>"$BENCH_LOG" 2>&1 ||
		bench_die "building mpi-demo failed (see $BENCH_LOG)"
fi
PUB=$BENCH_REPO/tests/fixtures/imgbuild-test.pub
PROG=$BENCH_REPO/stages/mpi-allreduce.py
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export IMGBUILD_CACHE=$RUNCACHE
rm -rf --one-file-system "$RUNCACHE"

for n in 1 2 4 8; do
	measure "host$n" "$RUNS" mpirun -np "$n" /usr/bin/python3 "$PROG" || bench_die "mpirun -np $n without imgbuild failed"
	# Warm: the cache holds the tree (the first call fills it, untimed).
	"$IMGBUILD" run "$IMAGE" --key "$PUB" -- true >>"$BENCH_LOG" 2>&1 || bench_die "imgbuild run failed"
	measure "warm$n" "$RUNS" mpirun -np "$n" "$IMGBUILD" run "$IMAGE" --key "$PUB" -- mpi-allreduce ||
		bench_die "mpirun -np $n imgbuild run failed"
	BENCH_PREP="rm -rf --one-file-system '$RUNCACHE'" measure "cold$n" "$COLD_RUNS" \
		mpirun -np "$n" "$IMGBUILD" run "$IMAGE" --key "$PUB" -- mpi-allreduce ||
		bench_die "mpirun -np $n imgbuild run (cold) failed"
done
rm -rf --one-file-system "$RUNCACHE"

echo "image: $(basename "$IMAGE") ($(du -m "$IMAGE" | cut -f1) MiB); $RUNS warm runs and $COLD_RUNS cold a row; $(nproc) cores (ranks oversubscribed); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
table_header s "vs the same mpirun without imgbuild"
for n in 1 2 4 8; do
	row "mpirun -np $n python3 mpi-allreduce.py (host)" "host$n"
	row "mpirun -np $n imgbuild run IMAGE (warm cache)" "warm$n" "$(ratio "warm$n" "host$n"), $(overhead "warm$n" "host$n")"
	row "mpirun -np $n imgbuild run IMAGE (cold cache)" "cold$n" "$(ratio "cold$n" "host$n")"
done
