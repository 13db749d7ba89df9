/* nltrace-agent's programs in the kernel: loading (with the ARMv6 JIT fallback), configuring, attaching the probe table. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
/* The libbpf skeletons nltrace build generated: each holds its BPF object,
 * so that this one executable is all there is to copy. */
#include "flow.skel.h"
#include "latency.skel.h"

/* comm, NUL-padded to 16 bytes, as the native-endian word of its bytes 0-7
 * (hi = 0) or 8-15 (hi = 1), as bpf_get_current_comm() leaves it; for
 * agent_config.h. */
static __u64 nlt_comm_word(const char *comm, int hi)
{
	char padded[16] = { 0 };
	__u64 word;

	if (!comm)
		return 0;
	strncpy(padded, comm, 15);
	memcpy(&word, padded + 8 * hi, 8);
	return word;
}

/* nlt_address_names and nlt_config_words(), from nltrace/config.py */
#include "agent_config.h"

/* libbpf's own messages: its warnings while loading are kept and shown if
 * the load fails for good (a verifier log says why a program was refused);
 * none while attaching, where each failure gets one "not traced" line of
 * ours. -v shows everything as it comes. The print callback libbpf takes
 * has no argument of ours, hence these three globals. */
static bool log_verbose, attaching;
static char load_log[16384];

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t len = strlen(load_log);

	if (log_verbose)
		return vfprintf(stderr, fmt, ap);
	if (level == LIBBPF_DEBUG || attaching)
		return 0;
	return vsnprintf(load_log + len, sizeof(load_log) - len, fmt, ap);
}

/* ---- loading ---------------------------------------------------------------- */

#define JIT_SYSCTL "/proc/sys/net/core/bpf_jit_enable"

