"""Struct layouts of the kernel the programs will run on.

The kernel programs read kernel structs only through NLT_READ/NLT_ADDR(ptr,
tag, member) and step through arrays of them with NLT_SIZEOF(tag); this module
finds those members and sizes in the sources and asks pahole
(dwarves) for their offsets and sizes, from the running kernel's BTF or from
a vmlinux's DWARF. pahole is the well-kept reader of both formats; offsets
differ between builds of the same kernel version, so they are never tabled.
"""

import re
import shutil
import subprocess

from nltrace.bpf import SOURCES
from nltrace.kernel.btf import BTF_VMLINUX


_USE = re.compile(r"NLT_(?:READ|ADDR)\([^;]*?,\s*(\w+),\s*(\w+)\)")
_SIZEOF = re.compile(r"NLT_SIZEOF\((\w+)\)")
_STRUCT_SIZE = re.compile(r"^\t/\* size: (\d+),")
# A member line of pahole's output: "<tab>type name[N]; /* offset size */",
# where a function pointer's name sits in "(*name)(...)".
_MEMBER = re.compile(r"^(\t+)(?P<decl>.*?);\s*/\*\s*(?P<off>\d+)(?::\d+)?\s+(?P<size>\d+)\s*\*/")
_NAME = re.compile(r"\(\*\s*(\w+)\)\s*\(|(\w+)\s*(?:\[\d+\])?\s*$")


# Structs only some kernels have: where one is found, layout_cflags defines
# NLT_HAVE_<tag>, which the programs test. genl_split_ops (6.2+): the op
# genl_family_rcv_msg_doit/dumpit get, in place of a genl_ops.
OPTIONAL_STRUCTS = frozenset({"genl_split_ops"})


class LayoutError(Exception):
    pass


def members_used(source=None):
    """{(struct tag, member)} read by the BPF programs; (struct tag, None)
    for a struct whose size they use. Macro definitions are not uses."""
    text = source if source is not None else "\n".join(path.read_text() for path in SOURCES)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("#define"))
    return set(_USE.findall(text)) | {(tag, None) for tag in _SIZEOF.findall(text)}


def parse_pahole(text):
    """pahole's C-like output -> {(struct, member): (offset, size)}, and
    {(struct, None): (0, size of the struct)}. Members of anonymous
    unions/structs are kept (pahole gives offsets from the top), members of
    named inner structs are not, and the outermost occurrence wins."""
    out, depth_of = {}, {}
    struct = None
    for line in text.splitlines():
        head = re.match(r"^struct (\w+) \{", line)
        if head:
            struct = head.group(1)
            continue
        if line.startswith("}"):
            struct = None
            continue
        size = _STRUCT_SIZE.match(line) if struct else None
        if size:
            out[(struct, None)] = (0, int(size.group(1)))
            continue
        m = _MEMBER.match(line) if struct else None
        if not m:
            continue
        if ":" in line.split("/*", 1)[1].split("*/", 1)[0]:
            continue   # a bitfield: not readable as a whole member
        name = _NAME.search(m.group("decl"))
        if not name:
            continue
        key = (struct, name.group(1) or name.group(2))
        depth = len(m.group(1))
        if key not in out or depth < depth_of[key]:
            out[key] = (int(m.group("off")), int(m.group("size")))
            depth_of[key] = depth
    return out


def read_layout(image=BTF_VMLINUX, members=None):
    """Offsets and sizes of the members the program reads, from image (a BTF
    file or a vmlinux with DWARF)."""
    members = members or members_used()
    if not shutil.which("pahole"):
        raise LayoutError("pahole is not installed (apt-get install dwarves)")
    # pahole 1.24 stops at the first struct of -C it does not find: the ones
    # only some kernels have go last (one call instead of one per struct).
    structs = sorted({tag for tag, _ in members}, key=lambda tag: (tag in OPTIONAL_STRUCTS, tag))
    found = _pahole(image, structs)
    # It also stops early on some DWARF vmlinux (an ARM 5.10 build: after
    # struct net): where a struct every kernel has is missing, ask again for each one missing.
    unread = sorted({t for t, m in members if (t, m) not in found})
    if set(unread) - OPTIONAL_STRUCTS:
        for tag in unread:
            found.update(_pahole(image, [tag]))
    absent = {t for t, m in members if (t, m) not in found}
    missing = sorted(f"{t}.{m or 'size'}" for t, m in members if t not in OPTIONAL_STRUCTS and (t, m) not in found)
    if missing:
        raise LayoutError(f"{image} has no member {', '.join(missing)}")
    # what is absent now is an optional struct: left out whole, so that NLT_HAVE_<tag> means all of it
    return {(t, m): found[(t, m)] for t, m in members if t not in absent}


def _pahole(image, structs):
    proc = subprocess.run(["pahole", "-C", ",".join(structs), image], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LayoutError(f"pahole could not read {image}: {proc.stderr.strip()}")
    return parse_pahole(proc.stdout)


def layout_cflags(layout):
    flags = [f"-DNLT_HAVE_{tag}=1" for tag in sorted(OPTIONAL_STRUCTS & {t for t, _ in layout})]
    for (tag, member), (offset, size) in sorted(layout.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if member is None:
            flags.append(f"-DNLT_SIZEOF_{tag}={size}")
        else:
            flags += [f"-DNLT_OFF_{tag}_{member}={offset}", f"-DNLT_SIZE_{tag}_{member}={size}"]
    return flags
