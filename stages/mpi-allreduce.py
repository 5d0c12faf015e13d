#!/usr/bin/python3
# mpi-allreduce — installed into MPI images as /usr/local/bin/mpi-allreduce by
# stages/mpi-check.sh. Each rank adds rank+1, once as a Python int and once as
# 2 MiB of doubles (past Open MPI's eager limit, so the bulk path of the
# transport is used too); every rank checks n(n+1)/2 and rank 0 prints one line.
# Exit status 1 when any element is wrong.
import array
import os
import socket
import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
n, r = comm.Get_size(), comm.Get_rank()
want = n * (n + 1) // 2
total = comm.allreduce(r + 1, op=MPI.SUM)
count = 262144
buf = array.array("d", [float(r + 1)]) * count
out = array.array("d", [0.0]) * count
comm.Allreduce([buf, MPI.DOUBLE], [out, MPI.DOUBLE], op=MPI.SUM)
ok = total == want and out.count(float(want)) == count
print("rank %d of %d on %s: pid %d, mount namespace %s, sum %d" %
      (r, n, socket.gethostname(), os.getpid(), os.readlink("/proc/self/ns/mnt"), total), flush=True)
oks = comm.gather(ok, root=0)
if r == 0:
    good = all(oks)
    print("allreduce %s: %d ranks, sum %d (want %d)" % ("ok" if good else "WRONG", n, total, want), flush=True)
sys.exit(0 if ok else 1)
