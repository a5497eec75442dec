# Vula — build, run, test.
GO        ?= go
BIN       := bin/vula
DATA_DIR  ?= ./var
LISTEN    ?= 127.0.0.1:8080
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
export CGO_ENABLED := 1

.PHONY: build run test test-deps bench bench-http lint fuzz clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vula

# The embedded default: SQLite for durable and ephemeral state, the software key backend.
run: build
	$(BIN) serve --data-dir $(DATA_DIR) --listen $(LISTEN)

test-deps:
	./test/deps.sh

# Everything: unit tests, conformance suites on SoftHSM2, SQLite, PostgreSQL, Redis, and the
# end-to-end tests against the real binary. Under CI=true nothing that needs a component skips.
# examples/ is a module of its own that uses the public Go API (hsm, pkg/tsclient) as an
# outsider would; after a change to go.mod, run go mod tidy there too (make lint checks).
# The end-to-end tests that share nothing (own data dir, ports, browser profile) run three at a
# time (t.Parallel); those that measure time or load, or stop a shared server, run alone.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -parallel 3 -timeout 14m ./...
	cd examples && $(GO) vet ./... && $(GO) test -count=1 ./...

# Benchmarks named in the issues; figures go in docs/performance.md.
bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./hsm/... ./internal/...

# Lint tools, pinned; go run fetches them through the Go module proxy and caches the build.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
ERRCHECK    := github.com/kisielk/errcheck@v1.30.0

# gofmt, go vet, go.mod tidy, staticcheck, and errcheck on non-test code (exclusions, each with
# its reason, in .errcheck-excludes).
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt -l:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd examples && $(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(ERRCHECK) -ignoretests -exclude .errcheck-excludes ./...

clean:
	rm -rf bin

# Issue #22's load benchmark against the real binary: embedded default and PostgreSQL (fsync
# on) + Redis, with server CPU per operation and the same run's limits (docs/performance.md).
# BENCH_PPROF_DIR=dir adds a CPU profile of each run.
bench-http: test-deps
	CI=true $(GO) test ./test -run '^$$' -bench '^BenchmarkHTTP$$' -benchtime 2s -timeout 20m
