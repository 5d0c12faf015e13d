# imgbuild — see README.md. `make test` and `make demo` install what is missing first.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/imgbuild
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
DESTDIR ?=
VERSION := 0.1.0

CC ?= cc
PKGS := libarchive libcurl libseccomp libcrypto zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -DIB_VERSION='"$(VERSION)"' -DIB_DATADIR='"$(DATADIR)"' \
	$(WARN) $(if $(WERROR),-Werror) $(CFLAGS) $(PKG_CFLAGS) -Ibuilder
LDLIBS = $(PKG_LIBS) -ldl -lpthread
# The static archives Debian 12 ships for the wrapped libraries (the same list
# imgbuild-portable links). build/imgbuild takes them and only glibc from the
# system: loading and relocating 45 shared objects cost 18.6 ms of CPU on every
# command, 4.3 ms without them (docs/performance.md, "Start-up"). LINK=shared
# links the system's shared libraries instead (distribution packaging).
STATIC_LIBS := -larchive -lacl -lxml2 -llzma -lzstd -llz4 -lbz2 \
	-lcurl -lnghttp2 -lidn2 -lssh2 -lpsl -lunistring -lssl -lcrypto -lbrotlidec -lbrotlicommon -lz \
	-lseccomp -lnettle
ifeq ($(LINK),shared)
IMGBUILD_OBJ_EXTRA :=
IMGBUILD_LIBS = $(LDLIBS)
else
IMGBUILD_OBJ_EXTRA := build/obj/unlinked.o
# libzstd stays shared: Debian's libzstd.a is built without ZSTD_MULTITHREAD, so
# pack --zstd would compress on one core (2.3-2.6 s instead of 1.5-1.6 s for the
# demo tree on 2 cores) and write other bytes than every earlier build.
IMGBUILD_LIBS = -Wl,-Bstatic $(filter-out -lzstd,$(STATIC_LIBS)) -Wl,-Bdynamic -lzstd -ldl -lpthread -lm
endif

