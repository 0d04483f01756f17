# wharf: `make demo` runs the example, `make test` runs the tests.
GO      ?= go
BIN     := bin/wharf
LISTEN  ?= 127.0.0.1:8787
# ENGINE is the Wasm engine make demo serves on: wazero (the default) or wasmtime.
ENGINE  ?=
# VERSION is what wharf version prints: the commit, or the tag, built;
# dev for a source tree that is no checkout of its own (unpacked from an
# archive, maybe inside another repository, which git describe would name).
VERSION ?= $(shell test -z "$$(git rev-parse --show-prefix 2>/dev/null || echo outside)" && git describe --tags --always --dirty 2>/dev/null || echo dev)
export PATH := $(PATH):/usr/local/go/bin
# CNI_PLUGINS are the CNI plugins of the build steps' network (see
# containerd/build/network.go).
CNI_PLUGINS := $(addprefix github.com/containernetworking/plugins/plugins/,main/ptp ipam/host-local main/loopback meta/tuning)

.PHONY: build demo test bench lint deps clean

# wharf-init, the agent wharf runs as PID 1 in containers, and buildkitd
# (BuildKit, a tool of this module, which wharf starts to build images from
# Dockerfiles) go next to wharf, where wharf looks for them, and the CNI
# plugins that give each RUN step its network (tools too) in cni/ next to
# buildkitd. wharf-init is static so any image can run it.
build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/wharf
	$(GO) build -o bin/buildkitd github.com/moby/buildkit/cmd/buildkitd
	mkdir -p bin/cni && $(GO) build -o bin/cni/ $(CNI_PLUGINS)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(dir $(BIN))wharf-init ./cmd/wharf-init

# deps installs what a fresh Debian machine lacks (needs root for apt).
deps:
	@./scripts/deps.sh

# demo runs examples/sandbox: a Worker and a Durable Object per session,
# each with a real container (busybox, built from Debian's busybox-static).
demo: build
	@$(GO) run ./internal/testimages/mkimage examples/sandbox/.wharf/image >/dev/null
	@./$(BIN) images import examples/sandbox/.wharf/image/busybox.tar --data-dir examples/sandbox/.wharf
	@echo "== wharf serve examples/sandbox on http://$(LISTEN)"
	@echo "   try:  curl --data-binary 'echo hello from a container; uname -a; sleep 1; echo done' http://$(LISTEN)/run/demo"
	@echo "   (its first start compiles the plugin: a request sent meanwhile waits for it)"
	./$(BIN) serve examples/sandbox --listen $(LISTEN)$(if $(ENGINE), --engine $(ENGINE))

# test fails, too, if a test process left its scratch directories, or a
# container cgroup or shim, behind. The longest packages are named first:
# go test starts packages in the order given, and two of them (-p is the
# number of cores) started last would run one after the other at the end.
LONGEST_TESTS = ./cmd/wharf ./host ./cluster ./examples/sandbox ./containerd
test: deps lint
	@before=$$(./scripts/leftovers.sh --containers); \
	$(GO) test -count=1 -timeout 40m $(LONGEST_TESTS) ./...; rc=$$?; \
	./scripts/leftovers.sh "$$before" || rc=1; \
	exit $$rc

bench: deps
	@./scripts/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/...
	GOOS=wasip1 GOARCH=wasm $(GO) build -o /dev/null ./examples/hello
	GOOS=wasip1 GOARCH=wasm $(GO) build -o /dev/null ./examples/counter
	GOOS=wasip1 GOARCH=wasm $(GO) build -o /dev/null ./examples/sandbox
	GOOS=wasip1 GOARCH=wasm $(GO) build -o /dev/null ./examples/egress
	GOOS=wasip1 GOARCH=wasm $(GO) build -o /dev/null ./examples/webapp
	GOOS=wasip1 GOARCH=wasm $(GO) build -o /dev/null ./examples/pyapp

# clean removes build output only: examples/*/.wharf also holds object data.
clean:
	rm -rf bin examples/*/.wharf/build
