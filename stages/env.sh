#!/bin/bash
# env.sh — writes the image's environment for interactive use into
# /etc/profile.d/imgbuild.sh (sourced by login shells, sh and bash alike).
# The engine exports the manifest's [env] into every stage but does not tell a
# stage which variables came from [env], so the stage names them:
#
# Reads:  PROFILE_VARS   space-separated names to write, in order, e.g.
#                        "CUDA_HOME PATH LD_LIBRARY_PATH" (required); each must be set
#         PROFILE_FILE   target (default /etc/profile.d/imgbuild.sh)
# Refuses a library path that names a CUDA stubs folder: the stub libcuda.so
# is for linking only, and at run time it would hide the host driver's.
set -euo pipefail
me="env"
die() { echo "$me: $*" >&2; exit 1; }

vars=${PROFILE_VARS:-}
[ -n "${vars// /}" ] || die "PROFILE_VARS is empty (name the [env] variables to write, e.g. PROFILE_VARS = \"CUDA_HOME PATH\")"
file=${PROFILE_FILE:-/etc/profile.d/imgbuild.sh}

# POSIX single-quoting: /etc/profile.d is read by dash as well as bash.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "# Written by imgbuild's env stage from the manifest's [env]. Do not edit." >"$out"
for name in $vars; do
	[[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "'$name' in PROFILE_VARS is not a variable name"
	[ -n "${!name+set}" ] || die "PROFILE_VARS names $name, which is not set in this stage (missing from [env]?)"
	val=${!name}
	case "$name" in
	LD_LIBRARY_PATH | LD_PRELOAD)
		case ":$val:" in *"/stubs:"* | *"/stubs/:"*)
			die "$name=$val names a stubs folder: the stub libcuda.so must only be linked against (use LIBRARY_PATH in the build stages)" ;;
		esac ;;
	esac
	printf 'export %s=%s\n' "$name" "$(quote "$val")" >>"$out"
done
mkdir -p "$(dirname "$file")"
install -m 0644 "$out" "$file"
echo "$me: wrote $(($(wc -l <"$file") - 1)) variables to $file"
