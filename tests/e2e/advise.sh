#!/usr/bin/env bash
# imgbuild advise: a marketing name, a PCI id and `auto` (a fixture host tree through
# $IMGBUILD_HOST_ROOT: sysfs PCI devices, the NVIDIA module's information file, a
# pci.ids) give every chip with its compute capability, last driver branch, CUDA range
# and newest stack, each with a source; docs/compat.md's table is what --table prints;
# --manifest writes a manifest plan accepts (in a copy of the project) and refuses to
# write one outside a project. Needs no network and no privileges.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$REPO"

check_fails "a name with two chips lists both (Maxwell 5.0, Kepler 3.0)" 0 \
	"can mean 2 chips" "$IMGBUILD" advise "GeForce GTX 860M"
out=$TMP/860m.out
cp "$TMP/check.out" "$out"
for re in '^GeForce GTX 860M \(10de:1392\): chip GM107M' '^GeForce GTX 860M \(10de:119a\): chip GK104M' \
	'^  compute cap\.  5\.0$' '^  compute cap\.  3\.0$' 'Maxwell; the last driver branch is R580' \
	'Kepler; the last driver branch is R470' '^  CUDA range    5\.0-10\.2 \(nvcc can target 3\.0\)' \
	'^  CUDA          10\.2$' '^  torch         1\.7\.1 ' '^  torchvision   0\.8\.2$' '^  cuDNN         7\.6\.5 ' \
	'^  gcc           8 ' '^  python        3\.9 ' '^  driver        >= 440\.33 \(CUDA 10\.2\), from a branch no later than R470'; do
	check "GTX 860M: /$re/" grep -qE -- "$re" "$out"
done
# Every value line is followed by its source.
values=$(grep -cE '^  (compute cap\.|driver branch|CUDA range|driver|CUDA|cuDNN|gcc|torch|torchvision|python|magma) ' "$out")
sources=$(grep -cE '^ +source: compat-facts §' "$out")
if [ "$values" -ge 20 ] && [ "$sources" -ge "$values" ]; then ok "each of $values lines has a compat-facts source"
else not_ok "values $values, sources $sources"; fi
check_fails "a PCI id names one chip" 0 '^GeForce GTX 860M \(10de:1392\): chip GM107M' "$IMGBUILD" advise 10de:1392
check "  ... and only that one" test "$(grep -c ': chip ' "$TMP/check.out")" -eq 1
check_fails "lower case and no GeForce match too; a Fermi GT 730 has no stack" 0 \
	'newest stack  none: no CUDA in 3\.2-8\.0' "$IMGBUILD" advise "gt 730"
cp "$TMP/check.out" "$TMP/gt730.out"
check "  ... GT 730 means GK208B (3.5), GK107 (3.0) and GF108 (2.1)" sh -c "
	grep -q 'chip GK208B' '$TMP/gt730.out' && grep -q 'chip GK107' '$TMP/gt730.out' && grep -q 'chip GF108' '$TMP/gt730.out'"
check_fails "an unknown GPU: exit 1 and what to try" 1 "no GPU in builder/chips\.toml matches 'Quadro X'.*10de:1392" \
	"$IMGBUILD" advise "Quadro X"
check_fails "advise without a GPU is a usage error" 2 'usage: imgbuild advise' "$IMGBUILD" advise

# ---- auto, on a fixture host ----
host=$TMP/host
mkdev() {	# BUS VENDOR DEVICE CLASS
	mkdir -p "$host/sys/bus/pci/devices/$1"
	echo "$2" >"$host/sys/bus/pci/devices/$1/vendor"
	echo "$3" >"$host/sys/bus/pci/devices/$1/device"
	echo "$4" >"$host/sys/bus/pci/devices/$1/class"
}
mkdev 0000:00:02.0 0x8086 0x0416 0x030000	# the laptop's Intel GPU
mkdev 0000:01:00.0 0x10de 0x1d01 0x030200	# a GT 1030: not in chips.toml, named by pci.ids
mkdev 0000:01:00.1 0x10de 0x0fb8 0x040300	# its HDMI audio: not a GPU
mkdev 0000:02:00.0 0x10de 0x1392 0x030000	# a GTX 860M (Maxwell)
mkdir -p "$host/proc/driver/nvidia/gpus/0000:02:00.0" "$host/usr/share/misc"
printf 'Model: \t\t GeForce GTX 860M\nIRQ:   \t\t 35\nBus Location: \t 0000:02:00.0\n' \
	>"$host/proc/driver/nvidia/gpus/0000:02:00.0/information"
printf '# fixture pci.ids\n8086  Intel Corporation\n\t0416  4th Gen Core Processor Integrated Graphics Controller\n10de  NVIDIA Corporation\n\t0fb8  GP108 High Definition Audio Controller\n\t1392  GM107M [GeForce GTX 860M]\n\t1d01  GP108 [GeForce GT 1030]\n' \
	>"$host/usr/share/misc/pci.ids"
check_fails "auto: the host's two NVIDIA GPUs, the Intel one and the audio function left out" 0 \
	'^GeForce GT 1030 \(10de:1d01\): chip GP108, found as host GPU 0000:01:00\.0' \
	env IMGBUILD_HOST_ROOT="$host" "$IMGBUILD" advise auto
