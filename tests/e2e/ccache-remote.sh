#!/usr/bin/env bash
# A class's shared compile cache (issue 17 item 5), against a real redis-server
# of the test's own (127.0.0.1, a random port, a password, no persistence),
# on the cached bookworm base of the demo (gcc, ccache):
#   1. a build with --ccache-remote-write and an empty local ccache fills redis;
#   2. a build of the same sources with another EMPTY local ccache gets every
#      compile from redis (local hits 0, remote hits 5), read-only by default,
#      with the URL from $IMGBUILD_CCACHE_REMOTE;
#   3. a build without --ccache-remote-write (the default, for a manifest the
#      user did not write) compiling new sources writes nothing (DBSIZE same);
#   4. a hostile stage drops "|read-only", talks RESP to the socket itself
#      (SET, FLUSHALL, CONFIG, a key outside ccache's), tries the server's TCP
#      port, and looks for the password: redis is unchanged, the refusals are
#      logged, the password is nowhere in the stage.
# The stages run with network = false: the remote is reached only through the
# socket imgbuild binds in.
source "$(dirname "$0")/../lib.sh"
require_root
use_debian_test_cache
for tool in redis-server redis-cli; do
	if ! command -v $tool >/dev/null; then
		skip "$tool not installed (make deps)"
		finish
	fi
done

NONCE="$(date +%s%N)-$$"
PASS="ccache-test-$NONCE"
P=$TMP/p
mkdir -p "$P/stages" "$TMP/redis"
rm -rf "$IMGBUILD_CACHE"/ccache/ccache-remote-test-*
REDIS_PID=
# The server by its PID too: a job list is not always what a trap sees.
trap 'rc=$?; [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
	rm -rf "$IMGBUILD_CACHE"/ccache/ccache-remote-test-*; (exit $rc); _lib_cleanup' EXIT

# The server: own port (retried if taken), own folder, stopped by lib.sh's job cleanup.
PORT=
for try in 1 2 3 4 5; do
	port=$(shuf -i 20000-60000 -n 1)
	redis-server --bind 127.0.0.1 --port "$port" --requirepass "$PASS" --save '' --appendonly no \
		--dir "$TMP/redis" --logfile "$TMP/redis/log" --protected-mode yes &
	REDIS_PID=$!
	for _ in $(seq 50); do
		redis-cli -p "$port" -a "$PASS" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
		sleep 0.1
	done
	if redis-cli -p "$port" -a "$PASS" --no-auth-warning ping 2>/dev/null | grep -q PONG; then
		PORT=$port
		break
	fi
	kill "$REDIS_PID" 2>/dev/null || true
	wait "$REDIS_PID" 2>/dev/null || true
	REDIS_PID=
done
if [ -z "$PORT" ]; then
	not_ok "redis-server did not start"
	finish
fi
rcli() { redis-cli -p "$PORT" -a "$PASS" --no-auth-warning "$@"; }
URL="redis://:$PASS@127.0.0.1:$PORT"
rcli set secret "not for stages" >/dev/null

# Five C files through ccache; SALT changes the sources, NONCE only the stage key.
cat >"$P/stages/cc.sh" <<'EOF'
set -eu
cd /imgbuild/work
for i in 1 2 3 4 5; do
	printf 'int f%d(int x) { return x * %d + %s; }\n' "$i" "$i" "$SALT" >f$i.c
	ccache gcc -O2 -c f$i.c -o f$i.o
