# amtprov — see README.md. Every target works from a clean clone.
SHELL   := /bin/bash
GO      ?= go
BIN     := $(CURDIR)/bin
# Every module of the workspace, as package patterns (go test ./... at the
# go.work root matches nothing).
PKGS     = $(shell $(GO) list -f '{{.Dir}}/...' -m)
FUZZTIME ?= 60s
BENCHTIME ?= 1s
SIMULATE ?= 50

.PHONY: all build run test test-short bench fuzz lint tidy clean tools test-e2e

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/amtprov $(wildcard ./services/*/cmd/*) ./tools/amtsim/cmd/amtsim

# The main job: everything in one process with a simulated fleet, on
# embedded defaults (embedded NATS, private PostgreSQL from the local binaries
# unless DATABASE_URL is set).
run: build
	$(BIN)/amtprov dev --simulate $(SIMULATE)

# All tests, with the race detector, against an embedded NATS server and a
# real PostgreSQL (DATABASE_URL, or a private throwaway cluster).
test: lint
	@scripts/with-postgres.sh $(GO) test -race -count=1 -timeout 15m $(PKGS)

# Fuzz every network parser for FUZZTIME each (CI: 60s).
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

bench:
	@scripts/with-postgres.sh $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

# (tools/nats-server and tools/jaeger are outside go.work; nats-server
# v2.15.2 declares go 1.26.0, so its tools module must too.)
lint:
	@bad=$$(grep -L '^go 1.26$$' go.work $$(git ls-files '*go.mod' | grep -v -e '^tools/nats-server/' -e '^tools/jaeger/')); if [ -n "$$bad" ]; then echo "want go 1.26 in: $$bad"; exit 1; fi
	@$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$($(GO) list -f '{{.Dir}}' -m)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BIN) .pg

# nats-server and Jaeger for `amtprov up` and test-e2e, each built from its
# own tools module outside go.work (the Go build cache makes rebuilds fast).
tools:
	@mkdir -p $(BIN)
	cd tools/nats-server && GOWORK=off $(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2
	cd tools/jaeger && GOWORK=off $(GO) build -o $(BIN)/jaeger github.com/jaegertracing/jaeger/cmd/jaeger

# The separate-process end-to-end test (amtprov up: 3 NATS nodes, PostgreSQL,
# Jaeger, every service main in the workspace; amtsim; Jaeger's API). Not
# part of `make test`.
test-e2e: build tools
	$(GO) build -o $(BIN)/ $$($(GO) list -f '{{if eq .Name "main"}}{{.Dir}}{{end}}' $$($(GO) list -m -f '{{.Dir}}/...' | grep /services/))
	$(GO) test -tags e2e -count=1 -timeout 15m -run '^TestE2E' -v ./cmd/amtprov
