#!/usr/bin/env bash
# imgbuild fetch / pin against tests/http-server.py: checksums, the cache,
# resume, retries, mirrors, stalls, parallel transfers, offline mode, pinning,
# two processes wanting the same file, and one real download from the host's
# Debian mirror.
source "$(dirname "$0")/../lib.sh"

export IMGBUILD_CACHE=$TMP/cache
export IMGBUILD_FETCH_BACKOFF_MS=50
export IMGBUILD_FETCH_STALL_SECONDS=2
STORE=$IMGBUILD_CACHE/downloads/sha256
WWW=$TMP/www
LOG=$TMP/server.log
mkdir -p "$WWW" "$TMP/m"

sha() { sha256sum "$1" | cut -d' ' -f1; }
for f in a b c d e f g h1 h2 h3 p w; do
	head -c 300000 /dev/urandom >"$WWW/$f.bin"
done
declare -A SHA
for f in a b c d e f g h1 h2 h3 p w; do SHA[$f]=$(sha "$WWW/$f.bin"); done

python3 "$REPO/tests/http-server.py" --root "$WWW" --port-file "$TMP/port" --log "$LOG" >/dev/null 2>&1 &
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
[ -s "$TMP/port" ] || { not_ok "test HTTP server did not start"; finish; }
BASE=http://127.0.0.1:$(cat "$TMP/port")
: >"$LOG"

# manifest FILE SPEC...: a manifest with one download per SPEC "NAME URL SHA256 [MIRROR...]".
manifest() {
	local file=$1
	shift
	{
		printf '[image]\nname = "fetch-test"\nsource_date_epoch = 1577836800\n\n'
		printf '[base]\ndistro = "debian"\nsuite = "bookworm"\n'
		local spec name url sum mirrors m
		for spec in "$@"; do
			read -r name url sum mirrors <<<"$spec"
			printf '\n[[download]]\nname = "%s"\nurl = "%s"\n' "$name" "$url"
			if [ -n "$mirrors" ]; then
				printf 'mirrors = ['
				local sep=""
				for m in $mirrors; do printf '%s"%s"' "$sep" "$m"; sep=", "; done
				printf ']\n'
			fi
			printf 'sha256 = "%s"\n' "$sum"
		done
	} >"$file"
}

# Queries on the server log: one JSON object per request.
logq() {
	python3 - "$LOG" "$@" <<'EOF'
import json, sys
log, what, arg = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
reqs = [json.loads(l) for l in open(log) if l.strip()]
if what == "count":      # requests whose path contains ARG
    print(sum(1 for r in reqs if arg in r["path"]))
elif what == "ranges":   # Range headers sent for paths containing ARG
    print(" ".join(r["range"] for r in reqs if arg in r["path"] and r["range"]))
elif what == "statuses": # statuses, in order of arrival
    print(" ".join(str(r["status"]) for r in sorted(reqs, key=lambda r: r["start"]) if arg in r["path"]))
elif what == "errors":   # the server's notes on requests for paths containing ARG
    print(" | ".join(r["error"] for r in reqs if arg in r["path"] and r.get("error")))
elif what == "overlap":  # do all requests for paths containing ARG run at one moment?
    rs = [r for r in reqs if arg in r["path"]]
    print("yes" if len(rs) >= 3 and max(r["start"] for r in rs) < min(r["end"] for r in rs) else "no")
EOF
}
requests() { wc -l <"$LOG" | tr -d ' '; }
stored() { [ -f "$STORE/$1" ] && [ "$(sha "$STORE/$1")" = "$1" ]; }

# 1. A good download lands in the store under its digest, read-only.
manifest "$TMP/m/good.toml" "a $BASE/a.bin ${SHA[a]}"
check "fetch a good download" "$IMGBUILD" fetch "$TMP/m/good.toml"
if stored "${SHA[a]}" && [ "$(stat -c %a "$STORE/${SHA[a]}")" = 444 ]; then ok "stored read-only under its sha256"; else not_ok "stored read-only under its sha256"; fi

