#!/usr/bin/env bash
# A new [stack] pin is a data change: nccl, a key no C file names, declared by a
# [[pin]] row and checked by a [[pin_range]] rule that exist only in this test's
# copy of compat.toml (IMGBUILD_DATADIR). Without that row plan and build refuse
# it at its line; with it plan checks it, it is in the stage keys, the stage sees
# IMGBUILD_NCCL and the image's facts say nccl. The build part needs root and the
# Debian mirror (a bookworm base from the shared test cache, one tiny stage).
source "$(dirname "$0")/../lib.sh"
cd "$TMP"

D=$TMP/data	# the data folder: the real rules plus the new pin and its rule
mkdir -p "$D/builder"
ln -s "$REPO/keys" "$D/keys"
ln -s "$REPO/stages" "$D/stages"
ln -s "$REPO/builder/chips.toml" "$D/builder/chips.toml"
cat "$REPO/builder/compat.toml" - >"$D/builder/compat.toml" <<'EOF'

[[pin]]
key = "nccl"
what = "NCCL release"

[[pin_range]]
rule = "nccl-cuda"
when = "cuda"
when_min = "10.0"
when_max = "10.0"
key = "nccl"
min = "2.3"
max = "2.4.8"
source = "this test"
EOF

P=$TMP/p
mkdir -p "$P/stages"
printf 'set -eu\necho "$IMGBUILD_NCCL" >/etc/nccl-version\n' >"$P/stages/nccl.sh"
manifest() {	# FILE NCCL
	printf '[image]\nname = "test-pins"\nsource_date_epoch = 1700000000\n\n' >"$1"
	printf '[base]\ndistro = "debian"\nsuite = "bookworm"\n\n' >>"$1"
	printf '[stack]\ncuda = "10.0"\nnccl = "%s"\n\n' "$2" >>"$1"
	printf '[[stage]]\nname = "nccl"\nscript = "stages/nccl.sh"\n' >>"$1"
}
manifest "$P/a.toml" 2.4.8
manifest "$P/b.toml" 2.4.7
manifest "$P/c.toml" 2.5.6

# --- without the [[pin]] row -------------------------------------------------
check_fails "plan: nccl is unknown to the shipped rules, at its line" 2 \
	"^imgbuild: error: $P/a\.toml:11:8: unknown key 'nccl' in \[stack\] \(hint: .*a new pin is a \[\[pin\]\] row in builder/compat\.toml\)$" \
	"$IMGBUILD" plan "$P/a.toml"
check "plan: the refusal is one line" test "$(wc -l <"$TMP/check.out")" -eq 1
check_fails "build: refused the same way, before any work" 2 "a\.toml:11:8: unknown key 'nccl'" \
	"$IMGBUILD" build "$P/a.toml" -o "$TMP/refused.tar"
check "build: no output written" test ! -e "$TMP/refused.tar"

# --- with it -----------------------------------------------------------------
export IMGBUILD_DATADIR=$D
check_fails "plan: the data's rule passes nccl 2.4.8 for CUDA 10.0" 0 \
	'^  ok +nccl-cuda +nccl 2\.4\.8 is within cuda 10\.0.s range \(2\.3-2\.4\.8\)' "$IMGBUILD" plan "$P/a.toml"
cp "$TMP/check.out" "$TMP/plan-a.out"
check "plan: the stack line shows the pin" grep -qE '^stack .* nccl 2\.4\.8' "$TMP/plan-a.out"
{ grep -E '^ +key +[0-9a-f]{64}$' "$TMP/plan-a.out" || true; } | tail -n 1 >"$TMP/key-a"
check_fails "plan: the data's rule fails nccl 2.5.6, naming the fix" 2 \
	'^  FAIL +nccl-cuda +nccl 2\.5\.6 is outside cuda 10\.0.s range \(2\.3-2\.4\.8\): set stack nccl = "2\.4\.8"' \
	"$IMGBUILD" plan "$P/c.toml"
{ "$IMGBUILD" plan "$P/b.toml" 2>&1 || true; } | { grep -E '^ +key +[0-9a-f]{64}$' || true; } | tail -n 1 >"$TMP/key-b"
check "the stage key covers the pin (2.4.8 and 2.4.7 differ)" \
	bash -c "[ -s '$TMP/key-a' ] && [ -s '$TMP/key-b' ] && ! cmp -s '$TMP/key-a' '$TMP/key-b'"

# --- a build -----------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
	skip "build: needs root"
	finish
fi
use_debian_test_cache
OUT=$TMP/pins.tar
check "build with the new pin" "$IMGBUILD" build "$P/a.toml" -o "$OUT" --build-dir "$TMP/build"
check "the stage saw IMGBUILD_NCCL" bash -c "[ \"\$(tar -xOf '$OUT' ./etc/nccl-version)\" = 2.4.8 ]"
check "the image's facts say nccl = \"2.4.8\"" bash -c "tar -xOf '$OUT' ./.imgbuild/facts.toml | grep -qx 'nccl = \"2.4.8\"'"
check "verify prints the pin among the facts" bash -c "'$IMGBUILD' verify '$OUT' | grep -qx 'fact: *nccl = 2.4.8'"
finish
