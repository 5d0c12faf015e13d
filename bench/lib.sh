# shellcheck shell=bash
# bench/lib.sh — sourced by bench/[0-9]*.sh. Timing with bash's $EPOCHREALTIME (no
# fork around the timed command), statistics (median, min, max), a table printer and
# ratios. No benchmark asserts a time: each prints a table and its target as met/missed.
# Environment: RUNS (runs per measurement; each script has its own default),
# IMGBUILD (the binary; default build/imgbuild), BENCH_TMP (generated trees, default
# /var/tmp/imgbuild-bench), BENCH_CACHE (benchmark caches, default
# /var/cache/imgbuild-bench — never the tests' or the user's cache).
export LC_ALL=C
BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMGBUILD=${IMGBUILD:-$BENCH_REPO/build/imgbuild}
BENCH_TMP=${BENCH_TMP:-/var/tmp/imgbuild-bench}
BENCH_CACHE=${BENCH_CACHE:-/var/cache/imgbuild-bench}
BENCH_LOG=${BENCH_LOG:-$BENCH_TMP/logs/$(basename "$0" .sh).log}
mkdir -p "$BENCH_TMP" "$BENCH_CACHE" "$(dirname "$BENCH_LOG")"
: >"$BENCH_LOG"

declare -A M	# NAME -> "median min max" (seconds)
declare -A MRAW	# NAME -> every run's seconds
declare -A MCPU MCPURAW	# the same for the CPU time (user + system) of the command and its children

bench_note() { printf '%s\n' "$*" | tee -a "$BENCH_LOG" >&2; }
bench_die() { bench_note "$(basename "$0"): $*"; exit 1; }
bench_skip() { echo "SKIPPED: $*"; exit 0; }

# One line describing the machine: cores, CPU model, memory, kernel, disk of BENCH_TMP.
bench_machine() {
	local cpu mem disk dev
	cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
	mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
	dev=$(df --output=source "$BENCH_TMP" | tail -1)
	disk="$(df --output=fstype "$BENCH_TMP" | tail -1 | tr -d ' ') on $dev"
	local base=${dev##*/}
	base=${base%%[0-9]*}
	if [ -r "/sys/block/$base/queue/rotational" ]; then
		[ "$(cat "/sys/block/$base/queue/rotational")" = 0 ] && disk+=" (non-rotational)" || disk+=" (rotational)"
	fi
	echo "$(nproc) cores ($cpu), $mem, Linux $(uname -r), $disk"
}

# The Debian mirror imgbuild itself uses (never written into a file by these scripts).
bench_mirror() {
	local m
	m=$("$IMGBUILD" mirror debian 2>/dev/null) && [ -n "$m" ] && { echo "$m"; return; }
	m=$(grep -hsoE '^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+' \
		/etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | awk '{print $NF}' | head -1)
	[ -n "$m" ] && echo "$m"
}

# stats SECONDS... -> "median min max"
bench_stats() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1}
		END { if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2;
		      printf "%.6f %.6f %.6f", m, a[1], a[NR] }'
}

# CPU seconds (user + system) of this shell's waited-for children, from the output of
# the `times` builtin saved in FILE (run redirected in this shell, not a subshell).
_cpu_of() {
	sed -n 2p "$1" | awk '{n = split($0, f, " "); s = 0
		for (i = 1; i <= n; i++) { split(f[i], p, "m"); sub(/s$/, "", p[2]); s += p[1] * 60 + p[2] } printf "%.3f", s}'
}

# measure NAME RUNS CMD... — runs CMD RUNS times (output to BENCH_LOG) and stores
# "median min max" in M[NAME]. When BENCH_PREP is set, it is eval'd, untimed, before
# every run (to empty a cache, touch a file ...). Fails when any run fails.
measure() {
	local name=$1 runs=$2
	shift 2
	local t=() c=() s e i c0 c1
	for ((i = 0; i < runs; i++)); do
		if [ -n "${BENCH_PREP:-}" ]; then eval "$BENCH_PREP" >>"$BENCH_LOG" 2>&1 || bench_die "$name: prep '$BENCH_PREP' failed"; fi
		echo "--- $name run $((i + 1)): $*" >>"$BENCH_LOG"
		times >"$BENCH_LOG.times0"
		s=$EPOCHREALTIME
		"$@" >>"$BENCH_LOG" 2>&1 </dev/null
		local rc=$?
		e=$EPOCHREALTIME
		times >"$BENCH_LOG.times1"
		if [ $rc -ne 0 ]; then
			bench_note "$name: '$*' failed with status $rc (see $BENCH_LOG)"
			return 1
		fi
		t+=("$(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.6f", e - s}')")
		c0=$(_cpu_of "$BENCH_LOG.times0")
		c1=$(_cpu_of "$BENCH_LOG.times1")
		c+=("$(awk -v s="$c0" -v e="$c1" 'BEGIN {printf "%.3f", e - s}')")
	done
	# Repeated calls with one NAME add up (so that rounds of A, B, A, B ... can be
	# interleaved against drift in the machine's load).
	MRAW[$name]="${MRAW[$name]:-} ${t[*]}"
	# shellcheck disable=SC2086
	M[$name]=$(bench_stats ${MRAW[$name]})
	MCPURAW[$name]="${MCPURAW[$name]:-} ${c[*]}"
	# shellcheck disable=SC2086
	MCPU[$name]=$(bench_stats ${MCPURAW[$name]})
}

