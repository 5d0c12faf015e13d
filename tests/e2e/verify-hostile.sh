#!/usr/bin/env bash
# verify refuses every image of the hostile corpus (tests/make-hostile-images.py)
# with a message naming the problem, even when the image is signed by a
# trusted key; unpack --no-verify refuses the unsafe ones too, writes nothing
# outside its folder and leaves nothing half-unpacked.
. "$(dirname "$0")/../lib.sh"
require_root
trust_test_key
KEY=$REPO/tests/fixtures/imgbuild-test.sec
H=$TMP/hostile

mkdir -p "$TMP/root/etc" "$TMP/root/bin"
echo hi >"$TMP/root/etc/hostname"
head -c 100000 /dev/urandom >"$TMP/root/bin/tool"
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/good.tar" --epoch 1577836800 --sign "$KEY" >/dev/null
check "the good image verifies" "$IMGBUILD" verify "$TMP/good.tar"
check "make the hostile corpus" python3 "$REPO/tests/make-hostile-images.py" "$H" "$TMP/good.tar" "$KEY"

for img in "$H"/*.tar; do
	name=$(basename "$img" .tar)
	check_fails "verify refuses $name: $(cat "$H/$name.expect")" 1 "$(cat "$H/$name.expect")" "$IMGBUILD" verify "$img"
	if [ -f "$H/$name.expect2" ]; then
		check_fails "verify refuses $name: $(cat "$H/$name.expect2")" 1 "$(cat "$H/$name.expect2")" "$IMGBUILD" verify "$img"
	fi
done
check_fails "--allow-unsigned does not excuse a bad signature" 1 "untrusted key" "$IMGBUILD" verify "$H/untrusted-signer.tar" --allow-unsigned
check "--allow-unsigned accepts an unsigned good image" "$IMGBUILD" verify "$H/unsigned.tar" --allow-unsigned
check_fails "--allow-unsigned still runs every other check" 1 "must be the last entry" bash -c "rm -f '$H/appended.tar.sig' && '$IMGBUILD' verify '$H/appended.tar' --allow-unsigned"
check_fails "a missing .sha256 is named" 1 "outer sha256" bash -c "cp '$TMP/good.tar' '$TMP/nosum.tar' && cp '$TMP/good.tar.sig' '$TMP/nosum.tar.sig' && '$IMGBUILD' verify '$TMP/nosum.tar'"

# unpack: the unsafe cases are refused even with --no-verify; nothing lands
# outside the folder, nothing is left half-unpacked.
mkdir -p "$TMP/u"
touch "$TMP/before"
for name in absolute-path dotdot dotdot-deep symlink-then-file hardlink-outside hardlink-dotdot hardlink-to-later \
	block-device char-device fifo duplicate out-of-order no-parent-folder truncated not-a-tar; do
	check_fails "unpack --no-verify refuses $name" 1 "." "$IMGBUILD" unpack --no-verify "$H/$name.tar" "$TMP/u/out"
	check "... and leaves nothing for $name" bash -c "[ -z \"\$(ls -A '$TMP/u')\" ]"
done
check "nothing was written outside the unpack folders" bash -c "
	! find / -xdev -newer '$TMP/before' -name 'evil*' 2>/dev/null | grep -q . &&
	[ ! -e /etc/evil ] && [ ! -e /tmp/evil ] && [ ! -e '$TMP/evil' ]"
# The same unsafe images through the verifying unpack, which writes each entry
# in the same read that checks it (and libarchive's per-folder symlink walk is
# off there: ib_entry_check is the guard): refused, nothing left, nothing outside.
for name in absolute-path dotdot dotdot-deep symlink-then-file hardlink-outside hardlink-dotdot hardlink-to-later \
	block-device char-device fifo duplicate out-of-order no-parent-folder truncated not-a-tar; do
	check_fails "unpack refuses $name" 1 "refusing an image that does not verify" "$IMGBUILD" unpack "$H/$name.tar" "$TMP/u/out"
	check "... and leaves nothing for $name" bash -c "[ -z \"\$(ls -A '$TMP/u')\" ]"
done
# A read that fails half-way (truncated) leaves libarchive with folder modes and
# times still to set, by relative name: run from a folder holding the image's
# folder names, the user's own ./etc and ./bin must keep their mode and time.
mkdir -p "$TMP/cwd/etc" "$TMP/cwd/bin"
chmod 0751 "$TMP/cwd/etc" "$TMP/cwd/bin"
touch -d 2001-01-01 "$TMP/cwd/etc" "$TMP/cwd/bin"
check_fails "unpack refuses truncated, run from a folder with the image's folder names" 1 "truncated" \
	bash -c "cd '$TMP/cwd' && '$IMGBUILD' unpack '$H/truncated.tar' '$TMP/u/out'"
check "... and the working folder's own folders keep their mode and time" bash -c "
	[ \"\$(stat -c '%a %Y' '$TMP/cwd/etc' '$TMP/cwd/bin' | sort -u)\" = '751 978307200' ]"
check "nothing was written outside the unpack folders by the verifying unpack" bash -c "
	! find / -xdev -newer '$TMP/before' -name 'evil*' 2>/dev/null | grep -q . &&
	[ ! -e /etc/evil ] && [ ! -e /tmp/evil ] && [ ! -e '$TMP/evil' ]"
for name in listing-lies-content appended untrusted-signer unsigned; do
	check_fails "unpack refuses $name" 1 "refusing an image that does not verify" "$IMGBUILD" unpack "$H/$name.tar" "$TMP/u/out"
	check "... and leaves nothing for $name" bash -c "[ -z \"\$(ls -A '$TMP/u')\" ]"
done
check "unpack of the good image" "$IMGBUILD" unpack "$TMP/good.tar" "$TMP/u/good"
check "unpacked file matches" cmp "$TMP/root/bin/tool" "$TMP/u/good/bin/tool"
finish
