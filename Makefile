# unibus — make targets. `make run` starts the server, `make test` runs the tests.
GO            ?= go
STATICCHECK   ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION       ?= 0.1.0-dev+$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -X main.version=$(VERSION)
PKG           ?= ./...
T             ?=
TEST_TIMEOUT  ?= 20m
BENCH         ?= .
BENCHTIME     ?= 1s
RUN_ARGS      ?=

.PHONY: all build run dev-certs test bench lint fmt tidy clean

all: lint test

build: ## build every binary into bin/
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

run: ## start the embedded NATS server and services (data: $$UNIBUS_DATA)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/unibusd $(RUN_ARGS)

dev-certs: ## write a throwaway CA and server certificate into certs/ (local TLS only)
	$(GO) run ./cmd/unibusd dev-certs --dir certs

test: ## run the tests with the race detector; one test: make test T=Name PKG=./x/...
ifeq ($(T),)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKG)
else
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run '$(T)' -v $(PKG)
endif

bench: ## run the Go benchmarks (raw-NATS baselines run beside each)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -timeout 60m $(PKG)

lint: ## gofmt check, go vet, staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin/
