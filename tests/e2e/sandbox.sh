#!/usr/bin/env bash
# The sandbox (builder/sandbox.c, mounts.c, seccomp.c) driven through a small
# harness compiled here against those files, in a busybox root made here.
# Needs root (and busybox-static: `apt-get install busybox-static`).
. "$(dirname "$0")/../lib.sh"
require_root
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
	if [ -x /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked'; then BUSYBOX=/bin/busybox; else
		skip "needs a static busybox (apt-get install busybox-static)"
		exit 0
	fi
fi

# ---- fixtures ----
make_root() {	# DIR: a busybox root with /bin/sh and a profile.d file
	local r=$1 a
	mkdir -p "$r/bin" "$r/etc/profile.d" "$r/root" "$r/tmp" "$r/proc" "$r/sys" "$r/dev"
	cp "$BUSYBOX" "$r/bin/busybox"
	for a in $("$BUSYBOX" --list); do
		[ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
	done
	echo 'export FROM_PROFILE=yes' >"$r/etc/profile.d/ib.sh"
	echo 'nameserver 192.0.2.1' >"$r/etc/resolv.conf"
}

cat >"$TMP/sbx.c" <<'EOF'
/* Test harness: one ib_sandbox_run from the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "driver.h"
#include "log.h"
#include "sandbox.h"
#include "util.h"
int main(int argc, char **argv)
{
	struct ib_sandbox_spec s;
	memset(&s, 0, sizeof(s));
	s.stdin_fd = s.stdout_fd = s.stderr_fd = -1;
	struct ib_bind binds[32];
	const char *lowers[16] = { 0 };
	size_t nl = 0;
	struct ib_driver d;
	memset(&d, 0, sizeof(d));
	ib_error_t err = NULL;
	ib_log_init(getenv("SBX_VERBOSE") ? IB_LOG_VERBOSE : IB_LOG_NORMAL);
	char *env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "SBX=1", NULL };
	s.envp = env;
	int i = 1;
	for (; i < argc; i++) {
		char *a = argv[i];
		if (!strcmp(a, "--")) { i++; break; }
		else if (!strcmp(a, "--remove-tree")) {
			if (ib_remove_tree(argv[i + 1], &err) < 0) { fprintf(stderr, "%s\n", err->msg); return 1; }
			return 0;
		}
		else if (!strcmp(a, "--root")) s.root_dir = argv[++i];
		else if (!strcmp(a, "--lower")) lowers[nl++] = argv[++i];
		else if (!strcmp(a, "--upper")) s.upper_dir = argv[++i];
		else if (!strcmp(a, "--work")) s.work_dir = argv[++i];
		else if (!strcmp(a, "--mp")) s.mount_point = argv[++i];
		else if (!strcmp(a, "--cwd")) s.cwd = argv[++i];
		else if (!strcmp(a, "--net")) s.network = true;
		else if (!strcmp(a, "--seccomp")) s.seccomp = true;
		else if (!strcmp(a, "--userns")) s.user_namespace = true;
		else if (!strcmp(a, "--ro")) s.read_only_root = true;
		else if (!strcmp(a, "--driver")) {
			if (ib_driver_discover(&d, &err) < 0) { fprintf(stderr, "%s\n", err->msg); return 1; }
			s.driver = &d;
		} else if (!strcmp(a, "--bind") || !strcmp(a, "--ro-bind")) {
			char *v = xstrdup(argv[++i]);
			char *c = strchr(v, ':');
			*c = '\0';
			binds[s.n_binds++] = (struct ib_bind){ v, c + 1, a[2] == 'r' ? IB_BIND_RO : 0 };
		} else { fprintf(stderr, "sbx: bad option %s\n", a); return 2; }
	}
	if (nl) s.lower_dirs = lowers;
	s.binds = binds;
	s.argv = argv + i;
	int status = 0;
	if (ib_sandbox_run(&s, &status, &err) < 0) {
		fprintf(stderr, "sbx: %s\n", err->msg);
		return err->exit_code;
	}
	ib_driver_free(&d);
	return status;
}
EOF
cat >"$TMP/probe.c" <<'EOF'
/* Prints what the kernel answers to calls a build must not make. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>
#include <unistd.h>
#include <time.h>
static const char *e(int rc) { return rc == 0 ? "OK" : errno == EPERM ? "EPERM" : strerror(errno); }
int main(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	printf("mount=%s\n", e(mount("none", "/tmp", "tmpfs", 0, NULL)));
	printf("ptrace=%s\n", e((int)ptrace(PTRACE_TRACEME, 0, NULL, NULL)));
	printf("unshare=%s\n", e(unshare(CLONE_NEWNS)));
	printf("clock_settime=%s\n", e(clock_settime(CLOCK_REALTIME, &ts)));
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	long ring = syscall(SYS_io_uring_setup, 4, &p);
	printf("io_uring_setup=%s\n", ring >= 0 ? "OK" : errno == ENOSYS ? "ENOSYS" : strerror(errno));
	return 0;
}
EOF
SRCS="$REPO/builder/sandbox.c $REPO/builder/mounts.c $REPO/builder/seccomp.c $REPO/builder/driver.c $REPO/builder/util.c $REPO/builder/error.c $REPO/builder/log.c $REPO/builder/proc.c $REPO/builder/version.c"
if ! gcc -std=gnu11 -D_GNU_SOURCE -O1 -g -I"$REPO/builder" -o "$TMP/sbx" "$TMP/sbx.c" $SRCS -lseccomp -ldl -lpthread >"$TMP/cc.log" 2>&1; then
	not_ok "compile the sandbox harness"
	sed 's/^/# /' "$TMP/cc.log"
	finish
fi
ok "compile the sandbox harness"
gcc -static -D_GNU_SOURCE -O1 -o "$TMP/probe" "$TMP/probe.c"
SBX=$TMP/sbx
ROOT=$TMP/root
make_root "$ROOT"
cp "$TMP/probe" "$ROOT/bin/probe"
mkdir -p "$TMP/mp"
sbx_in() { "$SBX" --lower "$ROOT" --mp "$TMP/mp" "$@"; }

# ---- seccomp and capabilities ----
out=$(sbx_in --seccomp -- /bin/probe 2>&1 || true)
if echo "$out" | grep -q '^mount=EPERM' && echo "$out" | grep -q '^ptrace=EPERM' &&
	echo "$out" | grep -q '^unshare=EPERM' && echo "$out" | grep -q '^clock_settime=EPERM'; then
	ok "seccomp: mount, ptrace, unshare, clock_settime get EPERM"
else
	not_ok "seccomp: refused calls"; diag "$out"
fi
# The same call works without the filter on this kernel, so the refusal is the filter's.
if echo "$out" | grep -q '^io_uring_setup=ENOSYS' && ! sysctl -n kernel.io_uring_disabled 2>/dev/null | grep -q '^[12]$'; then
	if sbx_in -- /bin/probe 2>&1 | grep -q '^io_uring_setup=OK'; then
		ok "seccomp: io_uring_setup answers ENOSYS (it works without the filter)"
	else
		not_ok "io_uring_setup without the filter"; diag "$(sbx_in -- /bin/probe 2>&1)"
	fi
elif echo "$out" | grep -q '^io_uring_setup=ENOSYS'; then
	skip "io_uring refused by kernel.io_uring_disabled here: the filter's refusal cannot be told apart"
else
	not_ok "seccomp: io_uring_setup not refused"; diag "$out"
fi
out=$(sbx_in -- /bin/probe 2>&1 || true)
if echo "$out" | grep -q '^ptrace=OK' && echo "$out" | grep -q '^mount=EPERM'; then
	ok "without seccomp ptrace works and mount is still refused (capabilities dropped)"
else
	not_ok "without seccomp"; diag "$out"
fi
out=$(sbx_in -- sh -c 'grep CapBnd /proc/self/status' 2>&1)
bnd=$((16#$(echo "$out" | awk '{print $2}')))
if [ $((bnd & (1 << 21))) -eq 0 ] && [ $((bnd & (1 << 16))) -eq 0 ] && [ $((bnd & (1 << 25))) -eq 0 ] &&
	[ $((bnd & 1)) -ne 0 ] && [ $((bnd & (1 << 7))) -ne 0 ]; then
	ok "capabilities: SYS_ADMIN, SYS_MODULE, SYS_TIME dropped; CHOWN, SETUID kept ($out)"
else
	not_ok "capability bounding set: $out"
fi

# ---- namespaces ----
out=$(sbx_in -- sh -c 'awk "{print \$4}" /proc/self/stat; cat /proc/$$/stat | cut -d" " -f4; ls /proc | grep -c "^[0-9]"; hostname' 2>&1)
ppid_sh=$(echo "$out" | sed -n 2p)
nprocs=$(echo "$out" | sed -n 3p)
if [ "$ppid_sh" = 1 ] && [ "$nprocs" -le 4 ] && [ "$(echo "$out" | sed -n 4p)" = imgbuild ]; then
	ok "PID namespace: the command is a child of PID 1 and sees $nprocs processes; hostname imgbuild"
else
	not_ok "PID namespace"; diag "$out"
fi
check "host processes are invisible" sbx_in -- sh -c "test ! -e /proc/$$"
out=$(sbx_in -- env 2>&1 | sort | tr '\n' ' ')
if [ "$out" = "HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin SBX=1 " ]; then ok "clean environment: exactly envp"; else
	not_ok "environment: $out"
fi

# ---- network ----
PORT=$((20000 + RANDOM % 20000))
mkdir -p "$TMP/www" && echo served >"$TMP/www/index.html"
"$BUSYBOX" httpd -f -p "127.0.0.1:$PORT" -h "$TMP/www" &
HTTPD=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do
	"$BUSYBOX" wget -q -O- "http://127.0.0.1:$PORT/" 2>/dev/null | grep -q served && break
	sleep 0.2
done
if "$BUSYBOX" wget -q -O- "http://127.0.0.1:$PORT/" 2>/dev/null | grep -q served; then
	out=$(sbx_in -- sh -c 'ls /sys/class/net; cat /sys/class/net/lo/operstate' 2>&1 | tr '\n' ' ')
	# lo is brought up (its operstate reads "unknown" when up): MPI and PMIx need 127.0.0.1.
	if [ "$out" = "lo unknown " ]; then ok "network cut: only lo, up"; else not_ok "network interfaces: $out"; fi
	check_fails "network cut: the host's 127.0.0.1:$PORT is unreachable" 1 'sandbox-no-net' \
		sbx_in -- sh -c "timeout 5 wget -q -O- http://127.0.0.1:$PORT/ || { echo sandbox-no-net; exit 1; }"
	check "network allowed: the host's server answers" sbx_in --net -- sh -c "timeout 5 wget -q -O- http://127.0.0.1:$PORT/ | grep served"
	check "network allowed: the host's resolv.conf is bound over the image's" \
		sbx_in --net -- sh -c "cmp /etc/resolv.conf /proc/1/root/etc/resolv.conf 2>/dev/null || ! grep -q 192.0.2.1 /etc/resolv.conf"
else
	skip "busybox httpd did not start"; skip "network"; skip "network"; skip "network"
fi
kill "$HTTPD" 2>/dev/null || true
wait "$HTTPD" 2>/dev/null || true

# ---- binds ----
mkdir -p "$TMP/in" "$TMP/rw"
echo input >"$TMP/in/file"
check_fails "read-only bind is read-only" 1 'Read-only file system' \
	sbx_in --ro-bind "$TMP/in:/imgbuild/inputs/in" -- sh -c 'cat /imgbuild/inputs/in/file && echo x > /imgbuild/inputs/in/new'
check "read-write bind: the host sees the write" \
	sh -c "'$SBX' --lower '$ROOT' --mp '$TMP/mp' --bind '$TMP/rw:/imgbuild/work' -- sh -c 'echo w > /imgbuild/work/out' && grep -qx w '$TMP/rw/out'"
check "bind to a path the image lacks (made in the skeleton, not the upper layer)" \
	sbx_in --ro-bind "$TMP/in:/data/in" -- sh -c 'cat /data/in/file'
check_fails "/imgbuild is read-only itself" 1 'Read-only' sbx_in -- sh -c 'touch /imgbuild/x'

# ---- exit status, daemons ----
for code in 0 3 42; do
	rc=0
	sbx_in -- sh -c "exit $code" || rc=$?
	if [ "$rc" = "$code" ]; then ok "exit status $code passes through"; else not_ok "exit status $code: got $rc"; fi
done
rc=0
sbx_in -- sh -c 'kill -9 $$' || rc=$?
if [ "$rc" = 137 ]; then ok "killed by SIGKILL: 137"; else not_ok "killed by signal: got $rc"; fi
rc=0
sbx_in -- sh -c 'exec /bin/does-not-exist' 2>/dev/null || rc=$?
if [ "$rc" = 127 ]; then ok "missing program: 127"; else not_ok "missing program: got $rc"; fi
rc=0
sbx_in -- /bin/does-not-exist 2>"$TMP/err" || rc=$?
if [ "$rc" = 127 ] && grep -q "exec '/bin/does-not-exist'" "$TMP/err"; then ok "exec failure is reported with 127"; else
	not_ok "exec failure: $rc $(cat "$TMP/err")"
fi

MARK=$((31000 + RANDOM % 1000))
sbx_in -- sh -c "setsid sleep $MARK.5 </dev/null >/dev/null 2>&1 & sleep 0.3; ps | grep -q 'slee[p] $MARK.5' && echo started" >"$TMP/daemon.out" 2>&1 || true
sleep 0.3
if grep -q started "$TMP/daemon.out" && ! pgrep -f "slee[p] $MARK.5" >/dev/null; then
	ok "a daemon the command left behind is killed with the sandbox"
else
	not_ok "daemon left behind: $(cat "$TMP/daemon.out"; pgrep -af "slee[p] $MARK.5" || true)"
fi

# ---- signals ----
"$SBX" --lower "$ROOT" --mp "$TMP/mp" -- sleep "$MARK.6" &
P=$!
for _ in $(seq 50); do pgrep -f "sleep $MARK.6" >/dev/null && break; sleep 0.1; done
kill -TERM "$P"
rc=0
wait "$P" || rc=$?
sleep 0.2
if [ "$rc" = 143 ] && ! pgrep -f "sleep $MARK.6" >/dev/null &&
	[ "$(host_mounts)" = "$MOUNTS_BEFORE" ]; then
	ok "SIGTERM to imgbuild: exit 143, no process, no mount left"
else
	not_ok "SIGTERM: rc $rc, left: $(pgrep -af "sleep $MARK.6" || true)"
fi
"$SBX" --lower "$ROOT" --mp "$TMP/mp" -- sleep "$MARK.7" &
P=$!
for _ in $(seq 50); do pgrep -f "sleep $MARK.7" >/dev/null && break; sleep 0.1; done
kill -INT "$P"
rc=0
wait "$P" || rc=$?
if [ "$rc" = 130 ]; then ok "SIGINT to imgbuild: exit 130"; else not_ok "SIGINT: rc $rc"; fi
"$SBX" --lower "$ROOT" --mp "$TMP/mp" -- sleep "$MARK.8" &
P=$!
for _ in $(seq 50); do pgrep -f "sleep $MARK.8" >/dev/null && break; sleep 0.1; done
kill -9 "$P"
wait "$P" 2>/dev/null || true
for _ in $(seq 30); do pgrep -f "sleep $MARK.8" >/dev/null || break; sleep 0.1; done
if ! pgrep -f "sleep $MARK.8" >/dev/null && [ "$(host_mounts)" = "$MOUNTS_BEFORE" ]; then
	ok "kill -9 of imgbuild: the sandbox dies (PDEATHSIG), no mount on the host"
else
	not_ok "kill -9: left $(pgrep -af "sleep $MARK.8" || true)"
fi

# ---- overlay layers ----
LOWER2=$TMP/lower2
mkdir -p "$LOWER2/etc" "$TMP/upper" "$TMP/work"
echo from-lower2 >"$LOWER2/etc/layer"
echo keep >"$ROOT/etc/victim"
before=$(cd "$ROOT" && find . -printf '%p %s %T@\n' | sort | sha256sum)
before2=$(cd "$LOWER2" && find . -printf '%p %s %T@\n' | sort | sha256sum)
check "overlay of two layers with an upper dir: writes succeed" \
	"$SBX" --lower "$LOWER2" --lower "$ROOT" --upper "$TMP/upper" --work "$TMP/work" --mp "$TMP/mp" \
	--ro-bind "$TMP/in:/imgbuild/inputs/in" --bind "$TMP/rw:/imgbuild/work" --ro-bind "$TMP/in:/opt/in" -- \
	sh -c 'grep -q from-lower2 /etc/layer && echo new > /etc/new && echo changed > /etc/layer && rm /etc/victim && mkdir /var && touch /var/x'
after=$(cd "$ROOT" && find . -printf '%p %s %T@\n' | sort | sha256sum)
after2=$(cd "$LOWER2" && find . -printf '%p %s %T@\n' | sort | sha256sum)
if [ "$before" = "$after" ] && [ "$before2" = "$after2" ]; then ok "lower layers untouched"; else not_ok "a lower layer changed"; fi
upper_list=$(cd "$TMP/upper" && find . -mindepth 1 | sort | tr '\n' ' ')
if [ "$upper_list" = "./etc ./etc/layer ./etc/new ./etc/victim ./var ./var/x " ] && [ -c "$TMP/upper/etc/victim" ] &&
	grep -qx changed "$TMP/upper/etc/layer"; then
	ok "the upper layer got exactly the writes (and a whiteout), no /imgbuild, /opt or /dev entries"
else
	not_ok "upper layer holds: $upper_list"
fi

# ---- plain root folder ----
PLAIN=$TMP/plain
make_root "$PLAIN"
rmdir "$PLAIN/tmp" "$PLAIN/sys"
check "plain root folder: writes go straight into it" \
	sh -c "'$SBX' --root '$PLAIN' --ro-bind '$TMP/in:/mnt/in' -- sh -c 'cat /mnt/in/file && echo hi > /written' && grep -qx hi '$PLAIN/written'"
if [ ! -e "$PLAIN/imgbuild" ] && [ ! -e "$PLAIN/tmp" ] && [ ! -e "$PLAIN/sys" ] && [ ! -e "$PLAIN/mnt" ]; then
	ok "plain root folder: the mount points it lacked are gone afterwards"
else
	not_ok "plain root left: $(ls "$PLAIN" | tr '\n' ' ')"
fi
check_fails "read_only_root: the root cannot be written" 1 'Read-only' "$SBX" --root "$PLAIN" --ro -- sh -c 'touch /x'
check_fails "a missing cwd is an error" 1 "chdir '/nonexistent' inside the sandbox" "$SBX" --root "$PLAIN" --cwd /nonexistent -- true

# ---- user namespace ----
if id ibtest >/dev/null 2>&1 || useradd -M -s /bin/sh ibtest 2>/dev/null; then
	chmod 755 "$TMP"
	out=$(runuser -u ibtest -- "$SBX" --userns --lower "$ROOT" --mp "$TMP/mp" -- sh -c 'id -u; echo w > /w && cat /w; ls /proc | grep -c "^[0-9]"' 2>&1 || true)
	if [ "$(echo "$out" | sed -n 1p)" = 0 ] && [ "$(echo "$out" | sed -n 2p)" = w ]; then
		ok "user namespace: an ordinary user is root inside, with a writable throw-away root"
	else
		not_ok "user namespace"; diag "$out"
	fi
else
	skip "no test user"
fi

# ---- ib_remove_tree ----
T=$TMP/rt
mkdir -p "$T/a/b" "$T/ro/sub" "$T/mnt"
echo x >"$T/a/b/f"
chmod 555 "$T/ro/sub" "$T/ro"
# Mounts only inside a private namespace of our own, never in the host's.
out=$(unshare -m --propagation private sh -c "
	mount -t tmpfs none '$T/mnt' && echo precious > '$T/mnt/keep' &&
	{ '$SBX' --remove-tree '$T' 2>&1; echo rc=\$?; } ; cat '$T/mnt/keep'" 2>&1)
if echo "$out" | grep -q 'still mounted' && echo "$out" | grep -q 'rc=1' && echo "$out" | grep -q precious &&
	[ -e "$T/a/b/f" ]; then
	ok "ib_remove_tree refuses a tree with a mount below it and deletes nothing"
else
	not_ok "ib_remove_tree with a mount"; diag "$out"
fi
check "ib_remove_tree removes a tree with read-only folders" sh -c "'$SBX' --remove-tree '$T' && test ! -e '$T'"

finish
