#!/usr/bin/env bash
# MPI (issue #17): manifests/mpi-demo.toml builds on the shared bookworm test
# cache (Open MPI, python3-mpi4py, NetPIPE's NPmpi from the Debian pool's pinned
# tarball; its check stage runs a 2-rank allreduce without network); a 2-rank
# allreduce inside `imgbuild run`; then the hybrid model: the host's mpirun starts
# four `imgbuild run` sandboxes on a cold image cache, which unpack the image
# once, find each other and reduce over the shared-memory BTL (vader) only; the
# same ranks fully isolated (--no-mpi) cannot; and an unpack killed half-way is
# never used and is cleaned up.
source "$(dirname "$0")/../lib.sh"
require_root
if ! command -v mpirun >/dev/null; then
	skip "no mpirun on the host (openmpi-bin, tests/install-deps.sh)"
	finish
fi
use_debian_test_cache
# Tests run as root; more ranks than this machine's 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
IMAGE=$TMP/mpi-demo.tar
cd "$TMP" || exit 1

if "$IMGBUILD" build "$REPO/manifests/mpi-demo.toml" -o "$IMAGE" --sign "$TEST_KEY" >"$TMP/build.out" 2>&1; then
	ok "mpi-demo builds from the Debian mirror and is signed"
else
	not_ok "mpi-demo builds from the Debian mirror and is signed"
	sed 's/^/# /' "$TMP/build.out" | tail -n 30
	finish
fi
log=$IMGBUILD_CACHE/builds/mpi-demo/logs/check.log
check "its check stage ran a 2-rank allreduce and NPmpi at build time (no network)" \
	grep -q '^allreduce ok: 2 ranks, sum 3' "$log"

# ---- an unpack killed half-way is never used ----
# The image cache is this test's own, so the runs below start cold.
export IMGBUILD_CACHE=$TMP/run-cache
"$IMGBUILD" run "$IMAGE" --key "$TEST_PUB" -- true >/dev/null 2>&1 &
pid=$!
partial=""
for _ in $(seq 1 600); do
	partial=$(ls -d "$IMGBUILD_CACHE"/images/.unpack-* 2>/dev/null | head -n 1) || true
	[ -n "$partial" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if [ -n "$partial" ] && kill -9 "$pid" 2>/dev/null; then
	wait "$pid" 2>/dev/null || true
	hex=$(basename "$partial" | sed 's/^\.unpack-\([0-9a-f]*\)\..*/\1/')
	check "after kill -9 mid-unpack only the temporary folder exists, no tree" \
		sh -c "[ -d '$partial' ] && [ ! -e '$IMGBUILD_CACHE/images/$hex/tree' ]"
else
	wait "$pid" 2>/dev/null || true
	skip "the unpack finished before it could be killed"
	rm -rf --one-file-system "$IMGBUILD_CACHE"
fi

# ---- hybrid: the host's mpirun, one sandbox per rank, on the cold cache left by the kill ----
# pml ob1 with only the self and vader BTLs: no TCP and no UCX, so ranks in
# different sandboxes can only talk through shared memory.
SHM=(--mca pml ob1 --mca btl self,vader)
rc=0
mpirun -np 4 "${SHM[@]}" --mca btl_base_verbose 100 \
	"$IMGBUILD" -v run "$IMAGE" --key "$TEST_PUB" -- mpi-allreduce >"$TMP/hybrid.out" 2>"$TMP/hybrid.err" || rc=$?
if [ "$rc" = 0 ] && grep -q '^allreduce ok: 4 ranks, sum 10 (want 10)' "$TMP/hybrid.out"; then
	ok "mpirun -np 4 imgbuild run IMAGE -- mpi-allreduce: the ranks find each other, the sum is right"
else
	not_ok "mpirun -np 4 imgbuild run: rc $rc"
	tail -n 30 "$TMP/hybrid.out" "$TMP/hybrid.err" | sed 's/^/# /'
fi
sed 's/^/#   /' "$TMP/hybrid.out"
nranks=$(grep -c '^rank [0-3] of 4 on ' "$TMP/hybrid.out" || true)
nns=$(sed -n 's/.*mount namespace \(mnt:\[[0-9]*\]\).*/\1/p' "$TMP/hybrid.out" | sort -u | wc -l)
check "four ranks in four sandboxes (four mount namespaces: got $nns, ranks $nranks)" test "$nns" = 4 -a "$nranks" = 4
host_mnt=$(readlink /proc/self/ns/mnt)
check "none of them is the host's mount namespace" sh -c "! grep -qF '$host_mnt' '$TMP/hybrid.out'"
nvader=$(grep -c 'Using vader btl for send to' "$TMP/hybrid.err" || true)
check "the shared-memory BTL (vader) carries traffic between the sandboxes ($nvader rank pairs)" test "$nvader" -ge 4
grep -m 2 'Using vader btl' "$TMP/hybrid.err" | sed 's/^/#   /'
nunpack=$(grep -c 'into the image cache' "$TMP/hybrid.err" || true)
diag "ranks that waited for the unpacking one: $(grep -c "waiting for another imgbuild process unpacking" "$TMP/hybrid.err" || true)"
check "four ranks on a cold cache unpack the image once (unpacks: $nunpack)" test "$nunpack" = 1
check "the half-made folder of the killed unpack is gone, and no other is left" \
	sh -c "! ls -d '$IMGBUILD_CACHE'/images/.unpack-* 2>/dev/null"

# The image's own mpirun inside one sandbox (warm cache now).
runi() { "$IMGBUILD" run "$IMAGE" --key "$TEST_PUB" "$@"; }
check_fails "a 2-rank allreduce inside imgbuild run (the image's mpirun)" 0 '^allreduce ok: 2 ranks, sum 3 \(want 3\)' \
	runi -- mpirun -np 2 mpi-allreduce

# The same job with every rank in its own PID, IPC and UTS namespaces and its own
# /dev/shm and /tmp: vader cannot map the other ranks' segments, and the job fails.
rc=0
timeout 120 mpirun -np 2 "${SHM[@]}" "$IMGBUILD" run --no-mpi "$IMAGE" --key "$TEST_PUB" -- mpi-allreduce \
	>"$TMP/isolated.out" 2>&1 || rc=$?
check "isolated sandboxes (--no-mpi) cannot use shared memory: the job fails (rc $rc)" \
	sh -c "[ $rc -ne 0 ] && ! grep -q '^allreduce ok' '$TMP/isolated.out'"

finish
