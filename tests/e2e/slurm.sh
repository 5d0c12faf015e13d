#!/usr/bin/env bash
# Slurm (issue #17 item 4): a real two-node Slurm 22.05 cluster on this machine
# runs the mpi-demo image in the hybrid model. Each "node" is a holder process
# in its own network, UTS and mount namespaces (host name node1/node2, one veth
# pair 10.217.0.1 <-> 10.217.0.2, its own spool folder, its own node-local disk
# bound at the same path $TMP/local); slurmctld, one slurmd per node and the
# clients use a configuration generated here (own munged and key, own ports,
# state and logs; never /etc/slurm or the system munge). As an ordinary user
# made for the test: one task per node unpacks the image onto its node-local
# cache, `srun -n 4 imgbuild run IMAGE -- mpi-allreduce` reduces across both
# nodes with Open MPI restricted to the TCP BTL on the veth addresses, and an
# sbatch job does the same. Everything started is stopped and checked gone.
source "$(dirname "$0")/../lib.sh"
require_root
for c in munged slurmctld slurmd srun sbatch sinfo scontrol setpriv nsenter unshare ip; do
	if ! command -v "$c" >/dev/null; then
		skip "no $c on the host (slurmctld, slurmd, slurm-client, munge: tests/install-deps.sh)"
		finish
	fi
