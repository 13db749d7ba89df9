"""What a trace is asked to do (TraceConfig), and the NLT_CFG_* words that tell
the kernel programs.

The config array (enum nlt_config in bpf/records.h) is filled from one table,
CONFIG_WORDS: TraceConfig.words() evaluates it for the BCC path, and
agent_config_c() writes the same table as C for nltrace-agent, which fills
the words from its own command line on the target.
"""

import sys
from dataclasses import dataclass

from nltrace import records
from nltrace.catalogue import CATALOGUE, FLOW_DEFAULT, MESSAGE_TIMING, needed, roots_for

# Kernel symbols the programs need the address of (kallsyms): data, and a
# function whose presence tells a kernel version.
ADDRESSES = ("rtnl_msg_handlers", "rtnl_mutex", "genl_cmd_full_to_split")

# (config index, TraceConfig field or kernel address, encoding). Encodings:
#   value      the number as it is (0: off)
#   any_or     latency's filters: the number + 1, so that 0 means "any"
#   comm_lo/hi the comm, NUL-padded to 16 bytes, as two native-endian words
#   address    the kernel address of that symbol (0: unknown)
CONFIG_WORDS = (
    ("NLT_CFG_PID", "pid", "value"),
    ("NLT_CFG_SKIP_RECV", "skip_recv", "value"),
    ("NLT_CFG_COMM_LO", "comm", "comm_lo"),
    ("NLT_CFG_COMM_HI", "comm", "comm_hi"),
    ("NLT_CFG_PROTOCOL", "protocol", "any_or"),
    ("NLT_CFG_TYPE", "msg_type", "any_or"),
    ("NLT_CFG_CMD", "cmd", "any_or"),
    ("NLT_CFG_RTNL_HANDLERS", "rtnl_msg_handlers", "address"),
    ("NLT_CFG_RTNL_MUTEX", "rtnl_mutex", "address"),
    ("NLT_CFG_GENL_SPLIT_OPS", "genl_cmd_full_to_split", "address"),
    ("NLT_CFG_SNAPLEN", "snaplen", "value"),
)
# --snaplen's range: a netlink header at least, and what a record holds.
SNAPLEN_MIN, SNAPLEN_MAX = records.C.NLT_SNAPLEN_MIN, records.C.NLT_MSG_CAPTURE


def _comm_words(comm):
    raw = (comm or "").encode()[:15].ljust(16, b"\0")
    return int.from_bytes(raw[:8], sys.byteorder), int.from_bytes(raw[8:], sys.byteorder)


@dataclass(frozen=True)
class TraceConfig:
    """Built once from the command line; read by the source and the loaders."""
    mode: str = "flow"               # "flow" or "latency": which program
    pid: int = 0                     # only this tgid (0: all)
    comm: str = ""                   # only this command name ("": all)
    skip_recv: bool = False          # no trees start at netlink_recvmsg
    protocol: int = None             # latency: only this protocol (None: any)
    msg_type: int = None             # latency: only this nlmsg_type
    cmd: int = None                  # latency: only this genl command
    probes: frozenset = None         # attach only these catalogue probes (None: all)
    on_demand: frozenset = frozenset()   # on_demand probes to attach too (mutex_lock)
    ring_mb: int = 32                # flow's ring buffer, MiB (a power of two)
    kprobes: bool = False            # no fentry/fexit
    snaplen: int = SNAPLEN_MAX       # bytes of each message captured

    @classmethod
    def for_flow(cls, pid=None, comm=None, skip_recv=False, all_probes=False, ring_mb=32, kprobes=False,
                 snaplen=SNAPLEN_MAX):
        return cls("flow", pid or 0, comm or "", skip_recv, probes=None if all_probes else FLOW_DEFAULT,
                   ring_mb=ring_mb, kprobes=kprobes, snaplen=snaplen)

    @classmethod
    def for_latency(cls, by, want, pid=None, comm=None, kprobes=False, functions=None):
        """by: the --by grouping; want: {"protocol", "type", "cmd"} (filters.resolve_type).
        functions (--by function only): the catalogue functions to time
        (catalogue.match_functions), attached with the roots of their trees,
        and netlink_unicast for --type (it captures the message); None: all."""
        probes = None if by == "function" else MESSAGE_TIMING
        if functions is not None:
            probes = functions | roots_for(functions) \
                | ({"netlink_unicast"} if want["type"] is not None or want["cmd"] is not None else set())
        return cls("latency", pid or 0, comm or "", skip_recv=by != "function",
                   protocol=want["protocol"], msg_type=want["type"], cmd=want["cmd"], probes=probes,
                   on_demand=frozenset({"mutex_lock"}) if by == "rtnl" else frozenset(), kprobes=kprobes)

    def agent_args(self):
        """This config's filters and options as nltrace-agent's."""
        common = [*(["-p", str(self.pid)] if self.pid else []), *(["-c", self.comm] if self.comm else [])]
        if self.mode == "latency":
            return ["--latency", *common, *(["--rtnl"] if "mutex_lock" in self.on_demand else [])]
        return [*common, *(["--no-recv"] if self.skip_recv else []), "--snaplen", str(self.snaplen)]

    def plan(self, symbols):
        """The catalogue probes to attach, as [(probe, symbol)], and {name: why
        not} for those that cannot be. symbols: catalogue name -> kernel
        symbol or None (kernel.features)."""
        wanted, missing = [], {}
        for probe in CATALOGUE:
            if probe.on_demand and probe.name not in self.on_demand:
                continue
            if self.probes is not None and probe.name not in self.probes or not needed(probe, symbols):
                continue
            if symbols.get(probe.name):
                wanted.append((probe, symbols[probe.name]))
            else:
                missing[probe.name] = "not traceable on this kernel (absent or inlined)"
        return wanted, missing

    def words(self, addresses):
        """{config index: value} for the program. addresses: {name: kernel
        address} of ADDRESSES."""
        out = {}
        for index, source, encoding in CONFIG_WORDS:
            if encoding == "address":
                value = addresses.get(source, 0)
            elif encoding.startswith("comm_"):
                value = _comm_words(self.comm)[encoding == "comm_hi"]
            else:
                value = getattr(self, source)
                value = 0 if value is None else value + 1 if encoding == "any_or" else int(value)
            out[getattr(records.C, index)] = value
        return out


def agent_config_c():
    """CONFIG_WORDS as C, for nltrace-agent: a function that fills the config
    words from its options (struct nlt_agent_options, agent.h) and the
    kernel addresses (in ADDRESSES order)."""
    encode = {"value": "(__u64)o->{}", "any_or": "o->{0} < 0 ? 0 : (__u64)o->{0} + 1",
              "comm_lo": "nlt_comm_word(o->{}, 0)", "comm_hi": "nlt_comm_word(o->{}, 1)"}
    lines = ["/* Generated by nltrace build from nltrace/config.py (CONFIG_WORDS); do not edit. */",
             f"#define NLT_NR_ADDRESSES {len(ADDRESSES)}",
             "static const char *const nlt_address_names[NLT_NR_ADDRESSES] = { "
             + ", ".join(f'"{name}"' for name in ADDRESSES) + " };",
             "static void nlt_config_words(const struct nlt_agent_options *o, "
             "const __u64 addresses[NLT_NR_ADDRESSES], __u64 words[NLT_CFG_MAX])", "{"]
    for index, source, encoding in CONFIG_WORDS:
        if encoding == "address":
            value = f"addresses[{ADDRESSES.index(source)}]"
        else:
            value = encode[encoding].format(source)
        lines.append(f"\twords[{index}] = {value};")
    return "\n".join(lines + ["}", ""])
