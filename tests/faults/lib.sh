# shellcheck shell=bash disable=SC2034
# Shared by tests/e2e/{faults,signals,diskfull,daemon}.sh (sourced after
# tests/lib.sh): the demo manifest's reference build, throw-away caches made
# from the shared test cache, builds run under a subreaper (reaper.py) so that
# every process a killed imgbuild leaves behind is seen, kill points found by
# watching the build, and the checks made after every fault.

FAULTS=$REPO/tests/faults
DEMO=${IMGBUILD_FAULTS_MANIFEST:-$REPO/manifests/demo.toml}
SHARED_CACHE=${IMGBUILD_TEST_CACHE:-/var/cache/imgbuild-test}
SENTINEL=$TMP/sentinel
POLL=0.05	# seconds between looks at a running build

# faults_require_demo: skip the whole test unless this host can build the demo.
faults_require_demo() {
	require_root
	if [ ! -f "$DEMO" ]; then
		skip "no demo manifest at $DEMO"
		finish
	fi
	if ! host_debian_mirror >/dev/null; then
		skip "no Debian mirror in the host's apt configuration"
		finish
	fi
}

# ---- the host's state -------------------------------------------------------

# A tree that nothing binds anywhere: imgbuild has no reason to touch it.
make_sentinel() {
	mkdir -p "$SENTINEL/dir/sub" "$SENTINEL/empty"
	printf 'sentinel\n' >"$SENTINEL/file"
	head -c 100000 /dev/urandom >"$SENTINEL/dir/blob"
	printf 'x\n' >"$SENTINEL/dir/sub/x"
	chmod 0600 "$SENTINEL/dir/sub/x"
	ln -s ../file "$SENTINEL/dir/link"
	ln "$SENTINEL/file" "$SENTINEL/hardlink"
	mkfifo "$SENTINEL/fifo"
	touch -d '2001-02-03 04:05:06' "$SENTINEL/dir/blob"
}

# host_state FILE: the host's mount table and a listing of the files a build
# must never touch. Compared whole: any line that differs is a finding.
#  - /proc/self/mountinfo in full (mount ids, options, propagation), so a
#    remount or a mount that came and went and came back is seen too.
#  - /etc and the sentinel: path, type, mode, owner, size, mtime, link target.
#  - The repository's stages/ and manifests/ (bound into every stage read-only).
#  - /dev without times: devtmpfs updates a tty's times on every read and write
#    (any terminal's activity would show), and without /dev/pts and /dev/shm,
#    whose entries come and go with other programs' terminals and shared memory.
#    Types, modes, owners and sizes still show a created, removed or altered node.
host_state() {
	local roots=(/etc "$SENTINEL")
	# (IMGBUILD_FAULTS_SKIP_REPO: for runs while others edit the repository.)
	[ -n "${IMGBUILD_FAULTS_SKIP_REPO:-}" ] || roots+=("$REPO/stages" "$REPO/manifests")
	{
		echo "== /proc/self/mountinfo"
		# tracefs/debugfs mount themselves when anything looks at them (see tests/lib.sh)
		grep -vE " /sys/kernel/(tracing|debug)(/tracing)? " /proc/self/mountinfo
		echo "== files"
		find "${roots[@]}" -printf '%p %y %m %U:%G %s %T@ %l\n' 2>/dev/null | LC_ALL=C sort
		echo "== /dev"
		find /dev \( -path /dev/pts -o -path /dev/shm \) -prune -o \
			-printf '%p %y %m %U:%G %s %l\n' 2>/dev/null | LC_ALL=C sort
	} >"$1"
}

# host_unchanged BEFORE: the current state equals BEFORE (prints the diff).
host_unchanged() {
	host_state "$TMP/host.now"
	diff -U0 "$1" "$TMP/host.now" | grep -v '^@@' | head -n 40
	cmp -s "$1" "$TMP/host.now"
}

# ---- caches -----------------------------------------------------------------

# The layer keys of an image (from its facts.toml): BASE_KEY and STAGE_KEYS
# (in stage order) and STAGE_NAMES.
image_keys() {
	local facts
	facts=$(tar -xOf "$1" ./.imgbuild/facts.toml)
	BASE_KEY=$(sed -n 's/^base_key = "\([0-9a-f]*\)"$/\1/p' <<<"$facts")
	STAGE_NAMES=()
	STAGE_KEYS=()
	local name key
	while read -r name key; do
		STAGE_NAMES+=("$name")
		STAGE_KEYS+=("$key")
	done < <(sed -n 's/^stage_key_\([a-z0-9_-]*\) = "\([0-9a-f]*\)"$/\1 \2/p' <<<"$facts")
	[ -n "$BASE_KEY" ]
}

