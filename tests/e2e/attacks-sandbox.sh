#!/usr/bin/env bash
# Issue 14, the sandbox half: a hostile image really tries each way out and
# the host is checked afterwards. The image is a busybox tree plus
# tests/fixtures/attack-probe.c (static), packed with `imgbuild pack`.
#   - the opening attack: /proc/sys/kernel/core_pattern, mknod in /imgbuild/cwd
#   - item 1: masked and read-only /proc and /sys, no device nodes anywhere,
#     every host bind nosuid,nodev, seccomp on in `run` (ptrace allowed)
#   - item 7: profile.d writing to the caller's folder; $HOME never bound
#   - item 9: a link in the image leading a bind destination to the host
#   - item 12: an ordinary user's run maps its /etc/subuid range (and only that)
#   - item 2: a manifest's own keyring never gets a bootstrap as root
#   - item 1 in a build stage and in `imgbuild shell` (the demo's base, from the
#     shared Debian test cache)
. "$(dirname "$0")/../lib.sh"
require_root
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	skip "needs a static busybox (apt-get install busybox-static)"
	finish
fi
PROBE=$TMP/probe
if ! cc -static -O2 -o "$PROBE" "$REPO/tests/fixtures/attack-probe.c" 2>"$TMP/cc.err"; then
	skip "cannot build a static probe: $(head -1 "$TMP/cc.err")"
	finish
fi
export IMGBUILD_CACHE=$TMP/cache
CORE_BEFORE=$(cat /proc/sys/kernel/core_pattern)
VICTIM=/etc/imgbuild-secbox-attack.$$
SUBUSER=imgbuild-secbox
CREATED_USER=0
drop_subids() {
	sed -i "/^$SUBUSER:/d" /etc/subuid /etc/subgid 2>/dev/null || true
}
secbox_cleanup() {
	drop_subids
	if [ "$CREATED_USER" = 1 ]; then userdel "$SUBUSER" 2>/dev/null || true; fi
	# Were an attack to succeed, put the host back (and the test has failed).
	if [ "$(cat /proc/sys/kernel/core_pattern)" != "$CORE_BEFORE" ]; then
		printf '%s\n' "$CORE_BEFORE" >/proc/sys/kernel/core_pattern
	fi
	rm -f "$VICTIM"
}
trap 'rc=$?; secbox_cleanup; (exit $rc); _lib_cleanup' EXIT

chmod 755 "$TMP"
ROOT=$TMP/root
mkdir -p "$ROOT/bin" "$ROOT/etc/profile.d" "$ROOT/root" "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
cp "$PROBE" "$ROOT/bin/probe"
# The image's profile.d runs before any command: it goes for the caller's folder.
cat >"$ROOT/etc/profile.d/evil.sh" <<'SH'
{ echo pwned >>/imgbuild/cwd/.bashrc; } 2>/dev/null
{ echo 'untrusted: evil' >/imgbuild/cwd/evil.pub; } 2>/dev/null
true
SH
# Links that would take a bind destination out of the image.
ln -s /etc "$ROOT/mnt"
ln -s ../../../../../../../etc "$ROOT/up"
(cd "$TMP" && "$IMGBUILD" pack "$ROOT" -o "$TMP/evil.tar" --epoch 1577836800 >/dev/null)
run() { "$IMGBUILD" run --allow-unsigned "$TMP/evil.tar" "$@"; }
HERE=$TMP/here
mkdir -p "$HERE"
echo 'original' >"$HERE/.bashrc"
cd "$HERE"

# ---- the opening attack, as the issue ran it ----
out=$(run -- sh -c 'probe write /proc/sys/kernel/core_pattern "|/proc/%P/root/bin/probe"; probe mknod /imgbuild/cwd/n' 2>&1 || true)
if echo "$out" | grep -q 'write: refused' && echo "$out" | grep -q 'mknod: refused' &&
	[ "$(cat /proc/sys/kernel/core_pattern)" = "$CORE_BEFORE" ] && [ ! -e "$HERE/n" ]; then
	ok "opening attack: core_pattern write and mknod in /imgbuild/cwd refused; host core_pattern unchanged, no node"
