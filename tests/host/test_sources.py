"""The source contract (nltrace/sources) and the config words (nltrace/config):
every source keeps the one contract, and TraceConfig alone makes the words,
for BCC and, as C, for nltrace-agent."""

import inspect
import sys

import pytest

from conftest import AGENT_LATENCY_STREAM
from nltrace import records, run
from nltrace.catalogue import OTHER_ROOTS, ROOT_FUNCTIONS, TREE_FUNCTIONS, match_functions
from nltrace.config import ADDRESSES, CONFIG_WORDS, TraceConfig, agent_config_c
from nltrace.errors import BadFilter
from nltrace.sources import Source
from nltrace.sources.agent import AgentSource
from nltrace.sources.live import BccSource
from nltrace.sources.stream import StreamSource

C = records.C
CONTRACT = [name for name, member in vars(Source).items()
            if callable(member) and not name.startswith("_")]


def test_the_stream_source_keeps_the_contract(recorded_stream):
    source = StreamSource(recorded_stream, "flow")
    try:
        assert isinstance(source, Source)
        assert source.mode == "flow"
    finally:
        source.close()


def test_the_live_source_keeps_the_contract():
    # BccSource needs a kernel with kprobes to be made; its methods are
    # held against the contract's here (tests/vm runs it).
    assert sorted(CONTRACT) == sorted(["records", "drain", "discard", "histograms", "final_histograms",
                                       "counters", "symbolize", "close"])
    for name in CONTRACT:
        for cls in (BccSource, StreamSource, AgentSource):
            wanted = list(inspect.signature(getattr(Source, name)).parameters)
            have = list(inspect.signature(getattr(cls, name)).parameters)
            assert have == wanted, (cls.__name__, name, have, wanted)


def test_words_encode_the_options():
    config = TraceConfig.for_latency("message", {"protocol": 16, "type": 0, "cmd": None},
                                     pid=42, comm="nlload")
    words = config.words({"rtnl_msg_handlers": 0xffff0000, "rtnl_mutex": 0xffff1000,
                          "genl_cmd_full_to_split": 0xffff2000})
    raw = b"nlload".ljust(16, b"\0")
    assert words == {
        C.NLT_CFG_PID: 42, C.NLT_CFG_SKIP_RECV: 1,
        C.NLT_CFG_COMM_LO: int.from_bytes(raw[:8], sys.byteorder),
        C.NLT_CFG_COMM_HI: int.from_bytes(raw[8:], sys.byteorder),
        C.NLT_CFG_PROTOCOL: 17, C.NLT_CFG_TYPE: 1, C.NLT_CFG_CMD: 0,   # + 1: 0 is "any"
        C.NLT_CFG_RTNL_HANDLERS: 0xffff0000, C.NLT_CFG_RTNL_MUTEX: 0xffff1000,
        C.NLT_CFG_GENL_SPLIT_OPS: 0xffff2000, C.NLT_CFG_SNAPLEN: C.NLT_MSG_CAPTURE}
    flow = TraceConfig.for_flow(snaplen=16).words({})
    assert flow.pop(C.NLT_CFG_SNAPLEN) == 16 and set(flow.values()) == {0}
    # every word but NLT_CFG_ARMED (the BCC loader's own state) comes from the table
    assert set(flow) | {C.NLT_CFG_SNAPLEN} == set(range(C.NLT_CFG_MAX)) - {C.NLT_CFG_ARMED}


def test_agent_args_carry_the_options():
    assert TraceConfig.for_flow(pid=42, comm="ip", skip_recv=True, snaplen=16).agent_args() == \
        ["-p", "42", "-c", "ip", "--no-recv", "--snaplen", "16"]
    assert TraceConfig.for_flow().agent_args() == ["--snaplen", str(C.NLT_MSG_CAPTURE)]
    want = {"protocol": None, "type": None, "cmd": None}
    assert TraceConfig.for_latency("rtnl", want, comm="nlload").agent_args() == \
        ["--latency", "-c", "nlload", "--rtnl"]
    assert TraceConfig.for_latency("message", want).agent_args() == ["--latency"]


def test_the_agent_gets_the_same_table_as_c():
    text = agent_config_c()
    for index, _, _ in CONFIG_WORDS:
        assert f"\twords[{index}] = " in text
    assert text.count("\twords[") == len(CONFIG_WORDS)
    for name in ADDRESSES:
        assert f'"{name}"' in text


NO_FILTER = {"protocol": None, "type": None, "cmd": None}


def test_latency_functions_attach_what_they_name_and_the_roots_of_their_trees():
    named = match_functions(["rtnetlink_rcv_msg", "genl_*"])
    assert named == {"rtnetlink_rcv_msg", "genl_rcv", "genl_rcv_msg", "genl_family_rcv_msg_doit",
                     "genl_family_rcv_msg_dumpit", "genl_bind"}
    config = TraceConfig.for_latency("function", NO_FILTER, functions=named)
    # genl_bind runs when a socket binds, outside any message
    assert config.probes == named | {"netlink_sendmsg", "netlink_create", "netlink_bind", "netlink_connect",
                                     "__netlink_kernel_create"}
    # a dump's later batches run in the reader's netlink_recvmsg
    dump = TraceConfig.for_latency("function", NO_FILTER, functions=match_functions(["netlink_dump"]))
    assert dump.probes == {"netlink_dump", "netlink_sendmsg", "netlink_recvmsg"}
    # --type is tested on the message netlink_unicast captures
    typed = TraceConfig.for_latency("function", {"protocol": 0, "type": 18, "cmd": None},
                                    functions=match_functions(["rtnetlink_rcv_msg"]))
    assert typed.probes == {"rtnetlink_rcv_msg", "netlink_sendmsg", "netlink_unicast"}
    assert TraceConfig.for_latency("function", NO_FILTER).probes is None


def test_latency_functions_name_only_traced_functions():
    assert "mutex_lock" not in match_functions(["*"])   # on demand: --by rtnl
    assert match_functions(["*"]) == {p.name for p in TREE_FUNCTIONS} - {"mutex_lock"}
    with pytest.raises(BadFilter, match="'rtnl_lock' names no traced function"):
        match_functions(["netlink_sendmsg", "rtnl_lock"])
    assert set().union(*OTHER_ROOTS.values()) <= ROOT_FUNCTIONS
    assert set(OTHER_ROOTS) <= {p.name for p in TREE_FUNCTIONS}


def test_latency_functions_show_only_what_was_named():
    # the stream the ARMv6 agent recorded (tests/fixtures/README.md): all of its functions
    everything, only = [], []
    run.latency(StreamSource(AGENT_LATENCY_STREAM, "latency"), "function", None, None,
                lambda ts, hs: everything.extend(hs))
    run.latency(StreamSource(AGENT_LATENCY_STREAM, "latency"), "function", None, None,
                lambda ts, hs: only.extend(hs), functions={"netlink_rcv_skb", "rtnetlink_rcv_msg"})
    assert {h.key for h in only} == {"netlink_rcv_skb", "rtnetlink_rcv_msg"} < {h.key for h in everything}
    assert [(h.key, h.count) for h in only] == [(h.key, h.count) for h in everything
                                                  if h.key in {"netlink_rcv_skb", "rtnetlink_rcv_msg"}]