med() { local v=${M[$1]:-nan}; echo "${v%% *}"; }
cpu() { local v=${MCPU[$1]:-nan}; echo "${v%% *}"; }	# median CPU seconds

# Table: header UNIT ("s" or "ms") [NOTE-TITLE], then row LABEL NAME [NOTE]. Columns:
# median, min, max of the wall time, and the median CPU time (user + system, all
# processes) — CPU time is much less moved by other load on the machine.
BENCH_UNIT=s
table_header() {
	BENCH_UNIT=${1:-s}
	printf '%-52s %10s %10s %10s %10s  %s\n' "" "median/$BENCH_UNIT" "min/$BENCH_UNIT" "max/$BENCH_UNIT" "cpu/$BENCH_UNIT" "${2:-}"
}
row() {
	local label=$1 name=$2 note=${3:-} med min max c f=1 fmt='%10.3f'
	[ -n "${M[$name]:-}" ] || { printf '%-52s %10s\n' "$label" "(failed)"; return; }
	read -r med min max <<<"${M[$name]}"
	c=${MCPU[$name]:-}
	c=${c%% *}
	[ "$BENCH_UNIT" = ms ] && { f=1000; fmt='%10.1f'; }
	local cs
	if [ -n "$c" ]; then cs=$(printf "$fmt" "$(awk -v x="$c" -v f=$f 'BEGIN {print x * f}')"); else cs=$(printf '%10s' -); fi
	printf "%-52s $fmt $fmt $fmt %s  %s\n" "$label" "$(awk -v x="$med" -v f=$f 'BEGIN {print x * f}')" \
		"$(awk -v x="$min" -v f=$f 'BEGIN {print x * f}')" "$(awk -v x="$max" -v f=$f 'BEGIN {print x * f}')" "$cs" "$note"
}

# ratio A B -> median(A) / median(B), e.g. "1.03x"
ratio() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN {r = a / b; printf (r < 0.1 ? "%.4fx" : "%.2fx"), r}'; }
# speedup A B -> median(B) / median(A), e.g. "4100x faster"
speedup() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN {r = b / a; printf (r < 10 ? "%.2fx faster" : "%.0fx faster"), r}'; }
# overhead A B -> "+12.3 ms (+4.1%)": median(A) - median(B)
overhead() {
	awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN {printf "%+.1f ms (%+.1f%%)", (a - b) * 1000, (a / b - 1) * 100}'
}
# verdict CONDITION-AWK-EXPR TEXT: prints "target TEXT: met" or "missed"
verdict() {
	if awk "BEGIN {exit !($1)}"; then echo "target $2: met"; else echo "target $2: MISSED"; fi
}

# The commands a benchmark needs: the subcommands of imgbuild it uses.
need_commands() {
	[ -x "$IMGBUILD" ] || bench_skip "$IMGBUILD not built (make build/imgbuild)"
	local c help
	help=$("$IMGBUILD" --help 2>&1)
	for c in "$@"; do
		grep -qE "^  $c " <<<"$help" || bench_skip "imgbuild has no '$c' command yet"
	done
}

# The real trees the benchmarks share, made once and reused by every script (so that
# pack, verify, unpack and run are measured on the same bytes).
#
# bench_minbase: prints the path of a Debian bookworm minbase root made with mmdebstrap
# into $BENCH_TMP/run-root (the mirror imgbuild uses; needs root). Made once.
bench_minbase() {
	local root=$BENCH_TMP/run-root mirror
	if [ ! -x "$root/bin/true" ]; then
		[ "$(id -u)" = 0 ] || { bench_note "a minbase root needs root (mmdebstrap --mode=root)"; return 1; }
		mirror=$(bench_mirror) || { bench_note "no Debian mirror known"; return 1; }
		rm -rf --one-file-system "$root.new"
		unshare --mount --propagation private mmdebstrap --mode=root --variant=minbase \
			--aptopt='Acquire::Languages "none"' bookworm "$root.new" "deb $mirror bookworm main" \
			>>"$BENCH_LOG" 2>&1 || { bench_note "mmdebstrap failed (see $BENCH_LOG)"; return 1; }
		mv "$root.new" "$root"
	fi
	echo "$root"
}

