# rune: a runc-compatible OCI runtime. Every target that needs system packages installs
# them first (scripts/install-deps.sh, idempotent); run as root on Debian 12.

SHELL := /bin/bash
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/rune
RELEASE_BIN := target/release/rune

.PHONY: all build install uninstall test demo bench deps fmt lint clean help

all: build

help:
	@echo "make build    install deps if missing, release build of rune, rune-enclave, the software PAL,"
	@echo "              containerd-shim-rune-v2, rune-signd and rune-cri"
	@echo "make install  build, then install the programs to $(BINDIR), the PAL to $(LIBDIR)"
	@echo "make test     install deps, fmt check, clippy, build, cargo test (as CI)"
	@echo "make demo     build everything; run an image as an enclave container through CRI (DEMO_IMAGE=busybox|python3)"
	@echo "make bench    build rune and compare it with runc (ROUNDS=30 by default)"
	@echo "make deps     install the Debian packages needed (idempotent)"

deps:
	bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release -p rune -p rune-enclave -p liberpal-software -p shim-rune -p rune-signd -p rune-cri

install: build
	install -D -m 0755 $(RELEASE_BIN) $(DESTDIR)$(BINDIR)/rune
	install -D -m 0755 target/release/rune-enclave $(DESTDIR)$(BINDIR)/rune-enclave
	install -D -m 0644 target/release/libliberpal_software.so $(DESTDIR)$(LIBDIR)/liberpal-software.so
	install -D -m 0755 target/release/containerd-shim-rune-v2 $(DESTDIR)$(BINDIR)/containerd-shim-rune-v2
	install -D -m 0755 target/release/rune-signd $(DESTDIR)$(BINDIR)/rune-signd
	install -D -m 0755 target/release/rune-cri $(DESTDIR)$(BINDIR)/rune-cri

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/rune $(DESTDIR)$(BINDIR)/rune-enclave $(DESTDIR)$(LIBDIR)/liberpal-software.so \
		$(DESTDIR)$(BINDIR)/containerd-shim-rune-v2 $(DESTDIR)$(BINDIR)/rune-signd $(DESTDIR)$(BINDIR)/rune-cri

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench: build
	SKIP_DEPS=1 bash bench/run.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
