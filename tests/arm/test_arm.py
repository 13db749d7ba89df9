"""The BMC path on an emulated ARMv6 board: `nltrace build --target armv6`
against Debian's armel rpi kernel (its -dbg vmlinux, no BTF), then ONE boot
of that kernel under qemu-system-arm -M raspi1ap (tools/arm/boot) that runs
the agent with the BPF JIT on and then off, each time with
tests/clients/workload.sh (tests/harness/board.py: the script and the
checks, shared with tests/board). The streams come back over the serial
console and are read here with `nltrace flow/latency --input`, the way a
user reads them from a BMC.

The trees are compared with the x86 agent's for the same workload, which
tests/vm/test_agent.py leaves in $NLTRACE_VM_OUT/agent-x86/reference.json
(make test runs test-vm before test-arm).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from harness.board import (AGENT_RUNS, ARM_CACHE, build_and_boot, test_agent_size,  # noqa: E402,F401
                           test_flow_programs_run_jit_compiled, test_latency_counts_exactly,
                           test_text_mode_and_jit_setting, test_trees_match_x86)

VMLINUX = os.path.join(ARM_CACHE, "kernel", "vmlinux")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Build, boot once, and return the directory the board's files came back to."""
    if not os.path.exists(VMLINUX):
        pytest.fail(f"no ARM kernel in {ARM_CACHE}: run tools/arm/fetch (make test-arm does)")
    return build_and_boot(tmp_path_factory, VMLINUX, AGENT_RUNS)