# bench_minbase_image: prints the path of an unsigned image packed from bench_minbase
# ($BENCH_TMP/run-root.tar, with its .sha256), repacked when the root is newer.
bench_minbase_image() {
	local root image=$BENCH_TMP/run-root.tar
	root=$(bench_minbase) || return 1
	if [ ! -s "$image" ] || [ ! -s "$image.sha256" ] || [ "$root" -nt "$image" ]; then
		"$IMGBUILD" -q pack "$root" -o "$image" --epoch 1577836800 >>"$BENCH_LOG" 2>&1 ||
			{ bench_note "pack of $root failed (see $BENCH_LOG)"; return 1; }
	fi
	echo "$image"
}

# bench_demo_image: prints the path of the demo image (manifests/demo.toml, signed with
# the test key tests/fixtures/imgbuild-test.sec) built into $BENCH_TMP/demo.tar with
# the benchmark cache; rebuilt only when missing (a no-change build is ~0.03 s anyway).
bench_demo_image() {
	local image=$BENCH_TMP/demo.tar
	if [ ! -s "$image" ] || [ ! -s "$image.sig" ]; then
		IMGBUILD_CACHE=$BENCH_CACHE "$IMGBUILD" -q build "$BENCH_REPO/manifests/demo.toml" -o "$image" \
			--sign "$BENCH_REPO/tests/fixtures/imgbuild-test.sec" >>"$BENCH_LOG" 2>&1 ||
			{ bench_note "build of manifests/demo.toml failed (see $BENCH_LOG)"; return 1; }
	fi
	echo "$image"
}

# bench_vision_layer: prints the upper folder of the torch layer of
# manifests/vision-cpu.toml (the layer that holds python3-torch) when a cache already
# holds it: BENCH_VISION_LAYER names it, else the benchmark cache and the default cache
# are searched. Fails when none is built (it takes minutes of apt; callers skip the row).
bench_vision_layer() {
	local d
	if [ -n "${BENCH_VISION_LAYER:-}" ]; then
		[ -d "$BENCH_VISION_LAYER" ] && { echo "$BENCH_VISION_LAYER"; return 0; }
		return 1
	fi
	for d in "$BENCH_CACHE"/*/layers/*/upper "$BENCH_CACHE"/layers/*/upper /var/cache/imgbuild/layers/*/upper; do
		[ -d "$d/usr/lib/python3/dist-packages/torch" ] && { echo "$d"; return 0; }
	done
	return 1
}

# bench_unpacked IMAGE DIR: prints DIR, IMAGE's tree (imgbuild unpack, checked with the
# test key), made once and kept while IMAGE's digest is the one recorded in DIR.sha256.
bench_unpacked() {
	local img=$1 dir=$2 sum
	sum=$(cut -d' ' -f1 "$img.sha256") || return 1
	if [ "$(cat "$dir.sha256" 2>/dev/null)" != "$sum" ]; then
		rm -rf --one-file-system "$dir" "$dir.sha256"
		"$IMGBUILD" -q unpack "$img" "$dir" --key "$BENCH_REPO/tests/fixtures/imgbuild-test.pub" >>"$BENCH_LOG" 2>&1 ||
			{ bench_note "unpack of $img failed (see $BENCH_LOG)"; return 1; }
		echo "$sum" >"$dir.sha256"
	fi
	echo "$dir"
}

# bench_synth_tree DIR MB: the synthetic tree of pack-verify.sh and unpack-run.sh
# (about MB MiB: 40% of the bytes in 4-64 KiB files like /usr/lib, 60% in a few
# 50-200 MB files like libcudnn; seed 42, so the same bytes every time), made once:
# DIR.done marks a whole one.
bench_synth_tree() {
	[ -f "$1.done" ] && return 0
	rm -rf --one-file-system "$1"
	mkdir -p "$1"
	python3 - "$1" "$2" <<'PY' || return 1
import os, random, sys
root, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
small = mb * 1024 * 1024 * 4 // 10
big = mb * 1024 * 1024 - small
blob = os.urandom(1 << 20)
n = 0
d = 0
while small > 0:
    if n % 200 == 0:
        d += 1
        os.makedirs(f"{root}/usr/lib/d{d}", exist_ok=True)
    size = rnd.randint(4096, 65536)
    off = rnd.randint(0, len(blob) - size)
    with open(f"{root}/usr/lib/d{d}/f{n}.so", "wb") as f:
        f.write(blob[off:off + size])
    small -= size
    n += 1
os.makedirs(f"{root}/opt/big", exist_ok=True)
i = 0
while big > 0:
    size = min(big, rnd.randint(50, 200) << 20)
    with open(f"{root}/opt/big/lib{i}.so", "wb") as f:
        left = size
        while left > 0:
            k = min(left, len(blob))
            f.write(os.urandom(16) + blob[16:k])
            left -= k
    big -= size
    i += 1
PY
	touch "$1.done"
}
