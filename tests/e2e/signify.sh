#!/usr/bin/env bash
# imgbuild's keys and signatures are OpenBSD signify's, both ways:
# signify-openbsd -C checks images imgbuild signed, and imgbuild uses keys
# and signatures that signify-openbsd made.
. "$(dirname "$0")/../lib.sh"
if ! command -v signify-openbsd >/dev/null; then
	skip "signify-openbsd not installed"
	exit 0
fi
export IMGBUILD_DATADIR=$TMP/data	# no project keys: only what each test names
export XDG_CONFIG_HOME=$TMP/xdg	# keygen trusts what it makes: never in the real ~/.config
mkdir -p "$TMP/data/keys" "$TMP/root/etc" "$TMP/out"
echo hello >"$TMP/root/etc/hostname"
E=1577836800

check "imgbuild keygen -d" "$IMGBUILD" keygen ours -d "$TMP/k"
check "secret key is mode 0600" test "$(stat -c %a "$TMP/k/ours.sec")" = 600
check "key files in signify's layout" bash -c "head -1 '$TMP/k/ours.pub' | grep -q '^untrusted comment: ours public key\$' &&
	head -1 '$TMP/k/ours.sec' | grep -q '^untrusted comment: ours secret key\$' &&
	[ \$(sed -n 2p '$TMP/k/ours.pub' | base64 -d | wc -c) -eq 42 ] && [ \$(sed -n 2p '$TMP/k/ours.sec' | base64 -d | wc -c) -eq 104 ] &&
	sed -n 2p '$TMP/k/ours.sec' | base64 -d | head -c 8 | od -An -c | tr -d ' ' | grep -q '^EdBK\\\\0\\\\0\\\\0\\\\0\$'"
check_fails "keygen refuses to overwrite a key" 1 "already exists" "$IMGBUILD" keygen ours -d "$TMP/k"
check_fails "keygen defaults to ~/.config/imgbuild/keys and says how to publish" 0 "cp .*/me.pub keys/" \
	env HOME="$TMP/home" XDG_CONFIG_HOME= "$IMGBUILD" keygen me
check "... and trusts it in ~/.config/imgbuild/trusted" cmp "$TMP/home/.config/imgbuild/keys/me.pub" "$TMP/home/.config/imgbuild/trusted/me.pub"
check "... where the pair now is" test -f "$TMP/home/.config/imgbuild/keys/me.sec" -a -f "$TMP/home/.config/imgbuild/keys/me.pub"

# ours -> signify
check "pack --sign with our key" "$IMGBUILD" -q pack "$TMP/root" -o "$TMP/out/img.tar" --epoch $E --sign "$TMP/k/ours.sec"
check "the .sig embeds 'SHA256 (img.tar) = HEX'" bash -c "tail -1 '$TMP/out/img.tar.sig' | grep -qE '^SHA256 \\(img.tar\\) = [0-9a-f]{64}\$'"
check_fails "signify-openbsd -C verifies our image" 0 "img.tar: OK" bash -c "cd '$TMP/out' && signify-openbsd -C -p '$TMP/k/ours.pub' -x img.tar.sig"
check_fails "signify-openbsd -V -e verifies our signature" 0 "Signature Verified" signify-openbsd -V -e -p "$TMP/k/ours.pub" -x "$TMP/out/img.tar.sig" -m "$TMP/out/msg"
check "signify can sign with our secret key (no passphrase)" bash -c "signify-openbsd -S -s '$TMP/k/ours.sec' -m '$TMP/out/msg' -x '$TMP/out/msg.sig' </dev/null && signify-openbsd -V -p '$TMP/k/ours.pub' -m '$TMP/out/msg' -x '$TMP/out/msg.sig'"
printf 'X' | dd of="$TMP/out/img.tar" bs=1 seek=700 conv=notrunc 2>/dev/null
check_fails "signify-openbsd -C rejects a tampered image" 1 "FAIL" bash -c "cd '$TMP/out' && signify-openbsd -C -p '$TMP/k/ours.pub' -x img.tar.sig"

# signify -> ours
check "signify-openbsd -G -n" signify-openbsd -G -n -c "their key" -p "$TMP/k/theirs.pub" -s "$TMP/k/theirs.sec"
check "pack --sign with signify's secret key" "$IMGBUILD" -q pack "$TMP/root" -o "$TMP/out/t.tar" --epoch $E --sign "$TMP/k/theirs.sec"
check "verify --key with signify's public key" "$IMGBUILD" verify "$TMP/out/t.tar" --key "$TMP/k/theirs.pub"
# -q is "only errors": no report when the image verifies, the one-line error when not.
check "verify -q prints nothing when the image verifies" bash -c "out=\$('$IMGBUILD' -q verify '$TMP/out/t.tar' --key '$TMP/k/theirs.pub' 2>&1) && [ -z \"\$out\" ]"
check_fails "verify -q still names what failed" 1 "untrusted key" "$IMGBUILD" -q verify "$TMP/out/t.tar" --key "$TMP/k/ours.pub"
check "unpack -q prints nothing" bash -c "out=\$('$IMGBUILD' -q unpack '$TMP/out/t.tar' '$TMP/out/t-tree' --key '$TMP/k/theirs.pub' 2>&1) && [ -z \"\$out\" ] && [ -f '$TMP/out/t-tree/etc/hostname' ]"
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/out/s.tar" --epoch $E >/dev/null
printf 'SHA256 (s.tar) = %s\n' "$(cut -c1-64 "$TMP/out/s.tar.sha256")" >"$TMP/out/s.msg"
check "signify-openbsd -S -e signs an image's checksum" signify-openbsd -S -e -s "$TMP/k/theirs.sec" -m "$TMP/out/s.msg" -x "$TMP/out/s.tar.sig"
check "imgbuild verify accepts signify's signature" "$IMGBUILD" verify "$TMP/out/s.tar" --key "$TMP/k/theirs.pub"
check_fails "... and names the wrong key" 1 "untrusted key" "$IMGBUILD" verify "$TMP/out/s.tar" --key "$TMP/k/ours.pub"
cp "$TMP/k/theirs.pub" "$TMP/data/keys/"
check "keys in the project's keys/ are trusted" "$IMGBUILD" verify "$TMP/out/s.tar"
mkdir -p "$TMP/cfg/imgbuild/trusted"
cp "$TMP/k/ours.pub" "$TMP/cfg/imgbuild/trusted/"
rm "$TMP/data/keys/theirs.pub"
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/out/o.tar" --epoch $E --sign "$TMP/k/ours.sec" >/dev/null
check "keys in ~/.config/imgbuild/trusted are trusted" env XDG_CONFIG_HOME="$TMP/cfg" "$IMGBUILD" verify "$TMP/out/o.tar"
check_fails "... and only those" 1 "untrusted key" env XDG_CONFIG_HOME="$TMP/cfg" "$IMGBUILD" verify "$TMP/out/s.tar"
finish
