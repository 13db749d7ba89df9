"""nltrace's kernel config fragment, and the check of a target kernel's config against it.

nltrace.cfg (and, for kernels before 6.10, nltrace-before-6.10.cfg) is what
a stock OpenBMC AST2500 config needs merged in for nltrace-agent to run:
the files are part of the product (README, "The BMC"). The checks read the
same files, so the fragment and the checks cannot disagree.
"""

import gzip
import mmap
import os
import re
from importlib import resources

from nltrace.errors import NltraceError

KCONFIG_DIR = resources.files("nltrace") / "kconfig"
FRAGMENT = KCONFIG_DIR / "nltrace.cfg"
FRAGMENT_BEFORE_6_10 = KCONFIG_DIR / "nltrace-before-6.10.cfg"
# Without these the agent cannot attach at all. The fragment's other lines
# make it faster (BPF_JIT), checkable on the board (IKCONFIG_PROC) or
# buildable (full DWARF in vmlinux).
REQUIRED = ("CONFIG_BPF_SYSCALL", "CONFIG_PERF_EVENTS", "CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS",
            "CONFIG_BPF_EVENTS")
# What nltrace build reads from the vmlinux on the build host: the running
# kernel's config need not show them, so nltrace-agent --check leaves them out.
BUILD_ONLY = ("CONFIG_DEBUG_INFO", "CONFIG_DEBUG_INFO_DWARF4", "CONFIG_DEBUG_INFO_REDUCED")
_LINE = re.compile(r"^(?:(CONFIG_\w+)=(.*)|# (CONFIG_\w+) is not set)$")
# kernel/configs.c wraps the gzipped config in these markers (CONFIG_IKCONFIG)
_IKCONFIG_START, _IKCONFIG_END = b"IKCFG_ST", b"IKCFG_ED"


class ConfigError(NltraceError):
    pass


def parse(text):
    """A .config's text -> {option: value}; an option "is not set" is "n"."""
    config = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            config[m.group(1) or m.group(3)] = "n" if m.group(3) else m.group(2)
    return config


def fragments(release):
    """The fragment files a kernel of this release needs, in merge order."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    before_6_10 = m is not None and (int(m.group(1)), int(m.group(2))) < (6, 10)
    return [FRAGMENT, FRAGMENT_BEFORE_6_10] if before_6_10 else [FRAGMENT]


def wanted(release):
    """{option: value} of the fragments for this release."""
    out = {}
    for path in fragments(release):
        out.update(parse(path.read_text()))
    return out


def image_config(vmlinux):
    """The config embedded in a kernel image (CONFIG_IKCONFIG), or None."""
    with open(vmlinux, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as image:
        start = image.find(_IKCONFIG_START)
        if start < 0:
            return None
        end = image.find(_IKCONFIG_END, start)
        if end < 0:
            return None
        try:
            return gzip.decompress(image[start + len(_IKCONFIG_START):end]).decode("utf-8", "replace")
        except (OSError, EOFError):
            return None


def read_config(vmlinux=None, config_path=None):
    """(the target's {option: value}, where it came from), or None: from
    config_path, else the .config beside vmlinux (a build tree), else the
    config embedded in the image."""
    if config_path:
        try:
            with open(config_path) as f:
                return parse(f.read()), config_path
        except OSError as e:
            raise ConfigError(f"cannot read the kernel config {config_path}: {e.strerror}") from None
    if vmlinux:
        beside = os.path.join(os.path.dirname(os.path.abspath(vmlinux)), ".config")
        if os.path.exists(beside):
            with open(beside) as f:
                return parse(f.read()), beside
        text = image_config(vmlinux)
        if text is not None:
            return parse(text), f"the config embedded in {vmlinux}"
    return None


def differences(config, release):
    """[(option, wanted value, the config's value)] where the config is not
    what the fragments set, required options first."""
    out = [(option, value, config.get(option, "n")) for option, value in wanted(release).items()
           if config.get(option, "n") != value]
    return sorted(out, key=lambda d: d[0] not in REQUIRED)
