#!/usr/bin/env bash
# imgbuild(1) and the bash completion: the man page renders with `man -l` and
# no warning (and a broken copy does warn, so the check can fail); every
# command of `imgbuild --help` and every option of `imgbuild CMD --help` is in
# the man page, in that command's section; completion of commands, options,
# trust actions and names, and the command after "--", through COMP_WORDS and
# COMP_CWORD; `make install` puts both where man and bash-completion look.
. "$(dirname "$0")/../lib.sh"
MAN=$REPO/docs/imgbuild.1
COMPLETION=$REPO/docs/imgbuild.bash-completion
if ! command -v man >/dev/null; then
	skip "man (man-db) not installed"
	finish
fi

MANWIDTH=80 man -l --warnings "$MAN" >"$TMP/man.txt" 2>"$TMP/man.err" || true
check "man -l renders imgbuild(1)" grep -q '^IMGBUILD(1) ' "$TMP/man.txt"
check "... with no warning" test ! -s "$TMP/man.err"
sed 's/^\.SH FILES$/.XX FILES/' "$MAN" >"$TMP/broken.1"
check "a broken copy does warn (the check above can fail)" \
	sh -c "MANWIDTH=80 man -l --warnings '$TMP/broken.1' 2>&1 >/dev/null | grep -q warning"

commands=$("$IMGBUILD" --help | sed -n '/^commands:/,/^$/s/^  *\([a-z][a-z0-9-]*\)  .*/\1/p')
check "imgbuild --help lists commands" test "$(echo "$commands" | wc -w)" -ge 10
# section CMD: the man page's text from '.SS "imgbuild CMD' to the next .SS or .SH.
section() { awk -v c="$1" 'index($0, ".SS \"imgbuild " c " ") == 1 || index($0, ".SS \"imgbuild [" c "] ") == 1 || $0 == ".SS \"imgbuild " c "\"" { on = 1; next } /^\.S[SH] / { on = 0 } on' "$MAN"; }
# opts CMD: the options CMD --help prints (read once per command).
mkdir -p "$TMP/help"
for c in $commands; do
	"$IMGBUILD" "$c" --help | { grep -E '^ {1,6}-' || true; } | sed -E 's/^ +//; s/ {2,}.*//' |
		{ grep -oE -- '(^|[ ,])--?[A-Za-z][A-Za-z0-9-]*' || true; } | tr -d ' ,' | sort -u >"$TMP/help/$c"
done
missing=""
for c in $commands; do
	sec=$(section "$c")
	if [ -z "$sec" ]; then
		missing="$missing $c(no section)"
		continue
	fi
	for o in $(cat "$TMP/help/$c"); do
		esc=$(printf '%s' "$o" | sed 's/-/\\-/g')
		printf '%s\n' "$sec" | grep -qF -- "$esc" || missing="$missing $c:$o"
	done
done
check "every command and option of --help is in the man page (missing:${missing:- none})" test -z "$missing"
# ... and nothing stale: every option a command's section describes (.BR/.BI/.B
# lines starting with \-) is one its --help has.
stale=""
for c in $commands; do
	for o in $(section "$c" | grep -E '^\.(B|BR|BI) \\-' | sed -E 's/^\.[A-Z]+ //; s/\\-/-/g; s/[ "].*//; s/,$//' | sort -u); do
		grep -qx -- "$o" "$TMP/help/$c" || [ "$o" = --help ] || stale="$stale $c:$o"
	done
done
check "no option in the man page that --help lacks (stale:${stale:- none})" test -z "$stale"

# shellcheck disable=SC1090
source "$COMPLETION"
complete_words() {	# words...: the completions for the last word
	COMP_WORDS=("$IMGBUILD" "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_imgbuild
	printf '%s\n' "${COMPREPLY[@]}" | sort -u | tr '\n' ' '
}
if complete -p imgbuild | grep -q _imgbuild; then ok "complete -p imgbuild names _imgbuild"; else not_ok "complete -p imgbuild"; fi
got=$(complete_words pu)
check "'imgbuild pu' completes to pull (got: $got)" test "$got" = "pull "
got=$(complete_words tr)
check "'imgbuild tr' completes to trust (got: $got)" test "$got" = "trust "
got=$(complete_words "")
check "'imgbuild ' offers every command (got: $got)" test "$(echo $got)" = "$(echo $commands | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')"
got=$(complete_words pull --mi)
check "'imgbuild pull --mi' completes to --mirror (got: $got)" test "$got" = "--mirror "
got=$(complete_words -v run --g)
check "'imgbuild -v run --g' completes to --gpu (got: $got)" test "$got" = "--gpu "
got=$(complete_words keygen -)
check "'imgbuild keygen -' offers -d, --dir, --no-trust, --help (got: $got)" test "$got" = "--dir --help --no-trust -d "
got=$(complete_words --ver)
check "global options (got: $got)" test "$got" = "--verbose --version "
got=$(complete_words trust "")
check "'imgbuild trust ' offers the actions (got: $got)" test "$got" = "add list remove "
export XDG_CONFIG_HOME=$TMP/cfg IMGBUILD_DATADIR=$TMP/data
mkdir -p "$TMP/data/keys"
"$IMGBUILD" keygen carol -d "$TMP/k" >/dev/null
got=$(complete_words trust remove ca)
check "'imgbuild trust remove ca' offers the trusted key's name (got: $got)" test "$got" = "carol "
got=$(complete_words run img.tar -- bas)
check "after '--' the command to run (got: $got)" sh -c "echo '$got' | grep -qw bash"
mkdir -p "$TMP/files" && touch "$TMP/files/image.tar"
got=$(complete_words verify "$TMP/files/im")
check "operands complete as files (got: $got)" test "$got" = "$TMP/files/image.tar "
for c in $commands; do
	want=$(tr '\n' ' ' <"$TMP/help/$c")
	got=$(complete_words "$c" - | tr ' ' '\n' | { grep -vx -e --help -e '' || true; } | sort -u | tr '\n' ' ')
	[ "$got" = "$want" ] || missing="$missing $c"
done
check "every command's options complete, exactly those of its --help (wrong:${missing:- none})" test -z "$missing"

make -s -C "$REPO" install DESTDIR="$TMP/inst" >"$TMP/install.out" 2>&1 || { cat "$TMP/install.out"; }
check "make install: share/man/man1/imgbuild.1" cmp "$MAN" "$TMP/inst/usr/local/share/man/man1/imgbuild.1"
check "make install: share/bash-completion/completions/imgbuild" cmp "$COMPLETION" "$TMP/inst/usr/local/share/bash-completion/completions/imgbuild"
check "man finds the installed page by name" sh -c "MANPATH='$TMP/inst/usr/local/share/man' man -w imgbuild | grep -q '$TMP/inst/usr/local/share/man/man1/imgbuild.1'"
finish
