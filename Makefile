# wharf: `make demo` runs the example, `make test` runs the tests.
GO      ?= go
BIN     := bin/wharf
LISTEN  ?= 127.0.0.1:8787
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build demo test bench lint deps clean

build: deps
	$(GO) build -o $(BIN) ./cmd/wharf

# deps installs what a fresh Debian machine lacks (needs root for apt).
deps:
	@./scripts/deps.sh

demo: build
	@echo "== wharf serve examples/hello on http://$(LISTEN)"
	@echo "   try:  curl http://$(LISTEN)/"
	@echo "         curl --data-binary @README.md http://$(LISTEN)/echo"
	@echo "         curl 'http://$(LISTEN)/fetch?url=http://$(LISTEN)/'"
	./$(BIN) serve examples/hello --listen $(LISTEN)

test: deps lint
	$(GO) test -count=1 -timeout 30m ./...

bench: deps
	@./scripts/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./examples/...

# clean removes build output only: examples/*/.wharf also holds object data.
clean:
	rm -rf bin examples/*/.wharf/build
