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

SRC := $(sort $(wildcard builder/*.c))
LIB_SRC := $(filter-out builder/main.c,$(SRC))
OBJ := $(LIB_SRC:builder/%.c=build/obj/%.o)
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_OBJ := $(LIB_SRC:builder/%.c=build/asan/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/*_test.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/unit/%)
GPU_PROBE := build/cuda-probe

.PHONY: all deps test test-long demo fuzz bench install clean format check-format compat-doc
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
build/imgbuild: build/obj/main.o $(OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
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
build/unit/%: tests/unit/%.c build/asan/libimgbuild.a | build/unit
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 -o $@ $^ -lcmocka $(LDLIBS)

deps:
	@./tests/install-deps.sh

# `make test` runs everything CI runs. T=path limits the run to some test files.
test: deps
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

format:
	clang-format -i builder/*.c builder/*.h
check-format:
	clang-format --dry-run --Werror builder/*.c builder/*.h

clean:
	rm -rf build
