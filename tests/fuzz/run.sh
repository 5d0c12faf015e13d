#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS with a corpus seeded from the tests.
# Usage: tests/fuzz/run.sh SECONDS build/fuzz/NAME_fuzz...
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=$1
shift
toml_cases=${IMGBUILD_SHARED:+$IMGBUILD_SHARED/toml-test}
toml_cases=${toml_cases:-tests/toml/toml-test}
failed=0
for target in "$@"; do
	name=$(basename "$target")
	corpus=build/fuzz/corpus-$name
	mkdir -p "$corpus"
	case "$name" in
	toml_fuzz | manifest_fuzz)
		[ -d "$toml_cases/valid" ] && find "$toml_cases/valid" -name '*.toml' -exec cp -t "$corpus" {} + 2>/dev/null || true
		cp manifests/*.toml tests/cases/*.toml "$corpus"/ 2>/dev/null || true
		;;
	image_fuzz)
		# Seeds: a good signed image and the hostile corpus the verify tests use.
		seed=$(mktemp -d)
		mkdir -p "$seed/root/etc" && echo seed >"$seed/root/etc/hostname"
		if build/imgbuild -q pack "$seed/root" -o "$seed/good.tar" --epoch 1577836800 \
			--sign tests/fixtures/imgbuild-test.sec >/dev/null 2>&1; then
			python3 tests/make-hostile-images.py "$seed/h" "$seed/good.tar" tests/fixtures/imgbuild-test.sec >/dev/null 2>&1 || true
			cp "$seed"/good.tar "$seed"/h/*.tar "$corpus"/ 2>/dev/null || true
		fi
		rm -rf --one-file-system "$seed"
		;;
	esac
	echo "== $name: ${seconds}s, corpus $(ls "$corpus" | wc -l) files"
	if ! "$target" -max_total_time="$seconds" -detect_leaks=1 -print_final_stats=1 \
		-artifact_prefix="build/fuzz/$name-" "$corpus" >"build/fuzz/$name.log" 2>&1; then
		echo "not ok - $name found a problem (build/fuzz/$name.log):"
		tail -n 40 "build/fuzz/$name.log"
		failed=1
	else
		grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "build/fuzz/$name.log" | sed "s/^/   /"
		echo "ok - $name: no findings"
	fi
done
exit $failed
