# keyplane — the two commands: `make run` and `make test`.
GO ?= go
export GOFLAGS ?= -buildvcs=false

# ---- VM lab (docs/lab.md) -------------------------------------------------
# Packages whose test binaries run inside the VM lab guest (KEYPLANE_VM=1),
# on a real Debian kernel with ESP and af_key. One line per package (or
# ./dir/... pattern); a line naming no package yet is listed and skipped.
VM_PKGS ?= \
	./internal/lab \
	./internal/vmlab \
	./backends/xfrm \
	./backends/pfkey \
	./internal/swan \
	./ike/interop \
	./cmd/keyplane
# Packages built without -race in the guest (emulation makes -race costly);
# everything else is built with it.
VM_NORACE ?=
# Flags for every test binary in the guest, e.g. VM_TESTFLAGS='-test.v -test.run=TestX'.
VM_TESTFLAGS ?=
# The whole guest run is killed after this long (a hung guest fails).
VM_TIMEOUT ?= 55m
# KEYPLANE_SKIP_VM=1 makes `make test` skip the VM lab, loudly. Without it,
# a machine that cannot run the lab (not root and nothing installed, no qemu)
# fails `make test`: the lab is the only real test of the kernel backends.
KEYPLANE_SKIP_VM ?=
VMLAB = out/vmlab

# The other operating systems whose build-tagged files must never rot.
CROSS_OS ?= freebsd netbsd openbsd darwin

# benchstat, pinned (the module proxy refuses @latest for golang.org/x/perf).
BENCHSTAT = $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260112171951-5abaabe9f1bd
BENCH_COUNT ?= 8
# Tunnel counts of bench-ike, comma-separated; the 100,000 run is
# BENCH_IKE_SIZES=1000,10000,100000.
BENCH_IKE_SIZES ?= 1000,10000
# bench-vm's responder run: under software emulation a handshake costs ~0.1 s of CPU.
BENCH_VM_IKE_SIZES ?= 200
BENCH_VM_IKE_COUNT ?= 4
# bench-100k: tunnels and runs (one run of each poll setting is a few minutes on 2 cores).
BENCH_100K_TUNNELS ?= 100000
BENCH_100K_COUNT ?= 1

.PHONY: bench bench-ike bench-100k bench-vm test-vm-ha run test test-steps deps vet host-test crossbuild vmtest test-vm lab-selftest lab-run lab-shell lab-prepare fresh-check $(VMLAB)

## run: two keyplane daemons on loopback (nokernel dataplane, no root) build a tunnel
run:
	$(GO) run ./cmd/keyplane tunnel-demo

## bench: the host benchmarks, each implementation beside its baseline, ratios by benchstat
bench:
	@mkdir -p out
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./backends/xfrm ./kernelops | tee out/bench.txt
	$(BENCHSTAT) -filter '.name:InstallPolicies' -col '/impl@(netlink-handle ip-batch keyplane-batch)' out/bench.txt
	$(BENCHSTAT) -filter '.name:DumpPolicies' -col '/impl@(netlink-XfrmPolicyList keyplane-stream)' out/bench.txt
	$(BENCHSTAT) -filter '.name:Scan' -col '/read@(getsa-per-sa bulk)' out/bench.txt
	$(GO) test -run '^$$' -bench HandshakeSuites -benchmem -count $(BENCH_COUNT) ./ike | tee out/bench-ike.txt
	$(BENCHSTAT) -col '/suite@(x25519+PSK p256+ECDSA x25519+RSA-3072 x25519+ML-KEM-768)' out/bench-ike.txt
	$(GO) test -run '^$$' -bench 'Tunnels' -count $(BENCH_COUNT) ./ike | tee out/bench-tunnels.txt
	$(BENCHSTAT) -col '/poll@(off 200ms)' out/bench-tunnels.txt

