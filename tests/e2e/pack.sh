#!/usr/bin/env bash
# imgbuild pack / verify / unpack on a small tree made here: what goes in and
# what stays out, GNU tar and bsdtar read it, reproducible across umask, TZ
# and times, sha256sum -c and signify -C accept it, one flipped byte anywhere
# fails verify, a failed or interrupted pack leaves nothing behind, and
# unpack restores owners and file capabilities.
. "$(dirname "$0")/../lib.sh"
require_root
trust_test_key
KEY=$REPO/tests/fixtures/imgbuild-test.sec
PUB=$TEST_PUB
E=1577836800
R=$TMP/root

make_tree() {	# $1: root
	local r=$1
	mkdir -p "$r"/{bin,etc,usr/lib,proc/1,sys/kernel,dev/pts,run/lock,tmp,var/tmp,var/log/apt,var/lib/apt/lists/partial} \
		"$r"/var/cache/apt/archives "$r"/var/lib/dbus "$r"/var/cache/ldconfig "$r"/var/lib/systemd/catalog "$r"/.imgbuild/facts.d
	chmod 1777 "$r/tmp"
	chmod 0555 "$r/proc" "$r/sys"
	echo "hello" >"$r/etc/hostname"
	echo "0123456789abcdef0123456789abcdef" >"$r/etc/machine-id"
	ln -s /etc/machine-id "$r/var/lib/dbus/machine-id"
	printf 'aux' >"$r/var/cache/ldconfig/aux-cache"
	printf 'db' >"$r/var/lib/systemd/catalog/database"
	echo log >"$r/var/log/dpkg.log"
	echo log >"$r/var/log/bootstrap.log"
	echo log >"$r/var/log/alternatives.log"
	echo log >"$r/var/log/apt/history.log"
	echo keep >"$r/var/log/syslog-keep"
	echo list >"$r/var/lib/apt/lists/mirror.example_dists_bookworm_InRelease"
	echo deb >"$r/var/cache/apt/archives/foo_1.0_amd64.deb"
	echo bin >"$r/var/cache/apt/pkgcache.bin"
	echo 1 >"$r/proc/1/status"
	echo x >"$r/run/lock/x"
	echo x >"$r/tmp/x"
	echo x >"$r/.imgbuild/facts.d/cuda"
	head -c 300000 /dev/urandom >"$r/usr/lib/libbig.so"
	echo 'small' >"$r/usr/lib/libsmall.so.1.2"
	ln -s libsmall.so.1.2 "$r/usr/lib/libsmall.so"
	ln -s /usr/lib/libbig.so "$r/bin/abs-link"
	ln "$r/usr/lib/libbig.so" "$r/bin/hardlinked"
	cp /bin/true "$r/bin/ping"
	chmod 4755 "$r/bin/ping"
	chown 1234:5678 "$r/etc/hostname"
	printf 'spaces' >"$r/etc/with space"
	mknod "$r/dev/null" c 1 3
	mknod "$r/dev/sda" b 8 0
	mknod "$r/usr/lib/whiteout" c 0 0	# an overlayfs whiteout
	mkfifo "$r/var/fifo"
	python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$r/run/sock" 2>/dev/null || true
	touch -d '2030-01-01' "$r/etc/hostname"	# newer than the epoch: clamped
	touch -d '2001-02-03 04:05:06 UTC' "$r/usr/lib/libsmall.so.1.2"	# older: kept
}
make_tree "$R"
HAVE_SETCAP=0
if command -v setcap >/dev/null && setcap cap_net_raw+ep "$R/bin/ping" 2>/dev/null; then HAVE_SETCAP=1; fi
echo manifest-text >"$TMP/manifest.toml"
echo lock-text >"$TMP/lock"

IMG=$TMP/out/img.tar
mkdir -p "$TMP/out"
check "pack a tree" "$IMGBUILD" pack "$R" -o "$IMG" --epoch $E --sign "$KEY" --name test-image \
	--fact cuda=10.0 --fact min_driver=410.48 --arch 3.5 --arch 6.1+PTX \
	--meta manifest.toml="$TMP/manifest.toml" --meta lock="$TMP/lock"
