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

# --- 10: crafted names cannot make verify's name set quadratic ---------------------
# 1500 names that all land in 8 probe chains of an unkeyed (FNV-1a) table; the
# image is unsigned, since the names are read before the signature matters.
OLD_PROBES=$(python3 "$REPO/tests/crafted-names.py" "$TMP/crafted" 1500 9)
"$IMGBUILD" -q pack "$TMP/crafted" -o "$TMP/crafted.tar" --epoch 1577836800 >/dev/null
"$IMGBUILD" -v verify "$TMP/crafted.tar" >"$TMP/crafted.out" 2>&1 || true
NAMES=$(sed -n 's/.*verify: \([0-9]*\) names in the name set, \([0-9]*\) probes.*/\1/p' "$TMP/crafted.out")
PROBES=$(sed -n 's/.*verify: \([0-9]*\) names in the name set, \([0-9]*\) probes.*/\2/p' "$TMP/crafted.out")
check "10: the crafted names are an attack: the unkeyed table pays over 100 probes a name ($OLD_PROBES for 1500)" \
	test "${OLD_PROBES:-0}" -gt 150000
check "10: verify read every crafted name ($NAMES) and paid under 4 probes a name ($PROBES)" \
	bash -c "[ '${NAMES:-0}' -gt 1500 ] && [ '${PROBES:-999999}' -lt \$((4 * ${NAMES:-0})) ]"
check "10: ... and still refused the unsigned image" grep -q "^verdict: *FAILED" "$TMP/crafted.out"

# --- 5: run's cache folder is named by the digest that was verified ---------------
# The victim runs a classmate's unsigned image with --allow-unsigned. Its
# IMAGE.sha256 first names the good image's digest A, then its own, B: before,
# the hostile tree was cached under A and later trusted for the good image.
export IMGBUILD_CACHE=$TMP/c5
mkimage "$TMP/evil"
echo planted >"$TMP/evil/etc/evil-marker"
"$IMGBUILD" -q pack "$TMP/evil" -o "$TMP/evil.tar" --epoch 1577836800 >/dev/null
A=$(cut -d' ' -f1 "$TMP/good.tar.sha256")
B=$(cut -d' ' -f1 "$TMP/evil.tar.sha256")
cp "$TMP/evil.tar" "$TMP/x.tar"
mkfifo "$TMP/x.tar.sha256"
( for h in "$A" "$B" "$B"; do echo "$h  x.tar" >"$TMP/x.tar.sha256"; done ) &
FIFO_WRITER=$!
check_fails "5: a FIFO IMAGE.sha256 (two digests) is refused" 1 "x\.tar\.sha256' is not a regular file \(a FIFO\)" \
	timeout 30 "$IMGBUILD" run --allow-unsigned "$TMP/x.tar" -- true
kill "$FIFO_WRITER" 2>/dev/null || true
check "5: ... and nothing is cached under either digest" bash -c "[ ! -e '$IMGBUILD_CACHE/images/$A' ] && [ ! -e '$IMGBUILD_CACHE/images/$B' ]"
# A swap of the image (and its .sha256) right after run read the .sha256:
# inotify sees the read end and renames the hostile pair into place.
cat >"$TMP/swap.py" <<'PY'
import ctypes, os, struct, sys
d, name = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
IN_CLOSE_NOWRITE = 0x10
libc.inotify_add_watch(fd, (d + "/" + name + ".sha256").encode(), IN_CLOSE_NOWRITE)
print("ready", flush=True)
os.read(fd, 4096)
os.rename(d + "/evil-copy.tar.sha256", d + "/" + name + ".sha256")
os.rename(d + "/evil-copy.tar", d + "/" + name)
PY
swapped_ok=0
for i in 1 2 3; do
	export IMGBUILD_CACHE=$TMP/c5-$i
	cp "$TMP/good.tar" "$TMP/s.tar"; sed 's/good\.tar/s.tar/' "$TMP/good.tar.sha256" >"$TMP/s.tar.sha256"
	cp "$TMP/evil.tar" "$TMP/evil-copy.tar"; sed 's/evil\.tar/s.tar/' "$TMP/evil.tar.sha256" >"$TMP/evil-copy.tar.sha256"
	python3 "$TMP/swap.py" "$TMP" s.tar >"$TMP/swap.out" &
	SW=$!
	while ! grep -q ready "$TMP/swap.out" 2>/dev/null; do sleep 0.05; done
	"$IMGBUILD" run --allow-unsigned "$TMP/s.tar" -- cat /etc/hostname >"$TMP/swap-run.out" 2>&1 || true
	wait "$SW" 2>/dev/null || true
	if [ -e "$IMGBUILD_CACHE/images/$A/tree/etc/evil-marker" ]; then
		not_ok "5: swap $i: the hostile tree was cached under the good image's digest"
		sed 's/^/# /' "$TMP/swap-run.out"
	else
		swapped_ok=$((swapped_ok + 1))
		diag "swap $i: $(tail -n1 "$TMP/swap-run.out")"
	fi