## bench-ike: keyplane's daemon against charon 5.9.8 as IKE responders, one load generator (ike/interop BenchmarkResponder; root, charon)
# One op brings up every tunnel against a fresh responder; benchstat puts the
# implementations side by side (charon's column against keyplane's).
bench-ike: deps
	@mkdir -p out
	$(GO) test -run '^$$' -bench '^BenchmarkResponder$$' -benchtime 1x -count $(BENCH_COUNT) -timeout 120m ./ike/interop -args -resp.sizes=$(BENCH_IKE_SIZES) | tee out/bench-responder.txt
	$(BENCHSTAT) -col '/impl@(keyplane charon)' out/bench-responder.txt

## bench-100k: 100,000 tunnels keyplane↔keyplane on nokernel, unpolled, with both ends listed in full every 0.2 s, and listed by what changed every 0.2 s: tunnels/s (the ratios), heap per IKE SA + child, heap profile in out/tunnels-100k.heap
bench-100k:
	@mkdir -p out
	$(GO) test -c -o out/ike.test ./ike
	out/ike.test -test.run '^$$' -test.bench '^BenchmarkTunnels$$' -test.benchtime 1x -test.count $(BENCH_100K_COUNT) -test.timeout 60m -bench.tunnels=$(BENCH_100K_TUNNELS) -bench.heapprofile=out/tunnels-100k.heap | tee out/bench-100k.txt
	$(BENCHSTAT) -col '/poll@(off 200ms since-200ms)' out/bench-100k.txt
	$(GO) tool pprof -sample_index=inuse_space -top -nodecount=25 out/ike.test out/tunnels-100k.heap

## bench-vm: the benchmarks that need ESP (10,000 SAs), in the VM lab
bench-vm: lab-prepare
	@mkdir -p out
	$(VMLAB) test -race=false -testflags '-test.run=^$$ -test.bench=^Benchmark(InstallSAs|InstallSAsPaired|UsageScan)$$ -test.benchmem -test.count=$(BENCH_COUNT)' ./backends/xfrm | tee out/bench-vm.txt
	$(BENCHSTAT) -filter '.name:InstallSAs' -col '/impl@(netlink-handle ip-batch keyplane-batch raw-floor)' out/bench-vm.txt
	# keyplane's batch and the raw floor timed in turn per iteration: floor/keyplane ≥ 0.85 is the goal.
	$(BENCHSTAT) -filter '.name:InstallSAsPaired' out/bench-vm.txt
	$(BENCHSTAT) -filter '.name:UsageScan' -col '/impl@(netlink-XfrmStateGet-per-sa keyplane-getsa-per-sa keyplane-bulk-dump)' out/bench-vm.txt
	# The responders with kernel ESP: keyplane's daemon on XFRM against charon
	# with kernel-netlink, each installing every child (BenchmarkResponder).
	$(GO) build -o out/keyplane-bench ./cmd/keyplane
	KEYPLANE_BENCH_DAEMON=$(CURDIR)/out/keyplane-bench $(VMLAB) test -race=false -timeout $(VM_TIMEOUT) -testflags '-test.run=^$$ -test.bench=^BenchmarkResponder$$ -test.benchtime=1x -test.count=$(BENCH_VM_IKE_COUNT) -resp.sizes=$(BENCH_VM_IKE_SIZES)' ./ike/interop | tee out/bench-vm-responder.txt
	$(BENCHSTAT) -col '/impl@(keyplane charon)' out/bench-vm-responder.txt

## test-vm-ha: the HA failover with 1,000 tunnels in the VM lab (TestVMHAFailoverTunnels; make test runs it with fewer)
# Under software emulation 1,000 children take 5–11 min to come up (by the
# machine's load) and ≈13 s to take over: the run takes 8–14 min, so make
# test runs 50. HA_TUNNELS sets the count.
HA_TUNNELS ?= 1000
test-vm-ha: lab-prepare
	$(VMLAB) test -race=false -timeout $(VM_TIMEOUT) -test.timeout 50m -e KEYPLANE_HA_TUNNELS=$(HA_TUNNELS) -testflags '-test.run=^TestVMHAFailoverTunnels$$ -test.v' ./cmd/keyplane