done
mkdir -p /opt/cc && cp f*.o /opt/cc/
EOF
# The hostile stage: what a manifest's own script can do with the socket.
cat >"$P/stages/hostile.sh" <<'EOF'
set -u
cd /imgbuild/work
env >env.txt
echo "$CCACHE_REMOTE_STORAGE" >url.txt
cat >resp.c <<'C'
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
/* Sends argv[1] (RESP) and prints how many bytes came back: 0 = closed. */
int main(int argc, char **argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, "/imgbuild/ccache-remote/sock");
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) { perror("connect"); return 2; }
	if (write(fd, argv[1], strlen(argv[1])) < 0) { perror("write"); return 2; }
	char b[256];
	ssize_t n = read(fd, b, sizeof(b) - 1);
	printf("%zd\n", n < 0 ? 0 : n);
	return 0;
}
C
gcc -o resp resp.c
./resp $'*2\r\n$3\r\nGET\r\n$13\r\nccache:absent\r\n' >get.txt
./resp $'*3\r\n$3\r\nSET\r\n$14\r\nccache:planted\r\n$4\r\nevil\r\n' >set.txt
./resp $'*1\r\n$8\r\nFLUSHALL\r\n' >flushall.txt
./resp $'*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$3\r\ndir\r\n$4\r\n/etc\r\n' >config.txt
./resp $'*2\r\n$3\r\nGET\r\n$6\r\nsecret\r\n' >secret.txt
./resp $'FLUSHALL\r\n' >inline.txt
# ccache itself, told to write: "|read-only" dropped from the URL.
export CCACHE_REMOTE_STORAGE="${CCACHE_REMOTE_STORAGE%|read-only}"
printf 'int planted(void) { return 666; }\n' >p.c
ccache gcc -c p.c -o p.o
(exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT) 2>/dev/null && echo reached >tcp.txt || echo refused >tcp.txt
exit 0
EOF

manifest() {	# NAME SALT STAGE
	cat >"$P/$1.toml" <<EOF
[image]
name = "ccache-remote-test-$1"
source_date_epoch = 1700000000

[base]
distro = "debian"
suite = "bookworm"
variant = "minbase"
packages = ["gcc", "g++", "make", "ccache"]

[env]
TEST_NONCE = "$NONCE-$1"
SALT = "$2"
REDIS_PORT = "$PORT"

[[stage]]
name = "cc"
script = "stages/$3.sh"
EOF
}
build() {	# NAME [OPTIONS...]: builds P/NAME.toml, output in TMP/NAME.out
	local name=$1
	shift
	local rc=0
	"$IMGBUILD" build "$P/$name.toml" -o "$TMP/$name.tar" --build-dir "$TMP/b-$name" "$@" >"$TMP/$name.out" 2>&1 || rc=$?
	sed 's/^/#   /' "$TMP/$name.out" | tail -n 6
	return $rc
}
stat_of() {	# NAME COUNTER: a counter of the build's local ccache
	local dir
	dir=$(ls -d "$IMGBUILD_CACHE"/ccache/ccache-remote-test-"$1"-* | head -n 1)
	CCACHE_DIR=$dir ccache --print-stats | awk -v k="$2" '$1 == k { print $2 }'
}
dbsize() { rcli dbsize; }

# 1. The writer.
manifest writer 1 cc
check "1: a build with --ccache-remote-write succeeds" build writer --ccache-remote "$URL" --ccache-remote-write
check "1: it says the remote is read-write, without the password" \
	sh -c "grep -q 'ccache remote redis://\*\*\*@127.0.0.1:$PORT: read-write' '$TMP/writer.out' && ! grep -q '$PASS' '$TMP/writer.out'"
W_MISS=$(stat_of writer remote_storage_miss)
W_HIT=$(stat_of writer remote_storage_hit)
check "1: the cold build missed in redis (misses $W_MISS, hits $W_HIT)" test "$W_MISS" -eq 5 -a "$W_HIT" -eq 0
SIZE1=$(dbsize)
check "1: redis holds the five results (DBSIZE 1 -> $SIZE1)" test "$SIZE1" -ge 11

# 2. A classmate: the same sources, an empty local ccache, read-only by default.
manifest reader 1 cc
export IMGBUILD_CCACHE_REMOTE=$URL
check "2: a build with an empty local ccache succeeds (URL from \$IMGBUILD_CCACHE_REMOTE)" build reader
unset IMGBUILD_CCACHE_REMOTE
R_LOCAL=$(stat_of reader local_storage_hit)
R_HIT=$(stat_of reader remote_storage_hit)
R_MISS=$(stat_of reader remote_storage_miss)
check "2: every compile hit in redis, none locally (local hits $R_LOCAL, remote hits $R_HIT, misses $R_MISS)" \
	test "$R_LOCAL" -eq 0 -a "$R_HIT" -eq 5 -a "$R_MISS" -eq 0
