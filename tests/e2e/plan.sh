#!/usr/bin/env bash
# imgbuild plan: the seed manifests pass; every data-driven case in tests/cases
# (NAME.toml + NAME.expect: "exit=N", an optional "args=..." for plan, then
# regexes that must appear in the output) gives its exit status and its lines; a copy of gt-cu10 with gcc 8
# fails with the rule and the fix. Also `imgbuild mirror` on fixture apt sources.
# Needs no network and no privileges.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$REPO"

# --- the seed manifests ----------------------------------------------------
for m in manifests/gt-cu10.toml manifests/mx150-cu92.toml; do
	rc=0
	"$IMGBUILD" plan "$m" >"$TMP/plan.out" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ] && grep -q '^plan: ok' "$TMP/plan.out"; then ok "plan $m exits 0"; else
		not_ok "plan $m exits 0 (exit $rc)"
		sed 's/^/# /' "$TMP/plan.out" | tail -n 30
	fi
	missing=""
	for s in toolchain cuda cudnn conda torch vision env check; do
		grep -qE "^ +[0-9]+ $s +stages/" "$TMP/plan.out" || missing="$missing stage:$s"
	done
	for r in cuda-driver cuda-gcc cuda-arch cudnn-cuda magma-cuda torch-cuda torch-gcc torch-python \
		torch-vision torch-commit torch-ext-arch download-pinned arch-driver input-cuda input-cudnn \
		input-python input-vision conda-pins env-needs; do
		grep -qE "^  (ok|warn|FAIL) +$r " "$TMP/plan.out" || missing="$missing rule:$r"
	done
	grep -qE '^ +key +[0-9a-f]{64}$' "$TMP/plan.out" || missing="$missing stage-key"
	grep -qE '^network +stages toolchain, conda use the network' "$TMP/plan.out" || missing="$missing network"
	if [ -z "$missing" ]; then ok "plan $m lists stages, keys and every rule"; else
		not_ok "plan $m output lacks:$missing"
	fi
done
# Stage order is the manifest's.
"$IMGBUILD" plan manifests/gt-cu10.toml 2>&1 | grep -E '^ +[0-9]+ [a-z]+ +stages/' | awk '{print $2}' | tr '\n' ' ' >"$TMP/order"
if [ "$(cat "$TMP/order")" = "toolchain cuda cudnn conda torch vision env check " ]; then ok "stages in manifest order"
else not_ok "stage order: $(cat "$TMP/order")"; fi
# Two runs print the same keys (nothing host- or time-dependent in them).
a=$("$IMGBUILD" plan manifests/mx150-cu92.toml 2>&1 | grep -E '^ +key ' || true)
b=$("$IMGBUILD" plan manifests/mx150-cu92.toml 2>&1 | grep -E '^ +key ' || true)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "stage keys are stable"; else not_ok "stage keys differ between runs"; fi

