"""Log2 latency histograms: the kernel's bucket counts -> counts, percentiles, units.

Bucket k holds durations d with floor(log2(d)) == k, i.e. [2^k, 2^(k+1) - 1] ns;
bucket 0 also holds 0. This is the layout of BCC's funclatency and of
bpftrace's hist(). Percentiles are estimates from the buckets: the value is
interpolated linearly inside the bucket where the percentile falls, and never
exceeds the exact maximum the kernel kept.
"""

from dataclasses import dataclass, field

from nltrace import records
from nltrace.decode import protocol_name, type_names

C = records.C
BY_KIND = {"function": C.NLT_HIST_FUNCTION, "message": C.NLT_HIST_MESSAGE,
           "process": C.NLT_HIST_PROCESS, "rtnl": C.NLT_HIST_RTNL}

PERCENTILES = (50, 90, 99)


def bucket_bounds(slot):
    """(low, high) in ns of log2 bucket slot."""
    return (0 if slot == 0 else 1 << slot), (1 << (slot + 1)) - 1


def slot_of(ns):
    """The bucket a duration falls in (what the kernel program computes)."""
    return max(ns.bit_length() - 1, 0)


@dataclass
class Histogram:
    key: str
    buckets: dict = field(default_factory=dict)   # slot -> count
    max_ns: int = 0
    # The key's parts as metric labels (key_labels), for the exporters; not
    # part of the histogram's value.
    labels: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def count(self):
        return sum(self.buckets.values())

    def percentile(self, p):
        """Estimated p-th percentile in ns, or None when empty."""
        total = self.count
        if not total:
            return None
        rank = p / 100 * total
        seen = 0
        for slot in sorted(self.buckets):
            n = self.buckets[slot]
            if n and seen + n >= rank:
                low, high = bucket_bounds(slot)
                value = low + (high - low) * (rank - seen) / n
                return int(min(value, self.max_ns) if self.max_ns else value)
            seen += n
        return bucket_bounds(max(self.buckets))[1]

    def to_json(self, unit):
        scale = UNITS[unit]
        out = {"key": self.key, "unit": unit, "count": self.count}
        for p in PERCENTILES:
            v = self.percentile(p)
            out[f"p{p}"] = None if v is None else round(v / scale, 3)
        out["max"] = round(self.max_ns / scale, 3)
        out["buckets"] = [{"low": round(bucket_bounds(s)[0] / scale, 3),
                           "high": round(bucket_bounds(s)[1] / scale, 3), "count": n}
                          for s, n in sorted(self.buckets.items()) if n]
        return out


UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000}


def pick_unit(histograms):
    """The unit in which the largest p50 reads as a number below 10000."""
    p50 = max((h.percentile(50) or 0 for h in histograms), default=0)
    if p50 >= 10_000_000:
        return "ms"
    if p50 >= 10_000:
        return "us"
    return "ns"


def interval_delta(now, before):
    """Bucket counts cumulated in the kernel -> counts of this interval.
    now, before: {(key, slot): count}."""
    return {k: n - before.get(k, 0) for k, n in now.items() if n - before.get(k, 0) > 0}


def key_name(func, protocol, msg_type, cmd, name, kind):
    """The display key of a kernel histogram key."""
    if kind == C.NLT_HIST_FUNCTION:
        return records.FUNC_NAMES.get(func, f"func#{func}")
    if kind == C.NLT_HIST_PROCESS:
        return name
    names = type_names(protocol, msg_type, name or None, cmd)
    if protocol == 0:
        return names["type_name"] or f"RTM_{msg_type}"
    if protocol == 16:
        return f"{names['type_name'] or f'genl#{msg_type}'}/{names['cmd_name'] or cmd}"
    return names["type_name"] or f"{protocol_name(protocol)}/{msg_type}"


def key_labels(func, protocol, msg_type, cmd, name, kind):
    """The parts of key_name's key, as labels: {"function"}, {"comm"}, or
    {"protocol", then "type", or for generic netlink "family" and "command"};
    the same fallbacks for unknown names as key_name, so that the labels
    tell keys apart as key_name does."""
    if kind == C.NLT_HIST_FUNCTION:
        return {"function": key_name(func, protocol, msg_type, cmd, name, kind)}
    if kind == C.NLT_HIST_PROCESS:
        return {"comm": name}
    names = type_names(protocol, msg_type, name or None, cmd)
    labels = {"protocol": protocol_name(protocol)} if protocol_name(protocol) else {}
    if protocol == 0:
        labels["type"] = names["type_name"] or f"RTM_{msg_type}"
    elif protocol == 16:
        labels["family"] = names["type_name"] or f"genl#{msg_type}"
        labels["command"] = names.get("cmd_name") or str(cmd)
    else:
        labels["type"] = names["type_name"] or str(msg_type)
    return labels


def group(counts, maxima, by):
    """Raw kernel keys of one interval -> [Histogram] for the --by grouping,
    busiest first. counts and maxima as a sources.Snapshot holds them."""
    kind = BY_KIND[by]
    out = {}
    for (k, slot, func, protocol, msg_type, cmd, name), n in counts.items():
        if k != kind:
            continue
        key = key_name(func, protocol, msg_type, cmd, name, kind)
        labels = key_labels(func, protocol, msg_type, cmd, name, kind)
        h = out.get(key)
        if h is None:
            h = out[key] = Histogram(key, labels=labels)
        else:   # raw keys that share a display key (NLMSG_ERROR of two protocols) keep what they share
            h.labels = {k: v for k, v in h.labels.items() if labels.get(k) == v}
        h.buckets[slot] = h.buckets.get(slot, 0) + n
    for (k, _slot, func, protocol, msg_type, cmd, name), ns in maxima.items():
        key = key_name(func, protocol, msg_type, cmd, name, kind)
        if k == kind and key in out:
            out[key].max_ns = max(out[key].max_ns, ns)
    return sorted(out.values(), key=lambda h: (-h.count, h.key))
