#!/usr/bin/env bash
# A real Ubuntu 18.04 (bionic) build from the Ubuntu archive with the keyring
# in keys/: a stage installs gcc with apt (network on), the next compiles a C
# file with the network cut and proves it is cut. Skipped when the archive
# does not answer.
source "$(dirname "$0")/../lib.sh"
require_root

export IMGBUILD_CACHE=${IMGBUILD_TEST_CACHE:-/var/cache/imgbuild-test}
UBUNTU_MIRROR=${IMGBUILD_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
if ! ubuntu_archive_answers; then
	skip "skipped: Ubuntu archive unreachable"
	finish
fi
if [ ! -f "$REPO/keys/ubuntu-archive-keyring.gpg" ]; then
	skip "keys/ubuntu-archive-keyring.gpg is missing"
	finish
fi

python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept(); c.sendall(b"hello from the host\n"); c.close()
' "$TMP/port" &
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")
NONCE="$(date +%s%N)-$$"

P=$TMP/p
mkdir -p "$P/stages" "$P/keys"
cp "$REPO/keys/ubuntu-archive-keyring.gpg" "$P/keys/"
cat >"$P/bionic.toml" <<EOF
[image]
name = "test-bionic"
source_date_epoch = 1577836800

[base]
distro = "ubuntu"
suite = "bionic"
mirrors = ["$UBUNTU_MIRROR"]
components = ["main"]
keyring = "keys/ubuntu-archive-keyring.gpg"

[env]
TEST_NONCE = "$NONCE"

[[stage]]
name = "apt"
script = "stages/apt.sh"
network = true
env = { HOST_PORT = "$PORT" }

[[stage]]
name = "compile"
script = "stages/compile.sh"
env = { HOST_PORT = "$PORT" }
EOF
cat >"$P/stages/apt.sh" <<'EOF'
set -eu
grep -q 'VERSION_ID="18.04"' /etc/os-release && echo UBUNTU_1804
exec 3<>"/dev/tcp/127.0.0.1/$HOST_PORT" && head -n1 <&3 && echo NETWORK_STAGE_CONNECTED
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends gcc libc6-dev
rm -rf /var/lib/apt/lists/*
EOF
cat >"$P/stages/compile.sh" <<'EOF'
set -u
if (exec 3<>"/dev/tcp/127.0.0.1/$HOST_PORT") 2>/dev/null; then echo CONNECT_WORKED; exit 1; fi
echo CONNECT_FAILED
apt-get update >/imgbuild/work/apt-update.txt 2>&1 || true
cat /imgbuild/work/apt-update.txt
if grep -qE '^(Err|W: Failed to fetch|E: )' /imgbuild/work/apt-update.txt && ! grep -q '^Get:' /imgbuild/work/apt-update.txt; then
	echo APT_UPDATE_FAILED
else
	echo APT_UPDATE_WORKED; exit 1
fi
set -e
printf '#include <stdio.h>\nint main(void) { puts("hello from bionic"); return 0; }\n' > /imgbuild/work/hello.c
gcc -O2 -o /usr/local/bin/hello /imgbuild/work/hello.c
/usr/local/bin/hello
EOF

B=$TMP/build
OUT=$TMP/bionic.tar
cd "$TMP"
start=$SECONDS
if "$IMGBUILD" build "$P/bionic.toml" -o "$OUT" --build-dir "$B" >"$TMP/build.out" 2>&1; then
	ok "bionic image built ($((SECONDS - start)) s)"
else
	not_ok "bionic image built"
	sed 's/^/# /' "$TMP/build.out" | tail -n 40
	finish
fi
sed 's/^/# /' "$TMP/build.out"
check "the base is Ubuntu 18.04" grep -q UBUNTU_1804 "$B/logs/apt.log"
check "the network stage reached the host's 127.0.0.1 listener" grep -q NETWORK_STAGE_CONNECTED "$B/logs/apt.log"
check "the offline stage could not connect to the host's 127.0.0.1" grep -q CONNECT_FAILED "$B/logs/compile.log"
check "apt-get update fails in the offline stage" grep -q APT_UPDATE_FAILED "$B/logs/compile.log"
check "gcc compiled and the program ran" grep -q 'hello from bionic' "$B/logs/compile.log"
mkdir -p "$TMP/x"
tar -C "$TMP/x" -xf "$OUT" ./usr/local/bin/hello ./.imgbuild/lock ./.imgbuild/facts.toml 2>/dev/null || true
check "the image holds the program" test -x "$TMP/x/usr/local/bin/hello"
check "the image's lock lists bionic's gcc-7" grep -qE '^package gcc-7=7\.' "$TMP/x/.imgbuild/lock"

for k in $(sed -n 's/^stage_key_[a-z0-9_-]* = "\([0-9a-f]*\)"$/\1/p' "$TMP/x/.imgbuild/facts.toml"); do
	rm -rf --one-file-system "${IMGBUILD_CACHE:?}/layers/$k"
done
finish