# --- data-driven cases -----------------------------------------------------
n_cases=0
for t in tests/cases/*.toml; do
	name=$(basename "$t" .toml)
	exp=tests/cases/$name.expect
	if [ ! -f "$exp" ]; then
		not_ok "case $name has no $exp"
		continue
	fi
	n_cases=$((n_cases + 1))
	want=$(sed -n 's/^exit=//p' "$exp" | head -n 1)
	read -ra args <<<"$(sed -n 's/^args=//p' "$exp" | head -n 1)"
	rc=0
	"$IMGBUILD" plan "$t" "${args[@]}" >"$TMP/case.out" 2>&1 || rc=$?
	problems=""
	[ "$rc" = "$want" ] || problems="exit $rc, wanted $want;"
	while IFS= read -r re; do
		case "$re" in '' | exit=* | args=* | '#'*) continue ;; esac
		grep -qE -- "$re" "$TMP/case.out" || problems="$problems missing /$re/;"
	done <"$exp"
	# Manifest errors are one line: FILE:LINE:COL: problem (hint: fix).
	if [ "$rc" -eq 2 ] && ! grep -q '^plan: ' "$TMP/case.out"; then
		[ "$(wc -l <"$TMP/case.out")" -eq 1 ] || problems="$problems error is not one line;"
		grep -qE "^imgbuild: error: tests/cases/$name\.toml:[0-9]+:[0-9]+: " "$TMP/case.out" ||
			problems="$problems error lacks FILE:LINE:COL;"
	fi
	if [ -z "$problems" ]; then ok "case $name"; else
		not_ok "case $name: $problems"
		sed 's/^/# /' "$TMP/case.out" | tail -n 20
	fi
done
[ "$n_cases" -ge 10 ] && ok "$n_cases data-driven cases ran" || not_ok "only $n_cases cases in tests/cases"

# --- gt-cu10 with gcc 8 ----------------------------------------------------
# A copy with the same project layout, so relative paths still resolve inside it.
mkdir -p "$TMP/proj/manifests"
cp -r stages keys "$TMP/proj/"
sed 's/^gcc = "7"$/gcc = "8"/' manifests/gt-cu10.toml >"$TMP/proj/manifests/gt-gcc8.toml"
grep -q '^gcc = "8"$' "$TMP/proj/manifests/gt-gcc8.toml" || not_ok "could not set gcc 8 in the copy"
rc=0
"$IMGBUILD" plan "$TMP/proj/manifests/gt-gcc8.toml" >"$TMP/gcc8.out" 2>&1 || rc=$?
if [ "$rc" -eq 2 ] &&
	grep -qE '^  FAIL +cuda-gcc +gcc 8 is newer than CUDA 10\.0 accepts \(<= 7\): set toolchain gcc = "7"$' "$TMP/gcc8.out" &&
	grep -qE 'rule cuda-gcc failed' "$TMP/gcc8.out" && grep -qE '^  source: compat-facts §2' "$TMP/gcc8.out" &&
	grep -qE '^  fix: set toolchain gcc = "7"$' "$TMP/gcc8.out"; then
	ok "gt-cu10 with gcc 8: exit 2 with rule cuda-gcc, its source and the fix"
else
	not_ok "gt-cu10 with gcc 8 (exit $rc)"
	sed 's/^/# /' "$TMP/gcc8.out" | tail -n 25
fi
# The same copy is otherwise fine: moving it out of the repo changes no verdict.
sed -i 's/^gcc = "8"$/gcc = "7"/' "$TMP/proj/manifests/gt-gcc8.toml"
check "the copy with gcc 7 passes again" "$IMGBUILD" plan "$TMP/proj/manifests/gt-gcc8.toml"
# A script reached through a symbolic link out of the project is refused.
ln -s /etc "$TMP/proj/stages/outside"
sed 's#"\.\./stages/check\.sh"#"../stages/outside/passwd"#' manifests/gt-cu10.toml >"$TMP/proj/manifests/link.toml"
check_fails "a script behind a symlink out of the project is refused" 2 \
	"link\.toml:[0-9]+:[0-9]+: stage 'check' script '\.\./stages/outside/passwd' resolves to /etc/passwd, outside the project" \
	"$IMGBUILD" plan "$TMP/proj/manifests/link.toml"

check_fails "plan without a manifest is a usage error" 2 'usage: imgbuild plan MANIFEST' "$IMGBUILD" plan
check_fails "plan of a missing file exits 2" 2 'no-such\.toml' "$IMGBUILD" plan "$TMP/no-such.toml"
check "plan --help" "$IMGBUILD" plan --help

# --- imgbuild mirror on fixture apt sources -------------------------------
apt=$TMP/apt
mkdir -p "$apt/sources.list.d"
cat >"$apt/sources.list" <<'EOF'
# deb http://commented.example.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://security.example.org/debian-security bookworm-security main
deb http://ubuntu.example.org/ubuntu/ bionic main universe
EOF
cat >"$apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://off.example.org/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src deb
URIs: http://deb.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
EOF
check_fails "mirror debian: deb822, disabled stanzas and security mirrors skipped" 0 '^http://deb\.example\.org/debian$' \
	env IMGBUILD_APT_DIR="$apt" "$IMGBUILD" mirror debian
check_fails "mirror ubuntu: one-line format, trailing slash dropped" 0 '^http://ubuntu\.example\.org/ubuntu$' \
	env IMGBUILD_APT_DIR="$apt" "$IMGBUILD" mirror ubuntu
check_fails "mirror of an unknown distribution is a usage error" 2 'usage: imgbuild mirror' "$IMGBUILD" mirror fedora
rm "$apt/sources.list.d/debian.sources"
check_fails "mirror debian with no debian source fails" 1 'no debian mirror' \
	env IMGBUILD_APT_DIR="$apt" "$IMGBUILD" mirror debian
finish