# new_cache DIR LAYER_KEY...: a cache of our own that holds the named layers of
# the shared cache and its downloads (hard links: layers are only ever read,
# through overlayfs lowers or by the packer, and downloads are read-only), so
# that faults and the reruns after them never touch the shared cache.
new_cache() {
	local dir=$1 k
	shift
	# 0700 as imgbuild makes it (setuid files in layers stay the owner's), so
	# that the first build does not change the folder a test compares.
	mkdir -p "$dir/layers" && chmod 0700 "$dir/layers"
	for k in "$@"; do
		cp -al "$SHARED_CACHE/layers/$k" "$dir/layers/$k"
	done
	[ -d "$SHARED_CACHE/downloads" ] && cp -al "$SHARED_CACHE/downloads" "$dir/downloads"
	[ -d "$SHARED_CACHE/debs" ] && cp -a "$SHARED_CACHE/debs" "$dir/debs"
	return 0
}

# tree_listing DIR: every entry of DIR with its metadata, for before/after.
tree_listing() { (cd "$1" && find . -printf '%p %y %m %U:%G %s %T@ %l\n' | LC_ALL=C sort); }

# layers_clean CACHE: no unfinished layer, every layer complete.
layers_clean() {
	local d bad=0
	for d in "$1"/layers/*; do
		[ -e "$d" ] || continue
		case "$d" in
		*.tmp-*) echo "unfinished layer left: $d"; bad=1 ;;
		*) [ -f "$d/done" ] && [ -d "$d/upper" ] || { echo "layer without done marker or upper: $d"; bad=1; } ;;
		esac
	done
	return $bad
}

# ---- builds under the subreaper ---------------------------------------------

# start_run RUNDIR ARGS...: imgbuild ARGS in the background, as its own process
# group, under reaper.py. Sets RUN_PID (imgbuild) and RUN_DIR.
start_run() {
	RUN_DIR=$1
	shift
	rm -rf "$RUN_DIR"
	mkdir -p "$RUN_DIR"
	RUN_T0=$(date +%s.%N)
	python3 "$FAULTS/reaper.py" "$RUN_DIR" -- "$IMGBUILD" "$@" >"$RUN_DIR/out" 2>&1 </dev/null &
	RUN_REAPER=$!
	local i
	for i in $(seq 200); do
		[ -s "$RUN_DIR/pid" ] && break
		sleep 0.02
	done
	RUN_PID=$(cat "$RUN_DIR/pid")
}

run_ended() { [ -s "$RUN_DIR/status" ]; }
run_elapsed() { awk -v a="$RUN_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_run: waits for the run's end; RUN_STATUS gets imgbuild's exit status.
wait_run() {
	wait "$RUN_REAPER" 2>/dev/null || true
	RUN_STATUS=$(cat "$RUN_DIR/status" 2>/dev/null || echo "?")
}

# run_to_end RUNDIR ARGS...: a whole run; returns its status.
run_to_end() {
	start_run "$@"
	wait_run
	[ "$RUN_STATUS" = 0 ]
}

# The processes below imgbuild right now: "PID COMM ARGS" lines (COMM shows
# what a process renamed itself to, like the sandbox's "imgbuild-init").
run_tree() {
	ps -e -o pid=,ppid=,comm=,args= | awk -v root="$RUN_PID" '
		{ pid = $1; ppid[pid] = $2; $1 = $2 = ""; args[pid] = substr($0, 3) }
		END {
			want[root] = 1
			do { more = 0
				for (p in ppid) if (!(p in want) && (ppid[p] in want)) { want[p] = 1; more = 1 }
			} while (more)
			for (p in want) if (p != root) print p, args[p]
		}'
}

# wait_for TIMEOUT WHAT CMD...: polls CMD until it succeeds. Fails when the run
# ends first or TIMEOUT seconds pass; WAIT_MISS says which.
wait_for() {
	local timeout=$1 what=$2
	shift 2
	local end=$((SECONDS + timeout))
	while [ $SECONDS -lt $end ]; do
		if "$@"; then return 0; fi
		if run_ended; then
			WAIT_MISS="the run ended (status $(cat "$RUN_DIR/status")) before $what"
			return 1
		fi
		sleep "$POLL"
	done
	WAIT_MISS="no $what within $timeout s"
	return 1
}

# Conditions for wait_for.
tree_has() { run_tree | grep -qE -- "$1"; }
file_has() { [ -f "$1" ] && grep -qE -- "$2" "$1"; }
path_exists() { [ -e "$1" ]; }
# An unnamed (O_TMPFILE) or dot-named temporary file in folder $1 held open by
# the run's processes, at least $2 bytes long.
out_tmp_at_least() {
	local dir=$1 min=$2 p f size
	# One find per process, not a readlink per descriptor: a look must take
	# well under the ~0.5 s pack needs to write the demo image.
	for p in $RUN_PID $(run_tree | cut -d' ' -f1); do
		while IFS= read -r f; do
			size=$(stat -L -c %s "$f" 2>/dev/null) || continue
			[ "$size" -ge "$min" ] && return 0
		done < <(find /proc/"$p"/fd -maxdepth 1 \( -lname "$dir/#* (deleted)" -o -lname "$dir/.*.tmp*" \) 2>/dev/null)
	done
	return 1
}

# ---- the checks after a fault -------------------------------------------------

# no_survivors: nothing of the run's process tree outlived it (reaper.py
# gives them 5 s after imgbuild's end).
no_survivors() {
	if [ -s "$RUN_DIR/survivors" ]; then
		echo "still running 5 s after imgbuild ended:"
		cat "$RUN_DIR/survivors"
		return 1
	fi
}

# output_whole DIR NAME: the output folder holds either nothing of the image or
# a complete one (the image and its .sha256 that matches it); never a
# temporary, a digest without its image, or a truncated image.
output_whole() {
	local dir=$1 name=$2 f
	for f in "$dir"/* "$dir"/.[!.]*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		case "${f##*/}" in
		"$name" | "$name.sha256" | "$name.sig") ;;
		*) echo "unexpected file in the output folder: $f"; return 1 ;;
		esac
	done
	if [ -e "$dir/$name" ]; then
		[ -f "$dir/$name.sha256" ] || { echo "image without its .sha256"; return 1; }
		[ "$(cut -d' ' -f1 "$dir/$name.sha256")" = "$(sha256sum "$dir/$name" | cut -d' ' -f1)" ] ||
			{ echo "the image does not match its .sha256 (half-written?)"; return 1; }
	elif [ -e "$dir/$name.sha256" ] || [ -e "$dir/$name.sig" ]; then
		echo "a digest or signature without its image: $(ls -A "$dir")"
		return 1
	fi
	return 0
}

