"""Secrets kept out of everything nltrace writes: the key bytes some netlink
messages carry (IPsec SAs, WireGuard and MACsec keys, Wi-Fi keys, SRv6 HMAC
and TIPC secrets) are overwritten in each raw record as it arrives, before
anything shows, records or exports it.

SECRETS (generic netlink, by family name) and XFRM_* (NETLINK_XFRM, by
message type) are the one table of what carries a secret. They name
attributes and structs as the kernel's uapi headers do, and no number is
typed here: the table's (attribute and message types, struct sizes and
offsets) are read from the uapi headers on this machine (their enums with
nltrace/uapi.py's preprocessor and cffi, at the start; their structs with
pycparser and cffi, when first needed); netlink's own (control types,
flags, nlctrl, header sizes) come from pyroute2, as nltrace/decode.py's do.

redactor() makes the function a run passes each raw record through. It
walks every netlink message of a record's captured bytes (and the request
an error ack echoes) of a protocol that has secrets, and overwrites each
secret's payload with MARK, keeping every length, so the message still
parses. A secret that the capture's end cuts is overwritten up to that end.
A malformed length (under a header's, or past what holds it) ends the walk
of what holds it, whose bytes from there on are overwritten: what cannot be
read cannot be said to hold no secret (and the kernel reads no further).
It also zeroes the bytes of msg[] past msg_len: the kernel program reuses
each thread's record, so they hold that thread's earlier messages, and a
recorded stream would keep them.

The generic netlink family of a message comes from its type, whose id the
kernel gives each family at registration: a run's redactor learns id -> name
from the records themselves (the family name the dispatch recorded, and
nlctrl's NEWFAMILY replies and events) and, live, from the kernel's own list
(kernel_genl_families). A reply or event of a family it has not learned
(none of its requests seen, none of its registration) is not recognised.
"""

import functools
import re
import shutil
import socket
import struct
import subprocess

import cffi
import pyroute2.netlink as nl
from pycparser import c_ast, c_generator, c_parser

from nltrace import records, uapi
from nltrace.errors import NltraceError

MARK = b"*"   # not 0: a WireGuard private key of zeros means "remove it"


class CannotRedact(NltraceError):
    """The uapi headers that say where secrets lie cannot be read."""


class Blank:
    """Overwrite the attribute's payload, from the field `after` of `struct`
    (declared in `header`) on: an algorithm's name and key length stay
    readable, its key does not. Without a struct: the whole payload."""

    def __init__(self, header=None, struct_=None, after=None):
        self.header, self.struct, self.after = header, struct_, after


class Nest:
    """A nested attribute: the secrets among its attributes."""

    def __init__(self, attrs):
        self.attrs = attrs


class Each(Nest):
    """A nested array: each of its attributes a nest holding attrs."""


KEY = Blank()

# Generic netlink: family (as the kernel registers it; its *_GENL_NAME) ->
# (uapi header naming its attributes, {attribute: what to overwrite}).
# Each of these families has no family header (hdrsize 0): its attributes
# follow struct genlmsghdr.
SECRETS = {
    "wireguard": ("linux/wireguard.h", {
        "WGDEVICE_A_PRIVATE_KEY": KEY,
        "WGDEVICE_A_PEERS": Each({"WGPEER_A_PRESHARED_KEY": KEY}),
    }),
    "macsec": ("linux/if_macsec.h", {
        "MACSEC_ATTR_SA_CONFIG": Nest({"MACSEC_SA_ATTR_KEY": KEY}),
    }),
    "nl80211": ("linux/nl80211.h", {
        "NL80211_ATTR_KEY_DATA": KEY,
        "NL80211_ATTR_KEY": Nest({"NL80211_KEY_DATA": KEY}),
        "NL80211_ATTR_KEYS": Each({"NL80211_KEY_DATA": KEY}),
        "NL80211_ATTR_PMK": KEY,
        "NL80211_ATTR_SAE_PASSWORD": KEY,
        "NL80211_ATTR_FILS_KEK": KEY,
        "NL80211_ATTR_FILS_ERP_RRK": KEY,
        "NL80211_ATTR_REKEY_DATA": Nest({"NL80211_REKEY_DATA_KEK": KEY, "NL80211_REKEY_DATA_KCK": KEY}),
    }),
    "SEG6": ("linux/seg6_genl.h", {
        "SEG6_ATTR_SECRET": KEY,
    }),
    "TIPCv2": ("linux/tipc_netlink.h", {
        "TIPC_NLA_NODE": Nest({"TIPC_NLA_NODE_KEY": Blank("linux/tipc.h", "struct tipc_aead_key", "key")}),
    }),
}