check "2: the objects are the writer's" cmp <(tar -xOf "$TMP/writer.tar" ./opt/cc/f3.o) <(tar -xOf "$TMP/reader.tar" ./opt/cc/f3.o)
check "2: it said read-only" grep -q 'read-only (--ccache-remote-write' "$TMP/reader.out"
check "2: redis unchanged (DBSIZE $(dbsize))" test "$(dbsize)" -eq "$SIZE1"

# 3. The default for a manifest the user did not write: new sources, no writes.
manifest other 2 cc
check "3: a build without --ccache-remote-write succeeds" build other --ccache-remote "$URL"
O_MISS=$(stat_of other remote_storage_miss)
check "3: it asked redis (misses $O_MISS) and wrote nothing (DBSIZE $(dbsize), was $SIZE1)" \
	test "$O_MISS" -eq 5 -a "$(dbsize)" -eq "$SIZE1"

# 4. A hostile manifest, read-only by default.
manifest hostile 3 hostile
check "4: the hostile build finishes" build hostile --ccache-remote "$URL"
W=$TMP/b-hostile/work/cc
check "4: the proxy answers an allowed GET" test "$(cat "$W/get.txt")" -gt 0
for what in set flushall config secret inline; do
	check "4: $what through the socket: connection closed, no answer" test "$(cat "$W/$what.txt")" = 0
done
check "4: the stage's network cannot reach the server's port" grep -qx refused "$W/tcp.txt"
check "4: redis unchanged (DBSIZE $(dbsize), was $SIZE1), no planted key, secret intact" \
	sh -c "test \"\$(redis-cli -p $PORT -a '$PASS' --no-auth-warning dbsize)\" -eq $SIZE1 &&
	       test \"\$(redis-cli -p $PORT -a '$PASS' --no-auth-warning exists ccache:planted)\" -eq 0 &&
	       test \"\$(redis-cli -p $PORT -a '$PASS' --no-auth-warning get secret)\" = 'not for stages'"
check "4: the stage saw only the socket, never the server or the password" \
	sh -c "grep -qx 'redis+unix:/imgbuild/ccache-remote/sock|read-only' '$W/url.txt' &&
	       ! grep -q '$PASS' '$W/env.txt' && ! grep -q '127.0.0.1:$PORT' '$W/env.txt'"
check "4: the refusals are logged and reported" \
	sh -c "grep -q 'refused a write to the read-only remote: SET' '$TMP/b-hostile/logs/ccache-remote.log' &&
	       grep -q 'refused a command ccache does not send: FLUSHALL' '$TMP/b-hostile/logs/ccache-remote.log' &&
	       grep -q 'refused a key outside ccache' '$TMP/b-hostile/logs/ccache-remote.log' &&
	       grep -q 'ccache remote: refused [0-9]* requests' '$TMP/hostile.out'"
check "4: no proxy is left running" sh -c "! pgrep -f '[i]mgbuild build $P/' >/dev/null"

# A wrong URL is an error before any work; a server that is down costs only the hits.
check_fails "a URL of another scheme is refused, naming the fix" 2 'redis://\[\[USER:\]PASSWORD@\]HOST' \
	"$IMGBUILD" build "$P/writer.toml" -o "$TMP/x.tar" --build-dir "$TMP/b-x" --ccache-remote http://127.0.0.1:1/
manifest down 4 cc
check "a server that does not answer: the build warns and compiles locally" \
	sh -c "'$IMGBUILD' build '$P/down.toml' -o '$TMP/down.tar' --build-dir '$TMP/b-down' \
		--ccache-remote redis://127.0.0.1:1 >'$TMP/down.out' 2>&1 &&
	       grep -q 'stages compile with the local ccache only' '$TMP/down.out'"
finish
