"""What `nltrace build` learns from the target's kernel image, before building.

A vmlinux ELF (with DWARF, as Debian's -dbg packages ship it) is read with
pyelftools: its architecture, its release (from linux_banner) and its symbol
names. A kernel at hand only as BTF (/sys/kernel/btf/vmlinux) comes with its
System.map instead. Struct layouts are not read here: pahole reads them from
the same vmlinux's DWARF, or from the BTF (nltrace/kernel/layout.py).
"""

import re
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from nltrace.errors import NltraceError


class ImageError(NltraceError):
    pass


@dataclass
class KernelImage:
    machine: str           # ELF e_machine: "EM_ARM", "EM_X86_64"; None when unknown (System.map)
    bits: int              # 32 or 64; None when unknown
    little_endian: bool
    release: str
    symbols: dict          # every symbol name (functions, data, tracepoints) -> its address
    layout_source: str     # what pahole reads the struct layouts from


_BANNER = re.compile(rb"Linux version (\S+)")


def from_vmlinux(path):
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror}") from None
    with f:
        try:
            elf = ELFFile(f)
        except ELFError as e:
            raise ImageError(f"{path} is not an ELF vmlinux ({e}); for a kernel known only by its "
                             "BTF, give --btf and --system-map") from None
        symtab = elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise ImageError(f"{path} has no symbol table (stripped?): use the vmlinux from the "
                             "kernel's -dbg package or build tree")
        symbols, banner = {}, None
        for sym in symtab.iter_symbols():
            if sym.name:
                symbols.setdefault(sym.name, sym["st_value"])
            if sym.name == "linux_banner":
                banner = sym
        if elf.get_section_by_name(".debug_info") is None and elf.get_section_by_name(".BTF") is None:
            raise ImageError(f"{path} has neither DWARF nor BTF, so no struct layouts: use the vmlinux "
                             "from the kernel's -dbg package or build tree")
        return KernelImage(elf["e_machine"], elf.elfclass, elf.little_endian,
                           _release(elf, banner, path), symbols, path)


def _release(elf, banner, path):
    if banner is None:
        raise ImageError(f"{path} has no linux_banner symbol: is it a kernel?")
    section = elf.get_section(banner["st_shndx"])
    start = banner["st_value"] - section["sh_addr"]
    m = _BANNER.match(section.data()[start:start + banner["st_size"]])
    if not m:
        raise ImageError(f"{path}: linux_banner does not name a release")
    return m.group(1).decode()


def from_btf(btf_path, system_map, release=None):
    """A kernel known by its BTF and System.map; the release comes from the
    map's name (System.map-<release>) unless given."""
    try:
        with open(system_map) as f:
            symbols = {}
            for parts in (line.split() for line in f):
                if len(parts) >= 3:
                    symbols.setdefault(parts[2], int(parts[0], 16))
        open(btf_path, "rb").close()
    except OSError as e:
        raise ImageError(f"cannot read {e.filename}: {e.strerror}") from None
    m = re.search(r"System\.map-(.+)$", system_map)
    release = release or (m and m.group(1))
    if not release:
        raise ImageError(f"cannot tell the kernel release from {system_map}'s name: give --release")
    return KernelImage(None, None, True, release, symbols, btf_path)