else
	not_ok "opening attack"; diag "$out"; ls -l "$HERE" | sed 's/^/# /'
fi

# ---- item 1: /proc and /sys ----
out=$(run -- sh -c 'for f in /proc/sysrq-trigger /proc/sys/kernel/modprobe /proc/sys/vm/drop_caches /proc/irq/default_smp_affinity /proc/bus/pci/devices; do if [ -e $f ]; then probe openw $f; fi; done; if [ -e /proc/kcore ]; then wc -c </proc/kcore; else echo 0; fi; if [ -d /sys/firmware ]; then ls -A /sys/firmware | wc -l; else echo 0; fi' 2>&1 || true)
if ! echo "$out" | grep -q 'openw: done' && [ "$(echo "$out" | grep -c 'openw: refused: Read-only')" -ge 3 ] &&
	[ "$(echo "$out" | tail -2 | tr '\n' ' ')" = "0 0 " ]; then
	ok "/proc/sysrq-trigger, /proc/sys, /proc/irq, /proc/bus read-only; /proc/kcore and /sys/firmware masked"
else
	not_ok "proc masks"; diag "$out"
fi
out=$(run -- sh -c 'umount /proc/sys; mount -t proc proc /mnt; probe write /proc/sys/kernel/core_pattern x' 2>&1 || true)
if echo "$out" | grep -q 'write: refused' && [ "$(cat /proc/sys/kernel/core_pattern)" = "$CORE_BEFORE" ]; then
	ok "the masks cannot be unmounted or worked around with a fresh proc"
else
	not_ok "unmasking"; diag "$out"
fi

# ---- item 1: device nodes, nosuid, nodev ----
mkdir -p "$TMP/data"
out=$(run --bind "$TMP/data:/data" -- sh -c 'probe mknod /data/n; probe mknod /tmp/n; probe mknod /root/n; probe mknod /dev/shm/n; probe fifo /tmp/fifo' 2>&1 || true)
if [ "$(echo "$out" | grep -c 'mknod: refused')" = 4 ] && echo "$out" | grep -q 'fifo: done' && [ -z "$(ls -A "$TMP/data")" ]; then
	ok "no device node anywhere (bound folder, /tmp, the root, /dev/shm); FIFOs still work"
else
	not_ok "device nodes"; diag "$out"
fi
# A setuid-root file in a bound host folder: nosuid there.
cp "$PROBE" "$TMP/data/suid"
chmod 4755 "$TMP/data/suid"
cp "$PROBE" "$HERE/suid"
chmod 4755 "$HERE/suid"
out=$(run --bind "$TMP/data:/data" -- sh -c 'probe as 65534 /data/suid euid; probe as 65534 /imgbuild/cwd/suid euid' 2>&1 || true)
if [ "$(echo "$out" | tr '\n' ' ')" = "65534 65534 " ]; then
	ok "setuid-root files in host binds (--bind, the current folder) do not raise an unprivileged user"
else
	not_ok "nosuid binds"; diag "$out"
fi
rm -f "$HERE/suid"
out=$(grep -E ' /imgbuild/cwd | /data ' <(run --bind "$TMP/data:/data" -- cat /proc/self/mountinfo 2>&1) || true)
if [ "$(echo "$out" | grep -c 'nosuid,nodev')" = 2 ]; then ok "every host bind is nosuid,nodev"; else not_ok "bind flags"; diag "$out"; fi

# ---- item 1: seccomp in run, ptrace decided ----
out=$(run -- sh -c 'unshare -m true && echo UNSHARED; mount -t tmpfs t /mnt && echo MOUNTED; probe ptrace' 2>&1 || true)
if ! echo "$out" | grep -qE 'UNSHARED|MOUNTED' && echo "$out" | grep -q 'ptrace: done'; then
	ok "run has the seccomp filter (unshare, mount refused) and ptrace works for gdb/py-spy"
else
	not_ok "run seccomp"; diag "$out"
fi

