#!/usr/bin/env bash
# Issue 14, the input half: hostile manifests, stages, images, downloads and
# cache entries try to reach the host, and each attack is really performed and
# seen to fail, with the host unchanged (docs/reliability.md, "Threat model").
source "$(dirname "$0")/../lib.sh"
require_root
cd "$TMP"
# A host file every attack aims at, and its digest to see it unchanged.
mkdir -p "$TMP/host" "$TMP/home/.config/imgbuild/keys"
echo "host secret $$" >"$TMP/host/secret"
echo "ssh-ed25519 AAAA the-owner" >"$TMP/host/authorized_keys"
cp "$TEST_KEY" "$TMP/home/.config/imgbuild/keys/me.sec"
host_sum() { sha256sum "$TMP/host/secret" "$TMP/host/authorized_keys" "$TMP/home/.config/imgbuild/keys/me.sec"; }
HOST_BEFORE=$(host_sum)
host_unchanged() { [ "$(host_sum)" = "$HOST_BEFORE" ] && [ "$(ls -A "$TMP/host" | wc -l)" -eq 2 ]; }

# --- 3: [image] output and sign from a manifest ---------------------------------
# A stranger's project: the manifest names the owner's key and a path outside.
P=$TMP/stranger
mkdir -p "$P/stages" "$P/out"
printf 'set -eu\ntrue\n' >"$P/stages/s.sh"
hostile_manifest() {	# FILE IMAGE-LINES
	printf '[image]\nname = "stranger"\nsource_date_epoch = 1577836800\n%s\n\n[base]\ndistro = "debian"\nsuite = "bookworm"\n\n[[stage]]\nname = "s"\nscript = "stages/s.sh"\n' "$2" >"$1"
}
hostile_manifest "$P/out.toml" "output = \"$TMP/host/authorized_keys\""
check_fails "3: a manifest's output outside its project is refused, naming file, line, key and fix" 2 \
	"out\.toml:4:10: image\.output '$TMP/host/authorized_keys' is in $TMP/host, outside the project $P \(hint: .*imgbuild build -o OUT\)" \
	"$IMGBUILD" build "$P/out.toml"
ln -s "$TMP/host" "$P/out/link"
hostile_manifest "$P/link.toml" 'output = "out/link/authorized_keys"'
check_fails "3: ... also through a symbolic link inside the project" 2 \
	"link\.toml:4:10: image\.output 'out/link/authorized_keys' is in $TMP/host, outside the project" \
	"$IMGBUILD" build "$P/link.toml"
hostile_manifest "$P/sign.toml" 'sign = "~/.config/imgbuild/keys/me.sec"'
check_fails "3: a manifest naming the builder's key is refused" 2 \
	"sign\.toml:4:8: image\.sign '~/\.config/imgbuild/keys/me\.sec' names a key of the person building.*--sign KEY" \
	env HOME="$TMP/home" "$IMGBUILD" build "$P/sign.toml"
ln -s "$TMP/home/.config/imgbuild/keys/me.sec" "$P/key.sec"
hostile_manifest "$P/signlink.toml" 'sign = "key.sec"'
check_fails "3: ... also through a symbolic link inside the project" 2 \
	"signlink\.toml:4:8: image\.sign 'key\.sec' is not a key file inside the project" \
	"$IMGBUILD" build "$P/signlink.toml"
check "3: the host's files are unchanged, no image was written" \
	bash -c "$(declare -f host_sum host_unchanged); HOST_BEFORE='$HOST_BEFORE' TMP='$TMP'; host_unchanged && ! ls '$P'/*.tar '$P'/out/*.tar 2>/dev/null"