done
if [ ! -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] && ! ls /usr/lib/*/slurm-wlm/mpi_pmix*.so >/dev/null 2>&1; then
	skip "Slurm's PMIx plugin is missing (slurm-wlm-basic-plugins)"
	finish
fi
use_debian_test_cache
cd "$TMP" || exit 1

# ---- the image: mpi-demo, built once per test cache (tests/e2e/mpi.sh builds the same) ----
IMAGE=$TMP/mpi-demo.tar
if "$IMGBUILD" build "$REPO/manifests/mpi-demo.toml" -o "$IMAGE" --sign "$TEST_KEY" >"$TMP/build.out" 2>&1; then
	ok "mpi-demo builds from the Debian mirror and is signed"
else
	# A warm test cache builds without the network; a cold one needs the archive.
	if ! curl -s -f -m 10 -o /dev/null -I "$(host_debian_mirror)/dists/bookworm/Release"; then
		skip "skipped: Debian archive unreachable (mpi-demo is not in the test cache and cannot be built)"
		finish
	fi
	not_ok "mpi-demo builds from the Debian mirror and is signed"
	tail -n 30 "$TMP/build.out" | sed 's/^/# /'
	finish
fi

# ---- state this test creates on the host, all removed by cleanup ----
SU=ibslurm$$ # the job user (never root: docs/cluster.md)
NODE_PIDS=()  # holders of node1's and node2's namespaces
MUNGE_PID=""
# The processes inside the node namespaces held by PIDs $@ (slurmctld, slurmd,
# slurmstepd, ranks, the holders): those namespaces are this test's alone, so
# this names only what the test started. -ef compares the namespaces' inodes
# without a fork per process.
in_nodes() {
	local q p
	for q in /proc/[0-9]*; do
		for p in "$@"; do
			if [ "$q/ns/net" -ef "/proc/$p/ns/net" ]; then echo "${q#/proc/}"; break; fi
		done
	done 2>/dev/null
}
slurm_cleanup() {
	set +e
	local pids p
	if [ "${#NODE_PIDS[@]}" -gt 0 ]; then
		pids=$(in_nodes "${NODE_PIDS[@]}")
		# shellcheck disable=SC2086
		[ -n "$pids" ] && kill -TERM $pids 2>/dev/null
		for _ in $(seq 1 50); do
			p=""
			for q in $pids; do kill -0 "$q" 2>/dev/null && p="$p $q"; done
			[ -z "$p" ] && break
			sleep 0.1
		done
		# shellcheck disable=SC2086
		[ -n "$p" ] && kill -KILL $p 2>/dev/null
	fi
	[ -n "$MUNGE_PID" ] && kill "$MUNGE_PID" 2>/dev/null
	for _ in $(seq 1 20); do
		id "$SU" >/dev/null 2>&1 || break
		userdel "$SU" 2>/dev/null && break
		sleep 0.5
	done
	getent group "$SU" >/dev/null && groupdel "$SU" 2>/dev/null
}
trap 'rc=$?; slurm_cleanup; (exit $rc); _lib_cleanup' EXIT

# useradd fails while another test holds the lock on /etc/passwd: try again.
for _ in $(seq 1 20); do useradd -M -U -d /nonexistent -s /bin/sh "$SU" 2>"$TMP/useradd.err" && break; sleep 0.5; done
if ! id "$SU" >/dev/null 2>&1; then
	not_ok "create the job user $SU: $(cat "$TMP/useradd.err")"
	finish
fi
SUID=$(id -u "$SU")
SGID=$(id -g "$SU")
# The job user must reach its files under $TMP (made 0700 by mktemp).
chmod 0711 "$TMP"
mkdir -p "$TMP/munge" "$TMP/state" "$TMP/log" "$TMP/shared" "$TMP/local" "$TMP/bin"
for n in node1 node2; do
	mkdir -p "$TMP/$n/spool" "$TMP/$n/tmp" "$TMP/$n/cache"
	chmod 1777 "$TMP/$n/tmp"
	chown "$SU:" "$TMP/$n/cache"
done
chown "$SU:" "$TMP/shared"
chmod 0755 "$TMP/munge" "$TMP/node1" "$TMP/node2" "$TMP/local" "$TMP/bin"
# imgbuild and the image as the cluster's shared software folder would hold them.
cp "$IMGBUILD" "$TMP/bin/imgbuild"
cp "$TEST_PUB" "$TMP/bin/teacher.pub"
cp "$IMAGE" "$IMAGE.sha256" "$IMAGE.sig" "$TMP/shared/"
chmod 0644 "$TMP"/shared/mpi-demo.tar* "$TMP/bin/teacher.pub"

# ---- munge: own key, socket, pid, log and seed files ----
dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$TMP/munge/munge.key"
SOCK=$TMP/munge/munge.sock
munged -F --force --socket="$SOCK" --key-file="$TMP/munge/munge.key" \
	--pid-file="$TMP/munge/munged.pid" --log-file="$TMP/log/munged.log" \
	--seed-file="$TMP/munge/munged.seed" >"$TMP/log/munged.out" 2>&1 &
MUNGE_PID=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
check "munged answers on its own socket, as the job user" \
	setpriv --reuid="$SUID" --regid="$SGID" --clear-groups -- sh -c "munge -n -S '$SOCK' | unmunge -S '$SOCK' >/dev/null"

# ---- two nodes: network + UTS + mount namespaces held by one process each ----
# (unshare without --fork: the holder itself is in the namespaces, so its PID
# names them for nsenter; never `ip netns add`, which mounts on the host.)
NET=10.217.0
printf '127.0.0.1 localhost\n%s.1 node1\n%s.2 node2\n' "$NET" "$NET" >"$TMP/hosts"
for i in 1 2; do
	unshare --net --uts --mount --propagation private -- sh -c '
		hostname "node$1" &&
		mount --bind "$0/node$1" "$0/local" &&
		mount --bind "$0/hosts" /etc/hosts &&
		ip link set lo up && touch "$0/node$1.ready" && exec sleep 100000' "$TMP" "$i" \
		>"$TMP/log/holder$i.out" 2>&1 &
	NODE_PIDS+=($!)
done
for _ in $(seq 1 100); do [ -e "$TMP/node1.ready" ] && [ -e "$TMP/node2.ready" ] && break; sleep 0.1; done
P1=${NODE_PIDS[0]} P2=${NODE_PIDS[1]}
on() { local p=$1; shift; nsenter -t "$p" -n -u -m -- "$@"; }
# The veth pair is created inside node1's namespace with its peer straight in
# node2's: neither end ever exists in the host's namespace.
on "$P1" ip link add slurm-n1 type veth peer name slurm-n2 netns "$P2"
on "$P1" ip addr add "$NET.1/24" dev slurm-n1
on "$P2" ip addr add "$NET.2/24" dev slurm-n2
on "$P1" ip link set slurm-n1 up
on "$P2" ip link set slurm-n2 up
check "node1 and node2 have their own host names and veth addresses" \
	sh -c "[ \"\$(nsenter -t $P1 -u hostname)\" = node1 ] && [ \"\$(nsenter -t $P2 -u hostname)\" = node2 ] &&
		nsenter -t $P1 -n ip -o addr show slurm-n1 | grep -q ' $NET.1/' && nsenter -t $P2 -n ip -o addr show slurm-n2 | grep -q ' $NET.2/'"
check "the host's namespace has no slurm veth" sh -c "! ip -o link show | grep -q 'slurm-n'"

# ---- slurm.conf: own ports, state, spool (per node through the bind), logs ----
port() { echo $((20000 + RANDOM % 20000)); }
CPORT=$(port)
DPORT=$(port)
while [ "$DPORT" = "$CPORT" ]; do DPORT=$(port); done
export SLURM_CONF=$TMP/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=ibslurm$$
SlurmctldHost=node1($NET.1)
SlurmctldPort=$CPORT
SlurmdPort=$DPORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/local/spool
TmpFS=$TMP/local/tmp
SlurmctldPidFile=$TMP/state/slurmctld.pid
SlurmdPidFile=$TMP/local/spool/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=node1 NodeAddr=$NET.1 CPUs=2 State=UNKNOWN
NodeName=node2 NodeAddr=$NET.2 CPUs=2 State=UNKNOWN
PartitionName=class Nodes=node1,node2 Default=YES MaxTime=10 State=UP
EOF
chmod 0644 "$SLURM_CONF"

on "$P1" slurmctld -D -f "$SLURM_CONF" >"$TMP/log/slurmctld.out" 2>&1 &
on "$P1" slurmd -D -f "$SLURM_CONF" -N node1 >"$TMP/log/slurmd1.out" 2>&1 &
on "$P2" slurmd -D -f "$SLURM_CONF" -N node2 >"$TMP/log/slurmd2.out" 2>&1 &
# Commands as the job user, on node1 (the login node: slurmd reaches srun back
# over the veth); a hung job step fails the test instead of stalling it.
as_user() {
	timeout 300 nsenter -t "$P1" -n -u -m -- setpriv --reuid="$SUID" --regid="$SGID" --init-groups -- \
		env -i -C "$TMP/shared" PATH=/usr/local/bin:/usr/bin:/bin HOME=/nonexistent SLURM_CONF="$SLURM_CONF" "$@"
}
state=""
for _ in $(seq 1 300); do
	state=$(as_user sinfo -h -N -o '%N %t' 2>/dev/null | tr '\n' ' ') || true
	[ "$state" = "node1 idle node2 idle " ] && break
	sleep 0.2
done
check "slurmctld and both slurmds are up: $state" test "$state" = "node1 idle node2 idle "
if [ "$state" != "node1 idle node2 idle " ]; then
	tail -n 20 "$TMP"/log/slurm*.log "$TMP"/log/*.out 2>/dev/null | sed 's/^/# /'
	finish
fi

# ---- jobs, as the job user ----
IB=$TMP/bin/imgbuild
IMG=$TMP/shared/mpi-demo.tar
# Open MPI between the sandboxes: only TCP (and self), only on the veth subnet;
# a rank's sandbox keeps its node's network namespace.
JOBENV=(IMGBUILD_CACHE="$TMP/local/cache" OMPI_MCA_pml=ob1 "OMPI_MCA_btl=self,tcp"
	OMPI_MCA_btl_tcp_if_include="$NET.0/24" OMPI_MCA_oob_tcp_if_include="$NET.0/24"
	OMPI_MCA_btl_base_verbose=30)

# 1. Once per node, onto node-local disk (docs/cluster.md): one task per node unpacks.
rc=0
as_user env "${JOBENV[@]}" srun -N 2 --ntasks-per-node=1 sh -c "'$IB' run '$IMG' --key '$TMP/bin/teacher.pub' -- sh -c 'echo uid \$(id -u) on \$(hostname)'" \
	>"$TMP/pull.out" 2>&1 || rc=$?
sed 's/^/#   /' "$TMP/pull.out"
check "srun --ntasks-per-node=1: one task on each node unpacks the image onto its node-local cache (rc $rc)" \
	sh -c "[ $rc = 0 ] && grep -q ' on node1\$' '$TMP/pull.out' && grep -q ' on node2\$' '$TMP/pull.out'"
# PMIx takes a rank's connection only from the job's uid: a rank stays its user inside.
check "inside the sandbox each task is the job user (uid $SUID), not root" \
	test "$(grep -c "^uid $SUID on node[12]\$" "$TMP/pull.out")" = 2
check "the two node-local caches each hold one unpacked tree" \
	sh -c "[ \$(ls -d '$TMP'/node1/cache/images/*/tree | wc -l) = 1 ] && [ \$(ls -d '$TMP'/node2/cache/images/*/tree | wc -l) = 1 ]"

# 2. srun -n 4: two ranks per node, one sandbox each.
# Bytes through node1's end of the veth pair (/proc/net/dev is the reader's
# network namespace's): the only way from node1 to node2.
veth_bytes() { nsenter -t "$P1" -n sed -n 's/^ *slurm-n1: *//p' /proc/net/dev | awk '{print $1 + $9}'; }
bytes0=$(veth_bytes)
rc=0
as_user env "${JOBENV[@]}" srun -n 4 -N 2 --mpi=pmix \
	"$IB" run "$IMG" --key "$TMP/bin/teacher.pub" -- mpi-allreduce >"$TMP/srun.out" 2>"$TMP/srun.err" || rc=$?
sed 's/^/#   /' "$TMP/srun.out"
if [ "$rc" = 0 ] && grep -q '^allreduce ok: 4 ranks, sum 10 (want 10)' "$TMP/srun.out"; then
	ok "srun -n 4 imgbuild run IMAGE -- mpi-allreduce: the sum is right"
else
	not_ok "srun -n 4 imgbuild run: rc $rc"
	tail -n 30 "$TMP/srun.err" | sed 's/^/# /'
	tail -n 20 "$TMP"/log/slurmd-node*.log | sed 's/^/# /'
fi
n1=$(grep -c '^rank [0-3] of 4 on node1:' "$TMP/srun.out" || true)
n2=$(grep -c '^rank [0-3] of 4 on node2:' "$TMP/srun.out" || true)
check "the ranks ran on both nodes (node1: $n1, node2: $n2)" test "$n1" = 2 -a "$n2" = 2
nns=$(sed -n 's/.*mount namespace \(mnt:\[[0-9]*\]\).*/\1/p' "$TMP/srun.out" | sort -u | wc -l)
check "four sandboxes (four mount namespaces: $nns)" test "$nns" = 4
# Each rank reduces 2 MiB of doubles, so at least that much must cross between
# the nodes; only TCP (btl self,tcp) can carry it, and only over the veth pair.
moved=$(($(veth_bytes) - bytes0))
check "MPI traffic crosses the veth pair: $moved bytes through slurm-n1 (at least 2 MiB)" test "$moved" -ge 2097152
ntcp=$(grep -cE "btl:tcp: path from $NET\.(1 to $NET\.2|2 to $NET\.1)" "$TMP/srun.err" || true)
grep -m 2 -E "btl:tcp: path from $NET\.(1 to $NET\.2|2 to $NET\.1)" "$TMP/srun.err" | sed 's/^/#   /' || true
check "Open MPI's TCP BTL connects node1 and node2 by their veth addresses ($ntcp paths)" test "$ntcp" -ge 1

# 3. sbatch: the same from a batch script; wait for it and read its output file.
cat >"$TMP/shared/job.sh" <<EOF
#!/bin/sh
#SBATCH --nodes=2 --ntasks-per-node=2
#SBATCH --output=$TMP/shared/job-%j.out
export IMGBUILD_CACHE=$TMP/local/cache
srun --mpi=pmix '$IB' run '$IMG' --key '$TMP/bin/teacher.pub' -- mpi-allreduce
EOF
chmod 0755 "$TMP/shared/job.sh"
# sbatch --wait polls slurmctld at growing intervals; the job's record (kept
# MinJobAge seconds) is read here instead, every 0.2 s.
jobid=$(as_user env OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include="$NET.0/24" \
	OMPI_MCA_oob_tcp_if_include="$NET.0/24" sbatch --parsable "$TMP/shared/job.sh" 2>"$TMP/sbatch.err") || true
jobid=${jobid%%;*}
job=""
for _ in $(seq 1 1500); do
	job=$(as_user scontrol -o show job "$jobid" 2>/dev/null) || true
	echo "$job" | grep -qE 'JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) ' && break
	sleep 0.2
done
jobstate=$(echo "$job" | grep -oE 'JobState=[A-Z_]+ .* ExitCode=[0-9:]+' | sed 's/ .* / /')
out=$TMP/shared/job-$jobid.out
[ -f "$out" ] && sed 's/^/#   /' "$out"
check "sbatch: job '$jobid' ends ($jobstate) and its output file has the right sum" \
	sh -c "[ '$jobstate' = 'JobState=COMPLETED ExitCode=0:0' ] && grep -q '^allreduce ok: 4 ranks, sum 10 (want 10)' '$out'"
check "the batch job's ranks ran on both nodes" \
	sh -c "grep -q '^rank [0-3] of 4 on node1:' '$out' && grep -q '^rank [0-3] of 4 on node2:' '$out'"
check "the output file belongs to the job user, not root" test "$(stat -c %u "$out" 2>/dev/null)" = "$SUID"

# ---- stop everything, and check nothing is left ----
holders="${NODE_PIDS[*]}"
slurm_cleanup
for _ in $(seq 1 50); do
	left=""
	for p in $holders $MUNGE_PID; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
	[ -z "$left" ] && break
	sleep 0.1
done
check "no daemon, step or rank is left (ps)" \
	sh -c "! ps -eo pid,args | grep -F '$TMP' | grep -v grep"
check "no holder or munged process is left ($left)" test -z "$left"
check "the job user is removed" sh -c "! id '$SU' 2>/dev/null"
check "no slurm veth on the host" sh -c "! ip -o link show | grep -q 'slurm-n'"
check "no mount of this test is left in the host's table" sh -c "! grep -F '$TMP' /proc/self/mountinfo"
NODE_PIDS=()
MUNGE_PID=""
finish