# ---- item 7: the caller's folder ----
out=$(run -- sh -c 'cat /imgbuild/cwd/.bashrc; touch /imgbuild/cwd/x && echo WROTE' 2>&1 || true)
if [ "$(cat "$HERE/.bashrc")" = original ] && [ ! -e "$HERE/evil.pub" ] && [ ! -e "$HERE/x" ] &&
	echo "$out" | grep -qx original && ! echo "$out" | grep -q WROTE; then
	ok "profile.d cannot write to the caller's folder (read-only at /imgbuild/cwd, still readable)"
else
	not_ok "cwd read-only"; diag "$out"; diag "$(cat "$HERE/.bashrc")"
fi
out=$(run --cwd-rw -- sh -c 'touch /imgbuild/cwd/x && echo WROTE' 2>&1 || true)
if echo "$out" | grep -q WROTE && [ -e "$HERE/x" ]; then ok "--cwd-rw lets the command write there"; else not_ok "--cwd-rw"; diag "$out"; fi
echo original >"$HERE/.bashrc"
rm -f "$HERE/x" "$HERE/evil.pub"
out=$(HOME=$HERE run -- sh -c 'ls /imgbuild/cwd 2>&1; pwd' 2>&1 || true)
if [ "$(cat "$HERE/.bashrc")" = original ] && [ ! -e "$HERE/evil.pub" ] && echo "$out" | grep -q 'home folder' && echo "$out" | grep -qx /; then
	ok "run from the home folder: nothing of it is bound, even read-only"
else
	not_ok "home folder"; diag "$out"
fi
mkdir -p "$HERE/sub"
echo under >"$HERE/sub/f"
out=$(unshare -m --propagation private sh -c "mount -t tmpfs t '$HERE/sub' && '$IMGBUILD' run --allow-unsigned '$TMP/evil.tar' -- ls -A /imgbuild/cwd/sub" 2>&1 || true)
if [ "$out" = f ]; then ok "the current folder is bound without the mounts below it"; else not_ok "non-recursive cwd"; diag "$out"; fi