cp "$TMP/check.out" "$TMP/auto.out"
check "  auto: GT 1030's chip from pci.ids, 6.1 from the chip table, with both sources" sh -c "
	grep -A4 'GT 1030' '$TMP/auto.out' | grep -q 'the host.s pci.ids ($host/usr/share/misc/pci.ids)' &&
	grep -A4 'GT 1030' '$TMP/auto.out' | grep -qE '^  compute cap\.  6\.1'"
check "  auto: the GTX 860M by its PCI id, with the driver's model name" \
	grep -q '^GeForce GTX 860M (10de:1392): chip GM107M, found as host GPU 0000:02:00.0, model GeForce GTX 860M' "$TMP/auto.out"
check "  auto: exactly two chips" test "$(grep -c ': chip ' "$TMP/auto.out")" -eq 2
mkdir -p "$TMP/nogpu"
check_fails "auto with no NVIDIA GPU: says where it looked, exit 1" 1 'no NVIDIA GPU found' \
	env IMGBUILD_HOST_ROOT="$TMP/nogpu" "$IMGBUILD" advise auto

# ---- the table in docs/compat.md ----
check "docs/compat.md's GPU table is what advise --table prints" env IMGBUILD="$IMGBUILD" ./tests/compat-doc.sh --check docs/compat.md
sed 's/| GeForce MX150 | 10de:1d10 | GP108M | 6\.1 | R580 |/| GeForce MX150 | 10de:1d10 | GP108M | 6.1 | R590 |/' docs/compat.md >"$TMP/drift.md"
check_fails "  ... and a hand-edited table is caught" 1 'R590' env IMGBUILD="$IMGBUILD" ./tests/compat-doc.sh --check "$TMP/drift.md"

# ---- --manifest, in a copy of the project ----
proj=$TMP/proj
mkdir -p "$proj/builder" "$proj/mine"
cp -r stages keys manifests "$proj/"
cp builder/compat.toml builder/chips.toml "$proj/builder/"
export IMGBUILD_DATADIR=$proj
check_fails "GT 730 --manifest: written from gt-cu10 (its archs cover 3.0 and 3.5)" 0 \
	"wrote $proj/mine/gt730\.toml from $proj/manifests/gt-cu10\.toml; .imgbuild plan" \
	"$IMGBUILD" advise "GeForce GT 730" --manifest "$proj/mine/gt730.toml"
check "  plan accepts the written manifest" "$IMGBUILD" plan "$proj/mine/gt730.toml"
check "  its scripts resolve from its own folder" grep -q '^script = "\.\./stages/toolchain\.sh"$' "$proj/mine/gt730.toml"
check_fails "GTX 860M --manifest: mx150-cu92 covers 3.0 and 5.0 as it is" 0 \
	"from $proj/manifests/mx150-cu92\.toml; " "$IMGBUILD" advise "GTX 860M" --manifest "$proj/mine/860m.toml"
check "  plan accepts it" "$IMGBUILD" plan "$proj/mine/860m.toml"
check_fails "GTX 1080 (6.1) --manifest" 0 "wrote $proj/mine/1080\.toml" \
	"$IMGBUILD" advise "GTX 1080" --manifest "$proj/mine/1080.toml"
check "  plan accepts it" "$IMGBUILD" plan "$proj/mine/1080.toml"
# A seed whose archs miss the GPU gets the arch added, and still passes plan.
sed -i 's/^archs = .*/archs = ["3.5"]/' "$proj/manifests/gt-cu10.toml"
rm "$proj/manifests/mx150-cu92.toml"
check_fails "a seed without the GPU's arch gets it added" 0 'archs extended' \
	"$IMGBUILD" advise "10de:1392" --manifest "$proj/mine/added.toml"
check "  archs now hold 5.0 and plan accepts it" sh -c "
	grep -q '^archs = \[\"3.5\", \"5.0\"\]$' '$proj/mine/added.toml' && '$IMGBUILD' plan '$proj/mine/added.toml' >/dev/null"
# Outside any project the stages would be refused: nothing is written.
mkdir -p "$TMP/elsewhere"
check_fails "--manifest outside a project is refused" 1 'outside the project' \
	"$IMGBUILD" advise "GT 730" --manifest "$TMP/elsewhere/gt730.toml"
check "  ... and leaves no file" test -z "$(ls -A "$TMP/elsewhere")"
check_fails "--manifest for a Fermi-only name: no stack, nothing written" 1 'no stack in compat.toml' \
	"$IMGBUILD" advise 10de:104d --manifest "$proj/mine/fermi.toml"
check "  ... and no file" test ! -e "$proj/mine/fermi.toml"

# ---- make install puts the chip table (and the seeds) beside compat.toml ----
unset IMGBUILD_DATADIR
if make -s -C "$REPO" install DESTDIR="$TMP/inst" >"$TMP/install.out" 2>&1; then
	share=$(dirname "$(find "$TMP/inst" -name chips.toml -path '*/builder/*' | head -n 1)")
	check "make install: builder/chips.toml beside compat.toml, and the seed manifests" sh -c "
		[ -f '$share/compat.toml' ] && [ -f '$share/chips.toml' ] && [ -f '$share/../manifests/gt-cu10.toml' ]"
	check_fails "  the installed data answers advise" 0 'chip GM107M' \
		env IMGBUILD_DATADIR="$share/.." "$IMGBUILD" advise 10de:1392
else
	not_ok "make install DESTDIR=..."; sed 's/^/# /' "$TMP/install.out" | tail -n 5
fi
finish
