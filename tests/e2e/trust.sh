#!/usr/bin/env bash
# imgbuild trust add/list/remove and keygen's trust step: a key keygen makes is
# trusted at once (verify needs no --key), trust list shows keynum, name and file,
# bad keys, taken names and unknown keys get one-line errors naming the file and
# the fix, and a removed key is no longer accepted. Everything lives in a private
# XDG_CONFIG_HOME and IMGBUILD_DATADIR: the user's real trust folder is never touched.
. "$(dirname "$0")/../lib.sh"
export XDG_CONFIG_HOME=$TMP/cfg IMGBUILD_DATADIR=$TMP/data
T=$XDG_CONFIG_HOME/imgbuild/trusted
mkdir -p "$TMP/data/keys" "$TMP/root/etc" "$TMP/out"
echo hello >"$TMP/root/etc/hostname"
real_trust=${HOME:-/root}/.config/imgbuild/trusted
before=$(ls -la "$real_trust" 2>/dev/null || true)

check_fails "keygen prints the keynum and trusts the key" 0 "keynum [0-9a-f]{16}, trusted for this user as 'alice'" \
	"$IMGBUILD" keygen alice -d "$TMP/k"
KN=$(sed -n 2p "$TMP/k/alice.pub" | base64 -d | od -An -tx1 -j2 -N8 | tr -d ' \n')
check "... into the trust folder, byte for byte" cmp "$TMP/k/alice.pub" "$T/alice.pub"
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/out/a.tar" --epoch 1577836800 --sign "$TMP/k/alice.sec" >/dev/null
check "an image signed with it verifies with no --key" "$IMGBUILD" verify "$TMP/out/a.tar"
check_fails "trust list shows keynum, name and file" 0 "^$KN +alice +$T/alice.pub\$" "$IMGBUILD" trust list

check_fails "keygen --no-trust leaves the trust folder alone" 0 "not trusted: imgbuild trust add" \
	"$IMGBUILD" keygen bob -d "$TMP/k" --no-trust
check "... (no bob.pub there)" test ! -e "$T/bob.pub"
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/out/b.tar" --epoch 1577836800 --sign "$TMP/k/bob.sec" >/dev/null
check_fails "an untrusted signer: the error names the keynum and the trust command" 1 \
	"untrusted key \(keynum [0-9a-f]{16}; 1 trusted key\).*imgbuild trust add bob.pub'" "$IMGBUILD" verify "$TMP/out/b.tar"
check_fails "trust add KEY.pub --name" 0 "trusted keynum [0-9a-f]{16} as 'bobby'" \
	"$IMGBUILD" trust add "$TMP/k/bob.pub" --name bobby
check "... and the image verifies" "$IMGBUILD" verify "$TMP/out/b.tar"
check_fails "adding the same key again says where it is and succeeds" 0 "already trusted as 'bobby'" \
	"$IMGBUILD" trust add "$TMP/k/bob.pub"
check "... without a second copy" test ! -e "$T/bob.pub"

"$IMGBUILD" keygen carol -d "$TMP/k2" --no-trust >/dev/null
check_fails "a name another key holds is refused, with the fix" 2 "another key is already trusted as 'alice' .*trust remove alice" \
	"$IMGBUILD" trust add "$TMP/k2/carol.pub" --name alice
check_fails "keygen refuses a name that is taken before making a pair" 2 "already trusted as 'alice'.*--no-trust" \
	"$IMGBUILD" keygen alice -d "$TMP/k3"
check "... and made no pair" test ! -e "$TMP/k3/alice.sec"

printf 'not a key\n' >"$TMP/garbage.pub"
check_fails "a file that is not a key: one line naming it and the fix" 2 \
	"^imgbuild: error: trust add: '$TMP/garbage.pub' is not a signify Ed25519 public key .*imgbuild keygen" \
	"$IMGBUILD" trust add "$TMP/garbage.pub"
check_fails "a secret key is refused, pointing at its .pub" 2 "'$TMP/k/alice.sec' is a secret key: trust its public half" \
	"$IMGBUILD" trust add "$TMP/k/alice.sec"
check_fails "a missing file" 2 "'$TMP/nope.pub' does not exist" "$IMGBUILD" trust add "$TMP/nope.pub"
check_fails "a name with a slash" 2 "bad key name '../x'" "$IMGBUILD" trust add "$TMP/k2/carol.pub" --name ../x
check "none of them left a file" test "$(ls "$T")" = "$(printf 'alice.pub\nbobby.pub')"

cp "$TMP/k2/carol.pub" "$TMP/data/keys/"
check_fails "trust list shows the installation's keys too" 0 "carol +$TMP/data/keys/carol.pub +\(installation\)" \
	"$IMGBUILD" trust list
check_fails "... which trust remove will not delete" 1 "installation's key .*remove that file" \
	"$IMGBUILD" trust remove carol
check_fails "trust remove of an unknown key" 2 "no trusted key is named or numbered 'nobody'" \
	"$IMGBUILD" trust remove nobody
check_fails "trust remove KEYNUM" 0 "removed 'alice' \(keynum $KN" "$IMGBUILD" trust remove "$KN"
check_fails "... and the image is refused again" 1 "untrusted key \(keynum $KN" "$IMGBUILD" verify "$TMP/out/a.tar"
check_fails "trust remove NAME" 0 "removed 'bobby'" "$IMGBUILD" trust remove bobby
check "the trust folder is empty again" test -z "$(ls "$T")"
check "the user's real trust folder did not change" test "$(ls -la "$real_trust" 2>/dev/null || true)" = "$before"
finish
