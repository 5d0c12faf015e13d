#!/usr/bin/env bash
# `make bench`: every benchmark, each printing its own table with ratios against
# the plain tools measured in the same run. No benchmark asserts a time.
set -uo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME")"
rc=0
for b in bench/[0-9]*.sh bench/pack-verify.sh bench/mpi-startup.sh bench/export.sh; do
	[ -f "$b" ] || continue
	echo
	echo "=== $b"
	bash "$b" || { echo "$b failed"; rc=1; }
done
exit $rc
