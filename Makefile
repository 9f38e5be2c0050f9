# anax-agent: build, test, cross-build and benchmark. `make help` lists the targets.
GO          ?= go
BIN         ?= bin
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages with no Linux or Docker dependency: their unit tests also run on arm64 and armv7
# under qemu-user-static.
PURE_PKGS   ?= ./protocol/... ./platform/arch/...
TEST_TIMEOUT ?= 25m
LDFLAGS     := -s -w
CMDS        := anax-agent agbot hzn

.PHONY: help build cross package test test-unit test-arm prepare bench lint fuzz demo e2e clean

help:
	@echo "make build     build bin/anax-agent, bin/agbot, bin/hzn"
	@echo "make demo      run the end-to-end demo (Linux, root, Docker engine)"
	@echo "make test      prepare the machine (Docker engine, qemu) and run every test"
	@echo "make e2e       only the end-to-end suite (real agbot, agent, dockerd, OpenBao)"
	@echo "make test-arm  run the pure packages' tests for arm64 and armv7 under qemu-user-static"
	@echo "make cross     static binaries for linux/amd64, linux/arm64, linux/arm (GOARM=7)"
	@echo "make package   .deb and .rpm of anax-agent and anax-agbot for amd64, arm64, armhf (dist/)"
	@echo "make bench     run the benchmarks (table, bench/results.json, bench/*.svg)"
	@echo "make fuzz      every fuzz target for FUZZTIME each (default 30s)"
	@echo "make soak      long reliability runs"
	@echo "make lint      go vet and staticcheck"

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

cross:
	@for target in amd64: arm64: arm:7; do \
	  arch=$${target%%:*}; arm=$${target##*:}; \
	  mkdir -p $(BIN)/linux-$$arch$${arm:+v$$arm}; \
	  echo "build linux/$$arch$${arm:+ GOARM=$$arm}"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm \
	    $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-$$arch$${arm:+v$$arm}/ $(addprefix ./cmd/,$(CMDS)) || exit 1; \
	done

# Debian and RPM packages (tools/package, nfpm as a library in a nested module) from the
# binaries of make cross, into $(DIST). test/packaging checks their contents in make test.
DIST    ?= dist
VERSION ?= 0.1.0
package: cross
	@mkdir -p $(DIST)
	cd tools/package && GOFLAGS=-mod=readonly $(GO) run . -bin $(CURDIR)/$(BIN) -root $(CURDIR) -out $(abspath $(DIST)) -version $(VERSION)

prepare:
	test/prepare.sh

# Everything CI runs. Tests that need root or Docker fail instead of skipping when CI=true.
test: prepare test-unit test-arm

test-unit:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

test-arm:
	test/prepare.sh qemu
	GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static $(PURE_PKGS)
	GOARCH=arm GOARM=7 $(GO) test -count=1 -exec qemu-arm-static $(PURE_PKGS)

# The figures of design §9 side by side with the field's methods (bench/): prints the table
# for the README and writes bench/results.json and the CDF charts bench/*.svg. Each step merges
# its figures into the results file (a re-run of one step replaces only its figures).
BENCH_RESULTS ?= $(CURDIR)/bench/results.json
BENCH_SWAP    ?= 2000
BENCH_E2E     ?= 200
BENCH_FANOUT  ?= 5
# Fleet sizes of the fan-out benchmark (empty: 1000,10000). BENCH_FANOUT_NODES=100000 is the
# opt-in large fleet: it needs RLIMIT_NOFILE above 100,512 (README, Fleet fan-out).
BENCH_FANOUT_NODES ?=
# Stores of the fan-out benchmark (empty: bbolt,postgres,postgres-2agbots; PostgreSQL from
# make prepare, CI=true so that a missing server fails the run instead of skipping its rows).
BENCH_FANOUT_STORES ?=
BENCH_PROPOSAL ?= 20
# Node scale: updates per level, and the levels (services on one node; 1,000 containers take
# minutes to start and a few GiB: BENCH_SCALE_SERVICES=1,10,100 for a lighter run).
BENCH_SCALE    ?= 50
BENCH_SCALE_SERVICES ?= 1,10,100,1000
BENCH_ARGS     = -args -results $(BENCH_RESULTS) -bin $(CURDIR)/$(BIN)
bench: prepare build cross
	rm -f $(BENCH_RESULTS)
	$(GO) test -run '^$$' -bench 'SwapMethods' -benchtime $(BENCH_SWAP)x -timeout 30m ./bench/ $(BENCH_ARGS)
	$(GO) test -run '^$$' -bench 'EndToEnd' -benchtime $(BENCH_E2E)x -timeout 60m ./bench/ $(BENCH_ARGS)
	$(GO) test -run '^$$' -bench 'Proposal' -benchtime $(BENCH_PROPOSAL)x -timeout 30m ./bench/ $(BENCH_ARGS)
	$(GO) test -run '^$$' -bench 'Footprint' -benchtime 1x -timeout 30m ./bench/ $(BENCH_ARGS)
	CI=true ANAX_FANOUT_NODES=$(BENCH_FANOUT_NODES) ANAX_FANOUT_STORES=$(BENCH_FANOUT_STORES) $(GO) test -run '^$$' -bench 'Fanout' -benchtime $(BENCH_FANOUT)x -timeout 180m ./bench/ $(BENCH_ARGS)
	$(GO) test -run '^$$' -bench 'NodeScale' -benchtime $(BENCH_SCALE)x -timeout 120m ./bench/ $(BENCH_ARGS) -scale-services $(BENCH_SCALE_SERVICES)
	$(GO) run ./bench/cmd/benchreport -results $(BENCH_RESULTS) -binaries $(BIN)

# Every fuzz target of every package, one after the other, FUZZTIME each (go test -fuzztime:
# a duration or Nx). New crashers land in the package's testdata/fuzz and stay as regressions.
FUZZTIME ?= 30s
fuzz:
	@n=0; for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg) || exit 1; \
	  for f in $$(echo "$$list" | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; n=$$((n+1)); \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done; echo "fuzz: $$n targets, $(FUZZTIME) each, no failure"

# The long variants of the reliability suite (test/reliability): the link cut past anax's 240 s
# message lifetime, 1,000 services on one node (private dockerd) with 100 updates a second to one, 100 updates a second to one of 10 for SOAK_TIME. Needs root
# and Docker. (The dockerd restart runs in make test, on a private dockerd.)
SOAK_TIME ?= 5m
soak: prepare build
	$(GO) test -tags soak -count=1 -v -timeout 120m ./test/reliability/ -args -soak -soak-time $(SOAK_TIME) -bin $(CURDIR)/$(BIN)

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# An agbot and an agent on loopback under a temporary directory, a container reading its
# secrets, a live update, a node-specific override and its fallback, a clean unregister.
demo: build
	test/prepare.sh docker
	$(GO) run ./test/demo -bin $(BIN)

# Only the end-to-end suite (real agbot, agent and dockerd; embedded manager and OpenBao).
e2e: prepare
	$(GO) test -count=1 -v -run TestE2E ./test/e2e/

clean:
	rm -rf $(BIN) $(DIST)
