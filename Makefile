# capsec. The two commands a new user needs, as root on Debian 12:
#   make demo   # installs what is missing, builds, runs the netns lab demo
#   make test   # installs what is missing, builds, runs unit and root integration tests

GO      := $(shell scripts/find-go 2>/dev/null || echo go)
# A Go older than go.mod asks for fetches the right toolchain itself.
export GOTOOLCHAIN := auto
OUT     := _output
BIN     := $(OUT)/bin
IMAGES  := $(OUT)/images
SOURCES := $(shell find . -path ./_output -prune -o -name '*.go' -print) go.mod go.sum

.PHONY: all deps build images demo test unit integration fuzz bench lint clean lab-down

all: build

deps:
	scripts/install-deps.sh

# capsec-agent links runc's nsenter (C), so it needs cgo; the rest are
# static so that plcsim can be the only file in its container's rootfs.
$(BIN)/capsec-agent: $(SOURCES)
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -o $@ ./cmd/capsec-agent

$(BIN)/%: $(SOURCES)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $@ ./cmd/$*

BINARIES := $(BIN)/capsec-agent $(BIN)/migrate $(BIN)/capsec-lab $(BIN)/plcsim $(BIN)/mbprobe $(BIN)/capsec-bench

build: $(BINARIES) images

images: $(IMAGES)/plcsim/config.json

$(IMAGES)/plcsim/config.json: $(BIN)/plcsim $(BIN)/capsec-lab
	$(BIN)/capsec-lab image plcsim $(BIN)/plcsim --out $(IMAGES)/plcsim

# The lab's names are fixed, so one lab at a time: everything that brings
# one up holds this lock (flock -o keeps it out of the agents it starts).
LABLOCK := flock -o /run/capsec-lab.lock

demo: deps build
	$(LABLOCK) $(BIN)/capsec-lab demo

# Figures, not pass/fail: moves at three memory sizes with the HMI polling,
# and QUIC against TCP and TLS; see BENCHMARKS.md. capsec-bench holds the
# lab lock itself.
bench: deps build
	$(BIN)/capsec-bench --out $(OUT)/bench.json --plot $(OUT)/bench.png

lab-down:
	$(BIN)/capsec-lab down

# Unit tests run anywhere; the root tests need CRIU, runc's libcontainer and
# network namespaces, and opt in with CAPSEC_TEST_ROOT=1.
unit:
	$(GO) test ./...

integration: build
	CAPSEC_TEST_ROOT=1 CAPSEC_BIN=$(CURDIR)/$(BIN) CAPSEC_IMAGES=$(CURDIR)/$(IMAGES) \
		$(LABLOCK) $(GO) test -p 1 -count=1 -timeout 15m ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzReadFrame -fuzztime=10s ./transfer/
	$(GO) test -run='^$$' -fuzz=FuzzParseManifest -fuzztime=10s ./transfer/
	$(GO) test -run='^$$' -fuzz=FuzzPeerMessage -fuzztime=10s ./agent/

test: deps build lint vagrant-check integration fuzz

lint:
	@test -z "$$(gofmt -l $$(find . -path ./_output -prune -o -name '*.go' -print))" || { gofmt -l . ; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

clean:
	rm -rf $(OUT)

# The Vagrant lab (vagrant/README.md): vagrant-box, vagrant-demo, vagrant-test,
# vagrant-check. Last, since it uses the variables above.
include vagrant/vagrant.mk
