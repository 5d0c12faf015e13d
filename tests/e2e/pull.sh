#!/usr/bin/env bash
# imgbuild pull against tests/http-server.py (faults injected in the URL) and
# file:// URLs: success with a signed image from a trusted key, a transfer cut
# and resumed by the next pull (the server log shows the Range request), mirror
# fallback, and one-line errors for 404, a wrong digest, a truncated body, an
# untrusted signer and a tampered entry. After every failure FILE does not
# exist, nor its .sha256 or .sig.
. "$(dirname "$0")/../lib.sh"
export IMGBUILD_CACHE=$TMP/cache XDG_CONFIG_HOME=$TMP/cfg IMGBUILD_DATADIR=$TMP/data
export IMGBUILD_FETCH_BACKOFF_MS=50 IMGBUILD_FETCH_STALL_SECONDS=2 IMGBUILD_FETCH_RETRIES=0
mkdir -p "$TMP/data/keys" "$TMP/www/img" "$TMP/root/etc" "$TMP/dl"
echo pulled >"$TMP/root/etc/hostname"
head -c 1500000 /dev/urandom >"$TMP/root/etc/blob"	# enough bytes to cut a transfer in
"$IMGBUILD" keygen alice -d "$TMP/k" >/dev/null
"$IMGBUILD" keygen mallory -d "$TMP/k" --no-trust >/dev/null
E=1577836800
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/www/img/a.tar" --epoch $E --sign "$TMP/k/alice.sec" >/dev/null
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/www/img/m.tar" --epoch $E --sign "$TMP/k/mallory.sec" >/dev/null
SIZE=$(stat -c %s "$TMP/www/img/a.tar")
# A tampered entry under a matching .sha256 and a good signature (made with
# signify itself): only the entry check can catch it.
if command -v signify-openbsd >/dev/null; then
	cp "$TMP/www/img/a.tar" "$TMP/www/img/t.tar"
	off=$(grep -abo pulled "$TMP/www/img/t.tar" | head -1 | cut -d: -f1)
	printf 'X' | dd of="$TMP/www/img/t.tar" bs=1 seek="$off" conv=notrunc 2>/dev/null
	h=$(sha256sum "$TMP/www/img/t.tar" | cut -c1-64)
	echo "$h  t.tar" >"$TMP/www/img/t.tar.sha256"
	printf 'SHA256 (t.tar) = %s\n' "$h" >"$TMP/t.msg"
	signify-openbsd -S -e -s "$TMP/k/alice.sec" -m "$TMP/t.msg" -x "$TMP/www/img/t.tar.sig"
fi

LOG=$TMP/http.log
python3 "$REPO/tests/http-server.py" --root "$TMP/www" --port-file "$TMP/port" --log "$LOG" >/dev/null 2>&1 &
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
[ -s "$TMP/port" ] || { not_ok "test HTTP server did not start"; finish; }
BASE=http://127.0.0.1:$(cat "$TMP/port")

# nothing_at FILE: no image, no sidecar, no work folder (a cut transfer's is checked apart).
nothing_at() { ! ls -d "$1" "$1.sha256" "$1.sig" "$(dirname "$1")/.$(basename "$1").pull" 2>/dev/null | grep -q .; }

check_fails "pull over http: verified, then in place" 0 "pulled $TMP/dl/a.tar: sha256 [0-9a-f]{64}, [0-9]+ entries, $TMP/cfg/imgbuild/trusted/alice.pub" \
	"$IMGBUILD" pull "$BASE/img/a.tar" -o "$TMP/dl/a.tar"
check "... the same bytes, with its .sha256 and .sig" cmp "$TMP/www/img/a.tar" "$TMP/dl/a.tar"
check "... sha256sum -c passes beside it" sh -c "cd '$TMP/dl' && sha256sum -c a.tar.sha256"
check "... verify passes" "$IMGBUILD" verify "$TMP/dl/a.tar"
check "... no work folder left" test ! -e "$TMP/dl/.a.tar.pull"
check_fails "pull file:// into a folder, renamed by -o" 0 "pulled $TMP/dl/copy.tar" \
	"$IMGBUILD" pull "file://$TMP/www/img/a.tar" -o "$TMP/dl/copy.tar"