## test: everything — packages, vet, host tests, cross-builds, then the VM lab
# TEST_STEPS are make test's steps, run in this order and each timed, so a
# slow or failing run says which step it was.
TEST_STEPS = deps vet host-test crossbuild test-vm
test:
	@start=$$(date +%s); times=""; \
	for step in $(TEST_STEPS); do \
		t0=$$(date +%s); \
		$(MAKE) --no-print-directory $$step || { echo "make test: $$step FAILED after $$(( $$(date +%s) - t0 ))s (before it:$${times:- nothing})"; exit 1; }; \
		times="$$times $$step $$(( $$(date +%s) - t0 ))s"; \
	done; \
	echo "make test passed in $$(( $$(date +%s) - start ))s:$$times"

test-steps:
	@echo $(TEST_STEPS)

## deps: install the Debian packages the tests need (internal/vmlab/packages.go; README "What make test installs")
# With KEYPLANE_SKIP_VM=1 only those the host tests need. Not as root, it
# reports what is missing and goes on: those tests then skip, and say why.
deps: $(VMLAB)
	$(VMLAB) deps$(if $(filter 1,$(KEYPLANE_SKIP_VM)), -host)

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags vpp ./...

host-test: deps
	$(GO) test -race ./...
	$(GO) test -race -tags vpp ./backends/vpp/... ./cmd/keyplane
	# The daemon's memory under floods, without the race detector's shadow memory.
	$(GO) test -count=1 -run '^TestDaemon(InitFlood|PaddedInits)$$' ./cmd/keyplane

crossbuild:
	@set -e; for os in $(CROSS_OS); do \
		echo "GOOS=$$os go vet ./... && go build ./..."; \
		GOOS=$$os $(GO) vet ./...; \
		GOOS=$$os $(GO) build ./...; \
	done

## test-vm: the VM lab part of `make test`; KEYPLANE_SKIP_VM=1 skips it, loudly
test-vm:
ifeq ($(KEYPLANE_SKIP_VM),1)
	@echo "########################################################################"
	@echo "#  KEYPLANE_SKIP_VM=1: the VM lab was SKIPPED. The XFRM backend with   #"
	@echo "#  real ESP, PF_KEY on af_key and the IKE interop tests did NOT run.   #"
	@echo "########################################################################"
else
	@$(MAKE) --no-print-directory vmtest
endif

$(VMLAB):
	$(GO) build -o $(VMLAB) ./internal/vmlab/cmd/vmlab

# The lab's own host-side checks: a guest's exit status reaches the host, a
# hung guest is killed by the timeout and reported with its console tail.
LAB_BOOT_TESTS = KEYPLANE_LAB_BOOT=1 $(GO) test -count=1 -timeout 60m -run '^TestBoot' ./internal/vmlab

## lab-prepare: install the lab's packages, fetch the kernel, build the initramfs
lab-prepare: $(VMLAB)
	$(VMLAB) prepare

## vmtest: the kernel backends and interop tests on a real kernel, in one boot (see docs/lab.md)
vmtest: lab-prepare
	$(LAB_BOOT_TESTS)
	$(VMLAB) test -timeout $(VM_TIMEOUT) -norace '$(VM_NORACE)' -testflags '$(VM_TESTFLAGS)' $(VM_PKGS)

## lab-selftest: prove the guest is what the suites assume (ESP, PF_KEY, tunnel ping)
lab-selftest: lab-prepare
	$(LAB_BOOT_TESTS)
	$(VMLAB) test -timeout $(VM_TIMEOUT) -testflags '-test.v $(VM_TESTFLAGS)' ./internal/vmlab

## lab-run: one command in the guest, e.g. make lab-run CMD='ip -s xfrm state'
lab-run: export LAB_CMD := $(value CMD)
lab-run: lab-prepare
	@test -n "$$LAB_CMD" || { echo "usage: make lab-run CMD='ip -s xfrm state'"; exit 2; }
	$(VMLAB) run -timeout $(VM_TIMEOUT) -- sh -c "$$LAB_CMD"

## lab-shell: an interactive shell in the guest
lab-shell: lab-prepare
	$(VMLAB) shell

## fresh-check: purge what the project installs, then .ci/run from a fresh clone of HEAD with empty Go caches (needs root; see .ci/fresh-check)
fresh-check:
	bash .ci/fresh-check