# 2. A cached input is not downloaded again.
before=$(requests)
check "second fetch succeeds" "$IMGBUILD" fetch "$TMP/m/good.toml"
if [ "$(requests)" = "$before" ]; then ok "second fetch made no request"; else not_ok "second fetch made $(($(requests) - before)) requests"; fi

# 3. Resume after a truncated transfer: the retry asks for the rest with Range.
manifest "$TMP/m/resume.toml" "b $BASE/fault/truncate=100000,times=1/b.bin ${SHA[b]}"
check "fetch resumes after a truncated transfer" "$IMGBUILD" fetch "$TMP/m/resume.toml"
ranges=$(logq ranges /b.bin)
if [ "$ranges" = "bytes=100000-" ] && stored "${SHA[b]}"; then ok "resumed with 'Range: $ranges'"; else not_ok "no Range request after truncation (ranges: '$ranges')"; fi

# 4. Corrupted bytes are refused, the error names both digests and the URL,
#    and nothing is cached anywhere under any name.
bad_sha=$(python3 -c "
import hashlib, sys
d = bytearray(open(sys.argv[1], 'rb').read()); d[10] ^= 0xFF
print(hashlib.sha256(d).hexdigest())" "$WWW/c.bin")
bad_url=$BASE/fault/flip=10/c.bin
manifest "$TMP/m/corrupt.toml" "c $bad_url ${SHA[c]}"
check_fails "corrupted download is refused" 1 "expected ${SHA[c]}, got $bad_sha" "$IMGBUILD" fetch "$TMP/m/corrupt.toml"
if grep -qF "$bad_url" "$TMP/check.out"; then ok "the error names the URL"; else not_ok "the error names the URL"; fi
leftover=$(find "$IMGBUILD_CACHE" -type f -exec sha256sum {} + | grep -E "${SHA[c]}|$bad_sha" || true)
if [ ! -e "$STORE/${SHA[c]}" ] && [ ! -e "$STORE/$bad_sha" ] && [ -z "$leftover" ]; then
	ok "nothing of the corrupted download is cached"
else not_ok "corrupted bytes left in the cache: $leftover $(ls "$STORE")"; fi
# A build step asks the cache offline: there is no path to hand it.
check_fails "offline fetch after a refused download still fails" 1 "not in the cache" "$IMGBUILD" fetch --offline "$TMP/m/corrupt.toml"

# 5. Fallback mirrors, in order: a refused connection (retried, then given up),
#    a 404 (given up at once), then a good mirror.
manifest "$TMP/m/mirror.toml" "d http://127.0.0.1:1/d.bin ${SHA[d]} $BASE/fault/status=404/d.bin $BASE/d.bin"
check "fetch falls back to the next mirrors" "$IMGBUILD" fetch "$TMP/m/mirror.toml"
st=$(logq statuses /d.bin)
if [ "$st" = "404 200" ] && stored "${SHA[d]}"; then ok "404 once, then the good mirror"; else not_ok "mirror order wrong: statuses '$st'"; fi

# 6. A 500 is retried on the same URL with back-off.
manifest "$TMP/m/retry.toml" "e $BASE/fault/status=500,times=2/e.bin ${SHA[e]}"
check "fetch retries after 500" "$IMGBUILD" fetch "$TMP/m/retry.toml"
st=$(logq statuses /e.bin)
if [ "$st" = "500 500 200" ]; then ok "500, 500, then 200 from the same URL"; else not_ok "retry statuses '$st'"; fi

# 7. A stalled transfer hits the low-speed timeout, then resumes; a URL that
#    always stalls is given up for the next mirror.
manifest "$TMP/m/stall.toml" "f $BASE/fault/stall=20,after=50000,times=1/f.bin ${SHA[f]}"
check "fetch survives a stall" "$IMGBUILD" fetch "$TMP/m/stall.toml"
ranges=$(logq ranges /f.bin)
# The server notes when a client hangs up inside its 20 s silence: imgbuild
# gave up on the stall itself, rather than waiting it out.
for _ in $(seq 50); do errs=$(logq errors /f.bin); [ -n "$errs" ] && break; sleep 0.1; done
if [ "$ranges" = "bytes=50000-" ] && [ "$errs" = "client hung up during the stall" ]; then ok "stall detected (the server saw the hang-up), resumed with '$ranges'"; else
	not_ok "stall: ranges '$ranges', server notes '$errs'"; fi
manifest "$TMP/m/stall2.toml" "g $BASE/fault/stall=20,after=1000/g.bin ${SHA[g]} $BASE/g.bin"
check "a URL that always stalls falls back to the mirror" env IMGBUILD_FETCH_RETRIES=1 "$IMGBUILD" fetch "$TMP/m/stall2.toml"
st=$(logq statuses /g.bin)
# The mirror resumes the part the stalled URL left (Range, so 206).
if [ "$st" = "200 206 206" ] && stored "${SHA[g]}"; then ok "stalled twice, then the mirror"; else not_ok "stall fallback statuses '$st'"; fi

# 8. Independent downloads run in parallel: three throttled files, one moment
#    when all three are being served.
manifest "$TMP/m/parallel.toml" "h1 $BASE/fault/rate=200000/h1.bin ${SHA[h1]}" \
	"h2 $BASE/fault/rate=200000/h2.bin ${SHA[h2]}" "h3 $BASE/fault/rate=200000/h3.bin ${SHA[h3]}"
check "fetch three inputs" "$IMGBUILD" fetch "$TMP/m/parallel.toml"
if [ "$(logq overlap /fault/rate=200000/)" = yes ]; then ok "the three transfers overlapped"; else not_ok "transfers did not overlap"; fi
lines=$(grep -c '^imgbuild: fetched h[123] ' "$TMP/check.out" || true)
if [ "$lines" = 3 ]; then ok "one line per finished file when not on a terminal"; else not_ok "$lines 'fetched' lines"; fi

# 9. --offline: fails fast naming every missing input, without a request; with
#    a warm cache it succeeds.
before=$(requests)
check_fails "--offline with a cold cache names what is missing" 1 "h1.*h2.*h3|h1[^$]*" \
	env IMGBUILD_CACHE="$TMP/cold" "$IMGBUILD" fetch --offline "$TMP/m/parallel.toml"
if grep -q "h1" "$TMP/check.out" && grep -q "h2" "$TMP/check.out" && grep -q "h3" "$TMP/check.out"; then ok "all three missing inputs named"; else not_ok "missing inputs not all named"; fi
check "--offline with a warm cache" "$IMGBUILD" fetch --offline "$TMP/m/parallel.toml"
if [ "$(requests)" = "$before" ]; then ok "--offline made no request"; else not_ok "--offline made requests"; fi

# 10. pin fills in an unknown sha256, changing nothing else in the file.
manifest "$TMP/m/pin.toml" "pinned $BASE/a.bin ${SHA[a]}" "p $BASE/p.bin unknown"
sed -i 's/^name = "p"$/name = "p"   # trailing comment kept/' "$TMP/m/pin.toml"
cp "$TMP/m/pin.toml" "$TMP/pin.orig"
check_fails "fetch refuses an unknown sha256" 2 "imgbuild pin" "$IMGBUILD" fetch "$TMP/m/pin.toml"
check "pin" "$IMGBUILD" pin "$TMP/m/pin.toml"
if grep -qF "trust on first use: recorded sha256 ${SHA[p]} for p from $BASE/p.bin — check it against a trusted source" "$TMP/check.out"; then
	ok "pin says what it recorded"
else not_ok "pin message missing"; sed 's/^/# /' "$TMP/check.out"; fi
sed "s/\"unknown\"/\"${SHA[p]}\"/" "$TMP/pin.orig" >"$TMP/pin.want"
if cmp -s "$TMP/pin.want" "$TMP/m/pin.toml"; then ok "only the sha256 changed"; else not_ok "pin changed more"; diff -u "$TMP/pin.want" "$TMP/m/pin.toml" | sed 's/^/# /'; fi
check "the pinned manifest fetches offline" "$IMGBUILD" fetch --offline "$TMP/m/pin.toml"

# 10b. Two builds sharing a cache want the same file: the second waits for the
#     first (which holds the download's lock) and takes what it stored, with
#     no request of its own.
manifest "$TMP/m/shared.toml" "w $BASE/fault/rate=150000/w.bin ${SHA[w]}"
before=$(logq count /w.bin)
"$IMGBUILD" fetch "$TMP/m/shared.toml" >"$TMP/first.out" 2>&1 &
first=$!
for _ in $(seq 100); do [ -f "$STORE/${SHA[w]}.part" ] && break; sleep 0.05; done
check "a second fetch of a file being downloaded succeeds" "$IMGBUILD" fetch "$TMP/m/shared.toml"
wait "$first"
first_rc=$?
# (Which of the two took the lock first is the kernel's choice.)
if cat "$TMP/check.out" "$TMP/first.out" | grep -q "waiting for another imgbuild process downloading w"; then
	ok "one of them said it waited for the other"
else not_ok "no word of waiting"; cat "$TMP/check.out" "$TMP/first.out" | sed 's/^/# /'; fi
if [ "$first_rc" = 0 ]; then ok "the first fetch succeeds too"; else not_ok "the first fetch failed"; sed 's/^/# /' "$TMP/first.out"; fi
if [ "$(($(logq count /w.bin) - before))" = 1 ] && stored "${SHA[w]}"; then ok "one download between them"; else not_ok "$(($(logq count /w.bin) - before)) requests for w.bin"; fi

# 10c. A project file as an input ([[download]] path = ...): no pin, fetched into
#     the store from the project (also --offline), and its content is in the
#     key of the stage that reads it.
mkdir -p "$TMP/proj/stages" "$TMP/proj/m" "$TMP/proj/src"
printf '#!/bin/bash\nset -euo pipefail\ncat /imgbuild/inputs/data.txt\n' >"$TMP/proj/stages/show.sh"
echo "first" >"$TMP/proj/src/data.txt"
cat >"$TMP/proj/m/local.toml" <<'EOF'
[image]
name = "local-input"
source_date_epoch = 1577836800

[base]
distro = "debian"
suite = "bookworm"

[[download]]
name = "data.txt"
path = "../src/data.txt"

[[stage]]
name = "show"
script = "../stages/show.sh"
inputs = ["data.txt"]
EOF
stage_key() { "$IMGBUILD" plan "$TMP/proj/m/local.toml" 2>/dev/null | awk '$1 == "key" {k = $2} END {print k}'; }
check "plan names the project file" bash -c "'$IMGBUILD' plan '$TMP/proj/m/local.toml' | grep -q 'input data.txt   project file src/data.txt'"
before=$(requests)
check "fetch --offline takes a project file from the project" "$IMGBUILD" fetch --offline "$TMP/proj/m/local.toml"
if stored "$(sha "$TMP/proj/src/data.txt")" && [ "$(requests)" = "$before" ]; then ok "stored under its sha256, no request"; else not_ok "project file not stored"; fi
k1=$(stage_key)
echo "second" >"$TMP/proj/src/data.txt"
k2=$(stage_key)
if [ -n "$k1" ] && [ -n "$k2" ] && [ "$k1" != "$k2" ]; then ok "changing the file changes the stage's key"; else not_ok "stage key '$k1' -> '$k2'"; fi

# 11. One real download through the host's Debian mirror, pinned.
HELLO=pool/main/h/hello/hello_2.10.orig.tar.gz
HELLO_SHA=31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b
mirror=$(host_debian_mirror || true)
if [ -z "$mirror" ]; then
	skip "no Debian mirror in the host's apt configuration"
elif ! curl -sfI -m 15 -o /dev/null "$mirror/$HELLO"; then
	skip "the host's Debian mirror does not answer"
else
	manifest "$TMP/m/debian.toml" "hello mirror://debian/$HELLO $HELLO_SHA"
	check "fetch mirror://debian/ through the host's apt mirror" "$IMGBUILD" fetch "$TMP/m/debian.toml"
fi

finish
