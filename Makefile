# The test command of the README. Tools that are not on PATH run from the Go module proxy at the
# versions go.mod pins, so this works on a machine with nothing but Go.
OPA ?= $(shell command -v opa 2>/dev/null || echo go run github.com/open-policy-agent/opa)
GO_TEST_FLAGS ?= -count=1 -timeout 60m
# Every directory of bundles/ with a .manifest is a bundle.
BUNDLES := $(patsubst %/.manifest,%,$(wildcard bundles/*/.manifest))

.PHONY: test lint rego-test go-test build bundles

test: lint rego-test go-test

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	go test -count=1 ./internal/layout
	$(OPA) fmt --list --fail policies bundles
	$(OPA) check --strict policies bundles

# The library's tests alone, then each bundle's tests beside the library (a bundle's tests live
# in package regoauth.extensions.NAME_test, under its manifest roots), then every bundle must
# build.
rego-test:
	$(OPA) test --verbose=false policies
	@set -e; for b in $(BUNDLES); do \
		echo "$(OPA) test policies $$b --run data.regoauth.extensions.$$(basename $$b)_test"; \
		$(OPA) test --verbose=false --run "data.regoauth.extensions.$$(basename $$b)_test" policies $$b; \
	done
	@$(MAKE) --no-print-directory bundles

# Bundles as operators ship them, built by plain opa build: bin/bundles/NAME.tar.gz.
bundles:
	@mkdir -p bin/bundles
	@set -e; for b in $(BUNDLES); do \
		echo "$(OPA) build -b $$b -o bin/bundles/$$(basename $$b).tar.gz"; \
		$(OPA) build -b $$b -o bin/bundles/$$(basename $$b).tar.gz; \
	done

go-test:
	go test $(GO_TEST_FLAGS) ./...

build:
	go build -o regoauth ./cmd/regoauth
