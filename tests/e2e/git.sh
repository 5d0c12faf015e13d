#!/usr/bin/env bash
# Git sources through imgbuild fetch, against local fixture repositories: tag
# fetch and commit check, a moved tag, mirror fallback, recursive submodules at
# their recorded commits, URL rewrites, reproducible exports, offline mode.
source "$(dirname "$0")/../lib.sh"

export IMGBUILD_CACHE=$TMP/cache
G=$TMP/git
mkdir -p "$G/home" "$TMP/m"

# The fixtures are made with the test's own git config, never the user's.
fixture_git() {
	GIT_CONFIG_NOSYSTEM=1 HOME=$G/home GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org \
		GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org \
		GIT_AUTHOR_DATE=2020-01-01T00:00:00Z GIT_COMMITTER_DATE=2020-01-01T00:00:00Z git "$@"
}
fixture_git config --global protocol.file.allow always
fixture_git config --global init.defaultBranch main

# upstream/inner <- upstream/lib (relative URL ../inner) <- upstream/super (../lib),
# and upstream/super-abs whose .gitmodules names lib by an absolute URL.
make_repos() {	# DIR
	local d=$1
	mkdir -p "$d"
	(
		cd "$d"
		fixture_git init -q inner
		cd inner && echo inner1 >i.txt && fixture_git add . && fixture_git commit -qm i1 && cd ..
		fixture_git init -q lib
		cd lib && echo lib1 >l.txt && fixture_git add l.txt && fixture_git submodule -q add ../inner inner &&
			fixture_git commit -qm l1 && echo lib2 >l.txt && fixture_git commit -qam l2 && cd ..
		for s in super super-abs; do
			fixture_git init -q $s
			cd $s
			echo hi >a.txt && printf '#!/bin/sh\necho hi\n' >run.sh && chmod +x run.sh && ln -s a.txt link
			mkdir -p d/e && echo x >d/e/f && fixture_git add .
			if [ $s = super ]; then fixture_git submodule -q add ../lib lib; else fixture_git submodule -q add "file://$d/lib" lib; fi
			# Record lib's first commit, not its newest.
			fixture_git -C lib checkout -q HEAD~1 && fixture_git -C lib submodule -q update --init
			fixture_git add lib && fixture_git commit -qm s1 && fixture_git tag v1 && fixture_git tag -a -m annotated v1a
			cd ..
		done
		# lib moves on after the superprojects recorded it.
		cd lib && echo lib3 >l.txt && fixture_git commit -qam l3
	) >/dev/null 2>&1
}
make_repos "$G/upstream"
C=$(git -C "$G/upstream/super" rev-parse HEAD)
C_ABS=$(git -C "$G/upstream/super-abs" rev-parse HEAD)
LIB_RECORDED=$(git -C "$G/upstream/super" rev-parse HEAD:lib)
LIB_NEWEST=$(git -C "$G/upstream/lib" rev-parse HEAD)

# manifest FILE NAME URL TAG COMMIT SUBMODULES [EXTRA-LINES]
manifest() {
	{
		printf '[image]\nname = "git-test"\nsource_date_epoch = 1577836800\n\n'
		printf '[base]\ndistro = "debian"\nsuite = "bookworm"\n\n'
		printf '[[source]]\nname = "%s"\nurl = "%s"\ntag = "%s"\ncommit = "%s"\nsubmodules = %s\n' "$2" "$3" "$4" "$5" "$6"
		if [ -n "${7:-}" ]; then printf "%s\n" "$7"; fi
	} >"$1"
}
tree_of() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$TMP/check.out"; }
# A listing that two identical exports share: names, types, modes, sizes,
# mtimes, link targets, and every file's sha256.
listing() {
	(cd "$1" && find . -printf '%p %y %m %s %T@ %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# 1. Tag fetched, checked against the commit, submodules recursive at the
#    commits the superproject records.
manifest "$TMP/m/super.toml" super "file://$G/upstream/super" v1 "$C" true
check "fetch a source with submodules" "$IMGBUILD" fetch "$TMP/m/super.toml"
T1=$(tree_of super)
case "$T1" in "$IMGBUILD_CACHE/sources/$C-"*) ok "exported under sources/<commit>-<submodule state>" ;; *) not_ok "export path '$T1'" ;; esac
if [ "$(cat "$T1/lib/l.txt" 2>/dev/null)" = lib1 ] && [ "$(cat "$T1/lib/inner/i.txt" 2>/dev/null)" = inner1 ]; then
	ok "submodule at the recorded commit ($LIB_RECORDED, not $LIB_NEWEST), nested one too"
else not_ok "submodule content: $(cat "$T1/lib/l.txt" 2>&1)"; fi
if [ -z "$(find "$T1" -name .git)" ] && [ -L "$T1/link" ] && [ "$(stat -c %a "$T1/run.sh")" = 555 ] &&
	[ "$(stat -c %a "$T1/a.txt")" = 444 ] && [ "$(stat -c %a "$T1/d")" = 755 ]; then
	ok "no .git inside; symlink, executable bit kept; files read-only"
else not_ok "export contents: $(find "$T1" -printf '%p %m\n' | head)"; fi
mt=$(find "$T1" -printf '%T@\n' | sort -u)
if [ "$mt" = "1577836800.0000000000" ]; then ok "every mtime is the commit time"; else not_ok "mtimes: $mt"; fi