SRC := $(sort $(wildcard builder/*.c))
LIB_SRC := $(filter-out builder/main.c,$(SRC))
OBJ := $(LIB_SRC:builder/%.c=build/obj/%.o)
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_OBJ := $(LIB_SRC:builder/%.c=build/asan/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/*_test.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/unit/%)
GPU_PROBE := build/cuda-probe

.PHONY: all deps test test-long demo fuzz bench install clean format check-format compat-doc portable
all: build/imgbuild build/toml-decode build/oldkernel $(GPU_PROBE)

build/obj/%.o: builder/%.c $(wildcard builder/*.h) | build/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@
build/asan/%.o: builder/%.c $(wildcard builder/*.h) | build/asan
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 -c $< -o $@
build/obj build/asan build/unit build/fuzz:
	mkdir -p $@

# IB_DATADIR is compiled into paths.o: rebuild it when PREFIX or DATADIR change.
build/datadir.stamp: FORCE
	@mkdir -p build && echo '$(DATADIR)' | cmp -s - $@ || echo '$(DATADIR)' >$@
build/obj/paths.o build/asan/paths.o: build/datadir.stamp
.PHONY: FORCE
FORCE:

build/libimgbuild.a: $(OBJ)
	rm -f $@ && ar rcs $@ $^
# builder/portable/unlinked.c stands in for the libraries with no static archive.
build/obj/unlinked.o: builder/portable/unlinked.c | build/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@
# The link line (LINK=, the library list) is recorded like DATADIR above, so
# changing it relinks build/imgbuild.
build/link.stamp: FORCE
	@mkdir -p build && echo '$(IMGBUILD_LIBS)' | cmp -s - $@ || echo '$(IMGBUILD_LIBS)' >$@
build/imgbuild: build/obj/main.o $(OBJ) $(IMGBUILD_OBJ_EXTRA) build/link.stamp
	$(CC) $(ALL_CFLAGS) -o $@ $(filter-out build/link.stamp,$^) $(IMGBUILD_LIBS)
build/toml-decode: tests/toml/decode.c build/libimgbuild.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
# Test helper: runs a command as on Linux 4.15 (tests/e2e/oldkernel.sh).
build/oldkernel: tests/oldkernel.c
	$(CC) -std=gnu11 -O2 $(WARN) $(if $(WERROR),-Werror) -o $@ $< -lseccomp
# The GPU probe needs no CUDA toolkit: it dlopens libcuda.so.1 at run time.
$(GPU_PROBE): tests/gpu/cuda-probe.c
	@if [ -f $< ]; then $(CC) -std=gnu11 -O2 -Wall -Wextra $(if $(WERROR),-Werror) -o $@ $< -ldl; fi

build/asan/libimgbuild.a: $(ASAN_OBJ)
	rm -f $@ && ar rcs $@ $^
build/unit/%: tests/unit/%.c $(wildcard tests/unit/*.h) build/asan/libimgbuild.a | build/unit
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 -o $@ $(filter-out %.h,$^) -lcmocka $(LDLIBS)

# ---- imgbuild-portable: one static x86_64 file with the commands that receive
# images (builder/main.c: those not marked BUILDS()), for Ubuntu 18.04 and up.
# Static glibc and the static libraries Debian 12 ships; docs/portable.md says
# what each piece is for. Its objects are compiled apart, with -DIB_PORTABLE.
portable: build/imgbuild-portable
PORTABLE_CFLAGS = $(ALL_CFLAGS) -DIB_PORTABLE -DIB_CUDA_QUERY='"build/portable/cuda-query"' -ffunction-sections -fdata-sections
PORTABLE_OBJ := $(LIB_SRC:builder/%.c=build/portable/%.o)
PORTABLE_LIBS := $(STATIC_LIBS) -lm -lpthread
build/portable:
	mkdir -p $@
build/portable/%.o: builder/%.c $(wildcard builder/*.h) | build/portable
	$(CC) $(PORTABLE_CFLAGS) -c $< -o $@
build/portable/%.o: builder/portable/%.c | build/portable
	$(CC) $(PORTABLE_CFLAGS) -c $< -o $@
build/portable/paths.o: build/datadir.stamp
# The GPU query program run from a memfd (builder/portable/cuda-query.c), linked
# against a stand-in libcuda.so.1 for its NEEDED entry; only GLIBC_2.2.5 symbols.
build/portable/libcuda.so.1: | build/portable
	printf 'int cuInit(unsigned f){return 999;}\nint cuDeviceGetCount(int*c){*c=0;return 999;}\nint cuDeviceGetAttribute(int*v,int a,int d){return 999;}\n' | \
		$(CC) -shared -fPIC -x c - -Wl,-soname,libcuda.so.1 -o $@
build/portable/cuda-query: builder/portable/cuda-query.c build/portable/libcuda.so.1
	$(CC) -std=gnu11 -O2 $(WARN) $(if $(WERROR),-Werror) -fno-stack-protector -fno-pie -no-pie -nostartfiles \
		-o $@ $< build/portable/libcuda.so.1
	@if readelf -V $@ | grep -o 'GLIBC_[0-9.]*' | grep -vx GLIBC_2.2.5; then \
		echo "$@ needs a glibc newer than 2.2.5 (see builder/portable/cuda-query.c)"; rm -f $@; exit 1; fi
build/portable/driver.o: build/portable/cuda-query
build/portable/compat.o: builder/compat.toml builder/chips.toml
build/portable/libimgbuild.a: $(PORTABLE_OBJ)
	rm -f $@ && ar rcs $@ $^
# ld warns that getaddrinfo/getpwnam need the glibc's NSS modules at run time:
# builder/portable/nss.c pins every database to the services built into libc.
build/imgbuild-portable: build/portable/main.o build/portable/nss.o build/portable/unlinked.o build/portable/libimgbuild.a
	$(CC) -static -Wl,--gc-sections -o $@.tmp $^ $(PORTABLE_LIBS) 2>&1 | \
		grep -v "requires at runtime the shared libraries from the glibc version used for linking" | \
		grep -v "in function" >&2 || true
	test -f $@.tmp && strip $@.tmp && mv $@.tmp $@

deps:
	@./tests/install-deps.sh

# `make test` runs everything CI runs. T=path limits the run to some test files.
test: deps
	$(MAKE) check-format
	$(MAKE) WERROR=1 all $(UNIT_BIN)
	./tests/run.sh $(T)
test-long: deps
	$(MAKE) WERROR=1 all
	IMGBUILD_LONG=1 ./tests/run.sh tests/long

demo: deps all
	./tests/demo.sh

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/*_fuzz.c))
FUZZ_LIB_SRC := $(LIB_SRC)
build/fuzz/%: tests/fuzz/%.c $(LIB_SRC) | build/fuzz
	clang -std=gnu11 -D_GNU_SOURCE -DIB_VERSION='"$(VERSION)"' -DIB_DATADIR='"$(DATADIR)"' -g -O1 \
		-fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -Ibuilder -o $@ $^ $(LDLIBS)
FUZZ_SECONDS ?= 60
fuzz: deps build/imgbuild $(FUZZ_TARGETS)
	./tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench: deps all
	./bench/run.sh

# docs/compat.md's "Which stack for my GPU?" table, regenerated from the data files.
compat-doc: build/imgbuild
	@./tests/compat-doc.sh --write docs/compat.md

install: build/imgbuild
	@echo "installing for $(DATADIR)"
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/stages $(DESTDIR)$(DATADIR)/keys
	install -m 0755 build/imgbuild $(DESTDIR)$(BINDIR)/imgbuild
	install -m 0644 stages/*.sh $(DESTDIR)$(DATADIR)/stages/
	install -m 0644 keys/*.pub keys/*.gpg $(DESTDIR)$(DATADIR)/keys/ 2>/dev/null || true
	install -d $(DESTDIR)$(DATADIR)/builder && install -m 0644 builder/compat.toml builder/chips.toml $(DESTDIR)$(DATADIR)/builder/
	@# the seed manifests: imgbuild advise --manifest starts from them
	install -d $(DESTDIR)$(DATADIR)/manifests && install -m 0644 manifests/*.toml $(DESTDIR)$(DATADIR)/manifests/
	@# the man page and bash completion (both follow imgbuild --help; tests/e2e/manpage.sh)
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	install -m 0644 docs/imgbuild.1 $(DESTDIR)$(MANDIR)/man1/imgbuild.1
	install -m 0644 docs/imgbuild.bash-completion $(DESTDIR)$(BASHCOMPDIR)/imgbuild

# .clang-format holds the style; `make test` (and so CI) fails on unformatted code.
FORMAT_SRC = $(wildcard builder/*.c builder/*.h builder/portable/*.c)
format:
	clang-format -i $(FORMAT_SRC)
check-format:
	@clang-format --dry-run --Werror $(FORMAT_SRC) || { echo "run 'make format' (clang-format, .clang-format)" >&2; exit 1; }

clean:
	rm -rf build
