# groupsync build and check targets. `make help` lists them.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: help build deps test fuzz lint demo bench

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-6s %s\n", $$1, $$2}'

build: ## build bin/groupsync with the version and commit stamped in
	go build -ldflags "$(LDFLAGS)" -o bin/groupsync ./cmd/groupsync

SCIMMY := connectors/scim/testdata/scimmy

deps: $(SCIMMY)/node_modules/.package-lock.json ## npm ci the SCIMMY interop peer's pinned packages (make test does it when missing)

# npm ci writes node_modules/.package-lock.json: newer than the lock file means installed
# from it, so a clean clone installs once and an edited lock file installs again.
$(SCIMMY)/node_modules/.package-lock.json: $(SCIMMY)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "the SCIMMY interop test needs node and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix $(SCIMMY) --silent
	@touch $@

test: deps ## vet and run every test with the race detector (needs Postgres: GROUPSYNC_TEST_DATABASE_URL, default 127.0.0.1:5432; node and npm)
	go vet ./... && go test -race -count=1 ./...

FUZZTIME ?= 5s

# A run that fails with only "context deadline exceeded" and writes no failing input is the
# fuzzer's coordinator timing out on a busy machine, not a finding: it is run once more.
fuzz: ## run every fuzz target for FUZZTIME each (make test already runs their seed corpora)
	@n=0; for pkg in $$(go list ./...); do \
		for target in $$(go test -list '^Fuzz' "$$pkg" | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			out=$$(go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) "$$pkg" 2>&1) || \
			{ echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written' && \
			  echo "fuzz $$target: the fuzzer's own deadline fired on a loaded host (no failing input): once more" && \
			  out=$$(go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) "$$pkg" 2>&1); } || { \
				echo "$$out" | tail -40; \
				echo "fuzz $$target failed: rerun with go test -run '^$$' -fuzz '^$$target$$' $$pkg"; \
				echo "fuzz: $$n passed, 1 failed"; exit 1; }; \
			n=$$((n+1)); \
		done; \
	done; echo "fuzz: $$n passed, 0 failed"

DOCKERFILELINT_VERSION ?= 1.8.0

lint: ## gofmt check, go vet, and the Dockerfile linted (hadolint if installed, else dockerfilelint from npm)
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	@# Debian has no hadolint package; the npm registry has dockerfilelint, installed into .cache.
	@if command -v hadolint >/dev/null 2>&1; then hadolint Dockerfile; \
	elif command -v npm >/dev/null 2>&1; then \
		[ -x .cache/lint/node_modules/.bin/dockerfilelint ] || npm install --silent --prefix .cache/lint dockerfilelint@$(DOCKERFILELINT_VERSION) >/dev/null; \
		.cache/lint/node_modules/.bin/dockerfilelint Dockerfile; \
	else echo "neither hadolint nor npm: Dockerfile not linted (the container test in cmd/groupsync still checks its shape)"; fi

demo: ## run the end-to-end demo against simulated systems
	go run ./cmd/groupsync demo

bench: ## run the benchmarks (no tests)
	go test -run='^$$' -bench=. -benchmem ./...
