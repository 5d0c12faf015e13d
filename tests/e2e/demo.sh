#!/usr/bin/env bash
# The demo through the user-facing flow: a key made (and trusted) by `imgbuild keygen`, the
# demo manifest built and signed (shared test cache), `imgbuild verify --key`,
# `sha256sum -c` of the sidecar, `signify-openbsd -C` of the signature, hello
# run in the image with no --key, exit codes passed through by `imgbuild run`, and a warm
# rebuild that runs no stage. The build times go out as TAP diagnostics.
source "$(dirname "$0")/../lib.sh"
require_root

use_debian_test_cache
MANIFEST=$REPO/manifests/demo.toml
OUT=$TMP/out/demo.tar
mkdir -p "$TMP/out"
cd "$TMP" || exit 1

# keygen trusts the key it makes for its user: a private config folder here.
export XDG_CONFIG_HOME=$TMP/config
check_fails "keygen makes a key pair, trusts it and prints its keynum" 0 "keynum [0-9a-f]{16}, trusted for this user" \
	"$IMGBUILD" keygen demo-test -d "$TMP/keys"
SEC=$TMP/keys/demo-test.sec
PUB=$TMP/keys/demo-test.pub

# build OUTFILE: the demo, signed, into $OUT; prints its wall time in seconds.
build() {
	local s e
	s=$(date +%s.%N)
	"$IMGBUILD" build "$MANIFEST" -o "$OUT" --sign "$SEC" --build-dir "$TMP/bd" >"$1" 2>&1 || return 1
	e=$(date +%s.%N)
	awk -v s="$s" -v e="$e" 'BEGIN { printf "%.1f", e - s }' >"$1.time"
}
if build "$TMP/build1.out"; then
	ok "the demo builds and is signed"
else
	not_ok "the demo builds and is signed"
	sed 's/^/# /' "$TMP/build1.out" | tail -n 40
	finish
fi
sed 's/^/#   /' "$TMP/build1.out" | grep -E 'bootstrap|stage .*done|stages run|packed|finished'
cold_what=$(sed -n 's/^imgbuild: stages run: //p' "$TMP/build1.out")
check "the image, its .sha256 and its .sig are written" test -s "$OUT" -a -s "$OUT.sha256" -a -s "$OUT.sig"
check "imgbuild verify --key" "$IMGBUILD" verify "$OUT" --key "$PUB"
check "imgbuild verify with no --key: keygen trusted the key" "$IMGBUILD" verify "$OUT"
check "sha256sum -c of the sidecar" sh -c "cd '$TMP/out' && sha256sum -c demo.tar.sha256"
if command -v signify-openbsd >/dev/null; then
	check_fails "signify-openbsd -C checks the signature" 0 "demo.tar: OK" \
		sh -c "cd '$TMP/out' && signify-openbsd -C -p '$PUB' -x demo.tar.sig"
else
	skip "signify-openbsd not installed"
fi
check_fails "verify refuses another key" 1 "untrusted key|signature" \
	"$IMGBUILD" verify "$OUT" --key "$TEST_PUB"

hello_ok() {
	local got
	got=$("$IMGBUILD" run "$OUT" -- hello 2>"$TMP/run.err") || { cat "$TMP/run.err"; return 1; }
	echo "hello printed: $got"
	[ "$got" = "Hello, world!" ]
}
check "imgbuild run IMAGE -- hello (no --key) prints 'Hello, world!'" hello_ok
rc=0
"$IMGBUILD" run "$OUT" --key "$PUB" -- sh -c 'exit 42' >/dev/null 2>&1 || rc=$?
check "run passes the command's exit status through (got $rc)" test "$rc" -eq 42
rc=0
"$IMGBUILD" run "$OUT" --key "$PUB" -- ls /no/such/file >/dev/null 2>&1 || rc=$?
check "run passes a failing program's status through (ls of a missing file: got $rc)" test "$rc" -eq 2
rc=0
"$IMGBUILD" run "$OUT" --key "$PUB" -- sh -c 'kill -TERM $$' >/dev/null 2>&1 || rc=$?
check "run reports a command killed by SIGTERM as 143 (got $rc)" test "$rc" -eq 143
check "run: a command missing from the image exits 127" \
	sh -c "\"$IMGBUILD\" run '$OUT' --key '$PUB' -- /no/such/program >/dev/null 2>&1; test \$? -eq 127"

digest1=$(cut -d' ' -f1 "$OUT.sha256")
if build "$TMP/build2.out"; then ok "the warm rebuild succeeds"; else
	not_ok "the warm rebuild succeeds"
	sed 's/^/# /' "$TMP/build2.out" | tail -n 20
fi
check "the warm rebuild runs no stage" grep -q 'stages run: none' "$TMP/build2.out"
check "the warm rebuild leaves the same image" test "$(cut -d' ' -f1 "$OUT.sha256")" = "$digest1"
check "the image still verifies after the warm rebuild" "$IMGBUILD" verify "$OUT" --key "$PUB"
diag "demo image sha256 $digest1"
diag "demo build times: first build $(cat "$TMP/build1.out.time" 2>/dev/null) s (stages run: ${cold_what:-?}), warm rebuild $(cat "$TMP/build2.out.time" 2>/dev/null) s"
finish