done
check "5: 3 swaps during run: never the hostile tree under the good digest" test "$swapped_ok" -eq 3
export IMGBUILD_CACHE=$TMP/c5
check "5: the good image, run after the attacks, shows its own tree" \
	bash -c "'$IMGBUILD' run '$TMP/good.tar' -- cat /etc/hostname | grep -qx good && [ ! -e '$IMGBUILD_CACHE/images/$A/tree/etc/evil-marker' ]"

# --- 6: a setuid-root file of an image, cached, out of other users' reach ---------
# The cache sits in a folder every user may traverse, so only the cache's own
# modes stand between a local user and the image's setuid-root shell.
chmod 0711 "$TMP"
mkdir -m 0755 "$TMP/pub"
export IMGBUILD_CACHE=$TMP/pub/cache
mkimage "$TMP/suid"
cp "$BUSYBOX" "$TMP/suid/bin/suidsh"
chown 0:0 "$TMP/suid/bin/suidsh"
chmod 4755 "$TMP/suid/bin/suidsh"
"$IMGBUILD" -q pack "$TMP/suid" -o "$TMP/suid.tar" --epoch 1577836800 --sign "$TEST_KEY" >/dev/null
check "6: the image with a setuid-root shell runs once (and is cached)" "$IMGBUILD" run "$TMP/suid.tar" -- true
S=$(cut -d' ' -f1 "$TMP/suid.tar.sha256")
CACHED=$IMGBUILD_CACHE/images/$S/tree/bin/suidsh
check "6: the cached copy is setuid root" bash -c "[ \"\$(stat -c '%a %u' '$CACHED')\" = '4755 0' ]"
check "6: images/ is 0700" bash -c "[ \"\$(stat -c '%a' '$IMGBUILD_CACHE/images')\" = 700 ]"
TEST_USER=imgbuild-secinput
userdel "$TEST_USER" 2>/dev/null || true
trap 'rc=$?; set +e; userdel "$TEST_USER" 2>/dev/null; (exit $rc); _lib_cleanup' EXIT
useradd -M -N -d /nonexistent -s /usr/sbin/nologin "$TEST_USER"
U=$(id -u "$TEST_USER")
as_user() { setpriv --reuid="$U" --regid="$(id -g "$TEST_USER")" --clear-groups -- "$@"; }
check "6: the test user can run programs (control)" as_user "$BUSYBOX" true
check_fails "6: the test user cannot execute the cached setuid shell" 126 "Permission denied" \
	as_user "$BUSYBOX" sh -c "'$CACHED' -c 'id -u'"
check "6: ... nor reach it through the cache's folders" bash -c "! setpriv --reuid=$U --regid=$(id -g "$TEST_USER") --clear-groups -- '$BUSYBOX' ls '$IMGBUILD_CACHE/images/' 2>/dev/null"
# A cache made before this change (images/ 0755) is closed on the next run.
chmod 0755 "$IMGBUILD_CACHE/images"
"$IMGBUILD" run "$TMP/suid.tar" -- true
check "6: an old 0755 images/ is made 0700 by the next run" bash -c "[ \"\$(stat -c '%a' '$IMGBUILD_CACHE/images')\" = 700 ]"
userdel "$TEST_USER"
check "6: the test user is removed" bash -c "! id '$TEST_USER' 2>/dev/null"
# --- 11: a corrupted download store entry is never used --------------------------
export IMGBUILD_CACHE=$TMP/c11
head -c 200000 /dev/urandom >"$TMP/data.bin"
DSUM=$(sha256sum "$TMP/data.bin" | cut -d' ' -f1)
mkdir -p "$TMP/p11/stages"
printf '[image]\nname = "dl"\nsource_date_epoch = 0\n[base]\ndistro = "debian"\nsuite = "bookworm"\n[[download]]\nname = "data"\nurl = "file://%s"\nsha256 = "%s"\n' \
	"$TMP/data.bin" "$DSUM" >"$TMP/p11/dl.toml"
check "11: fetch stores the download" "$IMGBUILD" fetch "$TMP/p11/dl.toml"
ENTRY=$IMGBUILD_CACHE/downloads/sha256/$DSUM
check "11: fetch --offline accepts the intact entry" "$IMGBUILD" fetch --offline "$TMP/p11/dl.toml"
chmod u+w "$ENTRY"
printf 'EVIL' | dd of="$ENTRY" bs=1 seek=1000 conv=notrunc status=none
check_fails "11: fetch --offline refuses the corrupted entry, naming the file and the fix" 1 \
	"download store entry '$ENTRY' is corrupt: its content has sha256 [0-9a-f]{64} \(delete it: rm -f '$ENTRY', then imgbuild fetch MANIFEST fetches it again\)" \
	"$IMGBUILD" fetch --offline "$TMP/p11/dl.toml"