tar -tvf "$IMG" >"$TMP/gnu.txt" 2>"$TMP/gnu.err"
names() { awk '{print $6}' "$TMP/gnu.txt"; }
check "GNU tar lists the image" test -s "$TMP/gnu.txt"
check "GNU tar reads it without errors" bash -c "! grep -v 'Ignoring unknown extended header keyword .LIBARCHIVE.xattr' '$TMP/gnu.err' | grep -q ."
check ".imgbuild entries come first, in order" bash -c "head -5 '$TMP/gnu.txt' | awk '{print \$6}' | tr '\n' ' ' | grep -q '^\./ \./\.imgbuild/ \./\.imgbuild/facts.toml \./\.imgbuild/lock \./\.imgbuild/manifest.toml'"
check "the listing is the last entry" bash -c "[ \"\$(tar -tf '$IMG' 2>/dev/null | tail -1)\" = ./.imgbuild/listing ] && [ \$(tar -tf '$IMG' 2>/dev/null | grep -c listing) -eq 1 ]"
check "the other entries sorted by path bytes" bash -c "tar -tf '$IMG' 2>/dev/null | sed '\$d; s,/\$,,' | LC_ALL=C sort -c"
check "numeric owners, no names" bash -c "grep -q ' 1234/5678 .* ./etc/hostname' '$TMP/gnu.txt' && ! tar --numeric-owner -tvf '$IMG' 2>/dev/null | awk '{print \$2}' | grep -q '[a-z]'"
check "mtime newer than the epoch clamped" grep -q '2020-01-01 00:00 ./etc/hostname' "$TMP/gnu.txt"
check "older mtime kept" grep -q '2001-02-03 04:05 ./usr/lib/libsmall.so.1.2' "$TMP/gnu.txt"
check "hard link kept as a link" grep -q './usr/lib/libbig.so link to ./bin/hardlinked' "$TMP/gnu.txt"
check "symlinks kept" bash -c "grep -q './usr/lib/libsmall.so -> libsmall.so.1.2' '$TMP/gnu.txt' && grep -q './bin/abs-link -> /usr/lib/libbig.so' '$TMP/gnu.txt'"
check "setuid mode kept" grep -q '^-rwsr-xr-x .* ./bin/ping' "$TMP/gnu.txt"
check "no device nodes, whiteouts, fifos or sockets" bash -c "! grep -qE '^[cbps]' '$TMP/gnu.txt' && ! grep -qE 'dev/null|dev/sda|whiteout|var/fifo|run/sock' '$TMP/gnu.txt'"
check "/proc /sys /dev /run /tmp kept as empty folders with their modes" bash -c "
	grep -q '^dr-xr-xr-x .* ./proc/\$' '$TMP/gnu.txt' && grep -q '^dr-xr-xr-x .* ./sys/\$' '$TMP/gnu.txt' &&
	grep -q '^drwxrwxrwt .* ./tmp/\$' '$TMP/gnu.txt' && grep -q ' ./dev/\$' '$TMP/gnu.txt' && grep -q ' ./run/\$' '$TMP/gnu.txt' &&
	! grep -qE '\./(proc|sys|dev|run|tmp)/.' '$TMP/gnu.txt'"
check "run-time residue left out (logs, apt lists, .debs, caches, dbus machine-id)" bash -c "
	! grep -qE 'dpkg.log|bootstrap.log|alternatives.log|history.log|InRelease|\.deb\$|pkgcache.bin|aux-cache|catalog/database|dbus/machine-id' '$TMP/gnu.txt' &&
	grep -q ' ./var/log/syslog-keep' '$TMP/gnu.txt' && grep -q ' ./var/lib/apt/lists/\$' '$TMP/gnu.txt' && grep -q ' ./var/log/apt/\$' '$TMP/gnu.txt'"
check "/etc/machine-id kept empty" bash -c "grep -qE '^-rw-r--r-- 0/0 +0 .* ./etc/machine-id\$' '$TMP/gnu.txt'"
check "the tree's own /.imgbuild is replaced" bash -c "! grep -q 'facts.d' '$TMP/gnu.txt'"
check "no atime/ctime pax records" bash -c "! grep -aqE '[0-9]+ (atime|ctime)=' '$IMG'"
check "facts.toml" bash -c "tar -xOf '$IMG' ./.imgbuild/facts.toml 2>/dev/null | tee '$TMP/facts' | grep -q '^name = \"test-image\"' &&
	grep -q '^builder = \"imgbuild ' '$TMP/facts' && grep -q '^created = $E\$' '$TMP/facts' && grep -q '^cuda = \"10.0\"' '$TMP/facts' &&
	grep -q '^archs = \\[\"3.5\", \"6.1+PTX\"\\]' '$TMP/facts'"
