#!/usr/bin/env bash
# Runs every test and ends with one line "N passed, N failed, N skipped".
# Each test program prints TAP lines: "ok N - what", "not ok N - what",
# "ok N # SKIP why". Arguments narrow the run to some files or folders.
set -uo pipefail
cd "$(dirname "$0")/.."
export IMGBUILD_REPO=$PWD
mkdir -p build/test-logs

passed=0 failed=0 skipped=0
failures=()

run_one() {	# name, command...
	local name=$1
	shift
	local log=build/test-logs/$(echo "$name" | tr '/' '_').log
	local start=$SECONDS
	"$@" >"$log" 2>&1
	local rc=$?
	local p f s
	p=$(grep -cE '^ok [0-9]+' "$log" | tr -d ' ')
	s=$(grep -ciE '^ok [0-9]+.*# *skip' "$log" | tr -d ' ')
	f=$(grep -cE '^not ok [0-9]+' "$log" | tr -d ' ')
	p=$((p - s))
	# A plan of "1..0 # SKIP reason" skips the whole program: count it, and
	# show the reason, so that a suite that did not run never looks passed.
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && grep -qiE '^1\.\.0 *# *skip' "$log"; then
		s=1
		echo "ok 1 # SKIP $(grep -iE '^1\.\.0 *# *skip' "$log" | head -1 | sed -E 's/^1\.\.0 *# *[Ss][Kk][Ii][Pp] *//')" >>"$log"
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1	# a test program that died without saying which test failed
		echo "not ok - $name exited $rc" >>"$log"
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	printf '%-44s %3d passed %3d failed %3d skipped  %4ds\n' "$name" "$p" "$f" "$s" $((SECONDS - start))
	grep -E '^not ok|^ok .*# *[Ss][Kk][Ii][Pp]' "$log" | sed 's/^/    /'
	if [ "$f" -ne 0 ]; then
		failures+=("$name")
		tail -n 30 "$log" | sed 's/^/    | /'
	fi
}

selected=("$@")
want() {	# is this test file selected?
	[ ${#selected[@]} -eq 0 ] && return 0
	local s
	for s in "${selected[@]}"; do
		case "$1" in "$s"*) return 0 ;; esac
	done
	return 1
}

for bin in build/unit/*_test; do
	[ -x "$bin" ] || continue
	want "tests/unit/$(basename "$bin")" || continue
	CMOCKA_MESSAGE_OUTPUT=TAP run_one "unit/$(basename "$bin")" "$bin"
done
if want tests/toml; then
	run_one "toml-test" python3 tests/toml/run-toml-test.py build/toml-decode
fi
for t in tests/e2e/*.sh; do
	[ -f "$t" ] || continue
	want "$t" || continue
	run_one "e2e/$(basename "$t" .sh)" timeout 1500 bash "$t"
done
if [ -n "${IMGBUILD_LONG:-}" ]; then
	for t in tests/long/*.sh; do
		[ -f "$t" ] || continue
		want "$t" || continue
		run_one "long/$(basename "$t" .sh)" bash "$t"
	done
fi

if [ ${#failures[@]} -ne 0 ]; then
	echo "failed: ${failures[*]} (logs in build/test-logs/)"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
