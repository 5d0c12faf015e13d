#!/bin/bash
# deb-source.sh — builds a GNU-style source tarball (configure; make; make install),
# e.g. GNU hello 2.10 from the Debian pool's pinned hello_2.10.orig.tar.gz; or, for
# a tarball with only a makefile (NetPIPE 3.7.2), make TARGETS and copies the
# named programs into PREFIX/bin.
#
# Reads:  SOURCE_TARBALL   input name of the tarball (required)
#         PREFIX           install prefix (default /usr/local)
#         CONFIGURE_ARGS   extra ./configure arguments (optional)
#         MAKE_JOBS        parallel make jobs (default: nproc)
#         INSTALL_CHECK    a program that must be on PATH after the install (optional)
#         MAKE_ARGS        targets and variables for make (optional; e.g. "mpi MPICC=mpicc")
#         INSTALL_PROGRAMS programs the build leaves in the source folder, copied to
#                          PREFIX/bin; set for a tarball without configure/make install
set -euo pipefail
me="deb-source"
die() { echo "$me: $*" >&2; exit 1; }

name=${SOURCE_TARBALL:-}
[ -n "$name" ] || die "SOURCE_TARBALL is not set (the input holding the tarball)"
tarball=${IMGBUILD_INPUTS:-/imgbuild/inputs}/$name
[ -f "$tarball" ] || die "input '$name' not found at $tarball (list it in the stage's inputs)"
prefix=${PREFIX:-/usr/local}
build=${IMGBUILD_WORK:-/imgbuild/work}/build
for t in make cc; do command -v $t >/dev/null || die "no '$t' in the image (add gcc and make to [base] packages)"; done

# A fresh tree each attempt: configure results from a failed run are not reused.
rm -rf "$build" && mkdir -p "$build"
tar -xf "$tarball" -C "$build" --no-same-owner || die "cannot unpack $tarball"
mapfile -t top < <(ls -A "$build")
dir=$build
[ ${#top[@]} -eq 1 ] && [ -d "$build/${top[0]}" ] && dir=$build/${top[0]}
cd "$dir"
if [ -n "${INSTALL_PROGRAMS:-}" ]; then
	# shellcheck disable=SC2086
	make -j"${MAKE_JOBS:-$(nproc)}" ${MAKE_ARGS:-} >"$build/make.log" 2>&1 ||
		{ tail -n 30 "$build/make.log" >&2; die "make ${MAKE_ARGS:-} failed"; }
	mkdir -p "$prefix/bin"
	for p in $INSTALL_PROGRAMS; do
		[ -f "$p" ] || die "make ${MAKE_ARGS:-} left no '$p' in $(basename "$tarball")'s folder"
		install -m 0755 "$p" "$prefix/bin/" || die "cannot install $p into $prefix/bin"
	done
else
	[ -x "$dir/configure" ] || die "$(basename "$tarball") has no configure script (set INSTALL_PROGRAMS for a makefile-only tarball)"
	# shellcheck disable=SC2086
	./configure --prefix="$prefix" ${CONFIGURE_ARGS:-} >"$build/configure.log" 2>&1 ||
		{ tail -n 30 "$build/configure.log" >&2; die "./configure failed"; }
	# shellcheck disable=SC2086
	make -j"${MAKE_JOBS:-$(nproc)}" ${MAKE_ARGS:-} >"$build/make.log" 2>&1 || { tail -n 30 "$build/make.log" >&2; die "make failed"; }
	make install >"$build/install.log" 2>&1 || { tail -n 30 "$build/install.log" >&2; die "make install failed"; }
fi
if [ -n "${INSTALL_CHECK:-}" ]; then
	PATH=$prefix/bin:$PATH command -v "$INSTALL_CHECK" >/dev/null || die "$INSTALL_CHECK is not installed in $prefix/bin"
fi
cd / && rm -rf "$build"
echo "$me: $(basename "$tarball") installed into $prefix"