# ---- item 9: bind destinations resolve inside the image ----
echo bound >"$TMP/data/file"
for dst in /mnt/${VICTIM#/etc/} /up/${VICTIM#/etc/}; do
	out=$(run --bind "$TMP/data/file:$dst" -- cat "/etc/${VICTIM#/etc/}" 2>&1 || true)
	if [ ! -e "$VICTIM" ] && [ "$out" = bound ]; then
		ok "--bind to $dst through a link in the image lands in the image's /etc, not the host's"
	else
		not_ok "bind through a link: $dst"; diag "$out"; ls -l "$VICTIM" 2>&1 | sed 's/^/# /'
	fi
done
# Without openat2 (build/oldkernel answers ENOSYS as Linux 4.15 would): links refused.
OLDK=$REPO/build/oldkernel
if [ -x "$OLDK" ]; then
	out=$("$OLDK" "$IMGBUILD" run --allow-unsigned "$TMP/evil.tar" --bind "$TMP/data/file:/mnt/${VICTIM#/etc/}" -- true 2>&1) && rc=0 || rc=$?
	out2=$("$OLDK" "$IMGBUILD" run --allow-unsigned "$TMP/evil.tar" --bind "$TMP/data/file:/opt/x/file" -- cat /opt/x/file 2>&1) || true
	if [ "$rc" != 0 ] && echo "$out" | grep -q 'is a symbolic link' && [ ! -e "$VICTIM" ] && [ "$out2" = bound ]; then
		ok "without openat2 a link on the way to a bind destination is refused, other destinations still made"
	else
		not_ok "openat2 fallback (rc $rc)"; diag "$out"; diag "$out2"
	fi
else
	skip "no build/oldkernel (make all)"
fi

# ---- item 12: an ordinary user's subordinate range ----
if ! id "$SUBUSER" >/dev/null 2>&1; then
	useradd -M -s /bin/sh "$SUBUSER" && CREATED_USER=1
fi
if id "$SUBUSER" >/dev/null 2>&1 && [ -u /usr/bin/newuidmap ]; then
	START=$((3000000000 + (RANDOM % 4096) * 65536))
	drop_subids
	echo "$SUBUSER:$START:65536" >>/etc/subuid
	echo "$SUBUSER:$START:65536" >>/etc/subgid
	UROOT=$TMP/uroot
	cp -a "$ROOT" "$UROOT"
	rm -f "$UROOT/etc/profile.d/evil.sh"
	chown -R "$SUBUSER:" "$UROOT"
	mkdir -p "$TMP/udata"
	chown "$SUBUSER:" "$TMP/udata"
	uinside='wc -l </proc/self/uid_map; touch /imgbuild/cwd/f; probe chown /imgbuild/cwd/f 42; probe chown /tmp 100; probe chown /imgbuild/cwd/f 0'
	out=$(cd "$TMP/udata" && runuser -u "$SUBUSER" -- env IMGBUILD_CACHE="$TMP/ucache" "$IMGBUILD" run --cwd-rw "$UROOT" -- sh -c "$uinside" 2>&1) || true
	owner=$(stat -c %u:%g "$TMP/udata/f" 2>/dev/null || echo none)
	if [ "$(echo "$out" | head -1)" = 2 ] && [ "$(echo "$out" | grep -c 'chown: done')" = 3 ] &&
		[ "$owner" = "$(id -u "$SUBUSER"):$(id -g "$SUBUSER")" ]; then
		ok "rootless run maps the /etc/subuid range through newuidmap: chown to 42 and 100 work inside"
	else
		not_ok "subuid range"; diag "$out"; diag "owner $owner"
	fi
	out=$(cd "$TMP/udata" && runuser -u "$SUBUSER" -- env IMGBUILD_CACHE="$TMP/ucache" "$IMGBUILD" run --cwd-rw "$UROOT" -- sh -c 'probe chown /imgbuild/cwd/f 42' 2>&1) || true
	owner=$(stat -c %u "$TMP/udata/f" 2>/dev/null || echo none)
	if [ "$owner" = $((START + 41)) ]; then
		ok "a file chowned to 42 inside belongs to the range's uid $((START + 41)) on the host, never to a real user"
	else
		not_ok "range owner: $owner"; diag "$out"
	fi
	drop_subids
	out=$(cd "$TMP/udata" && runuser -u "$SUBUSER" -- env IMGBUILD_CACHE="$TMP/ucache" "$IMGBUILD" run --cwd-rw "$UROOT" -- sh -c 'wc -l </proc/self/uid_map; probe chown /tmp 100; id -u' 2>&1) || true
	if [ "$(echo "$out" | tr '\n' ' ')" = "1 chown: refused: Invalid argument 0 " ]; then
		ok "without a range the run still works, the caller alone mapped to root"
	else
		not_ok "single-uid fallback"; diag "$out"
	fi
else
	skip "no test user or no newuidmap"; skip "no test user or no newuidmap"; skip "no test user or no newuidmap"
fi

# ---- item 2: a manifest's own keyring and mirror for the bootstrap ----
P=$TMP/project
mkdir -p "$P/keys" "$P/repo" "$P/manifests" "$P/stages"
# Looks like the Debian keyring, plus one more key: whatever it signs would be
# installed and its maintainer scripts run, as root, by the bootstrap.
cat /usr/share/keyrings/debian-archive-keyring.gpg "$REPO/tests/fixtures/imgbuild-test.pub" >"$P/keys/archive.gpg"
cat >"$P/manifests/evil.toml" <<TOML
[image]
name = "evil"
source_date_epoch = 1700000000

[base]
distro = "debian"
suite = "bookworm"
mirrors = ["file://$P/repo"]
keyring = "../keys/archive.gpg"
TOML
before=$(find /etc -xdev -newer "$P/manifests/evil.toml" 2>/dev/null | sort | sha256sum)
check_fails "a manifest's own keyring is refused before any package is unpacked, naming the file and the fix" 2 \
	"evil.toml:[0-9]+: \[base\] keyring .*archive.gpg.* not a keyring this host trusts.*copy it to /usr/share/keyrings/" \
	"$IMGBUILD" build "$P/manifests/evil.toml" -o "$TMP/evil-out.tar" --build-dir "$TMP/evil-bd"
after=$(find /etc -xdev -newer "$P/manifests/evil.toml" 2>/dev/null | sort | sha256sum)
if [ "$before" = "$after" ] && [ ! -e "$TMP/evil-out.tar" ] && ! grep -rqs mmdebstrap "$TMP/evil-bd/logs"; then
	ok "nothing ran: no bootstrap log, no output, nothing new in /etc"
else
	not_ok "the refused bootstrap left traces"
fi

# ---- item 1 in a build stage and in `imgbuild shell` ----
if host_debian_mirror >/dev/null; then
	SC=${IMGBUILD_TEST_CACHE:-/var/cache/imgbuild-test}
	S=$TMP/stageproj
	mkdir -p "$S/stages" "$S/manifests"
	# The demo's [image] and [base]: its base layer is reused from the test cache.
	awk '/^\[/ { keep = ($0 == "[image]" || $0 == "[base]") } keep' "$REPO/manifests/demo.toml" >"$S/manifests/evil.toml"
	printf '\n[[stage]]\nname = "evil"\nscript = "../stages/evil.sh"\n' >>"$S/manifests/evil.toml"
	cat >"$S/stages/evil.sh" <<'SH'
if echo '|/imgbuild/work/x' >/proc/sys/kernel/core_pattern; then echo CORE_WRITTEN; fi
mknod /imgbuild/work/n c 1 3 && echo MKNOD_WORK
mknod /imgbuild/ccache/n-secbox c 1 3 && echo MKNOD_CCACHE
mknod /root/n b 8 0 && echo MKNOD_ROOT
mount -t proc proc /mnt && echo MOUNTED
grep -E ' /imgbuild/(work|ccache) ' /proc/self/mountinfo | grep -c nosuid,nodev
echo STAGE_DONE
exit 1
SH
	rc=0
	IMGBUILD_CACHE=$SC "$IMGBUILD" build "$S/manifests/evil.toml" -o "$TMP/stage.tar" --build-dir "$TMP/sbd" >"$TMP/stage.out" 2>&1 || rc=$?
	log=$TMP/sbd/logs/evil.log
	if [ "$rc" = 1 ] && grep -q STAGE_DONE "$log" && ! grep -qE 'CORE_WRITTEN|MKNOD_|MOUNTED' "$log" && grep -qx 2 "$log" &&
		[ "$(cat /proc/sys/kernel/core_pattern)" = "$CORE_BEFORE" ] && [ ! -e "$TMP/sbd/work/evil/n" ] && [ -z "$(ls -d "$SC"/ccache/n-secbox "$SC"/ccache/*/n-secbox 2>/dev/null)" ]; then
		ok "a build stage as root: core_pattern, mknod in work/ccache/root and mount refused; work and ccache nosuid,nodev"
	else
		not_ok "stage attacks (build exit $rc)"; tail -n 12 "$TMP/stage.out" | sed 's/^/# /'; sed 's/^/# /' "$log" 2>/dev/null | tail -n 12
	fi
	rm -f "$SC"/ccache/n-secbox "$SC"/ccache/*/n-secbox	# one ccache per manifest (issue 14, item 8)
	out=$(IMGBUILD_CACHE=$SC "$IMGBUILD" shell "$S/manifests/evil.toml" --stage evil --build-dir "$TMP/sbd" -- sh -c 'mknod /imgbuild/work/n2 c 1 3 && echo MKNOD; echo x >/proc/sys/kernel/core_pattern && echo CORE; echo SHELL_DONE' 2>&1) || true
	if echo "$out" | grep -q SHELL_DONE && ! echo "$out" | grep -qxE 'MKNOD|CORE' && [ ! -e "$TMP/sbd/work/evil/n2" ] &&
		[ "$(cat /proc/sys/kernel/core_pattern)" = "$CORE_BEFORE" ]; then
		ok "imgbuild shell as root: the same refusals"
	else
		not_ok "shell attacks"; diag "$out"
	fi
else
	skip "no Debian mirror in the host's apt configuration"; skip "no Debian mirror in the host's apt configuration"
fi
finish