check "11: online, fetch replaces the corrupted entry with the right bytes" \
	bash -c "'$IMGBUILD' fetch '$TMP/p11/dl.toml' 2>&1 | grep -q 'is corrupt' && [ \"\$(sha256sum <'$ENTRY' | cut -d' ' -f1)\" = '$DSUM' ]"

# --- builds on the cached bookworm base: items 4, 8 and 11 -------------------------
use_debian_test_cache
NONCE="$(date +%s%N)-$$"
ls "$IMGBUILD_CACHE/layers" >"$TMP/layers-before" 2>/dev/null || : >"$TMP/layers-before"
Q=$TMP/q
mkdir -p "$Q/stages"
bmanifest() {	# FILE STAGE-NAME [EXTRA-TOML]: one stage, stages/STAGE-NAME.sh
	printf '[image]\nname = "attack-%s"\nsource_date_epoch = 1700000000\n\n[base]\ndistro = "debian"\nsuite = "bookworm"\n\n[env]\nTEST_NONCE = "%s"\n%s\n\n[[stage]]\nname = "%s"\nscript = "stages/%s.sh"\n%s\n' \
		"$2" "$NONCE" "${4:-}" "$2" "$2" "${3:-}" >"$1"
}
bstage() { printf 'set -eu\n%s\n' "$2" >"$Q/stages/$1.sh"; }
ibuild() {	# OUT-TAR MANIFEST [ARGS...]
	local out=$1 mf=$2
	shift 2
	"$IMGBUILD" build "$mf" -o "$out" --build-dir "$TMP/bd-$(basename "$mf" .toml)" "$@"
}

# 4: the stage links lock.d (or a file in it) to the host's secret.
bstage locklink "mkdir -p /.imgbuild; ln -s '$TMP/host' /.imgbuild/lock.d"
bmanifest "$Q/locklink.toml" locklink
check_fails "4: a stage's lock.d -> a host folder fails the build, naming it" 1 \
	"the image's /\.imgbuild/lock\.d is a symbolic link .*fix the stage that made it" ibuild "$TMP/l1.tar" "$Q/locklink.toml"
bstage lockfile "mkdir -p /.imgbuild/lock.d; ln -s '$TMP/host/secret' /.imgbuild/lock.d/keys"
bmanifest "$Q/lockfile.toml" lockfile
check_fails "4: a file in lock.d -> a host secret fails the build, naming it" 1 \
	"the image's /\.imgbuild/lock\.d/keys' is a symbolic link: refusing to follow it" ibuild "$TMP/l2.tar" "$Q/lockfile.toml"
bstage factsfifo "mkdir -p /.imgbuild/facts.d; mkfifo /.imgbuild/facts.d/cuda"
bmanifest "$Q/factsfifo.toml" factsfifo
check_fails "4: a FIFO in facts.d fails the build at once, without waiting for a writer" 1 \
	"the image's /\.imgbuild/facts\.d/cuda' is not a regular file \(a FIFO\)" ibuild "$TMP/l3.tar" "$Q/factsfifo.toml"
bstage factsbig "mkdir -p /.imgbuild/facts.d; yes x | head -c 2000000 >/.imgbuild/facts.d/cuda"
bmanifest "$Q/factsbig.toml" factsbig
check_fails "4: a 2 MB fact fails the build by its size" 1 \
	"facts\.d/cuda' is 2000000 bytes, more than the 1048576" ibuild "$TMP/l4.tar" "$Q/factsbig.toml"
check "4: no image was written, the secret is in none of the build's files" \
	bash -c "! ls '$TMP'/l[1-4].tar* 2>/dev/null && ! grep -rqF 'host secret $$' '$TMP'/bd-* '$IMGBUILD_CACHE/layers' 2>/dev/null"
bstage lockok "mkdir -p /.imgbuild/lock.d /.imgbuild/facts.d; echo 'pip torch==1.4.0' >/.imgbuild/lock.d/pip; echo yes >/.imgbuild/facts.d/probe"
bmanifest "$Q/lockok.toml" lockok
check "4: plain lock.d and facts.d files still reach the image" \
	bash -c "$(declare -f ibuild); IMGBUILD='$IMGBUILD' TMP='$TMP'; ibuild '$TMP/ok.tar' '$Q/lockok.toml' >/dev/null 2>&1 &&
		tar -xOf '$TMP/ok.tar' ./.imgbuild/lock | grep -qx 'pip torch==1.4.0' && tar -xOf '$TMP/ok.tar' ./.imgbuild/facts.toml | grep -q 'probe = \"yes\"'"
