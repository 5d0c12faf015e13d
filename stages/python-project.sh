#!/bin/bash
# python-project.sh — builds and installs a Python project from a pinned source
# with `python setup.py install`: PyTorch and torchvision alike. The source is
# either a checked-out [[source]] (a folder) or a [[download]] tarball; inputs
# are read-only, so it is copied to /imgbuild/work/src first.
#
# Reads:  SOURCE            input name (required): a folder or a .tar.* file
#         PACKAGE           import name, for the checks and facts (default: SOURCE)
#         PYTHON            interpreter (default: python on PATH, else python3)
#         IMGBUILD_ARCHS    -> TORCH_CUDA_ARCH_LIST ("3.5;5.0;6.1+PTX") unless that is set
#         CPP_EXTENSION_ARCHS  (torch's source only) archs to add to supported_arches in
#                           torch/utils/cpp_extension.py before torch is built, e.g. "3.0":
#                           torch >= 1.3 rejects 3.0 there ("Unknown CUDA arch (3.0) or GPU
#                           not supported"), so torchvision's CUDA ops, built through it,
#                           would fail for Kepler GK10x GPUs although torch itself builds
#                           sm_30 fine with CUDA < 11 (compat-facts §4b)
#         MAX_JOBS          parallel compile jobs (default: nproc)
#         USE_CUDA, USE_CUDNN  default 1 when [stack] cuda / cudnn are set, else 0;
#                           FORCE_CUDA (torchvision's switch) defaults to USE_CUDA
#         CCACHE            "1" (default when ccache exists): /usr/lib/ccache first in
#                           PATH and CMAKE_*_COMPILER_LAUNCHER=ccache, or CC="ccache gcc"
#                           when there is no /usr/lib/ccache; "0": no ccache
#         SETUP_ARGS        setup.py arguments (default "install")
#         PROTECT_PACKAGE   an already installed package this install must not touch
#                           (e.g. "torch" when installing torchvision: pip, conda or
#                           easy_install would silently replace the compiled torch);
#                           its version, location and a hash of its files are compared
#                           before and after, and the stage fails loudly on a change
#         EXPECT_VERSION    installed __version__ must start with it (default: the
#                           [stack] key named like PACKAGE, e.g. IMGBUILD_TORCH)
#         SOURCE_COMMIT     commit to record when the source has no .git (optional)
# Retries: the stage's clean command (`python setup.py clean`, run in
# /imgbuild/work/src) may or may not have run; this script runs it again itself
# when it finds the source of an earlier attempt, so a retry never builds over a
# half-built tree. `bash /imgbuild/stage.sh clean` does just that step.
# Leaves: /.imgbuild/facts.d/PACKAGE_version, PACKAGE_commit (when known),
#         PACKAGE_archs (TORCH_CUDA_ARCH_LIST when CUDA is on), PACKAGE_source_sha256 (tarballs),
#         PACKAGE_cpp_extension_archs_added (what CPP_EXTENSION_ARCHS added)
set -euo pipefail
me="python-project"
die() { echo "$me: $*" >&2; exit 1; }

work=${IMGBUILD_WORK:-/imgbuild/work}
src=$work/src
marker=$work/.src-complete
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif command -v python >/dev/null; then py=python
else py=python3; fi
command -v "$py" >/dev/null || die "no $py on PATH ($PATH)"

clean_src() {
	if [ -f "$marker" ] && [ -f "$src/setup.py" ]; then
		echo "$me: cleaning the source of an earlier attempt ($py setup.py clean)"
		(cd "$src" && "$py" setup.py clean) || echo "$me: warning: setup.py clean failed" >&2
		rm -rf "$src/build"
	fi
}
if [ "${1:-}" = clean ]; then
	clean_src
	exit 0
fi

