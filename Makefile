# nltrace: the user's verbs.
#   make install   everything on a fresh Debian 12 machine (root)
#   make demo      nltrace flow on real traffic (inside the test VM here)
#   make test      every test: host tests, the real-kernel tests in one VM boot, the
#                  core ones on Debian's 5.10 and 6.12 kernels (one boot each), then
#                  the BMC path on the emulated AST2500 with its 6.12 and 5.10 kernels
#                  (one boot each)
#   make test-matrix  the kernel matrix alone: doctor, flow and latency on 5.10 and 6.12
#   make test-board  the AST2500 with each of its kernels (6.12 and 5.10)
#   make test-arm  the BMC path on the raspi1ap stand-in (Debian's rpi kernel): the
#                  same checks as the AST2500's, on another kernel
#   make test-long the real-kernel tests make test leaves out for CI time (marked long)
#   make vm CMD=.. any command inside the test VM
#   make soak      flow and latency attached for 10 minutes of full-rate load in the VM:
#                  memory growth and exact counts (bench/SOAK.md); its short form is in make test
#   make bench     overhead of nltrace and bpftrace in the VM, of the agent on the emulated
#                  AST2500, host-side throughput (bench/RESULTS.md)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .cache/installed
PROMTOOL_DIR := .cache/promtool
APT_PACKAGES := python3-venv python3-bpfcc bpfcc-tools bpftrace dwarves iproute2 strace \
	qemu-system-x86 linux-image-amd64 linux-headers-amd64 bpftool gcc libc6-dev \
	clang llvm libbpf-dev libelf-dev zlib1g-dev busybox-static \
	gcc-arm-linux-gnueabi libc6-dev-armel-cross qemu-system-arm device-tree-compiler cpio \
	ethtool nftables flex bison bc libssl-dev tshark

.PHONY: install demo test test-host test-vm test-matrix test-long test-arm test-board vm bench soak

install: $(STAMP)

# promtool (tests/host checks the metrics with it) comes from Debian's prometheus
# package, unpacked: installing the package would start a Prometheus server.

$(STAMP): setup.cfg pyproject.toml Makefile
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e . virtme-ng pytest pytest-timeout pytest-instafail hypothesis
	rm -rf $(PROMTOOL_DIR) && mkdir -p $(PROMTOOL_DIR) && cd $(PROMTOOL_DIR) && \
		apt-get download -q prometheus && dpkg -x prometheus_*.deb . && rm prometheus_*.deb
	mkdir -p .cache && touch $@

demo: install
	tools/vm tools/demo

# The AST2500's kernels build (once per machine) beside the other tests, one
# after the other at the lowest priority: they take the CPU the emulated
# machines leave idle.
BOARD_KERNELS_LOG := .cache/board-kernels.log
test: install
	rm -f $(BOARD_KERNELS_LOG).rc
	{ (for v in $(BOARD_KERNELS); do nice -n 19 tools/arm/kernel $$v || exit 1; done) > $(BOARD_KERNELS_LOG) 2>&1; \
		echo $$? > $(BOARD_KERNELS_LOG).rc; } &
	$(MAKE) test-host test-vm test-matrix
	while [ ! -f $(BOARD_KERNELS_LOG).rc ]; do sleep 5; done; \
		[ "$$(cat $(BOARD_KERNELS_LOG).rc)" = 0 ] || { tail -30 $(BOARD_KERNELS_LOG); exit 1; }
	$(MAKE) test-board

test-host: install
	$(PY) -m pytest -p no:cacheprovider tests/host

# The load generator, built for this machine at bench time (never committed).
NLLOAD := .cache/bench/nlload
$(NLLOAD): bench/nlload.c
	mkdir -p $(dir $@)
	gcc -O2 -Wall -static -o $@ $<

# tests/vm includes the bench's minimal mode (tests/vm/test_bench.py). A stalled
# guest cannot fire pytest's timeouts: tools/vm stops the VM after this long.
VM_SUITE_LIMIT := NLTRACE_VM_TIMEOUT=2700
VM_MATRIX_LIMIT := NLTRACE_VM_TIMEOUT=900
test-vm: install $(NLLOAD)
	$(VM_SUITE_LIMIT) tools/vm $(PY) -m pytest -p no:cacheprovider -v --instafail --durations=0 -m "not long" tests/vm

# The kernel matrix, like pwru's: Debian's kernels before and after the 6.1 that
# test-vm boots (tools/x86-kernel unpacks them into the kernel cache), one boot
# each, with the core real-kernel tests (marked kernels): doctor against the
# kernel, strace's oracle, the genl handler, extack, broadcast copies and
# latency's exact counts of one pid (-p in the kernel). CI time keeps it to the core; every test of
# test_doctor.py, test_flow.py and test_latency.py passes on both (MATRIX_TESTS=
# those files).
MATRIX_KERNELS := 5.10 6.12
MATRIX_TESTS := -m "kernels and not long" tests/vm/test_doctor.py tests/vm/test_flow.py tests/vm/test_latency.py
test-matrix: install $(NLLOAD)
	for v in $(MATRIX_KERNELS); do NLTRACE_VM_KERNEL=$$v $(VM_MATRIX_LIMIT) tools/vm $(PY) -m pytest -p no:cacheprovider -v \
		--instafail --durations=0 $(MATRIX_TESTS) || exit 1; done

# The real-kernel tests marked long (four tracers at once, the secrets, the soak's
# short form): each passes in the VM, but with them CI would pass its time budget.
test-long: install $(NLLOAD)
	$(VM_SUITE_LIMIT) tools/vm $(PY) -m pytest -p no:cacheprovider -v --instafail --durations=0 --timeout 1800 -o faulthandler_timeout=1740 -m long tests/vm

# The armel rpi kernel, its DWARF vmlinux and the libbpf sysroot, cached in
# .cache/arm; tests/arm compares with the x86 trees test-vm leaves behind.
test-arm: install
	tools/arm/fetch
	$(PY) -m pytest -p no:cacheprovider -v -s --durations=0 tests/arm

# The AST2500 with its own kernels, cached outside the clone
# (~/.cache/nltrace/kernels): a fresh machine builds each once.
BOARD_KERNELS := 6.12 5.10
test-board: install
	tools/arm/fetch --sysroot-only
	for v in $(BOARD_KERNELS); do tools/arm/kernel $$v || exit 1; done
	NLTRACE_BOARD_KERNELS="$(BOARD_KERNELS)" $(PY) -m pytest -p no:cacheprovider -v -s --durations=0 tests/board

vm: install
	tools/vm bash -c '$(CMD)'

BENCH_OUT := .cache/vm-out/bench
soak: install $(NLLOAD)
	mkdir -p $(BENCH_OUT)
	tools/vm $(PY) bench/soak.py --nlload $(NLLOAD) --markdown $(BENCH_OUT)/soak.md
	cp $(BENCH_OUT)/soak.md bench/SOAK.md

bench: install $(NLLOAD)
	mkdir -p $(BENCH_OUT)
	$(PY) bench/throughput.py | tee $(BENCH_OUT)/throughput.jsonl
	tools/vm $(PY) bench/run.py --nlload $(NLLOAD) --out $(BENCH_OUT) \
		--host "$$(lscpu | sed -n 's/^Model name: *//p'), $$(nproc) cores"
	tools/arm/fetch --sysroot-only
	$(PY) bench/board.py --kernel "$$(tools/arm/kernel 6.12)" --out $(BENCH_OUT)
	$(PY) bench/report.py $(BENCH_OUT) > bench/RESULTS.md
