# The test command of the README. Tools that are not on PATH run from the Go module proxy at the
# versions go.mod pins, so this works on a machine with nothing but Go.
OPA ?= $(shell command -v opa 2>/dev/null || echo go run github.com/open-policy-agent/opa)
GO_TEST_FLAGS ?= -count=1 -timeout 60m

.PHONY: test lint rego-test go-test build

test: lint rego-test go-test

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	$(OPA) fmt --list --fail policies
	$(OPA) check --strict policies

rego-test:
	$(OPA) test --verbose=false policies

go-test:
	go test $(GO_TEST_FLAGS) ./...

build:
	go build -o regoauth ./cmd/regoauth
