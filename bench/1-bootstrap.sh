#!/usr/bin/env bash
# bench/1-bootstrap.sh — imgbuild's base stage against mmdebstrap alone with the same
# options (bootstrap.c's: minbase, --include=apt, no translations, check/signed-by
# skipped, the same resolv.conf/hostname hook, the same mirror and SOURCE_DATE_EPOCH).
# The manifest is a throw-away project with only [image] and [base] (Debian bookworm,
# the host's mirror), so `imgbuild build` is: bootstrap (the base stage) + pack.
#   cold:     empty cache ($BENCH_CACHE/bootstrap put aside): every .deb downloaded
#   warm deb: layers and packs put aside, the .deb cache kept: no .deb downloaded
# mmdebstrap alone also gets the hooks that make dpkg skip fsync (bootstrap.c
# adds them for itself); imgbuild also keeps apt's package lists, offered to the
# next bootstrap of the suite (part of the warm cache, like the .debs).
# The three are interleaved, RUNS (default 3) rounds of one each, the order turning. The base stage's own
# time is imgbuild's "bootstrap: done in" line of the same run; the wall time includes
# loading the manifest and packing. Targets: base stage overhead <= 5% over mmdebstrap
# (cold); warm .deb cache <= half the cold time.
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
[ "$(id -u)" = 0 ] || bench_skip "needs root (mmdebstrap --mode=root)"
need_commands build
command -v mmdebstrap >/dev/null || bench_skip "mmdebstrap not installed"
MIRROR=$(bench_mirror) || bench_die "no Debian mirror known"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
E=1577836800
CACHE=$BENCH_CACHE/bootstrap
WORK=$(mktemp -d "$BENCH_TMP/bootstrap.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT
chmod 755 "$WORK"	# apt downloads as _apt, which must reach the new root (as in imgbuild's cache)
mkdir -p "$WORK/proj/stages"
cat >"$WORK/proj/base.toml" <<EOF
[image]
name = "bench-base"
source_date_epoch = $E

[base]
distro = "debian"
suite = "bookworm"
EOF

# mmdebstrap mounts /proc, /sys and /dev into the new root: in a private mount
# namespace (as imgbuild runs it), so nothing it mounts reaches the host.
mm() {
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TZ=UTC LC_ALL=C.UTF-8 \
		SOURCE_DATE_EPOCH=$E DEBIAN_FRONTEND=noninteractive ${http_proxy:+http_proxy=$http_proxy} \
		unshare --mount --propagation private mmdebstrap --mode=root --format=directory --variant=minbase --components=main --keyring=$KEYRING \
		--include=apt '--aptopt=Acquire::Languages "none"' --skip=check/signed-by \
		'--setup-hook=mkdir -p "$1/etc/dpkg/dpkg.cfg.d" && echo force-unsafe-io > "$1/etc/dpkg/dpkg.cfg.d/99imgbuild-unsafe-io"' \
		'--customize-hook=rm -f "$1/etc/dpkg/dpkg.cfg.d/99imgbuild-unsafe-io"' \
		'--customize-hook=rm -f "$1/etc/resolv.conf" && : > "$1/etc/resolv.conf" && echo imgbuild > "$1/etc/hostname"' \
		bookworm "$WORK/mm" "deb $MIRROR bookworm main"
}
ib() { IMGBUILD_CACHE=$CACHE "$IMGBUILD" build "$WORK/proj/base.toml" -o "$WORK/base.tar"; }
# Emptying the caches is untimed (BENCH_PREP), and by rename, not deletion:
# on ext4 without a journal (this VM's disk), creating files within ~30 s of
# deleting as many makes the kernel check each candidate inode for a recent
# deletion (recently_deleted(), reading inode tables): in a warm bootstrap
# right after a deletion, 39% of the CPU samples were there (docs/performance.md).
# What is put aside goes at the end, after the last timed run.
TRASH=$WORK/trash
mkdir -p "$TRASH"
aside() { local p; for p; do [ ! -e "$p" ] || mv "$p" "$(mktemp -d "$TRASH/XXXXXX")/"; done; }
COLD_PREP='aside "$CACHE"'
WARM_PREP='aside "$CACHE/layers" "$CACHE/packs"'
MM_PREP='aside "$WORK/mm"'
# The last "WHAT done in N s"/"packed in N s" figure imgbuild logged.
logged() { grep -oE "$1 [0-9.]+ s" "$BENCH_LOG" | tail -1 | grep -oE '[0-9.]+ s' | cut -d' ' -f1; }
declare -A STAGE
one() {
	case $1 in
	mm) BENCH_PREP=$MM_PREP measure mm 1 mm || bench_die "mmdebstrap failed (see $BENCH_LOG)" ;;
	cold)
		BENCH_PREP=$COLD_PREP measure ib_cold 1 ib || bench_die "imgbuild build failed (see $BENCH_LOG)"
		STAGE[cold]+=" $(logged 'bootstrap: done in')"
		STAGE[cold_pack]+=" $(logged 'packed in')"
		;;
	warm)
		BENCH_PREP=$WARM_PREP measure ib_warm 1 ib || bench_die "imgbuild build (warm) failed (see $BENCH_LOG)"
		STAGE[warm]+=" $(logged 'bootstrap: done in')"
		STAGE[warm_pack]+=" $(logged 'packed in')"
		;;
	esac
}
# The order turns each round (a mirror or proxy warming up, a neighbour's load).
for ((r = 0; r < RUNS; r++)); do
	case $((r % 3)) in
	0) one mm; one cold; one warm ;;
	1) one cold; one warm; one mm ;;
	2) one cold; one mm; one warm ;;
	esac