# 2. A second fetch uses the cache; an annotated tag peels to the same commit.
check "second fetch" "$IMGBUILD" fetch "$TMP/m/super.toml"
[ "$(tree_of super)" = "$T1" ] && ok "same export" || not_ok "export moved"
manifest "$TMP/m/annotated.toml" super "file://$G/upstream/super" v1a "$C" true
check "an annotated tag resolves to the commit" env IMGBUILD_CACHE="$TMP/cache-ann" "$IMGBUILD" fetch "$TMP/m/annotated.toml"

# 3. Two exports of the same commit (separate caches, made at different
#    times) are byte-identical.
sleep 1
check "export again into another cache" env IMGBUILD_CACHE="$TMP/cache2" "$IMGBUILD" fetch "$TMP/m/super.toml"
T2=$(tree_of super)
if [ -n "$T2" ] && [ "$T1" != "$T2" ] && diff <(listing "$T1") <(listing "$T2") >"$TMP/diff" 2>&1; then
	ok "two exports are byte-identical ($(listing "$T1" | wc -l) lines compared)"
else not_ok "exports differ"; sed 's/^/# /' "$TMP/diff" | head -20; fi

# 4. Without submodules: the commit alone, submodule folders empty.
manifest "$TMP/m/nosub.toml" super "file://$G/upstream/super" v1 "$C" false
check "fetch without submodules" "$IMGBUILD" fetch "$TMP/m/nosub.toml"
T3=$(tree_of super)
if [ "$T3" = "$IMGBUILD_CACHE/sources/$C" ] && [ -z "$(ls -A "$T3/lib" 2>/dev/null)" ]; then ok "exported under sources/<commit>, lib empty"; else not_ok "no-submodule export '$T3'"; fi

# 5. Mirror fallback: the first URL does not exist.
manifest "$TMP/m/fallback.toml" super "file://$G/nowhere/super.git" v1 "$C" true "mirrors = [\"file://$G/upstream/super\"]"
check "falls back to the mirror" env IMGBUILD_CACHE="$TMP/cache3" "$IMGBUILD" fetch "$TMP/m/fallback.toml"
if grep -q "nowhere" "$TMP/check.out" && [ "$(cat "$(tree_of super)/lib/l.txt" 2>/dev/null)" = lib1 ]; then ok "the bad URL was tried first, the export is complete"; else not_ok "fallback output"; fi

# 6. A moved tag is refused, naming both commits.
make_repos "$G/moved"
OLD=$(git -C "$G/moved/super" rev-parse HEAD)
(cd "$G/moved/super" && echo more >>a.txt && fixture_git commit -qam s2 && fixture_git tag -f v1) >/dev/null 2>&1
NEW=$(git -C "$G/moved/super" rev-parse HEAD)
manifest "$TMP/m/moved.toml" super "file://$G/moved/super" v1 "$OLD" true
check_fails "a moved tag is refused" 1 "$NEW.*$OLD" env IMGBUILD_CACHE="$TMP/cache4" "$IMGBUILD" fetch "$TMP/m/moved.toml"
if [ -z "$(ls -A "$TMP/cache4/sources" 2>/dev/null)" ]; then ok "nothing exported for a moved tag"; else not_ok "export left: $(ls "$TMP/cache4/sources")"; fi

# 7. URL rewrites: upstream is gone, the superproject comes from a mirror, and
#    its submodule's absolute URL is rewritten to the mirror's.
mkdir -p "$G/mirror"
for r in inner lib super-abs; do git clone -q --bare "$G/upstream/$r" "$G/mirror/$r" 2>/dev/null; done
mv "$G/upstream" "$G/upstream-gone"
REWRITE="mirrors = [\"file://$G/mirror/super-abs\"]
rewrites = { \"file://$G/upstream/\" = \"file://$G/mirror/\" }"
manifest "$TMP/m/rewrite.toml" abs "file://$G/upstream/super-abs" v1 "$C_ABS" true "$REWRITE"
check "submodules through URL rewrites" env IMGBUILD_CACHE="$TMP/cache5" "$IMGBUILD" fetch "$TMP/m/rewrite.toml"
TR=$(tree_of abs)
if [ "$(cat "$TR/lib/l.txt" 2>/dev/null)" = lib1 ] && [ "$(cat "$TR/lib/inner/i.txt" 2>/dev/null)" = inner1 ]; then ok "rewritten submodules at their recorded commits"; else not_ok "rewrite export '$TR'"; fi
manifest "$TMP/m/norewrite.toml" abs "file://$G/upstream/super-abs" v1 "$C_ABS" true "mirrors = [\"file://$G/mirror/super-abs\"]"
check_fails "without the rewrite the submodule is unreachable" 1 "submodule 'lib'" env IMGBUILD_CACHE="$TMP/cache6" "$IMGBUILD" fetch "$TMP/m/norewrite.toml"

# 8. Offline: a warm cache works with upstream gone; a cold one names the source.
check "--offline with a warm cache" "$IMGBUILD" fetch --offline "$TMP/m/super.toml"
check_fails "--offline with a cold cache names the source" 1 "super" env IMGBUILD_CACHE="$TMP/cold" "$IMGBUILD" fetch --offline "$TMP/m/super.toml"

finish
