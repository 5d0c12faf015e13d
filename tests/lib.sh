# Shared helpers for tests/e2e/*.sh: TAP output, a temp dir removed on exit,
# and the host checks every test makes (no mount left behind).
set -euo pipefail
REPO=${IMGBUILD_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
IMGBUILD=${IMGBUILD:-$REPO/build/imgbuild}
TEST_NUM=0
TEST_FAILED=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-test.XXXXXX")
# tracefs and debugfs mount themselves the first time anything looks at them
# (perf, a profiler in another shell): not a mount any test could make or leak.
host_mounts() { awk '{print $5}' /proc/self/mountinfo | grep -vxE '/sys/kernel/(tracing|debug)(/tracing)?' | sort; }
MOUNTS_BEFORE=$(host_mounts)

_lib_cleanup() {
	local rc=$?
	# Kill helpers (HTTP servers) this test started.
	jobs -p | xargs -r kill 2>/dev/null || true
	wait 2>/dev/null || true
	local after
	after=$(host_mounts)
	if [ "$after" != "$MOUNTS_BEFORE" ]; then
		echo "not ok $((TEST_NUM + 1)) - host mount table changed by this test:"
		diff <(echo "$MOUNTS_BEFORE") <(echo "$after") | sed 's/^/# /'
		rc=1
	fi
	# Never cross into another file system while deleting, even if a mount leaked.
	rm -rf --one-file-system "$TMP" 2>/dev/null || true
	exit $rc
}
trap _lib_cleanup EXIT

ok() { TEST_NUM=$((TEST_NUM + 1)); echo "ok $TEST_NUM - $*"; }
not_ok() { TEST_NUM=$((TEST_NUM + 1)); TEST_FAILED=1; echo "not ok $TEST_NUM - $*"; }
skip() { TEST_NUM=$((TEST_NUM + 1)); echo "ok $TEST_NUM # SKIP $*"; }
diag() { echo "# $*"; }

# check "description" command...: ok when the command succeeds.
check() {
	local what=$1
	shift
	if "$@" >"$TMP/check.out" 2>&1; then ok "$what"; else
		not_ok "$what"
		sed 's/^/# /' "$TMP/check.out" | tail -n 20
	fi
}
# check_fails "description" EXPECTED_RC PATTERN command...: the command must exit
# with EXPECTED_RC and print PATTERN (grep -E) on stdout or stderr.
check_fails() {
	local what=$1 want_rc=$2 pattern=$3
	shift 3
	local rc=0
	"$@" >"$TMP/check.out" 2>&1 || rc=$?
	if [ "$rc" -eq "$want_rc" ] && grep -qE -- "$pattern" "$TMP/check.out"; then ok "$what"; else
		not_ok "$what (exit $rc, wanted $want_rc and /$pattern/)"
		sed 's/^/# /' "$TMP/check.out" | tail -n 20
	fi
}
require_root() {
	if [ "$(id -u)" -ne 0 ]; then
		skip "needs root"
		exit 0
	fi
}
# The host's Debian mirror, from its apt configuration (never written into the repo).
host_debian_mirror() {
	"$IMGBUILD" mirror debian 2>/dev/null
}
ubuntu_archive_answers() {
	curl -s -m 10 -o /dev/null -I "${IMGBUILD_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}/dists/bionic/Release"
}
finish() { exit "$TEST_FAILED"; }
# Tests that build Debian images: the shared test cache (layers and downloads
# kept between runs), and a skip, not a failure, without a Debian mirror.
use_debian_test_cache() {
	export IMGBUILD_CACHE=${IMGBUILD_TEST_CACHE:-/var/cache/imgbuild-test}
	if ! host_debian_mirror >/dev/null; then
		skip "no Debian mirror in the host's apt configuration"
		finish
	fi
}
# The test signing key is a fixture and is never trusted by default: a test
# that needs it trusted puts it in a private user trust folder.
TEST_KEY=$REPO/tests/fixtures/imgbuild-test.sec
TEST_PUB=$REPO/tests/fixtures/imgbuild-test.pub
trust_test_key() {
	export XDG_CONFIG_HOME=$TMP/config
	mkdir -p "$XDG_CONFIG_HOME/imgbuild/trusted"
	cp "$TEST_PUB" "$XDG_CONFIG_HOME/imgbuild/trusted/"
}