check "caller's metadata files stored" bash -c "[ \"\$(tar -xOf '$IMG' ./.imgbuild/manifest.toml 2>/dev/null)\" = manifest-text ] && [ \"\$(tar -xOf '$IMG' ./.imgbuild/lock 2>/dev/null)\" = lock-text ]"
check "listing has every entry with its digest" bash -c "tar -xOf '$IMG' ./.imgbuild/listing 2>/dev/null >'$TMP/listing' &&
	grep -q \"^f 0644 0 0 300000 \$(sha256sum '$R/usr/lib/libbig.so' | cut -c1-64) ./bin/hardlinked -\$\" '$TMP/listing' &&
	grep -q '^h 0644 0 0 0 - ./usr/lib/libbig.so ./bin/hardlinked\$' '$TMP/listing' &&
	grep -q '^f 0644 0 0 6 .* ./etc/with\\\\040space -\$' '$TMP/listing' &&
	[ \$((\$(wc -l <'$TMP/listing') - 1)) -eq \$((\$(tar -tf '$IMG' 2>/dev/null | wc -l) - 1)) ]"
if command -v bsdtar >/dev/null; then
	check "bsdtar reads it" bash -c "bsdtar -tvf '$IMG' >'$TMP/bsd.txt' && [ \$(wc -l <'$TMP/bsd.txt') -eq \$(wc -l <'$TMP/gnu.txt') ]"
	if [ $HAVE_SETCAP = 1 ]; then
		check "bsdtar sees the file capability" bash -c "bsdtar -xf '$IMG' -C '$TMP' --xattrs ./bin/ping 2>/dev/null; getcap '$TMP/bin/ping' | grep -q cap_net_raw"
		rm -rf "${TMP:?}/bin"
	fi
else
	skip "bsdtar not installed (libarchive-tools): add it to tests/install-deps.sh"
fi
if [ $HAVE_SETCAP = 1 ]; then
	check "file capability stored (GNU tar --xattrs)" bash -c "mkdir '$TMP/gx' && tar --xattrs --xattrs-include='*' -xpf '$IMG' -C '$TMP/gx' ./bin/ping 2>/dev/null && getcap '$TMP/gx/bin/ping' | grep -q cap_net_raw"
else
	skip "setcap unavailable: file capability not tested"
fi

# Reproducibility: same tree, other umask, TZ, atimes; and a copy of the tree
# (new inodes and ctimes) packed elsewhere.
D1=$(cut -c1-64 "$IMG.sha256")
mkdir -p "$TMP/out2"
find "$R" -type f -exec cat {} + >/dev/null 2>&1 || true	# touches atimes
sleep 1
(umask 077 && TZ=Asia/Tokyo LC_ALL=C.UTF-8 "$IMGBUILD" -q pack "$R" -o "$TMP/out2/img.tar" --epoch $E --sign "$KEY" --name test-image \
	--fact cuda=10.0 --fact min_driver=410.48 --arch 3.5 --arch 6.1+PTX \
	--meta manifest.toml="$TMP/manifest.toml" --meta lock="$TMP/lock" >/dev/null)
check "packing twice (umask 077, TZ=Asia/Tokyo, atimes touched) gives the same bytes" cmp "$IMG" "$TMP/out2/img.tar"
check "and the same signature file" cmp "$IMG.sig" "$TMP/out2/img.tar.sig"
cp -a "$R" "$TMP/root-copy"
"$IMGBUILD" -q pack "$TMP/root-copy" -o "$TMP/out2/copy.tar" --epoch $E --name test-image \
	--fact cuda=10.0 --fact min_driver=410.48 --arch 3.5 --arch 6.1+PTX \
	--meta manifest.toml="$TMP/manifest.toml" --meta lock="$TMP/lock" >/dev/null
