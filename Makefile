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
# gobind for `make mobile-bind`: golang.org/x/mobile has no tags, so a
# pinned pseudo-version (the latest when chosen).
GOBIND_VERSION ?= v0.0.0-20261011034528-197770444867
MOBILE_OUT     ?= $(or $(TMPDIR),/tmp)/unibus-mobile-bind

.PHONY: all build run dev-certs test test-tools test-cluster bench fuzz lint fmt tidy clean mobile-bind

all: lint test

build: ## build every binary into bin/
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

run: ## start the embedded NATS server and services (data: $$UNIBUS_DATA)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/unibusd $(RUN_ARGS)

dev-certs: ## write a throwaway CA and server certificate into certs/ (local TLS only)
	$(GO) run ./cmd/unibusd dev-certs --dir certs

# The terminal-UI tests drive `unibus chat` in a real terminal through tmux,
# which comes from Debian's packages when it is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-tools: ## install what the tests need beyond Go (tmux)
	@command -v tmux >/dev/null 2>&1 || { \
	  echo "installing tmux from Debian's packages"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq tmux; }

test: test-tools ## run the tests with the race detector; one test: make test T=Name PKG=./x/...
ifeq ($(T),)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKG)
else
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run '$(T)' -v $(PKG)
endif

# The cluster suite on real nats-server processes: the server version is
# the one go.mod pins, installed from the module proxy into bin/tools.
NATS_SERVER_VERSION ?= $(shell $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
TOOLS_BIN           := $(CURDIR)/bin/tools
test-cluster: ## the cluster and fault suite against 3 real nats-server processes
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
	UNIBUS_NATS_SERVER=$(TOOLS_BIN)/nats-server $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -v ./tests/cluster/...

bench: ## run the Go benchmarks (raw-NATS baselines run beside each)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -timeout 60m $(PKG)

# Every fuzz target (those matching FUZZ) of every package, one after the
# other, FUZZTIME each; the seed corpora in testdata/fuzz run with `make
# test` already. FUZZPARALLEL workers per target (1 leaves the other cores
# alone). Minimizing a new input (interesting or failing) stops after
# FUZZMINIMIZETIME, a time or a number of runs ("1000x"): with go's
# default of 60s, targets with large inputs (JWTs, frames) spend most of
# their time minimizing instead of fuzzing.
# FUZZTIME may be a duration ("30s") or a count of runs ("20000x"). Go
# 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" just as a duration runs out, with no crasher written
# (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race,
# so CI uses one.
FUZZ             ?= ^Fuzz
FUZZTIME         ?= 30s
FUZZPARALLEL     ?= 1
FUZZMINIMIZETIME ?= 1000x
fuzz: ## run every fuzz target for FUZZTIME (30s) each: make fuzz FUZZTIME=20000x, or one: make fuzz FUZZ=FuzzTamperFrame
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  targets=$$($(GO) test -list '$(FUZZ)' $$dir) || { echo "$$targets"; exit 1; }; \
	  for target in $$(echo "$$targets" | grep '^Fuzz'); do \
	    echo "== $$target $$dir"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) -parallel $(FUZZPARALLEL) $$dir; \
	  done; \
	done

lint: ## gofmt check, go mod tidy check, go vet, staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go mod tidy would change go.mod/go.sum: run make tidy"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# gobind must import golang.org/x/mobile/bind: a throwaway workspace beside
# the output joins this module with one that requires x/mobile, so go.mod
# stays free of it. Needs the module proxy on first run, not Android/Xcode.
# The target then checks the API mobile apps call is in both bindings and
# that gobind skipped nothing (it skips, with a comment, what gomobile cannot
# bind); CI runs it.
mobile-bind: ## generate the Java and Objective-C bindings of client/mobile with a pinned gobind into $$MOBILE_OUT, and check them
	rm -rf $(MOBILE_OUT)
	mkdir -p $(MOBILE_OUT)/tool
	GOBIN=$(MOBILE_OUT)/bin $(GO) install golang.org/x/mobile/cmd/gobind@$(GOBIND_VERSION)
	printf 'module gobindtool\n\ngo 1.26.0\n\nrequire golang.org/x/mobile $(GOBIND_VERSION)\n' >$(MOBILE_OUT)/tool/go.mod
	cd $(MOBILE_OUT)/tool && GOWORK=off $(GO) mod download golang.org/x/mobile
	cd $(MOBILE_OUT) && GOWORK= $(GO) work init $(CURDIR) $(MOBILE_OUT)/tool
	PATH="$(MOBILE_OUT)/bin:$$PATH" GOWORK=$(MOBILE_OUT)/go.work gobind -lang=go,java,objc -outdir $(MOBILE_OUT)/out github.com/unibus/unibus/client/mobile
	@grep -q 'static native Session newSession(String url, String seedPath, String caPath)' $(MOBILE_OUT)/out/java/mobile/Mobile.java || \
	  { echo "mobile-bind: Mobile.newSession(url, seedPath, caPath) is missing from the Java binding"; exit 1; }
	@grep -q 'MobileSession\* _Nullable MobileNewSession(NSString\* _Nullable url, NSString\* _Nullable seedPath, NSString\* _Nullable caPath' $(MOBILE_OUT)/out/src/gobind/Mobile.objc.h || \
	  { echo "mobile-bind: MobileNewSession(url, seedPath, caPath) is missing from the Objective-C binding"; exit 1; }
	@grep -q 'void subscribe(String roomID, MessageHandler h)' $(MOBILE_OUT)/out/java/mobile/Session.java || \
	  { echo "mobile-bind: Session.subscribe(roomID, MessageHandler) is missing from the Java binding"; exit 1; }
	@grep -q 'subscribeFrom(String roomID, MessageHandler h, long fromSeq, long sinceUnixMs, long last)' $(MOBILE_OUT)/out/java/mobile/Session.java || \
	  { echo "mobile-bind: Session.subscribeFrom(roomID, h, fromSeq, sinceUnixMs, last) is missing from the Java binding"; exit 1; }
	@grep -q 'watchEvents(long fromSeq, EventHandler h)' $(MOBILE_OUT)/out/java/mobile/Session.java || \
	  { echo "mobile-bind: Session.watchEvents(fromSeq, EventHandler) is missing from the Java binding"; exit 1; }
	@if grep -rn 'skipped' $(MOBILE_OUT)/out; then echo "mobile-bind: gobind skipped the declarations above"; exit 1; fi
	@echo "bindings in $(MOBILE_OUT)/out (java/, src/gobind/*.objc.h)"

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin/
