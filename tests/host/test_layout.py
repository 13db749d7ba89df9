"""Struct offsets from pahole output."""

from pathlib import Path

import pytest

from nltrace.kernel import layout as layout_module
from nltrace.kernel.btf import BTF_VMLINUX
from nltrace.kernel.layout import LayoutError, layout_cflags, members_used, parse_pahole, read_layout

# Cut from `pahole -C sk_buff,genl_ops` on Debian's 6.1.0-56-amd64 BTF.
PAHOLE = """struct sk_buff {
	union {
		struct {
			struct sk_buff *   next;                 /*     0     8 */
			struct sk_buff *   prev;                 /*     8     8 */
		};
		struct rb_node     rbnode;               /*     0    24 */
	};                                               /*     0    24 */
	union {
		struct sock *      sk;                   /*    24     8 */
		int                ip_defrag_offset;     /*    24     4 */
	};                                               /*    24     8 */
	unsigned int               len;                  /*   112     4 */
	__u8                       pkt_type:3;           /*   128: 0  1 */
	struct {
		unsigned int       len;                  /*   500     4 */
	} named_inner;                                   /*   500     4 */
	unsigned char *            data;                 /*   200     8 */
};
struct genl_ops {
	int                        (*doit)(struct sk_buff *, struct genl_info *); /*     0     8 */
	int                        (*dumpit)(struct sk_buff *, struct netlink_callback *); /*    16     8 */
	char                       name[16];             /*    24    16 */

	/* size: 48, cachelines: 1, members: 10 */
};
"""


def test_parse_pahole_members():
    layout = parse_pahole(PAHOLE)
    assert layout[("sk_buff", "len")] == (112, 4)       # the outer len, not the inner struct's
    assert layout[("sk_buff", "data")] == (200, 8)
    assert layout[("sk_buff", "sk")] == (24, 8)          # inside an anonymous union
    assert layout[("genl_ops", "doit")] == (0, 8)        # function pointers
    assert layout[("genl_ops", "dumpit")] == (16, 8)
    assert layout[("genl_ops", "name")] == (24, 16)      # arrays
    assert ("sk_buff", "pkt_type") not in layout         # bitfields cannot be read whole
    assert layout[("genl_ops", None)] == (0, 48)         # the struct's own size
    assert ("sk_buff", None) not in layout


def test_members_used_are_found_in_the_source():
    src = ("NLT_READ(len, skb, sk_buff, len);\nx = NLT_ADDR(skb, sk_buff, data);\n"
           "NLT_READ(t->a.b, f, genl_family, name);")
    assert members_used(src) == {("sk_buff", "len"), ("sk_buff", "data"), ("genl_family", "name")}
    assert ("sock", "sk_protocol") in members_used()
    assert ("genl_small_ops", None) in members_used()    # NLT_SIZEOF(genl_small_ops)


def test_cflags():
    assert layout_cflags({("sk_buff", "len"): (112, 4), ("genl_ops", None): (0, 48)}) == [
        "-DNLT_SIZEOF_genl_ops=48", "-DNLT_OFF_sk_buff_len=112", "-DNLT_SIZE_sk_buff_len=4"]


def test_an_optional_struct_is_left_out_where_the_kernel_lacks_it(monkeypatch):
    # genl_split_ops came with 6.2: a kernel without it still gets a layout, and no NLT_HAVE_ flag
    monkeypatch.setattr(layout_module, "_pahole", lambda image, structs: parse_pahole(PAHOLE))
    members = {("genl_ops", "doit"), ("genl_split_ops", "doit")}
    layout = read_layout("vmlinux", members)
    assert layout == {("genl_ops", "doit"): (0, 8)}
    assert not [f for f in layout_cflags(layout) if f.startswith("-DNLT_HAVE_")]
    assert "-DNLT_HAVE_genl_split_ops=1" in layout_cflags({("genl_split_ops", "doit"): (8, 8)})
    # a struct every kernel must have is an error
    with pytest.raises(LayoutError, match="sock.sk_protocol"):
        read_layout("vmlinux", members | {("sock", "sk_protocol")})


@pytest.mark.skipif(not Path(BTF_VMLINUX).exists(), reason=f"this machine has no {BTF_VMLINUX}")
def test_one_pahole_call_reads_every_struct_when_an_optional_one_is_missing(monkeypatch):
    # pahole stops at the first -C struct it cannot find: run on this machine's real BTF, with an
    # optional struct no kernel has, every struct the programs read comes from the first call
    members = {(t, m) for t, m in members_used() if t not in layout_module.OPTIONAL_STRUCTS}
    monkeypatch.setattr(layout_module, "OPTIONAL_STRUCTS", frozenset({"aaa_nltrace_absent"}))
    calls = []
    real = layout_module._pahole
    monkeypatch.setattr(layout_module, "_pahole", lambda image, structs: calls.append(structs) or real(image, structs))
    layout = read_layout(BTF_VMLINUX, members | {("aaa_nltrace_absent", "x")})
    assert set(layout) == members
    assert len(calls) == 1 and calls[0][-1] == "aaa_nltrace_absent"