check "a copy of the tree (new inodes, ctimes) packs to the same digest" test "$(cut -c1-64 "$TMP/out2/copy.tar.sha256")" = "$D1"
"$IMGBUILD" -q pack "$R" -o "$TMP/out2/z1.tar.zst" --epoch $E --zstd --threads 1 --name z >/dev/null
"$IMGBUILD" -q pack "$R" -o "$TMP/out2/z2.tar.zst" --epoch $E --zstd --threads 2 --name z >/dev/null
check "zstd image reproducible, whatever the thread count" bash -c "[ \"\$(cut -c1-64 '$TMP/out2/z1.tar.zst.sha256')\" = \"\$(cut -c1-64 '$TMP/out2/z2.tar.zst.sha256')\" ]"
check "zstd image is a zstd-compressed tar" bash -c "zstd -dc '$TMP/out2/z1.tar.zst' | tar -tf - 2>/dev/null | grep -q '^./usr/lib/libbig.so\$'"
check "zstd image verifies" "$IMGBUILD" verify "$TMP/out2/z1.tar.zst" --allow-unsigned
# Plain pack hashes files while reading the image back (SHA-NI lanes where the
# CPU has them), zstd pack in a pass of its own: the tar inside is the same.
"$IMGBUILD" -q pack "$R" -o "$TMP/out2/z.tar" --epoch $E --name z >/dev/null
check "the zstd image holds the same tar as the plain one" bash -c "zstd -dc '$TMP/out2/z1.tar.zst' | cmp - '$TMP/out2/z.tar'"
IMGBUILD_NO_SHA_NI=1 "$IMGBUILD" -q pack "$R" -o "$TMP/out2/noni.tar" --epoch $E --name z >/dev/null
check "packing without SHA-NI gives the same bytes" cmp "$TMP/out2/z.tar" "$TMP/out2/noni.tar"

# Checks by other tools.
check "sha256sum -c accepts the image" bash -c "cd '$TMP/out' && sha256sum -c img.tar.sha256"
check "signify-openbsd -C accepts the image" bash -c "cd '$TMP/out' && signify-openbsd -C -p '$PUB' -x img.tar.sig | grep -q 'img.tar: OK'"
check "imgbuild verify accepts it (project keys)" "$IMGBUILD" verify "$IMG"
check "verify --key" "$IMGBUILD" verify "$IMG" --key "$PUB"
check_fails "verify reports name, builder, CUDA, archs, driver, signer" 0 "name: +test-image" bash -c "'$IMGBUILD' verify '$IMG' | tee /dev/stderr | grep -q 'archs: *3.5 6.1+PTX' && '$IMGBUILD' verify '$IMG' | grep -q 'min driver: 410.48' && '$IMGBUILD' verify '$IMG' | grep -q 'signer: .*imgbuild-test.pub' && '$IMGBUILD' verify '$IMG'"
check_fails "verify --host checks the host's driver (or says to see imgbuild driver)" "$(if [ -e /proc/driver/nvidia/version ]; then echo 0; else echo 1; fi)" "host" "$IMGBUILD" verify "$IMG" --host

# One flipped byte, anywhere: 25 offsets inside headers, 25 inside data.
python3 - "$IMG" >"$TMP/offsets" <<'PY'
import random, sys, tarfile
path = sys.argv[1]
rnd = random.Random(1234)
heads, datas = [], []
with tarfile.open(path) as tf:
    for m in tf.getmembers():
        heads.append((m.offset, m.offset_data))
        if m.size:
            datas.append((m.offset_data, m.offset_data + m.size))
for _ in range(25):
    a, b = rnd.choice(heads)
    print(rnd.randrange(a, b))
for _ in range(25):
    a, b = rnd.choice(datas)
    print(rnd.randrange(a, b))
PY
cp "$IMG.sha256" "$TMP/out/flip.tar.sha256" 2>/dev/null || true
caught=0 missed=""
while read -r off; do
	cp "$IMG" "$TMP/out/flip.tar"
	sed "s/img.tar/flip.tar/" "$IMG.sha256" >"$TMP/out/flip.tar.sha256"
	sed "s/(img.tar)/(flip.tar)/" "$IMG.sig" >"$TMP/out/flip.tar.sig"
	python3 -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0x20]))' "$TMP/out/flip.tar" "$off"
	if "$IMGBUILD" -q verify "$TMP/out/flip.tar" >/dev/null 2>&1; then missed="$missed $off"; else caught=$((caught + 1)); fi
done <"$TMP/offsets"
check "50 single-byte flips (25 in headers, 25 in data) all fail verify (missed:$missed)" test "$caught" -eq 50
check_fails "a flipped byte is named as an outer sha256 mismatch" 1 "outer sha256: the image's digest .* does not match" "$IMGBUILD" verify "$TMP/out/flip.tar"

# A failed pack leaves nothing: output into a tiny tmpfs (inside unshare -m).
check_fails "pack into a full file system fails" 1 "No space left|write" unshare -m bash -c "
	mount -t tmpfs -o size=128k tmpfs '$TMP/out' && echo old >'$TMP/out/img.tar' &&
	'$IMGBUILD' pack '$R' -o '$TMP/out/img.tar' --epoch $E; rc=\$?;
	ls -A '$TMP/out' >'$TMP/left'; cat '$TMP/out/img.tar' >'$TMP/left-content'; exit \$rc"