check ".sha256 names the new file, so sha256sum -c still works" sh -c "cd '$TMP/dl' && sha256sum -c copy.tar.sha256"
rm -f "$TMP"/dl/*

# A cut: the first pull gets 600000 bytes, fails and keeps them; the second resumes.
CUT=$BASE/fault/truncate=600000,times=1,id=cut/img/a.tar
check_fails "a cut transfer fails with a one-line error, the part kept" 1 \
	"^imgbuild: error: pull '$CUT': .*truncated body: the connection closed after byte 600000 of $SIZE; the part is kept in '$TMP/dl/.a.tar.pull'" \
	"$IMGBUILD" pull "$CUT" -o "$TMP/dl/a.tar"
check "... FILE and its sidecars do not exist" sh -c "! ls '$TMP/dl/a.tar' '$TMP/dl/a.tar.sha256' '$TMP/dl/a.tar.sig' 2>/dev/null"
check "... the part holds the 600000 bytes" test "$(stat -c %s "$TMP/dl/.a.tar.pull/a.tar.part")" -eq 600000
check_fails "the next pull resumes it" 0 "pulled $TMP/dl/a.tar" "$IMGBUILD" pull "$CUT" -o "$TMP/dl/a.tar"
check "... asking for the rest only (Range: bytes=600000-, answered 206)" \
	python3 -c "import json,sys; sys.exit(0 if any(e['path'].endswith('/a.tar') and e['range']=='bytes=600000-' and e['status']==206 and e['bytes']==$SIZE-600000 for e in map(json.loads, open('$LOG'))) else 1)"
check "... and the result is whole" cmp "$TMP/www/img/a.tar" "$TMP/dl/a.tar"
rm -f "$TMP"/dl/*

check_fails "mirror fallback: the first URL 404s, the mirror folder serves" 0 "pulled $TMP/dl/a.tar" \
	"$IMGBUILD" pull "$BASE/gone/a.tar" --mirror "$BASE/fault/status=503,id=m/img/" --mirror "$BASE/img/" -o "$TMP/dl/a.tar"
check "... every URL was tried in order" python3 -c "
import json,sys
p=[e['path'] for e in map(json.loads, open('$LOG')) if e['path'].endswith('/a.tar')]
sys.exit(0 if p[-3:]==['/gone/a.tar','/fault/status=503,id=m/img/a.tar','/img/a.tar'] else 1)"
rm -f "$TMP"/dl/*

check_fails "404: one line naming the URL" 1 "^imgbuild: error: pull '$BASE/img/none.tar': cannot get its .sha256: $BASE/img/none.tar.sha256: HTTP 404 \(not found\)\$" \
	"$IMGBUILD" pull "$BASE/img/none.tar" -o "$TMP/dl/none.tar"
check "... nothing left" nothing_at "$TMP/dl/none.tar"
check_fails "404 over file://" 1 "^imgbuild: error: pull 'file://$TMP/www/none.tar': cannot get its .sha256: .*not found" \
	"$IMGBUILD" pull "file://$TMP/www/none.tar" -o "$TMP/dl/none.tar"

check_fails "wrong digest: one line with both digests" 1 \
	"^imgbuild: error: pull '.*': wrong digest, the image does not match its .sha256: .*sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}\$" \
	"$IMGBUILD" pull "$BASE/fault/flip=5000,id=flip/img/a.tar" -o "$TMP/dl/a.tar"
check "... nothing left" nothing_at "$TMP/dl/a.tar"

check_fails "a truncated body that never completes" 1 "truncated body: the connection closed after byte 1000 of $SIZE" \
	"$IMGBUILD" pull "$BASE/fault/truncate=1000,id=tr/img/a.tar" -o "$TMP/dl/a.tar"
check "... no FILE, no sidecars (only the resumable part)" sh -c "! ls '$TMP/dl/a.tar' '$TMP/dl/a.tar.sha256' '$TMP/dl/a.tar.sig' 2>/dev/null"
rm -rf "$TMP/dl/.a.tar.pull"

check_fails "untrusted signer: keynum and the trust command, before the image is downloaded" 1 \
	"^imgbuild: error: pull '.*/m.tar': signed by an untrusted key \(keynum [0-9a-f]{16}; 1 trusted key\): .*run 'imgbuild trust add mallory.pub'\$" \
	"$IMGBUILD" pull "$BASE/img/m.tar" -o "$TMP/dl/m.tar"
check "... nothing left, and the image was never requested" sh -c "! ls -a '$TMP/dl' | grep -q m.tar && ! grep -q '\"/img/m.tar\"' '$LOG'"
check_fails "--key names the one key to trust" 0 "pulled" "$IMGBUILD" pull "$BASE/img/m.tar" -o "$TMP/dl/m.tar" --key "$TMP/k/mallory.pub"
rm -f "$TMP"/dl/*

if [ -f "$TMP/www/img/t.tar" ]; then
	check_fails "a tampered entry under a good digest and signature fails verification" 1 \
		"^imgbuild: error: pull '.*/t.tar': the image fails verification: .*etc/blob|etc/hostname" \
		"$IMGBUILD" pull "$BASE/img/t.tar" -o "$TMP/dl/t.tar"
	check "... nothing left" nothing_at "$TMP/dl/t.tar"
else
	skip "signify-openbsd not installed"
fi

echo "previous" >"$TMP/dl/a.tar"
check_fails "a failed pull over an existing FILE leaves it as it was" 1 "wrong digest" \
	"$IMGBUILD" pull "$BASE/fault/flip=5000,id=over/img/a.tar" -o "$TMP/dl/a.tar"
check "... (the old file untouched)" test "$(cat "$TMP/dl/a.tar")" = previous
rm -f "$TMP"/dl/*

# The progress bar: on a terminal (script gives the command a pty), not in a log.
if command -v script >/dev/null; then
	check_fails "a progress bar on a terminal" 0 "a\.tar \[#*[ ]*\] +[0-9]+%" \
		script -qec "'$IMGBUILD' pull '$BASE/fault/rate=1500000,id=bar/img/a.tar' -o '$TMP/dl/a.tar'" /dev/null
	rm -f "$TMP"/dl/*
	"$IMGBUILD" pull "$BASE/fault/rate=1500000,id=nobar/img/a.tar" -o "$TMP/dl/a.tar" >"$TMP/nobar.out" 2>&1
	check "... and none when stderr is not a terminal" sh -c "! grep -q '%' '$TMP/nobar.out'"
else
	skip "script (util-linux) not installed"
fi
finish
