# Vula — build, run, test.
GO        ?= go
BIN       := bin/vula
DATA_DIR  ?= ./var
LISTEN    ?= 127.0.0.1:8080
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
export CGO_ENABLED := 1

.PHONY: build run test test-deps bench lint fuzz clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vula

# The embedded default: SQLite, in-memory ephemeral state, the software key backend.
run: build
	$(BIN) serve --data-dir $(DATA_DIR) --listen $(LISTEN)

test-deps:
	./test/deps.sh

# Everything: unit tests, conformance suites on SoftHSM2, SQLite, PostgreSQL, Redis, and the
# end-to-end tests against the real binary. Under CI=true nothing that needs a component skips.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 14m ./...

# Benchmarks named in the issues; figures go in the README's performance section.
bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./hsm/... ./internal/...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

clean:
	rm -rf bin
