# keyplane — the two commands: `make run` and `make test`.
GO ?= go
export GOFLAGS ?= -buildvcs=false

# Packages whose test binaries run inside the VM lab guest (KEYPLANE_VM=1),
# on a real Debian kernel with ESP and af_key. One line per package.
VM_PKGS ?= \
	./internal/vmlab

# The other operating systems whose build-tagged files must never rot.
CROSS_OS ?= freebsd netbsd openbsd darwin

.PHONY: run test vet host-test crossbuild vmtest

## run: the demo on the embedded default dataplane (no root, no kernel features)
run:
	$(GO) run ./cmd/keyplane demo

## test: everything — vet, host tests, cross-builds, then the VM lab
test: vet host-test crossbuild vmtest

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

host-test:
	$(GO) test -race ./...

crossbuild:
	@set -e; for os in $(CROSS_OS); do \
		echo "GOOS=$$os go vet ./... && go build ./..."; \
		GOOS=$$os $(GO) vet ./...; \
		GOOS=$$os $(GO) build ./...; \
	done

## vmtest: the kernel backends and interop tests on a real kernel (see docs/lab.md)
vmtest:
	$(GO) run ./internal/vmlab/cmd/vmlab test $(VM_PKGS)