done
for k in cold warm cold_pack warm_pack; do
	# shellcheck disable=SC2086
	M[stage_$k]=$(bench_stats ${STAGE[$k]})
done
pkgs=$(grep -oE 'bootstrap: [0-9]+ packages, [0-9]+ downloaded, [0-9]+ from the cache' "$BENCH_LOG" | tail -2 | paste -sd';')

echo "Debian bookworm minbase + apt; $RUNS interleaved rounds; mirror: the host's apt mirror"
echo "imgbuild said: $pkgs"
table_header s "time ratio vs mmdebstrap"
row "mmdebstrap alone (same options), cold" mm
row "imgbuild base stage, cold (its log)" stage_cold "$(ratio stage_cold mm)"
row "imgbuild build, base only, cold (wall, + pack)" ib_cold "$(ratio ib_cold mm)"
row "  of which pack (its log)" stage_cold_pack
row "imgbuild base stage, warm .deb cache (its log)" stage_warm "$(ratio stage_warm mm); vs cold $(ratio stage_warm stage_cold)"
row "imgbuild build, base only, warm .deb cache (wall)" ib_warm "$(ratio ib_warm mm); vs cold $(ratio ib_warm ib_cold)"
ov=$(awk -v a="$(med stage_cold)" -v b="$(med mm)" 'BEGIN {printf "%.1f", (a / b - 1) * 100}')
wc=$(awk -v a="$(med stage_warm)" -v b="$(med stage_cold)" 'BEGIN {printf "%.2f", a / b}')
echo "base stage overhead over mmdebstrap (cold): $ov%; warm .deb cache / cold: $wc"
echo "CPU time, imgbuild build (base + pack) / mmdebstrap: cold $(awk -v a="$(cpu ib_cold)" -v b="$(cpu mm)" 'BEGIN {printf "%.2fx", a / b}'), warm .deb cache $(awk -v a="$(cpu ib_warm)" -v b="$(cpu mm)" 'BEGIN {printf "%.2fx", a / b}')"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
verdict "$ov <= 5" "cold overhead <= 5% ($ov%)"
verdict "$wc <= 0.5" "warm .deb cache <= half the cold time (${wc}x)"
