#!/usr/bin/env bash
# `make bench`: every benchmark, each printing its own table with ratios against
# the plain tools measured in the same run. No benchmark asserts a time. At the end,
# one summary table of every target line ("target ...: met" / ": MISSED", printed
# through `verdict` in bench/lib.sh) of every script, and of the scripts that skipped
# or failed. BENCH_ONLY="a.sh b.sh" runs only those scripts (names under bench/).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "started: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
outs=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-bench-run.XXXXXX")
trap 'rm -rf --one-file-system "$outs"' EXIT
rc=0
scripts=()
for b in bench/[0-9]*.sh bench/pack-verify.sh bench/unpack-run.sh bench/mpi-startup.sh bench/export.sh; do
	[ -f "$b" ] || continue
	if [ -n "${BENCH_ONLY:-}" ] && ! grep -qw "${b#bench/}" <<<"$BENCH_ONLY"; then continue; fi
	scripts+=("$b")
	echo
	echo "=== $b"
	out=$outs/$(basename "$b" .sh).out
	bash "$b" 2>&1 | tee "$out"
	st=${PIPESTATUS[0]}
	[ "$st" = 0 ] || { echo "$b failed (status $st)"; echo "FAILED: status $st" >>"$out"; rc=1; }
done

# The summary: one line per target, in the order the scripts ran.
echo
echo "=== summary: every target of every benchmark (finished $(date -u '+%Y-%m-%d %H:%M UTC'))"
printf '| %-22s | %-7s | %s\n' script verdict target
echo '|---|---|---|'
met=0 missed=0 other=0
for b in "${scripts[@]}"; do
	out=$outs/$(basename "$b" .sh).out
	n=0
	while IFS= read -r line; do
		n=$((n + 1))
		case $line in
		*': met') v=met; met=$((met + 1)); t=${line%: met} ;;
		*': MISSED') v=MISSED; missed=$((missed + 1)); t=${line%: MISSED} ;;
		*) v='?'; other=$((other + 1)); t=$line ;;
		esac
		printf '| %-22s | %-7s | %s\n' "${b#bench/}" "$v" "${t#target }"
	done < <(grep '^target ' "$out")
	if grep -q '^SKIPPED' "$out"; then
		printf '| %-22s | %-7s | %s\n' "${b#bench/}" skipped "$(grep -m1 '^SKIPPED' "$out" | sed 's/^SKIPPED: *//')"
	elif grep -q '^FAILED' "$out"; then
		printf '| %-22s | %-7s | %s\n' "${b#bench/}" failed "the script failed: its targets above (if any) are from before that"
	elif [ $n = 0 ]; then
		printf '| %-22s | %-7s | %s\n' "${b#bench/}" - "(no target line)"
	fi
done
echo "targets: $met met, $missed missed, $other unreadable"
exit $rc