check "... leaving only the old image, no temporary file" bash -c "[ \"\$(cat '$TMP/left')\" = img.tar ] && [ \"\$(cat '$TMP/left-content')\" = old ]"

# An interrupted pack leaves nothing either (O_TMPFILE: the partial image never had a name).
mkdir -p "$TMP/big/opt" "$TMP/out3"
head -c $((400 << 20)) /dev/zero >"$TMP/big/opt/blob"
"$IMGBUILD" -q pack "$TMP/big" -o "$TMP/out3/big.tar" --epoch $E >/dev/null 2>&1 &
pid=$!
sleep 0.3
kill -INT $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
check "interrupted pack: nothing, or a complete image, at the output; no temporary file" bash -c "
	left=\$(ls -A '$TMP/out3'); [ -z \"\$left\" ] || { [ \"\$left\" = \"\$(printf 'big.tar\nbig.tar.sha256')\" ] && '$IMGBUILD' -q verify '$TMP/out3/big.tar' --allow-unsigned >/dev/null; }"
rm -rf "${TMP:?}/big" "${TMP:?}/out3"

# Unpack.
check "unpack" "$IMGBUILD" unpack "$IMG" "$TMP/tree"
check "unpacked content matches" bash -c "cmp '$R/usr/lib/libbig.so' '$TMP/tree/usr/lib/libbig.so' && [ \"\$(readlink '$TMP/tree/usr/lib/libsmall.so')\" = libsmall.so.1.2 ]"
check "unpack keeps hard links" test "$(stat -c %i "$TMP/tree/usr/lib/libbig.so")" = "$(stat -c %i "$TMP/tree/bin/hardlinked")"
check "unpack keeps owners and modes (as root)" bash -c "[ \"\$(stat -c '%u:%g' '$TMP/tree/etc/hostname')\" = 1234:5678 ] && [ \"\$(stat -c %a '$TMP/tree/bin/ping')\" = 4755 ] && [ \"\$(stat -c %a '$TMP/tree/tmp')\" = 1777 ] && [ \"\$(stat -c %a '$TMP/tree/proc')\" = 555 ]"
if [ $HAVE_SETCAP = 1 ]; then
	check "unpack keeps the file capability" bash -c "getcap '$TMP/tree/bin/ping' | grep -q cap_net_raw"
else
	skip "setcap unavailable"
fi
# Small files go to a second thread (unpack_writer.c): the same tree as when
# this thread writes them all, owners, modes, times, links and content.
tree_facts() {	# $1: tree; the root folder's own time is the unpack's, left out
	(cd "$1" && find . -mindepth 1 -printf '%p %y %m %U:%G %T@ %s %n %l\n' | sort && find . -type f -exec sha256sum {} + | sort -k2)
}
check "unpack writes small files on a second thread" bash -c "'$IMGBUILD' -v unpack '$IMG' '$TMP/tree-threads' 2>&1 | grep -E 'unpack: [1-9][0-9]* of [0-9]+ files written through the second thread.s queue'"
check "... and the tree is the one written without it" bash -c "IMGBUILD_UNPACK_ONE_WRITER=1 '$IMGBUILD' -q unpack '$IMG' '$TMP/tree-one' >/dev/null &&
	diff <($(declare -f tree_facts); tree_facts '$TMP/tree-one') <($(declare -f tree_facts); tree_facts '$TMP/tree-threads')"
rm -rf "${TMP:?}/tree-threads" "${TMP:?}/tree-one"
check_fails "unpack refuses a non-empty folder" 2 "not an empty folder" "$IMGBUILD" unpack "$IMG" "$TMP/tree"
cp "$IMG" "$TMP/out/bad.tar"
sed "s/img.tar/bad.tar/" "$IMG.sha256" >"$TMP/out/bad.tar.sha256"
printf 'X' | dd of="$TMP/out/bad.tar" bs=1 seek=5000 conv=notrunc 2>/dev/null
check_fails "unpack refuses an image that does not verify" 1 "refusing an image that does not verify" "$IMGBUILD" unpack "$TMP/out/bad.tar" "$TMP/tree2"
check "... and leaves nothing" bash -c "! ls -d '$TMP'/tree2* 2>/dev/null | grep -q ."
check_fails "unpack --no-verify says so loudly" 0 "WITHOUT VERIFYING" "$IMGBUILD" unpack --no-verify "$IMG" "$TMP/tree3"
finish
