#!/usr/bin/env bash
# make-variants.sh IMAGE OUTDIR [SEC] [PUB] — makes, from a real image, the two
# variants that `imgbuild run --gpu` must refuse before their command starts:
#
#   OUTDIR/<stem>-newdriver.tar.zst  facts say min_driver = "999.0" (above any driver)
#   OUTDIR/<stem>-oldarchs.tar.zst   facts say archs = ["3.0", "3.5", "5.0", "6.1"] and
#                                    ptx_jit = "false": no SASS and no PTX for sm_70+
#
# The image is unpacked (verified with PUB), its .imgbuild/facts.toml is copied
# and changed with sed (the diff is printed), and the tree is packed again with
# `imgbuild pack --zstd --sign SEC`: every fact of the edited facts.toml is passed
# back with --fact/--arch/--name/--epoch, and the other .imgbuild files
# (manifest, lock, ...) with --meta-dir; pack writes the listing itself.
#
# Env: IMGBUILD (default: imgbuild on PATH, else build/imgbuild), VARIANT_MIN_DRIVER
#      (default 999.0), VARIANT_ARCHS (default "3.0 3.5 5.0 6.1").
set -euo pipefail
me=make-variants
die() { echo "$me: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")/../.." && pwd)
image=${1:?usage: make-variants.sh IMAGE OUTDIR [SEC] [PUB]}
out=${2:?usage: make-variants.sh IMAGE OUTDIR [SEC] [PUB]}
sec=${3:-$here/tests/fixtures/imgbuild-test.sec}
pub=${4:-$here/tests/fixtures/imgbuild-test.pub}
ib=${IMGBUILD:-$(command -v imgbuild || echo "$here/build/imgbuild")}
min_driver=${VARIANT_MIN_DRIVER:-999.0}
archs=${VARIANT_ARCHS:-3.0 3.5 5.0 6.1}
[ -f "$image" ] || die "no image '$image'"
stem=$(basename "$image")
stem=${stem%.zst}
stem=${stem%.tar}

mkdir -p "$out"
tree=$out/$stem.tree
rm -rf --one-file-system "$tree" "$out/$stem.meta"
"$ib" -q unpack --key "$pub" "$image" "$tree" || die "imgbuild unpack '$image' failed"
[ -f "$tree/.imgbuild/facts.toml" ] || die "'$image' has no .imgbuild/facts.toml"
# The metadata pack does not write itself travels with --meta-dir.
mkdir -p "$out/$stem.meta"
cp "$tree/.imgbuild/facts.toml" "$out/$stem.facts.toml"
for f in "$tree"/.imgbuild/*; do
	case "$(basename "$f")" in facts.toml | listing) ;; *) [ -f "$f" ] && cp "$f" "$out/$stem.meta/" ;; esac
done
rm -rf "$tree/.imgbuild"	# pack leaves .imgbuild out anyway; this keeps the tree honest

# set_fact FILE KEY 'TOML VALUE': replace the line, or append it.
set_fact() {
	if grep -q "^$2 = " "$1"; then
		sed -i "s|^$2 = .*|$2 = $3|" "$1"
	else
		echo "$2 = $3" >>"$1"
	fi
}

# facts.toml (as pack writes it: string values, archs an array of strings) -> pack options.
pack_from_facts() {	# FACTS OUTPUT
	local facts=$1 output=$2 line key val name="" epoch=""
	local args=()
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in '' | '#'*) continue ;; esac
		if [[ "$line" =~ ^archs\ =\ \[(.*)\]$ ]]; then
			while IFS= read -r val; do
				[ -n "$val" ] && args+=(--arch "${val:1:${#val}-2}")
			done < <(echo "${BASH_REMATCH[1]}" | grep -o '"[^"]*"')
		elif [[ "$line" =~ ^([A-Za-z0-9_-]+)\ =\ \"(.*)\"$ ]]; then
			key=${BASH_REMATCH[1]}
			val=${BASH_REMATCH[2]}
			val=${val//\\\"/\"}
			val=${val//\\\\/\\}
			case "$key" in
			name) name=$val ;;
			builder) ;;	# pack writes its own
			*) args+=(--fact "$key=$val") ;;
			esac
		elif [[ "$line" =~ ^created\ =\ ([0-9]+)$ ]]; then
			epoch=${BASH_REMATCH[1]}
		else
			die "$facts: cannot carry this line over: $line"
		fi
	done <"$facts"
	[ -n "$epoch" ] || epoch=${SOURCE_DATE_EPOCH:-0}
	"$ib" -q pack "$tree" -o "$output" --zstd --sign "$sec" --epoch "$epoch" ${name:+--name "$name"} \
		--meta-dir "$out/$stem.meta" "${args[@]}" || die "imgbuild pack '$output' failed"
}

quoted=$(for a in $archs; do printf '"%s", ' "$a"; done)
quoted="[${quoted%, }]"

cp "$out/$stem.facts.toml" "$out/$stem-newdriver.facts.toml"
set_fact "$out/$stem-newdriver.facts.toml" min_driver "\"$min_driver\""
cp "$out/$stem.facts.toml" "$out/$stem-oldarchs.facts.toml"
set_fact "$out/$stem-oldarchs.facts.toml" archs "$quoted"
set_fact "$out/$stem-oldarchs.facts.toml" ptx_jit '"false"'
for v in newdriver oldarchs; do
	echo "$me: $stem-$v: .imgbuild/facts.toml changed:"
	diff -u --label "$stem/.imgbuild/facts.toml" --label "$stem-$v/.imgbuild/facts.toml" \
		"$out/$stem.facts.toml" "$out/$stem-$v.facts.toml" | sed 's/^/    /' || true
	pack_from_facts "$out/$stem-$v.facts.toml" "$out/$stem-$v.tar.zst"
	echo "$me: wrote $out/$stem-$v.tar.zst ($(stat -c %s "$out/$stem-$v.tar.zst") bytes, signed)"
done
rm -rf --one-file-system "$tree" "$out/$stem.meta"