# NETLINK_XFRM: the messages that carry an SA's algorithms (NEWSA: requests,
# GETSA's replies and dumps, events; UPDSA; DELSA's event, whose XFRMA_SA
# holds the SA and whose algorithms follow as attributes), each with the
# fixed header before its attributes; and the algorithm attributes, each
# overwritten from its key on (its alg_name and lengths stay).
XFRM_HEADER = "linux/xfrm.h"
XFRM_MESSAGES = {
    "XFRM_MSG_NEWSA": "struct xfrm_usersa_info",
    "XFRM_MSG_UPDSA": "struct xfrm_usersa_info",
    "XFRM_MSG_DELSA": "struct xfrm_usersa_id",
}
XFRM_ATTRS = {
    "XFRMA_ALG_AUTH": Blank(XFRM_HEADER, "struct xfrm_algo", "alg_key"),
    "XFRMA_ALG_CRYPT": Blank(XFRM_HEADER, "struct xfrm_algo", "alg_key"),
    "XFRMA_ALG_AEAD": Blank(XFRM_HEADER, "struct xfrm_algo_aead", "alg_key"),
    "XFRMA_ALG_AUTH_TRUNC": Blank(XFRM_HEADER, "struct xfrm_algo_auth", "alg_key"),
}


# --- the numbers ---
# netlink's own (netlink.h, genetlink.h: protocols, control types, flags,
# nlctrl, header sizes) from pyroute2, as nltrace/decode.py takes them; the
# table's from the uapi headers.


def _header_size(fields):
    return _align(struct.calcsize("=" + "".join(kind for _, kind in fields)))


