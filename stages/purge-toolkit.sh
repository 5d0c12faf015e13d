#!/bin/bash
# purge-toolkit.sh — removes build-only packages once their output is installed
# (apt purge + autoremove + cache cleanup), so the image stays small: e.g. the
# 1.5 GB nvidia-cuda-toolkit after the probes are compiled (cudart is static).
#
# Reads:  PURGE_PACKAGES   space-separated packages (default "nvidia-cuda-toolkit");
#                          names not installed are skipped
#         KEEP_FILES       space-separated paths that must still exist afterwards
#                          (e.g. "/usr/local/bin/cuda-vector-add"); checked, and each
#                          ELF one must still find all its libraries
set -euo pipefail
me="purge-toolkit"
die() { echo "$me: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
# apt-get purge runs dpkg --set-selections, which in dpkg < 1.20 (Ubuntu 18.04 has
# 1.19) fails without /var/lib/dpkg/available, a file mmdebstrap's bases lack.
[ -e /var/lib/dpkg/available ] || : >/var/lib/dpkg/available
want=""
for p in ${PURGE_PACKAGES:-nvidia-cuda-toolkit}; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		want="$want $p"
	else
		echo "$me: $p is not installed, skipping" >&2
	fi
done
before=$(du -sx --block-size=1M / 2>/dev/null | cut -f1 || echo "?")
# shellcheck disable=SC2086
[ -z "$want" ] || apt-get purge -y -q $want || die "apt-get purge$want failed"
apt-get autoremove --purge -y -q || die "apt-get autoremove failed"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/nvidia-cuda* 2>/dev/null || true
for f in ${KEEP_FILES:-}; do
	[ -e "$f" ] || die "$f is gone after the purge"
	if head -c 4 "$f" 2>/dev/null | grep -q 'ELF' && command -v ldd >/dev/null; then
		if ldd "$f" 2>&1 | grep -q 'not found'; then
			die "$f lost a library in the purge: $(ldd "$f" | grep 'not found' | tr -s ' \t' ' ')"
		fi
	fi
done
after=$(du -sx --block-size=1M / 2>/dev/null | cut -f1 || echo "?")
echo "$me: purged${want:- nothing}; root ${before} MiB -> ${after} MiB"