check "6: layers/ is 0700" bash -c "[ \"\$(stat -c '%a' '$IMGBUILD_CACHE/layers')\" = 700 ]"

# 8: manifest A plants an object in its ccache; B's build does not see it; A's
# next build (edited) still finds its own ccache.
bstage plant 'echo "planted by A" >"$CCACHE_DIR/planted.o"; echo "$CCACHE_DIR" >/etc/ccache-dir'
bmanifest "$Q/a.toml" plant
check "8: manifest A writes a planted object into its ccache" ibuild "$TMP/a.tar" "$Q/a.toml"
bstage look 'ls -A "$CCACHE_DIR" >/etc/ccache-list; if [ -e "$CCACHE_DIR/planted.o" ]; then echo SEEN >/etc/planted; fi'
bmanifest "$Q/b.toml" look
check "8: manifest B builds" ibuild "$TMP/b.tar" "$Q/b.toml"
check "8: B's stage does not see A's planted object" bash -c "! tar -tf '$TMP/b.tar' | grep -q '^\./etc/planted\$'"
CA=$(ls -d "$IMGBUILD_CACHE"/ccache/attack-plant-* | head -1)
CB=$(ls -d "$IMGBUILD_CACHE"/ccache/attack-look-* | head -1)
check "8: A's and B's ccache are different folders on the host, the object only in A's" \
	bash -c "[ -n '$CA' ] && [ -n '$CB' ] && [ '$CA' != '$CB' ] && [ -f '$CA/planted.o' ] && [ ! -e '$CB/planted.o' ]"
bstage plant 'cat "$CCACHE_DIR/planted.o" >/etc/seen'
check "8: A, edited and rebuilt, finds its own ccache again (hits within a manifest)" \
	bash -c "$(declare -f ibuild); IMGBUILD='$IMGBUILD' TMP='$TMP'; ibuild '$TMP/a2.tar' '$Q/a.toml' >/dev/null 2>&1 && tar -xOf '$TMP/a2.tar' ./etc/seen | grep -qx 'planted by A'"

# 11: a build never uses a corrupted store entry.
head -c 100000 /dev/urandom >"$TMP/input.bin"
ISUM=$(sha256sum "$TMP/input.bin" | cut -d' ' -f1)
bstage useinput 'sha256sum </imgbuild/inputs/data | cut -d" " -f1 >/etc/data-sum'
bmanifest "$Q/input.toml" useinput 'inputs = ["data"]' "$(printf '\n[[download]]\nname = "data"\nurl = "file://%s"\nsha256 = "%s"' "$TMP/input.bin" "$ISUM")"
check "11: fetch stores the build's input" "$IMGBUILD" fetch "$Q/input.toml"
IENTRY=$IMGBUILD_CACHE/downloads/sha256/$ISUM
chmod u+w "$IENTRY"
printf 'EVIL' | dd of="$IENTRY" bs=1 seek=500 conv=notrunc status=none
check_fails "11: build --offline refuses the corrupted store entry, naming it and the fix" 1 \
	"download store entry '$IENTRY' is corrupt.*rm -f '$IENTRY', then imgbuild fetch MANIFEST" ibuild "$TMP/i1.tar" "$Q/input.toml" --offline
check "11: online, the build fetches it again and the stage sees the right bytes" \
	bash -c "$(declare -f ibuild); IMGBUILD='$IMGBUILD' TMP='$TMP'; ibuild '$TMP/i2.tar' '$Q/input.toml' >/dev/null 2>&1 && tar -xOf '$TMP/i2.tar' ./etc/data-sum | grep -qx '$ISUM'"
rm -f "$IENTRY"
# Drop what this test made in the shared cache: its stage layers (keyed by the
# nonce) and its ccache folders; the bookworm base stays.
BASE_KEY=$(tar -xOf "$TMP/ok.tar" ./.imgbuild/facts.toml 2>/dev/null | sed -n 's/^base_key = "\(.*\)"$/\1/p')
for d in "$IMGBUILD_CACHE"/layers/*; do
	k=$(basename "$d")
	grep -qx "$k" "$TMP/layers-before" && continue
	[ "$k" = "$BASE_KEY" ] && continue
	rm -rf --one-file-system "$d"
done
rm -rf --one-file-system "$IMGBUILD_CACHE"/ccache/attack-*

check "the host's files are unchanged" bash -c "$(declare -f host_sum host_unchanged); HOST_BEFORE='$HOST_BEFORE' TMP='$TMP'; host_unchanged"
finish