name=${SOURCE:-}
[ -n "$name" ] || die "SOURCE is not set (the input holding the project)"
input=${IMGBUILD_INPUTS:-/imgbuild/inputs}/$name
[ -e "$input" ] || die "input '$name' not found at $input (list it in the stage's inputs)"
pkg=${PACKAGE:-$name}
[[ "$pkg" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "PACKAGE '$pkg' is not an import name (set PACKAGE)"
mkdir -p /.imgbuild/facts.d

# ---- the source, copied once per build of this stage, reused by retries ----
# The marker names the input, so a work folder left by another project is never reused.
if [ -f "$marker" ] && [ -d "$src" ] && [ "$(cat "$marker")" = "$name" ]; then
	clean_src
else
	rm -rf "$src" "$marker"
	mkdir -p "$src"
	if [ -d "$input" ]; then
		cp -a "$input/." "$src/"
	elif [ -f "$input" ]; then
		tar -xf "$input" -C "$src" --no-same-owner || die "cannot unpack $input"
		# A tarball with one top folder (vision-0.21.0/) is unwrapped.
		mapfile -t top < <(ls -A "$src")
		if [ ${#top[@]} -eq 1 ] && [ -d "$src/${top[0]}" ]; then
			mv "$src/${top[0]}" "$work/.src-top" && rmdir "$src" && mv "$work/.src-top" "$src"
		fi
		sha256sum "$input" | cut -d' ' -f1 >"/.imgbuild/facts.d/${pkg}_source_sha256"
	else
		die "input $input is neither a folder nor a file"
	fi
	chown -R 0:0 "$src" 2>/dev/null || true
	chmod -R u+w "$src"
	echo "$name" >"$marker"
fi
[ -f "$src/setup.py" ] || die "no setup.py at the top of input '$name'"

# ---- torch's extension arch list (idempotent: a retry finds the archs present) ----
if [ -n "${CPP_EXTENSION_ARCHS:-}" ]; then
	ext=$src/torch/utils/cpp_extension.py
	[ -f "$ext" ] || die "CPP_EXTENSION_ARCHS is set but input '$name' has no torch/utils/cpp_extension.py (set it on the stage that builds torch)"
	# shellcheck disable=SC2086
	"$py" - "$ext" ${CPP_EXTENSION_ARCHS//;/ } <<'PY' || die "cannot add $CPP_EXTENSION_ARCHS to $ext"
import re, sys
path, want = sys.argv[1], sys.argv[2:]
text = open(path).read()
m = re.search(r"supported_arches = \[([^\]]*)\]", text)
if m is None:
    sys.exit("python-project: no 'supported_arches = [...]' in %s: this torch builds its arch list another way" % path)
have = re.findall(r"'([0-9.]+)'", m.group(1))
add = [a for a in want if a not in have]
text = text[:m.start()] + "supported_arches = [%s]" % ", ".join("'%s'" % a for a in add + have) + text[m.end():]
open(path, "w").write(text)
print("python-project: torch.utils.cpp_extension supported_arches now %s (added: %s)" % (
    ", ".join(add + have), " ".join(add) or "none, already there"))
PY
	echo "${CPP_EXTENSION_ARCHS//;/ }" >"/.imgbuild/facts.d/${pkg}_cpp_extension_archs_added"
fi

# ---- the build environment ----
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
if [ -n "${IMGBUILD_CUDA:-}" ]; then export USE_CUDA=${USE_CUDA:-1}; else export USE_CUDA=${USE_CUDA:-0}; fi
if [ -n "${IMGBUILD_CUDNN:-}" ] && [ "$USE_CUDA" = 1 ]; then export USE_CUDNN=${USE_CUDNN:-1}; else export USE_CUDNN=${USE_CUDNN:-0}; fi
export FORCE_CUDA=${FORCE_CUDA:-$USE_CUDA}
if [ "$USE_CUDA" = 1 ]; then
	[ -n "${TORCH_CUDA_ARCH_LIST:-}" ] || [ -n "${IMGBUILD_ARCHS:-}" ] ||
		die "USE_CUDA=1 but neither TORCH_CUDA_ARCH_LIST nor [stack] archs is set (without it a GPU-less build guesses, and old GPUs get 'no kernel image is available')"
	export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$IMGBUILD_ARCHS}
	if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then export CUDA_HOME=/usr/local/cuda; fi
fi
if [ "${CCACHE:-1}" = 1 ] && command -v ccache >/dev/null; then
	export CCACHE_DIR=${CCACHE_DIR:-/imgbuild/ccache}
	# Hits across rebuilds of the image: paths relative to the work folder, the
	# compiler identified by its bytes (its mtime changes with every image).
	export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$work} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
	export CCACHE_COMPILERCHECK=${CCACHE_COMPILERCHECK:-content}
	if [ -d /usr/lib/ccache ]; then
		case ":$PATH:" in :/usr/lib/ccache:*) ;; *) export PATH=/usr/lib/ccache:$PATH ;; esac
	else
		export CC=${CC:-ccache gcc} CXX=${CXX:-ccache g++}
	fi
	ccache -z >/dev/null 2>&1 || true
	use_ccache=1
else
	use_ccache=0
fi

# ---- what the protected package looks like before ----
protect=${PROTECT_PACKAGE:-}
snapshot() {	# prints "version<TAB>location<TAB>hash" of an installed package
	(cd / && "$py" - "$1" <<'PY'
import hashlib, importlib, os, sys
name = sys.argv[1]
m = importlib.import_module(name)
loc = os.path.dirname(os.path.realpath(m.__file__))
h = hashlib.sha256()
for root, dirs, files in os.walk(loc):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for f in sorted(files):
        if f.endswith((".pyc", ".pyo")):
            continue
        p = os.path.join(root, f)
        h.update(os.path.relpath(p, loc).encode() + b"\0")
        if os.path.islink(p):
            h.update(b"L" + os.readlink(p).encode())
        else:
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")
print("%s\t%s\t%s" % (getattr(m, "__version__", "?"), loc, h.hexdigest()))
PY
	)
}
# Taken once per build of this stage and kept in the work folder: a retry runs on
# the root the failed attempt left, where the package may already be replaced.
if [ -n "$protect" ]; then
	saved=$work/.protect-$protect
	if [ -f "$saved" ]; then
		before=$(cat "$saved")
	else
		before=$(snapshot "$protect") || die "PROTECT_PACKAGE $protect is not importable before the install (install it first)"
		echo "$before" >"$saved"
	fi
	echo "$me: protecting $protect $(echo "$before" | cut -f1) at $(echo "$before" | cut -f2)"
fi

# ---- build and install ----
echo "$me: $pkg from input '$name': USE_CUDA=$USE_CUDA USE_CUDNN=$USE_CUDNN TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-} MAX_JOBS=$MAX_JOBS ccache=$use_ccache"
# shellcheck disable=SC2086
(cd "$src" && "$py" setup.py ${SETUP_ARGS:-install}) || die "$py setup.py ${SETUP_ARGS:-install} failed for $pkg"
[ "$use_ccache" = 1 ] && { ccache -s 2>/dev/null | grep -iE 'hit|miss' | head -n 4 | sed "s/^/$me: ccache: /" || true; }

# ---- the protected package must be exactly as it was ----
if [ -n "$protect" ]; then
	after=$(snapshot "$protect") || die "installing $pkg broke $protect: it no longer imports"
	if [ "$before" != "$after" ]; then
		echo "$me: ERROR: installing $pkg REPLACED OR CHANGED $protect" >&2
		echo "$me:   before: $before" >&2
		echo "$me:   after:  $after" >&2
		die "$protect was modified by the $pkg install (a dependency pulled in another $protect?); refusing the image"
	fi
	echo "$me: $protect unchanged ($(echo "$after" | cut -f1))"
fi

# ---- checks and facts (imported from /, not from the source tree) ----
version=$(cd / && "$py" -c "import $pkg, sys; sys.stdout.write(str($pkg.__version__))") ||
	die "$pkg does not import after the install"
upper=$(echo "$pkg" | tr '[:lower:]' '[:upper:]')
stack_var=IMGBUILD_$upper
expect=${EXPECT_VERSION:-${!stack_var:-}}
if [ -n "$expect" ] && ! [[ "$version" =~ ^${expect//./\\.}([^0-9]|$) ]]; then
	die "$pkg installed as version $version, expected $expect"
fi
echo "$version" >"/.imgbuild/facts.d/${pkg}_version"
commit=${SOURCE_COMMIT:-}
if [ -z "$commit" ] && [ -e "$input/.git" ] && command -v git >/dev/null; then
	commit=$(git -c safe.directory='*' -C "$input" rev-parse HEAD 2>/dev/null || true)
fi
if [ -z "$commit" ] && [ -f "$input/.git/HEAD" ]; then
	# No git in the image: a detached checkout's HEAD is the commit itself.
	head=$(cat "$input/.git/HEAD")
	[[ "$head" =~ ^[0-9a-f]{40}$ ]] && commit=$head
fi
[ -n "$commit" ] && echo "$commit" >"/.imgbuild/facts.d/${pkg}_commit"
[ "$USE_CUDA" = 1 ] && echo "$TORCH_CUDA_ARCH_LIST" >"/.imgbuild/facts.d/${pkg}_archs"
echo "$me: $pkg $version installed${commit:+ (commit $commit)}"
