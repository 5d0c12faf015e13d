#!/usr/bin/env bash
# bench/5-run-startup.sh — start-up cost of `imgbuild run` against `chroot DIR /bin/true`.
# The root is the Debian bookworm minbase of bench/lib.sh (bench_minbase, made once
# into $BENCH_TMP/run-root with the mirror imgbuild uses); an image file packed from it is
# run too, after its first (unpacking) run, i.e. from the image cache.
# Rows are measured in ROUNDS interleaved rounds (default 5) of RUNS/ROUNDS runs each
# (RUNS default 40), after 3 warm-up runs, so that a change in the machine's load hits
# every row alike. Target: imgbuild run overhead under 50 ms.
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-40}
ROUNDS=${ROUNDS:-5}
PER=$(((RUNS + ROUNDS - 1) / ROUNDS))
[ "$(id -u)" = 0 ] || bench_skip "needs root (chroot, mmdebstrap)"
need_commands run
ROOT=$(bench_minbase) || bench_die "no minbase root"
export IMGBUILD_CACHE=$BENCH_CACHE/run-startup
mkdir -p "$IMGBUILD_CACHE"
IMAGE=
cd "$BENCH_TMP" || exit 1
# What imgbuild run does inside before the command (cmd_run.c), for a like-for-like row.
PROFILE_SH='for f in /etc/profile.d/*.sh; do if [ -r "$f" ]; then . "$f"; fi; done; unset f; exec "$@"'
# The same sandbox by hand (what a user would otherwise script): new namespaces, a
# tmpfs upper layer and an overlay over DIR, proc, sys, a tmpfs /dev with the usual
# device binds, /tmp, then chroot. Isolates the kernel's share of the cost.
HAND_SH='set -e; m=$(mktemp -d); mount --make-rprivate /; mount -t tmpfs -o mode=0755 tmpfs "$m"
mkdir "$m/u" "$m/w" "$m/r"
mount -t overlay overlay -o "lowerdir=$1,upperdir=$m/u,workdir=$m/w" "$m/r"
mount -t proc proc "$m/r/proc"; mount -t sysfs -o ro sysfs "$m/r/sys"
mount -t tmpfs -o mode=0755 tmpfs "$m/r/dev"
for d in null zero full random urandom tty; do : >"$m/r/dev/$d"; mount --bind "/dev/$d" "$m/r/dev/$d"; done
mount -t tmpfs -o mode=1777 tmpfs "$m/r/tmp"
exec chroot "$m/r" /bin/true'

warm() { local _; for _ in 1 2 3; do "$@" >/dev/null 2>&1 </dev/null; done; }

have_image=0
if "$IMGBUILD" --help 2>&1 | grep -q '^  pack '; then
	IMAGE=$(bench_minbase_image) && have_image=1
	# The first run verifies and unpacks into the image cache; the timed runs reuse it.
	[ $have_image = 1 ] && "$IMGBUILD" run "$IMAGE" --allow-unsigned -- /bin/true >>"$BENCH_LOG" 2>&1 || have_image=0
fi

warm chroot "$ROOT" /bin/true
warm "$IMGBUILD" run "$ROOT" -- /bin/true
[ $have_image = 1 ] && warm "$IMGBUILD" run "$IMAGE" --allow-unsigned -- /bin/true
for ((r = 0; r < ROUNDS; r++)); do
	measure chroot "$PER" chroot "$ROOT" /bin/true
	measure chroot_sh "$PER" chroot "$ROOT" /bin/sh -c "$PROFILE_SH" sh /bin/true
	# Where the overhead goes: the binary's own start-up (dynamic loading), and the
	# kernel's cost of namespaces and mounts without imgbuild.
	measure version "$PER" "$IMGBUILD" --version
	measure unshare "$PER" unshare --mount --uts --ipc --pid --fork chroot "$ROOT" /bin/true
	measure hand "$PER" unshare --mount --uts --ipc --pid --fork sh -c "$HAND_SH" sh "$ROOT"
	measure run_dir "$PER" "$IMGBUILD" run "$ROOT" -- /bin/true || bench_die "imgbuild run DIR failed"
	measure run_dir_nonet "$PER" "$IMGBUILD" run --no-net "$ROOT" -- /bin/true
	[ $have_image = 1 ] && measure run_image "$PER" "$IMGBUILD" run "$IMAGE" --allow-unsigned -- /bin/true
done

echo "imgbuild links $(ldd "$IMGBUILD" | wc -l) shared objects; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "root: $ROOT (Debian bookworm minbase, $(du -sh "$ROOT" | cut -f1)); $((PER * ROUNDS)) runs a row in $ROUNDS interleaved rounds"
table_header ms "overhead vs chroot"
row "chroot DIR /bin/true" chroot
row "chroot DIR /bin/sh -c '. profile.d/*; exec /bin/true'" chroot_sh "$(overhead chroot_sh chroot)"
row "imgbuild --version (process start-up only)" version "$(overhead version chroot)"
row "unshare -muip --fork chroot DIR /bin/true" unshare "$(overhead unshare chroot)"
row "same sandbox by hand (unshare, overlay, mounts)" hand "$(overhead hand chroot)"
row "imgbuild run DIR -- /bin/true" run_dir "$(overhead run_dir chroot)"
row "imgbuild run --no-net DIR -- /bin/true" run_dir_nonet "$(overhead run_dir_nonet chroot)"
[ $have_image = 1 ] && row "imgbuild run IMAGE.tar -- /bin/true (cached)" run_image "$(overhead run_image chroot)"
over=$(awk -v a="$(med run_dir)" -v b="$(med chroot)" 'BEGIN {printf "%.1f", (a - b) * 1000}')
echo "imgbuild run DIR vs chroot: $(ratio run_dir chroot), overhead $over ms; vs the hand-made sandbox: $(ratio run_dir hand)"
verdict "$over < 50" "run DIR overhead < 50 ms ($over ms)"
if [ $have_image = 1 ]; then
	over=$(awk -v a="$(med run_image)" -v b="$(med chroot)" 'BEGIN {printf "%.1f", (a - b) * 1000}')
	echo "imgbuild run IMAGE (cached) vs chroot: $(ratio run_image chroot), overhead $over ms"
	verdict "$over < 50" "run IMAGE overhead < 50 ms ($over ms)"
fi