@functools.lru_cache(maxsize=None)
def _layouts(headers):
    """A cffi FFI holding the structs of headers (and of what they include),
    laid out as this machine's C compiler would; None if they cannot be read.
    Read on first use: it takes a few tenths of a second."""
    cpp = shutil.which("cpp")
    if cpp is None:
        return None
    source = "".join(f"#include <{header}>\n" for header in headers)
    done = subprocess.run([cpp, *uapi._CPP_DEFINES, "-"], input=source, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    # pycparser (cffi's front end) reads them whole; cffi gets their
    # declarations but the function bodies (tipc.h has inline ones) and
    # those sized with sizeof, which cffi does not evaluate (socket.h's,
    # posix_types.h's: no struct here uses them).
    try:
        ast = c_parser.CParser().parse(done.stdout, filename="<uapi>")
        generator = c_generator.CGenerator()
        kept = [text for text in (generator.visit(node) + ";" for node in ast.ext
                                  if not isinstance(node, c_ast.FuncDef))
                if "sizeof" not in text]
        ffi = cffi.FFI()
        ffi.cdef("\n".join(kept))
    except Exception:   # pycparser and cffi raise several types for what they do not take
        return None
    return ffi


class _Later:
    """A size or an offset in a uapi struct, read when first needed (the
    structs cost more to read than the enums); `fallback` if they cannot
    be read, which overwrites more rather than less."""

    def __init__(self, header, struct_, field=None, fallback=0):
        self.header, self.struct, self.field, self.fallback = header, struct_, field, fallback
        self.value, self.read = None, False

    def get(self):
        if not self.read:
            self.read = True
            ffi = _layouts((self.header,))
            try:
                if self.field is None:
                    self.value = _align(ffi.sizeof(self.struct))
                else:
                    self.value = ffi.offsetof(self.struct, self.field)
            except (AttributeError, cffi.CDefError, cffi.FFIError, KeyError, TypeError):
                self.value = self.fallback
        return self.value


@functools.lru_cache(maxsize=None)
def _enum_values(headers, names):
    """{enumerator: value} of the enums of headers (one preprocessor run)
    that declare any of names: only those are evaluated (nl80211.h's are many)."""
    first, *rest = headers
    text = uapi._preprocess(first, source="".join(f"#include <{header}>\n" for header in rest))
    wanted = re.compile(r"\b(?:" + "|".join(names) + r")\b")
    values = {}
    for _, body in uapi._ENUM.findall(text):
        if wanted.search(body):
            values.update(uapi._evaluate(body))
    missing = sorted(set(names) - set(values))
    if missing:
        raise CannotRedact(f"cannot read {', '.join(missing)} from the uapi headers ({', '.join(headers)}): "
                           "are linux-libc-dev and cpp installed (5.10's or newer)?")
    return values


def _attr_names(attrs):
    for name, what in attrs.items():
        yield name
        if isinstance(what, Nest):
            yield from _attr_names(what.attrs)


def _spec(values, attrs):
    """{attribute type: (offset, None)}: overwrite its payload from offset
    (an int, or a _Later) on; (None, nested spec): a nest; (None, (nested
    spec,)): a nested array."""
    out = {}
    for name, what in attrs.items():
        if isinstance(what, Each):
            out[values[name]] = (None, (_spec(values, what.attrs),))
        elif isinstance(what, Nest):
            out[values[name]] = (None, _spec(values, what.attrs))
        elif what.struct is None:
            out[values[name]] = (0, None)
        else:
            out[values[name]] = (_Later(what.header, what.struct, what.after), None)
    return out


class _Numbers:
    """Everything the walk needs. netlink's own numbers (protocols, control
    types, flags, nlctrl, header sizes: netlink.h's and genetlink.h's) come
    from pyroute2, as nltrace/decode.py takes them; the table's from the
    uapi headers: their enums here (raising CannotRedact if one is
    missing), their structs on first use."""

    def __init__(self):
        self.netlink_generic, self.netlink_xfrm = nl.NETLINK_GENERIC, nl.NETLINK_XFRM
        self.nlmsg_error, self.nlmsg_done, self.nlmsg_min_type = nl.NLMSG_ERROR, nl.NLMSG_DONE, nl.NLMSG_MIN_TYPE
        self.nlm_f_capped, self.nlm_f_request, self.nlm_f_dump = nl.NLM_F_CAPPED, nl.NLM_F_REQUEST, nl.NLM_F_DUMP
        self.nla_type_mask = 0xffff & ~(nl.NLA_F_NESTED | nl.NLA_F_NET_BYTEORDER)    # NLA_TYPE_MASK
        self.nlmsg_hdrlen = _header_size(nl.nlmsg.header)
        self.nla_hdrlen = _header_size(nl.nla.header)
        self.genl_hdrlen = _header_size(nl.genlmsg.fields)
        self.echoed_at = _header_size(nl.nlmsgerr.fields)     # struct nlmsgerr: the error, then the request
        self.genl_id_ctrl = nl.GENL_ID_CTRL
        self.ctrl_newfamily, self.ctrl_delfamily = nl.CTRL_CMD_NEWFAMILY, nl.CTRL_CMD_DELFAMILY
        self.ctrl_getfamily = nl.CTRL_CMD_GETFAMILY
        self.ctrl_family_id, self.ctrl_family_name = nl.CTRL_ATTR_FAMILY_ID, nl.CTRL_ATTR_FAMILY_NAME

        headers = tuple(sorted({header for header, _ in SECRETS.values()} | {XFRM_HEADER}))
        names = set(XFRM_MESSAGES) | set(_attr_names(XFRM_ATTRS))
        for _, attrs in SECRETS.values():
            names |= set(_attr_names(attrs))
        values = _enum_values(headers, tuple(sorted(names)))
        self.genl = {family: _spec(values, attrs) for family, (_, attrs) in SECRETS.items()}
        self.xfrm = _spec(values, XFRM_ATTRS)
        # a fixed header that cannot be read: the whole body is overwritten
        self.xfrm_headers = {values[name]: _Later(XFRM_HEADER, struct_, fallback=None)
                             for name, struct_ in XFRM_MESSAGES.items()}


def _align(n):
    return (n + 3) & ~3     # NLMSG_ALIGN, NLA_ALIGN


@functools.lru_cache(maxsize=None)
def numbers():
    """The table's numbers; raises CannotRedact without the uapi headers."""
    return _Numbers()


# --- the walk ---

_NLMSGHDR = struct.Struct("=IHH")
_NLATTR = struct.Struct("=HH")
_U16 = struct.Struct("=H")

_MSG_AT = records.ffi.offsetof("struct nlt_record", "msg")
_CAPTURE = records.C.NLT_MSG_CAPTURE
_MSG_END = _MSG_AT + _CAPTURE
_FAMILY_AT = records.ffi.offsetof("struct nlt_record", "genl_family")
_FAMILY_END = _FAMILY_AT + records.C.NLT_GENL_NAMSIZ
# protocol, nr_nodes, msg_len, flags: adjacent in struct nlt_record
_HEAD_AT = records.ffi.offsetof("struct nlt_record", "protocol")
_HEAD = struct.Struct("=HHHH")
assert [records.ffi.offsetof("struct nlt_record", f) - _HEAD_AT for f in ("nr_nodes", "msg_len", "flags")] == [2, 4, 6]
_TOTAL_AT = records.ffi.offsetof("struct nlt_record", "msg_total_len")
_TOTAL = struct.Struct("=I")
_SOCKET = records.C.NLT_REC_SOCKET
_ZERO_RUNS = [bytes(n) for n in range(_CAPTURE + 1)]


def _overwrite(buf, lo, hi):
    """MARK over buf[lo:hi]; whether anything changed."""
    if lo >= hi or buf[lo:hi] == MARK * (hi - lo):
        return False
    buf[lo:hi] = MARK * (hi - lo)
    return True


class Redactor:
    """Redactor()(raw) -> raw, or a copy of it with its secrets overwritten
    and its unused msg[] bytes zeroed (the same object when there is nothing
    to change). Keeps what it learns of generic netlink family ids across
    the records of one run: use one per run (redactor() wraps one in a
    faster first look). keep_secrets: zero the unused bytes only
    (--unredacted-secrets). zero_unused=False: leave them (flow, the
    exports: they read msg_len bytes only; record writes all of msg[]).
    families: {id: name} known already (kernel_genl_families(), live).
    Raises CannotRedact when the uapi headers cannot be read (not with
    keep_secrets)."""

    def __init__(self, families=None, keep_secrets=False, zero_unused=True):
        self.zero_unused = zero_unused
        self.families = dict(families or {})
        if keep_secrets:
            self.n = None
            self.protocols = frozenset()
        else:
            self.n = numbers()
            self.protocols = frozenset((self.n.netlink_generic, self.n.netlink_xfrm))
            self.families[self.n.genl_id_ctrl] = "nlctrl"

    def __call__(self, raw):
        if len(raw) < _MSG_END:
            return raw      # not a record: parse_record says so
        protocol, _, msg_len, flags = _HEAD.unpack_from(raw, _HEAD_AT)
        if msg_len > _CAPTURE:
            msg_len = _CAPTURE
        end = _MSG_AT + msg_len
        clean = not self.zero_unused or raw.startswith(_ZERO_RUNS[_CAPTURE - msg_len], end)
        secret = protocol in self.protocols and not flags & _SOCKET
        if not secret:
            return raw if clean else raw[:end] + _ZERO_RUNS[_CAPTURE - msg_len] + raw[_MSG_END:]
        buf = bytearray(raw)
        if not clean:
            buf[end:_MSG_END] = _ZERO_RUNS[_CAPTURE - msg_len]
        family = None
        if protocol == self.n.netlink_generic and raw[_FAMILY_AT]:
            family = raw[_FAMILY_AT:_FAMILY_END].split(b"\0", 1)[0].decode("ascii", "replace")
        # the skb's length bounds its messages; the capture, what there is of them
        total = _TOTAL.unpack_from(raw, _TOTAL_AT)[0]
        changed = self._messages(buf, _MSG_AT, _MSG_AT + max(total, msg_len), end, protocol, family)
        return bytes(buf) if changed or not clean else raw

    def _messages(self, buf, at, limit, cap, protocol, family, echoed=False):
        """Each message of buf[at:limit], read up to cap (the capture's
        end), or one only (echoed: the request an error ack holds). family:
        the genl family the record's dispatch named, that of its first
        message of a family's type."""
        n = self.n
        changed = False
        end = min(limit, cap)
        while at + n.nlmsg_hdrlen <= end:
            length, msg_type, msg_flags = _NLMSGHDR.unpack_from(buf, at)
            stop = at + length
            if length < n.nlmsg_hdrlen or stop > limit:     # netlink_rcv_skb stops there too
                return _overwrite(buf, at, end) or changed
            cut = min(stop, end)
            body = at + n.nlmsg_hdrlen
            if msg_type == n.nlmsg_error:
                if not echoed and not msg_flags & n.nlm_f_capped:
                    changed |= self._messages(buf, body + n.echoed_at, stop, cut, protocol, None, echoed=True)
            elif protocol == n.netlink_xfrm:
                header = n.xfrm_headers.get(msg_type)
                if header is not None:
                    size = header.get()
                    if size is None or body + size > stop:    # its fixed header unknown, or longer than it
                        changed |= _overwrite(buf, body, cut)
                    else:
                        changed |= _attrs(buf, body + size, stop, cut, n.xfrm, n)
            elif msg_type >= n.nlmsg_min_type:
                if family:
                    # The first message the kernel dispatched named its
                    # family (a message it refused before its dispatch would
                    # misname it: a family is learned again at each record).
                    if msg_type != n.genl_id_ctrl:
                        self.families[msg_type] = family
                    family = None
                name = self.families.get(msg_type)
                if name == "nlctrl":
                    self._learn(buf, at, cut)
                else:
                    spec = n.genl.get(name)
                    if spec is not None:
                        if body + n.genl_hdrlen > stop:
                            changed |= _overwrite(buf, body, cut)
                        else:
                            changed |= _attrs(buf, body + n.genl_hdrlen, stop, cut, spec, n)
            if echoed:
                break
            at += _align(length)
        return changed

    def _learn(self, buf, at, stop):
        """An nlctrl message: a NEWFAMILY (a GETFAMILY's reply, a family's
        registration) gives an id its family; a DELFAMILY takes it back."""
        n = self.n
        body = at + n.nlmsg_hdrlen
        if body + n.genl_hdrlen > stop or buf[body] not in (n.ctrl_newfamily, n.ctrl_delfamily):
            return
        family_id = name = None
        at = body + n.genl_hdrlen
        while at + n.nla_hdrlen <= stop:
            nla_len, nla_type = _NLATTR.unpack_from(buf, at)
            if nla_len < n.nla_hdrlen or at + nla_len > stop:
                break
            nla_type &= n.nla_type_mask
            if nla_type == n.ctrl_family_id and nla_len >= n.nla_hdrlen + 2:
                family_id = _U16.unpack_from(buf, at + n.nla_hdrlen)[0]
            elif nla_type == n.ctrl_family_name:
                name = bytes(buf[at + n.nla_hdrlen:at + nla_len]).split(b"\0", 1)[0].decode("ascii", "replace")
            at += _align(nla_len)
        if family_id is None or family_id == n.genl_id_ctrl:
            return
        if buf[body] == n.ctrl_delfamily:
            self.families.pop(family_id, None)
        elif name:
            self.families[family_id] = name


def _attributes(buf, at, limit, n):
    """(start, type, end) of each attribute of buf[at:limit] whose header
    is within buf; a malformed length (under a header's, or past limit)
    ends the walk with (start, None, None)."""
    while at + n.nla_hdrlen <= len(buf):
        nla_len, nla_type = _NLATTR.unpack_from(buf, at)
        if nla_len < n.nla_hdrlen or at + nla_len > limit:
            yield at, None, None
            return
        yield at, nla_type, at + nla_len
        at += _align(nla_len)


def _attrs(buf, at, limit, cap, spec, n):
    """Overwrite what spec names among the attributes of buf[at:limit],
    read up to cap (the capture's end); whether anything changed. An
    attribute cut by cap is overwritten up to cap; a malformed length (under
    a header's, or past limit) overwrites all from it on."""
    changed = False
    end = min(limit, cap)
    for at, nla_type, stop in _attributes(memoryview(buf)[:end], at, limit, n):
        if nla_type is None:
            return _overwrite(buf, at, end) or changed
        what = spec.get(nla_type & n.nla_type_mask)
        if what is not None:
            offset, nested = what
            payload, cut = at + n.nla_hdrlen, min(stop, end)
            if offset is not None:
                if offset.__class__ is _Later:
                    offset = offset.get()
                changed |= _overwrite(buf, payload + offset, cut)
            elif nested.__class__ is tuple:     # a nested array: each of its attributes a nest
                changed |= _each(buf, payload, stop, cut, nested[0], n)
            else:
                changed |= _attrs(buf, payload, stop, cut, nested, n)
    return changed


def _each(buf, at, limit, cap, spec, n):
    changed = False
    end = min(limit, cap)
    for at, nla_type, stop in _attributes(memoryview(buf)[:end], at, limit, n):
        if nla_type is None:
            return _overwrite(buf, at, end) or changed
        changed |= _attrs(buf, at + n.nla_hdrlen, stop, min(stop, end), spec, n)
    return changed


def redactor(families=None, keep_secrets=False, zero_unused=True):
    """The function a run passes each raw record through: raw -> raw, or a
    copy of it with its secrets overwritten and its unused msg[] bytes
    zeroed; the same object when there is nothing to change, which it finds
    in a few hundred ns (a record of a protocol without secrets, its unused
    bytes zero). One per run: it learns generic netlink family ids as the
    records come (.redactor: its Redactor). Arguments as Redactor's."""
    slow = Redactor(families, keep_secrets, zero_unused)

    def redact(raw, _unpack=_HEAD.unpack_from, _protocols=slow.protocols, _zero_runs=_ZERO_RUNS,
               _keep_unused=not zero_unused):
        try:
            protocol, _, msg_len, flags = _unpack(raw, _HEAD_AT)
        except struct.error:
            return raw      # not a record: parse_record says so
        if msg_len > _CAPTURE:
            msg_len = _CAPTURE
        if protocol not in _protocols and (_keep_unused or raw.startswith(_zero_runs[_CAPTURE - msg_len],
                                                                          _MSG_AT + msg_len)):
            return raw
        return slow(raw)

    redact.redactor = slow
    return redact


def redact_messages(data, protocol, genl_family=None, families=None):
    """The netlink messages of data (bytes of any length: a capture, a whole
    buffer) with their secrets overwritten: data itself when it has none.
    genl_family: the family of its first generic netlink message."""
    walk = Redactor(families)
    if protocol not in walk.protocols:
        return data
    buf = bytearray(data)
    return bytes(buf) if walk._messages(buf, 0, len(buf), len(buf), protocol, genl_family) else data


def redact_record(raw, families=None):
    """One record, on its own (no family learned from earlier records):
    raw, or a copy with its secrets overwritten and unused msg[] bytes zeroed."""
    return Redactor(families)(raw)


def kernel_genl_families():
    """{id: name} of the running kernel's generic netlink families, from
    nlctrl (one dump; {} if it cannot be read). Ask before the probes are
    armed, or nltrace traces its own question."""
    n = numbers()
    learner = Redactor()
    request = bytearray(n.nlmsg_hdrlen + n.genl_hdrlen)
    _NLMSGHDR.pack_into(request, 0, len(request), n.genl_id_ctrl, n.nlm_f_request | n.nlm_f_dump)
    request[n.nlmsg_hdrlen] = n.ctrl_getfamily
    request[n.nlmsg_hdrlen + 1] = 1     # version: nlctrl's is 2, and it takes any
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, n.netlink_generic) as sock:
            sock.settimeout(2)
            sock.sendto(bytes(request), (0, 0))
            while True:
                data = bytearray(sock.recv(65536))
                at = 0
                while at + n.nlmsg_hdrlen <= len(data):
                    length, msg_type, _ = _NLMSGHDR.unpack_from(data, at)
                    if length < n.nlmsg_hdrlen or msg_type in (n.nlmsg_error, n.nlmsg_done):
                        return _learned(learner)
                    if msg_type == n.genl_id_ctrl:
                        learner._learn(data, at, min(at + length, len(data)))
                    at += _align(length)
    except OSError:
        return _learned(learner)


def _learned(learner):
    return {i: name for i, name in learner.families.items() if name != "nlctrl"}


def redactor_for_run(unredacted_secrets, live, writes_records=False):
    """The redactor of one command's run. Live, it asks the kernel for its
    genl family ids before any probe is armed (so that question is not
    traced: run.open_live makes it while BCC compiles). writes_records
    (record): also zero the bytes of msg[] past the message, which flow
    never reads."""
    families = kernel_genl_families() if live and not unredacted_secrets else None
    return redactor(families, keep_secrets=unredacted_secrets, zero_unused=writes_records)
