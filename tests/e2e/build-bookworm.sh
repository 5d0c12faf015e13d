#!/usr/bin/env bash
# A real build: Debian bookworm minbase from the host's Debian mirror (shared
# test cache, bootstrapped once per cache), a stage that installs gcc with apt
# (network on), a stage that compiles a C file with the network cut (and proves
# it is cut), the packed image's contents, and `imgbuild shell`.
source "$(dirname "$0")/../lib.sh"
require_root

use_debian_test_cache

# A listener on the host's loopback: the network stage must reach it, the
# offline stage must not.
python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept(); c.sendall(b"hello from the host\n"); c.close()
' "$TMP/port" &
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")
# Stage keys depend on this, so the stages run in every test run; the layers
# they make are removed at the end (the base stays cached).
NONCE="$(date +%s%N)-$$"

mkdir -p "$TMP/p/stages" "$TMP/p/m"
cat >"$TMP/p/m/bookworm.toml" <<EOF
[image]
name = "test-bookworm"
source_date_epoch = 1700000000

[base]
distro = "debian"
suite = "bookworm"

[stack]
cuda = "12.1"
archs = ["8.0", "9.0+PTX"]

[env]
TEST_NONCE = "$NONCE"
GREETING = "hi"

[[stage]]
name = "apt"
script = "../stages/apt.sh"
network = true
env = { HOST_PORT = "$PORT" }

[[stage]]
name = "compile"
script = "../stages/compile.sh"
env = { HOST_PORT = "$PORT" }
EOF
cat >"$TMP/p/stages/apt.sh" <<'EOF'
set -eu
# The network is on: the host's loopback listener answers.
exec 3<>"/dev/tcp/127.0.0.1/$HOST_PORT" && head -n1 <&3 && echo NETWORK_STAGE_CONNECTED
apt-get update -q
apt-get install -y -q --no-install-recommends gcc libc6-dev
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
EOF
cat >"$TMP/p/stages/compile.sh" <<'EOF'
set -u
if (exec 3<>"/dev/tcp/127.0.0.1/$HOST_PORT") 2>/dev/null; then echo CONNECT_WORKED; exit 1; fi
echo CONNECT_FAILED
# apt-get update may exit 0 after failed fetches: look at what it says.
apt-get update >/imgbuild/work/apt-update.txt 2>&1 || true
cat /imgbuild/work/apt-update.txt
if grep -qE '^(Err|W: Failed to fetch|E: )' /imgbuild/work/apt-update.txt && ! grep -q '^Get:' /imgbuild/work/apt-update.txt; then
	echo APT_UPDATE_FAILED
else
	echo APT_UPDATE_WORKED; exit 1
fi
set -e
env | sort > /imgbuild/work/env.txt
cat > /imgbuild/work/hello.c <<'C'
#include <stdio.h>
int main(void) { puts("hello from the image"); return 0; }
C
gcc -O2 -o /usr/local/bin/hello /imgbuild/work/hello.c
/usr/local/bin/hello
mkdir -p /.imgbuild/facts.d /.imgbuild/lock.d
echo yes > /.imgbuild/facts.d/hello_built
echo "hello.c compiled by $(gcc -dumpversion)" > /.imgbuild/lock.d/hello
EOF

B=$TMP/build
OUT=$TMP/bookworm.tar
cd "$TMP"
start=$SECONDS
if "$IMGBUILD" build p/m/bookworm.toml -o "$OUT" --build-dir "$B" >"$TMP/build1.out" 2>&1; then
	ok "bookworm image built ($((SECONDS - start)) s)"
else
	not_ok "bookworm image built"
	sed 's/^/# /' "$TMP/build1.out" | tail -n 40
	finish
fi
sed 's/^/# /' "$TMP/build1.out"
check "the bootstrap tool is named (mmdebstrap or debootstrap)" \
	grep -qE 'bootstrap: (cached|.*with (mmdebstrap|debootstrap))|base: cached' "$TMP/build1.out"
check "both stages ran" grep -q 'stages run: apt, compile' "$TMP/build1.out"
check "the network stage reached the host's 127.0.0.1 listener" grep -q NETWORK_STAGE_CONNECTED "$B/logs/apt.log"
check "the offline stage could not connect to the host's 127.0.0.1" grep -q CONNECT_FAILED "$B/logs/compile.log"
check "apt-get update fails in the offline stage" grep -q APT_UPDATE_FAILED "$B/logs/compile.log"
check "the compiled program ran in the stage" grep -q 'hello from the image' "$B/logs/compile.log"