static int jit_enabled(void)
{
	int v = -1;
	FILE *f = fopen(JIT_SYSCTL, "r");

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool set_jit(int v)
{
	FILE *f = fopen(JIT_SYSCTL, "w");
	bool ok = f && fprintf(f, "%d\n", v) > 0;

	return f && !fclose(f) && ok;
}

/* Open the skeleton of the mode, take its maps, load it. */
static int open_and_load(struct nlt_agent *a)
{
	struct flow_bpf *flow = a->opt.latency ? NULL : flow_bpf__open();
	struct latency_bpf *latency = a->opt.latency ? latency_bpf__open() : NULL;

	if (!flow && !latency)
		nlt_die("cannot open the embedded BPF object: %s", strerror(errno));
	a->flow = flow;
	a->latency = latency;
	a->obj = flow ? flow->obj : latency->obj;
	a->config = flow ? flow->maps.config : latency->maps.config;
	a->counters = flow ? flow->maps.counters : latency->maps.counters;
	a->events = flow ? flow->maps.events : NULL;
	a->hists = latency ? latency->maps.hists : NULL;
	return flow ? flow_bpf__load(flow) : latency_bpf__load(latency);
}

void nlt_unload(struct nlt_agent *a)
{
	flow_bpf__destroy(a->flow);
	latency_bpf__destroy(a->latency);
	a->flow = NULL;
	a->latency = NULL;
	a->obj = NULL;
	a->config = a->counters = a->events = a->hists = NULL;
}

/* The 32-bit ARM JIT of ARMv6 kernels keeps constants in a literal pool
 * that an instruction reaches only within 4 KB, so it compiles programs of
 * only about 200 instructions or fewer, and the kernel refuses longer ones
 * (ENOTSUPP, 524). The flow programs fit; the latency programs that add to
 * histograms do not. The JIT setting counts when a program is loaded, so
 * those are loaded with it off, for the interpreter, and it is switched
 * back on at once. */
void nlt_load_programs(struct nlt_agent *a)
{
	int err;

	log_verbose = a->opt.verbose;
	libbpf_set_print(libbpf_log);
	err = open_and_load(a);
	if (err == -524 && jit_enabled() == 1) {
		nlt_unload(a);
		load_log[0] = 0;
		if (!set_jit(0))
			nlt_die("this kernel's BPF JIT cannot compile the programs, and %s cannot be "
				"set to 0 (CONFIG_BPF_JIT_ALWAYS_ON?)", JIT_SYSCTL);
		err = open_and_load(a);
		set_jit(1);
		if (!err)
			fprintf(stderr, "nltrace-agent: this kernel's BPF JIT cannot compile programs "
				"this long (ENOTSUPP); they were loaded for the interpreter, and "
				"bpf_jit_enable is 1 again for every other program\n");
	}
	if (err) {
		fputs(load_log, stderr);
		nlt_die("cannot load the BPF programs: %s%s", strerror(-err),
			-err == EPERM ? " (run as root)" : "");
	}
}

/* ---- configuring ------------------------------------------------------------ */

/* Address of each name in /proc/kallsyms (0: absent, or hidden by kptr_restrict). */
static void kallsyms_lookup(const char *const *names, __u64 *addrs, int n)
{
	char line[512], name[256], type;
	unsigned long long addr;
	FILE *f = fopen("/proc/kallsyms", "r");

	memset(addrs, 0, n * sizeof(*addrs));
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx %c %255s", &addr, &type, name) == 3)
			for (int i = 0; i < n; i++)
				if (!addrs[i] && !strcmp(name, names[i]))
					addrs[i] = addr;
	fclose(f);
}

/* The config words (nlt_config_words(), from the options and the kernel
 * addresses), written to the config map before any probe is attached. */
void nlt_configure(struct nlt_agent *a)
{
	enum { ANCHOR = NLT_NR_ADDRESSES };   /* names[ANCHOR]: NLT_BUILD_ANCHOR */
	const char *names[NLT_NR_ADDRESSES + 1];
	const __u64 built[NLT_NR_ADDRESSES] = NLT_BUILD_ADDRESSES;
	__u64 addrs[NLT_NR_ADDRESSES + 1], words[NLT_CFG_MAX] = { 0 };

	for (int i = 0; i < NLT_NR_ADDRESSES; i++)
		names[i] = nlt_address_names[i];
	names[ANCHOR] = NLT_BUILD_ANCHOR;
	kallsyms_lookup(names, addrs, NLT_NR_ADDRESSES + 1);
	for (int i = 0; i < NLT_NR_ADDRESSES; i++) {
		/* kallsyms without data symbols (CONFIG_KALLSYMS_ALL off): take the
		 * vmlinux's address, moved as far as the anchor (netlink_sendmsg) moved. */
		if (!addrs[i] && addrs[ANCHOR] && built[i])
			addrs[i] = built[i] + (addrs[ANCHOR] - NLT_BUILD_ANCHOR_ADDR);
		if (!addrs[i] && !strcmp(names[i], "rtnl_msg_handlers"))
			fprintf(stderr, "nltrace-agent: no address for rtnl_msg_handlers (kptr_restrict?): "
				"rtnetlink handlers will not be named\n");
	}
	nlt_config_words(&a->opt, addrs, words);
	for (__u32 i = 0; i < NLT_CFG_MAX; i++)
		if (bpf_map_update_elem(bpf_map__fd(a->config), &i, &words[i], BPF_ANY))
			nlt_die("cannot configure the programs: %s", strerror(errno));
}

/* ---- attaching -------------------------------------------------------------- */

static void not_traced(struct nlt_agent *a, const char *name, const char *why)
{
	size_t len = strlen(a->missing_text);

	fprintf(stderr, "nltrace-agent: not traced: %s (%s)\n", name, why);
	nlt_list_add(a->missing, sizeof(a->missing), name);
	snprintf(a->missing_text + len, sizeof(a->missing_text) - len, "%s%s", len ? ", " : "", name);
}

/* A return probe through kprobe_events (kprobe_events.c says why); without
 * a writable tracefs, through the kprobe PMU with the kernel's default room. */
static struct bpf_link *attach_kretprobe(struct nlt_agent *a, struct bpf_program *prog, const char *symbol)
{
	static bool warned;
	char *event = a->kprobe_events[a->nr_kprobe_events];
	struct bpf_link *link;
	int fd = nlt_kretprobe_event(symbol, NLT_KRETPROBE_MAXACTIVE, event, sizeof(a->kprobe_events[0]));

	if (fd == -ENOENT) {
		if (!warned)
			fprintf(stderr, "nltrace-agent: no writable tracefs kprobe_events: return probes get the "
				"kernel's default room for calls in flight, and may lose returns\n");
		warned = true;
		return bpf_program__attach_kprobe(prog, true, symbol);
	}
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	link = bpf_program__attach_perf_event(prog, fd);
	if (!link) {
		int err = errno;

		close(fd);
		nlt_kprobe_events_remove(event);
		errno = err;
		return NULL;
	}
	a->nr_kprobe_events++;
	return link;
}

static bool attach_one(struct nlt_agent *a, const char *prog_name, const struct nlt_probe *p, bool retprobe)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(a->obj, prog_name);
	struct bpf_link *link;

	if (!prog)
		return false;
	if (p->kind == NLT_PROBE_RAW_TRACEPOINT)
		link = bpf_program__attach_raw_tracepoint(prog, p->symbol);
	else if (retprobe)
		link = attach_kretprobe(a, prog, p->symbol);
	else
		link = bpf_program__attach_kprobe(prog, false, p->symbol);
	if (!link)
		return false;
	a->links[a->nr_links++] = link;
	return true;
}

/* Every probe of the table; a function missing on this kernel is reported
 * and skipped. Returns and inner calls are attached before the roots, so
 * that no tree starts before the probes inside it exist. */
void nlt_attach_all(struct nlt_agent *a)
{
	nlt_kprobe_events_remove_stale();
	attaching = true;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < NLT_NR_PROBES; i++) {
			const struct nlt_probe *p = &nlt_probes[i];
			char why[128];

			if (p->is_root != pass || (p->on_demand && !a->opt.rtnl))
				continue;
			if (!p->symbol) {
				if (!pass)
					not_traced(a, p->name, "absent from the vmlinux it was built for");
				continue;
			}
			if (p->exit_prog && !attach_one(a, p->exit_prog, p, true)) {
				snprintf(why, sizeof(why), "return probe: %s", strerror(errno));
				not_traced(a, p->name, why);
				continue;
			}
			if (!attach_one(a, p->entry_prog, p, false)) {
				snprintf(why, sizeof(why), "%s", strerror(errno));
				not_traced(a, p->name, why);
				if (p->exit_prog)
					bpf_link__destroy(a->links[--a->nr_links]);
				continue;
			}
			nlt_list_add(a->attached, sizeof(a->attached), p->name);
			a->nr_attached++;
		}
	}
	attaching = false;
}

void nlt_detach_all(struct nlt_agent *a)
{
	while (a->nr_links)
		bpf_link__destroy(a->links[--a->nr_links]);
	while (a->nr_kprobe_events)
		nlt_kprobe_events_remove(a->kprobe_events[--a->nr_kprobe_events]);
}