# --- a small busybox image, signed with the test key ------------------------------
trust_test_key
BUSYBOX=$(command -v busybox)
mkimage() {	# DIR: a root tree with a static busybox and its applets
	mkdir -p "$1/bin" "$1/etc" "$1/tmp"
	cp "$BUSYBOX" "$1/bin/busybox"
	for a in sh cat ls id echo test chmod; do ln -sf busybox "$1/bin/$a"; done
	echo "$(basename "$1")" >"$1/etc/hostname"
}
mkimage "$TMP/good"
"$IMGBUILD" -q pack "$TMP/good" -o "$TMP/good.tar" --epoch 1577836800 --sign "$TEST_KEY" >/dev/null
check "the good image verifies" "$IMGBUILD" verify "$TMP/good.tar"

# --- 10: untrusted files read whole; names printed raw ------------------------------
cp "$TMP/good.tar" "$TMP/zero.tar"; cp "$TMP/good.tar.sha256" "$TMP/zero.tar.sha256"
ln -s /dev/zero "$TMP/zero.tar.sig"
check_fails "10: IMAGE.sig -> /dev/zero is refused at once, named" 1 \
	"zero\.tar\.sig' is not a regular file \(a device\)" timeout 30 "$IMGBUILD" verify "$TMP/zero.tar"
cp "$TMP/good.tar" "$TMP/fifo.tar"; cp "$TMP/good.tar.sha256" "$TMP/fifo.tar.sha256"
mkfifo "$TMP/fifo.tar.sig"
check_fails "10: a FIFO IMAGE.sig is refused without waiting for a writer" 1 \
	"fifo\.tar\.sig' is not a regular file \(a FIFO\)" timeout 30 "$IMGBUILD" verify "$TMP/fifo.tar"
cp "$TMP/good.tar" "$TMP/big.tar"; cp "$TMP/good.tar.sha256" "$TMP/big.tar.sha256"
truncate -s 3G "$TMP/big.tar.sig"
check_fails "10: a 3 GiB IMAGE.sig is refused by its size, not read" 1 \
	"big\.tar\.sig' is 3221225472 bytes, more than the 65536" timeout 30 "$IMGBUILD" verify "$TMP/big.tar"
rm -f "$TMP/big.tar.sig"
python3 "$REPO/tests/make-hostile-images.py" "$TMP/hostile" "$TMP/good.tar" "$TEST_KEY" >/dev/null
"$IMGBUILD" verify "$TMP/hostile/terminal-escapes.tar" >"$TMP/esc.out" 2>&1 || true
check "10: verify prints an image's names and facts with control characters escaped" \
	grep -qF 'FAIL: '"'"'./x\x1b[1A\x1b[2K\x0dverdict:   OK\x0averdict:   OK\x1b[8m'"'" "$TMP/esc.out"
check "10: ... no escape byte and no fake verdict line reaches the terminal" \
	bash -c "! grep -q \$'\\x1b' '$TMP/esc.out' && ! grep -q \$'\\r' '$TMP/esc.out' && ! grep -qE '^verdict: +OK' '$TMP/esc.out' && grep -qE '^verdict: +FAILED' '$TMP/esc.out'"
"$IMGBUILD" run "$TMP/hostile/terminal-escapes.tar" -- true >"$TMP/esc-run.out" 2>&1 || true
check "10: run's error names the entry escaped too" \
	bash -c "grep -qF 'x\x1b[1A' '$TMP/esc-run.out' && ! grep -q \$'\\x1b' '$TMP/esc-run.out'"
printf '[image]\nname = "esc"\nsource_date_epoch = 0\n[base]\ndistro = "debian"\nsuite = "bookworm"\n[[stage]]\nname = "s"\nscript = "stages/s.sh"\nenv = { X = "a\\u001b[2J\\rb" }\n' >"$P/esc.toml"
"$IMGBUILD" plan "$P/esc.toml" >"$TMP/esc-plan.out" 2>&1 || true
check "10: plan prints a manifest's values escaped" \
	bash -c "grep -qF 'a\x1b[2J\x0db' '$TMP/esc-plan.out' && ! grep -q \$'\\x1b' '$TMP/esc-plan.out'"
