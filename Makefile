# The test command of the README. Tools that are not on PATH run from the Go module proxy at the
# versions go.mod pins, so this works on a machine with nothing but Go.
OPA ?= $(shell command -v opa 2>/dev/null || echo go run github.com/open-policy-agent/opa)
GO_TEST_FLAGS ?= -count=1 -timeout 60m
# Every directory of bundles/ with a .manifest is a bundle.
BUNDLES := $(patsubst %/.manifest,%,$(wildcard bundles/*/.manifest))

# The version the binary reports (--version, regoauth_build_info) and the image is tagged with.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
IMAGE ?= regoauth:latest

.PHONY: test lint rego-test go-test helm-test build bundles image fuzz

test: lint rego-test go-test helm-test

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	cd deploy/helm/test && go vet ./...
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

# The Helm chart: helm lint and helm template with each values file of deploy/helm/regoauth/ci,
# every manifest decoded strictly into the Kubernetes API types, and each rendered configuration
# loaded by regoauth. A module of its own, so the main module never depends on the API types.
helm-test:
	cd deploy/helm/test && go test $(GO_TEST_FLAGS) ./...

build:
	go build -ldflags "-X main.version=$(VERSION)" -o regoauth ./cmd/regoauth

# The container image without pulling a base image: the static binary and the CA bundle of this
# machine go into bin/image, which the Dockerfile's `prebuilt` target copies over an empty base.
# Keep the flags and folders the same as the Dockerfile's build stage. Without the build cache:
# the build only copies files, and a cached step names an intermediate image that removing
# another image built from this Dockerfile (a test's cleanup) may delete while this build uses
# it ("unable to find image sha256:…").
image:
	rm -rf bin/image
	mkdir -p bin/image/rootfs/usr/local/bin bin/image/rootfs/etc/ssl/certs bin/image/rootfs/tmp bin/image/rootfs/var/lib \
		bin/image/data/regoauth bin/image/data/regoauth-public
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/image/rootfs/usr/local/bin/regoauth ./cmd/regoauth
	cp /etc/ssl/certs/ca-certificates.crt bin/image/rootfs/etc/ssl/certs/
	chmod 1777 bin/image/rootfs/tmp
	docker build --no-cache --target prebuilt --build-arg VERSION=$(VERSION) -t $(IMAGE) .

# Every fuzz target, PACKAGE:TARGET, each run for FUZZTIME (go test runs one target at a time).
# The seeds (f.Add and testdata/fuzz) also run as plain tests in go-test. A failing input is
# written to the package's testdata/fuzz: commit it with the fix, as a regression seed.
# FUZZMINIMIZETIME bounds the shrinking of each new input (Go's default, 60 s, let one target
# spend most of its time shrinking instead of fuzzing). Go 1.26 can report "context deadline
# exceeded" when -fuzztime ends while a worker is busy (go.dev/issue/75804): such a run, which
# wrote no failing input, counts as a run that used its time.
FUZZTIME ?= 20s
FUZZMINIMIZETIME ?= 2s
FUZZ_TARGETS := authz/input:FuzzParseScopes authz:FuzzParseCredentials authz:FuzzParseForm authz:FuzzTokenHandler \
	tokens:FuzzRefreshVerify tokens:FuzzRefreshRoundTrip keystore:FuzzParseAPIKey keystore:FuzzRepositoryName \
	policy:FuzzNativeDecision

fuzz:
	@set -e; summary=""; for t in $(FUZZ_TARGETS); do \
		pkg=./$${t%%:*}; name=$${t##*:}; \
		echo "go test -run '^$$' -fuzz '^$$name\$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg"; \
		out=$$(go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg 2>&1) || { \
			if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "$$name: stopped at the time limit while a worker was busy (go.dev/issue/75804); no failing input"; \
			else echo "$$out"; exit 1; fi; }; \
		execs=$$(echo "$$out" | grep -o 'execs: [0-9]*' | tail -1 | cut -d' ' -f2); execs=$${execs:-0}; \
		summary="$$summary$$(printf '%-24s %12s executions in %s' $$name $$execs $(FUZZTIME))\n"; \
	done; printf "\nfuzz summary\n$$summary"