# output_empty DIR: nothing at all in the output folder.
output_empty() {
	if [ -n "$(ls -A "$1")" ]; then
		echo "left in the output folder: $(ls -lA "$1")"
		return 1
	fi
}

# digest_is FILE WANT: FILE exists, matches its .sha256, whose digest is WANT.
digest_is() {
	[ -f "$1" ] || { echo "no image at $1"; return 1; }
	local got
	got=$(sha256sum "$1" | cut -d' ' -f1)
	[ "$got" = "$(cut -d' ' -f1 "$1.sha256")" ] || { echo "$1 does not match its .sha256"; return 1; }
	[ "$got" = "$2" ] || { echo "digest $got, the undisturbed build's is $2"; return 1; }
}

# show_run [N]: the last N lines of the run's output, as diag lines.
show_run() { sed 's/^/# /' "$RUN_DIR/out" | tail -n "${1:-15}"; }

# ---- the reference build ------------------------------------------------------

# reference_build: the demo built undisturbed with the shared cache (which
# bootstraps the base once per cache), into $TMP/ref. Sets REF_DIGEST and the
# keys (image_keys). Fails the test when it does not build.
reference_build() {
	mkdir -p "$TMP/ref"
	local t0=$SECONDS
	if ! IMGBUILD_CACHE=$SHARED_CACHE run_to_end "$TMP/run-ref" build "$DEMO" -o "$TMP/ref/demo.tar" \
		--build-dir "$TMP/ref-build"; then
		not_ok "the undisturbed demo build (exit $RUN_STATUS)"
		show_run 40
		finish
	fi
	REF_DIGEST=$(cut -d' ' -f1 "$TMP/ref/demo.tar.sha256")
	REF_SIZE=$(stat -c %s "$TMP/ref/demo.tar")
	image_keys "$TMP/ref/demo.tar" || { not_ok "no layer keys in the demo image's facts"; finish; }
	ok "undisturbed demo build: sha256 $REF_DIGEST ($((SECONDS - t0)) s, stages: ${STAGE_NAMES[*]})"
}

# ---- manifests of our own on the demo's base ----------------------------------

# demo_project DIR: DIR/{stages,manifests,keys}, a project for manifests that
# share the demo's [base] and epoch, hence its cached base layer.
demo_project() {
	mkdir -p "$1/stages" "$1/manifests"
	[ -d "$REPO/keys" ] && cp -r "$REPO/keys" "$1/keys"
	return 0
}
# demo_head NAME: [image] (the demo's epoch) and the demo's [base], verbatim.
demo_head() {
	local epoch
	epoch=$(awk '/^\[/ { sec = $0 } sec == "[image]" && $1 == "source_date_epoch" { print $3 }' "$DEMO")
	printf '[image]\nname = "%s"\nsource_date_epoch = %s\n\n' "$1" "$epoch"
	awk '/^\[/ { sec = $0 } sec == "[base]"' "$DEMO"
	echo
}

# listing_diff A B: what differs between two images' listings (as diag lines).
listing_diff() {
	diff <(tar -xOf "$1" ./.imgbuild/listing) <(tar -xOf "$2" ./.imgbuild/listing) | head -n 20 |
		sed 's/^/#   listing: /' || true
	return 0
}

# COMPILE: the demo's stage that compiles (hello), else the one before the
# last; COMPILE_I its index. Needs image_keys first.
pick_compile_stage() {
	local i
	COMPILE_I=$((${#STAGE_NAMES[@]} >= 2 ? ${#STAGE_NAMES[@]} - 2 : 0))
	for i in "${!STAGE_NAMES[@]}"; do
		[ "${STAGE_NAMES[$i]}" = hello ] && COMPILE_I=$i
	done
	COMPILE=${STAGE_NAMES[$COMPILE_I]}
}
