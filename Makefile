# spice-harness. `make up` and `make test` do all setup on a fresh Debian
# machine (they run `make deps`, which installs missing packages as root).
GO        ?= go
BIN       ?= bin/harness
BENCHBIN  ?= bin/spice-bench
FUZZTIME  ?= 3s
LONGFUZZ  ?= 60s
GOTESTFLAGS ?=
SOAKFLAGS ?=
export GOFLAGS ?= -buildvcs=false

.PHONY: all deps services build bench-build up test unit stress soak examples bench fuzz fuzz-smoke lint fmt-check vet guest bootsector clean

all: build

## deps: install missing Debian packages (idempotent; prints the command when not root), then make guest
deps:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory guest

## services: start libvirtd (unix + tcp on 127.0.0.1) for the libvirt backend tests
services:
	@bash scripts/services.sh

build:
	$(GO) build -o $(BIN) ./cmd/harness

## bench-build: the benchmark command (cmd/spice-bench)
bench-build:
	$(GO) build -o $(BENCHBIN) ./cmd/spice-bench

## up: boot a VM behind the proxy, print a ready console.vv, wait for Ctrl-C
up: deps build
	./$(BIN) up $(UPFLAGS)

## test: everything CI runs: format, vet, race tests against real qemu/clients, the examples/ modules, fuzz smoke
##       (-parallel 3: a lane spends much of its time waiting on qemu, timers and clients, so three lanes
##       at a time on the 2-core CI machine cut the scenarios package by about a minute; 4 starved links)
test: deps services lint
	CI=$${CI:-true} $(GO) test -race -timeout 15m -parallel 3 $(GOTESTFLAGS) ./...
	@$(MAKE) --no-print-directory examples
	@$(MAKE) --no-print-directory fuzz-smoke

## examples: go test in every module under examples/ (each drives a proxy that is not the in-process one)
examples:
	@for m in examples/*/go.mod; do d=$$(dirname $$m); echo "examples: $$d"; \
	  (cd $$d && $(GO) vet ./... && CI=$${CI:-true} $(GO) test -race -timeout 10m -parallel 3 $(GOTESTFLAGS) ./...) || exit 1; done

## stress: the whole suite -race, RUNS=3 times, beside two busy loops; prints failed runs of N
stress: deps services
	@bash scripts/stress.sh

## unit: fast tests only (no qemu, no real clients)
unit:
	$(GO) test -short ./...

lint: fmt-check vet

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## fuzz-smoke: every fuzz target for $(FUZZTIME)
fuzz-smoke:
	@bash scripts/fuzz.sh $(FUZZTIME)

## fuzz: every fuzz target for $(LONGFUZZ)
fuzz:
	@bash scripts/fuzz.sh $(LONGFUZZ)

## bench: ratios against direct qemu measured in the same run
##        (BENCHFLAGS: scripts/bench.sh flags, e.g. BENCHFLAGS="-- -sections screenshot")
bench: deps build
	@bash scripts/bench.sh $(BENCHFLAGS)

## soak: ~5 min of real clients and hostile connections against `harness up --vms 4`, with a verdict on growth
soak: deps
	@bash scripts/soak.sh $(SOAKFLAGS)

## guest: build the Linux test guest into its cache unless it is up to date
##        (HARNESS_GUEST_DIR, default ~/.cache/spice-harness/guest; see docs/linux-guest.md)
guest:
	@$(GO) run ./cmd/harness guest build >/dev/null

## bootsector: rebuild the boot-sector test guest from fixtures/guest/guest.asm
bootsector:
	nasm -f bin -o fixtures/guest/guest.bin fixtures/guest/guest.asm

clean:
	rm -rf bin
