#!/usr/bin/env bash
# in-tmpfs.sh SIZE DIR [SIZE DIR]... -- CMD...: mounts a tmpfs of SIZE at each
# DIR and runs CMD. Only ever run as
#     unshare -m --propagation private in-tmpfs.sh ...
# so that the tmpfs exists in that private mount namespace alone and goes with
# it: the host's mount table never sees it. Refuses to run in its parent's
# mount namespace.
set -euo pipefail
if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/$PPID/ns/mnt)" ]; then
	echo "in-tmpfs.sh: not in a mount namespace of its own (run it under unshare -m)" >&2
	exit 99
fi
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	mkdir -p "$2"
	mount -t tmpfs -o "size=$1,mode=0755" imgbuild-test-full "$2"
	shift 2
done
shift
"$@"
