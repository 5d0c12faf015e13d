#!/bin/bash
# facts.sh — records facts about the image in /.imgbuild/facts.d/KEY (one value
# per file), for `imgbuild run` and the compatibility checks to read.
#
# Reads:  every FACT_<KEY> variable of the stage env: FACT_PTX_JIT = "true" writes
#         /.imgbuild/facts.d/ptx_jit; and IMGBUILD_MIN_DRIVER ([stack] min_driver,
#         derived from cuda when absent) is written as min_driver unless FACT_MIN_DRIVER is set
set -euo pipefail
me="facts"
die() { echo "$me: $*" >&2; exit 1; }
dir=/.imgbuild/facts.d
mkdir -p "$dir"
n=0
while IFS='=' read -r name _; do
	case "$name" in FACT_?*) ;; *) continue ;; esac
	key=$(echo "${name#FACT_}" | tr '[:upper:]' '[:lower:]')
	[[ "$key" =~ ^[a-z0-9_]+$ ]] || die "fact name '$key' must be [a-z0-9_]"
	printf '%s\n' "${!name}" >"$dir/$key"
	n=$((n + 1))
done < <(env | LC_ALL=C sort)
if [ -z "${FACT_MIN_DRIVER:-}" ] && [ -n "${IMGBUILD_MIN_DRIVER:-}" ]; then
	echo "$IMGBUILD_MIN_DRIVER" >"$dir/min_driver"
	n=$((n + 1))
fi
[ "$n" -gt 0 ] || die "no FACT_* variables and no IMGBUILD_MIN_DRIVER: nothing to record"
echo "$me: recorded $n facts: $(cd "$dir" && ls | tr '\n' ' ')"
