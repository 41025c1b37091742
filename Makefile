# dovetail — see README.md. `make run` serves on the embedded default; `make test`
# installs the real servers the integration tests need (Debian packages) and runs
# the whole suite.
GO        ?= go
BIN       ?= bin/dovetail
FUZZTIME  ?= 10s
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build run test deps bench bench-deps fuzz fuzz-short lint conformance clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/dovetail

run: build
	$(BIN) serve

deps:
	$(SUDO) bash scripts/install-deps.sh

test: deps
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory fuzz-short

# Each fuzz target for a few seconds, as CI does; `make fuzz` runs them longer.
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s

fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

bench-deps: deps
	$(SUDO) bash scripts/install-bench-deps.sh

# Go benchmarks, then the side-by-side runs against the real peers; figures go to
# docs/benchmarks.md by hand (command, machine, numbers).
bench: bench-deps build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	@for s in bench/*/run.sh; do [ -x "$$s" ] || continue; echo "== $$s"; $$s; done

conformance:
	$(GO) test -count=1 -run 'TestPigeonhole' -v ./sieve/... 2>&1 | grep -E '^(=== SUMMARY|conformance|---.*FAIL|FAIL|ok)' || true
	$(GO) test -count=1 -run 'TestPigeonhole' ./sieve/...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@[ -x $(STATICCHECK) ] || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest
	$(STATICCHECK) ./...

clean:
	rm -rf bin
