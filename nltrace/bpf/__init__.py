"""The kernel programs: one BPF source per mode, the tree walk they share, and
how the BCC path reads them.

Every loader, layout.py and the tests take the sources from here.
"""

import re
from importlib import resources

BPF_DIR = resources.files(__name__)
# mode -> its program (`nltrace build` compiles each one; BCC the one it runs)
PROGRAMS = {"flow": BPF_DIR / "flow.bpf.c", "latency": BPF_DIR / "latency.bpf.c"}
TREE_WALK = BPF_DIR / "tree.bpf.h"
SOURCES = (TREE_WALK, *PROGRAMS.values())

_LOCAL_BPF_INCLUDE = re.compile(r'^#include "(\w+\.bpf\.h)"$', re.M)


def bcc_text(mode):
    """The program of mode as BCC is given it: with tree.bpf.h pasted in,
    because BCC rewrites map calls (threads.lookup(), ...) only in the text it
    compiles, not in the files that text includes."""
    return _LOCAL_BPF_INCLUDE.sub(lambda m: (BPF_DIR / m.group(1)).read_text(), PROGRAMS[mode].read_text())