# The stage's environment is exactly the documented one.
env_ok() {
	local f=$B/work/compile/env.txt
	cut -d= -f1 "$f" | grep -vxE 'PATH|HOME|TZ|LC_ALL|SOURCE_DATE_EPOCH|IMGBUILD_STAGE|IMGBUILD_INPUTS|IMGBUILD_WORK|CCACHE_DIR|IMGBUILD_CUDA|IMGBUILD_ARCHS|IMGBUILD_MIN_DRIVER|TEST_NONCE|GREETING|HOST_PORT|PWD|SHLVL|_|OLDPWD' && return 1
	grep -qx 'TZ=UTC' "$f" && grep -qx 'LC_ALL=C.UTF-8' "$f" && grep -qx 'SOURCE_DATE_EPOCH=1700000000' "$f" &&
		grep -qx 'IMGBUILD_ARCHS=8.0;9.0+PTX' "$f" && grep -qx 'IMGBUILD_CUDA=12.1' "$f" &&
		grep -qx 'GREETING=hi' "$f" && grep -qx 'CCACHE_DIR=/imgbuild/ccache' "$f" && grep -qx 'HOME=/root' "$f"
}
check "the stage saw only the documented environment" env_ok

mkdir -p "$TMP/x"
tar -C "$TMP/x" -xf "$OUT" ./usr/local/bin/hello ./.imgbuild 2>/dev/null || true
check "the image holds the compiled program" test -x "$TMP/x/usr/local/bin/hello"
check "the image's lock lists gcc from dpkg's status" grep -qE '^package gcc=' "$TMP/x/.imgbuild/lock"
check "the image's lock carries the stage's lock.d file" grep -q 'hello.c compiled by' "$TMP/x/.imgbuild/lock"
check "the image's facts carry the stack and a stage's facts.d" \
	sh -c "grep -q '^cuda = \"12.1\"' '$TMP/x/.imgbuild/facts.toml' && grep -q '^hello_built = \"yes\"' '$TMP/x/.imgbuild/facts.toml' && grep -q '^stage_key_compile = ' '$TMP/x/.imgbuild/facts.toml'"
check "the image records the manifest" cmp -s "$TMP/x/.imgbuild/manifest.toml" p/m/bookworm.toml
check "no /imgbuild of the engine's in the image" sh -c "! tar -tf '$OUT' 2>/dev/null | grep -q '^\./imgbuild'"
check "the sidecar digest matches the image" sh -c "cd '$TMP' && sha256sum -c '$OUT.sha256' >/dev/null 2>&1 || [ \"\$(cut -d' ' -f1 '$OUT.sha256')\" = \"\$(sha256sum '$OUT' | cut -d' ' -f1)\" ]"

"$IMGBUILD" build p/m/bookworm.toml -o "$OUT" --build-dir "$B" >"$TMP/build2.out" 2>&1 || true
check "an unchanged rebuild runs no stage" grep -q 'stages run: none' "$TMP/build2.out"
diag "$(grep 'no-change rebuild' "$TMP/build2.out" || echo 'no timing line')"

check "shell: the tree before the stage (gcc, no hello yet)" \
	"$IMGBUILD" shell p/m/bookworm.toml --stage compile --build-dir "$B" -- /bin/sh -c 'command -v gcc && ! test -e /usr/local/bin/hello && test "$IMGBUILD_STAGE" = compile && test -d /imgbuild/work'
rc=0
"$IMGBUILD" shell p/m/bookworm.toml --stage compile --build-dir "$B" -- /bin/sh -c 'exit 7' >/dev/null 2>&1 || rc=$?
check "shell: the command's exit status passes through (got $rc)" test "$rc" -eq 7
check_fails "shell: an unknown stage is named" 2 "no stage 'nope'" \
	"$IMGBUILD" shell p/m/bookworm.toml --stage nope --build-dir "$B"

# Drop this run's stage layers; the base stays for the next tests.
for k in $(sed -n 's/^stage_key_[a-z0-9_-]* = "\([0-9a-f]*\)"$/\1/p' "$TMP/x/.imgbuild/facts.toml"); do
	rm -rf --one-file-system "${IMGBUILD_CACHE:?}/layers/$k"
done
finish
