/* nltrace-agent: the static loader for a target without Python, LLVM or BTF
 * (a BMC). `nltrace build` compiles flow.bpf.c ahead of time against the
 * target's own vmlinux, generates agent_build.h (the probe table and what
 * the programs were built for) and links this file statically with libbpf.
 *
 * It attaches, then writes the nltrace stream (records.h) to stdout or -o
 * FILE until Ctrl-C, SIGTERM or -d: the same records the live BCC path
 * produces, so `nltrace flow --input -` / `nltrace latency --input -`
 * render them on any host. --text prints a tree per message instead, for
 * a serial console.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/utsname.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "records.h"

/* One row of the probe table in agent_build.h. */
enum { NLT_PROBE_FUNCTION, NLT_PROBE_KPROBE, NLT_PROBE_RAW_TRACEPOINT };
struct nlt_probe {
	const char *name;         /* catalogue name */
	const char *symbol;       /* what to attach to; NULL: absent from the vmlinux */
	const char *entry_prog, *exit_prog;
	int kind, is_root, on_demand;
};

#include "agent_build.h"

/* The BPF objects, compiled by nltrace build, inside this executable so that
 * one file is all there is to copy. */
#define NLT_EMBED(sym, path) \
	__asm__(".section .rodata\n.balign 8\n.global " #sym "\n" #sym ":\n" \
		".incbin \"" path "\"\n.global " #sym "_end\n" #sym "_end:\n.previous\n")
NLT_EMBED(flow_obj, NLT_BUILD_FLOW_OBJ);
NLT_EMBED(latency_obj, NLT_BUILD_LATENCY_OBJ);
extern const char flow_obj[], flow_obj_end[], latency_obj[], latency_obj_end[];

static volatile sig_atomic_t stopping;

static struct {
	bool latency, text, rtnl, no_recv, force, verbose;
	double duration, interval;
	long pid;
	const char *comm, *output;
} opt;

static FILE *out;
static bool out_failed;
static struct bpf_object *obj;
static struct bpf_link *links[2 * (sizeof(nlt_probes) / sizeof(nlt_probes[0]))];
static int nr_links;
static char attached[1024], missing[2048];   /* JSON lists of names, for the header */
static char missing_text[2048];                /* the same, for people */
static int nr_attached;

static void on_signal(int signo)
{
	(void)signo;
	stopping = 1;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("nltrace-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* libbpf's own messages: its warnings while loading are kept and shown if
 * the load fails for good (a verifier log says why a program was refused);
 * none while attaching, where each failure gets one "not traced" line of
 * ours. -v shows everything as it comes. */
static bool attaching;
static char load_log[16384];

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t len = strlen(load_log);

	if (opt.verbose)
		return vfprintf(stderr, fmt, ap);
	if (level == LIBBPF_DEBUG || attaching)
		return 0;
	return vsnprintf(load_log + len, sizeof(load_log) - len, fmt, ap);
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);   /* the clock bpf_ktime_get_ns() reads */
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- the stream ---------------------------------------------------------- */

static void write_frame(__u8 kind, const void *a, __u32 alen, const void *b, __u32 blen)
{
	struct nlt_frame frame = { .kind = kind, .length = alen + blen };

	if (out_failed)
		return;
	if (fwrite(&frame, sizeof(frame), 1, out) != 1 || (alen && fwrite(a, alen, 1, out) != 1) ||
	    (blen && fwrite(b, blen, 1, out) != 1)) {
		out_failed = true;   /* the reader went away: stop, detach, exit */
		stopping = 1;
	}
}

/* Append ,"name" to a comma-separated JSON list of identifiers. */
static void list_add(char *list, size_t size, const char *name)
{
	size_t len = strlen(list);

	snprintf(list + len, size - len, "%s\"%s\"", len ? "," : "", name);
}

static void write_header(void)
{
	struct utsname u;
	char json[4096];
	int n;

	uname(&u);
	/* A kernel release holds no quotes or backslashes, a probe name neither. */
	n = snprintf(json, sizeof(json),
		     "{\"version\":%d,\"record_size\":%u,\"node_size\":%u,\"arch\":\"%s\","
		     "\"pointer_size\":%u,\"endianness\":\"%s\",\"kernel_release\":\"%s\","
		     "\"built_for\":\"%s\",\"clock\":\"CLOCK_MONOTONIC\",\"source\":\"nltrace-agent\","
		     "\"mode\":\"%s\",\"probes\":[%s],\"not_traced\":[%s]}",
		     NLT_STREAM_VERSION, (unsigned)sizeof(struct nlt_record),
		     (unsigned)sizeof(struct nlt_node), u.machine, (unsigned)sizeof(void *),
		     __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? "little" : "big", u.release,
		     NLT_BUILD_RELEASE, opt.latency ? "latency" : "flow", attached, missing);
	fwrite("NLTRACE", 8, 1, out);   /* the magic, with its NUL */
	write_frame(NLT_FRAME_HEADER, json, n, NULL, 0);
}

/* ---- kernel symbols -------------------------------------------------------- */

/* Address of each name in /proc/kallsyms (0: absent, or hidden by kptr_restrict). */
static void kallsyms_lookup(const char **names, __u64 *addrs, int n)
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

/* The name of the function at addr, looked up once per address. */
#define MAX_SYMBOLS 256
static struct { __u64 addr; char name[64]; } symbols[MAX_SYMBOLS];
static int nr_symbols;

static const char *symbolize(__u64 addr)
{
	char line[512], name[64], type, json[128];
	unsigned long long a;
	bool found = false;
	FILE *f;
	int i, n;

	for (i = 0; i < nr_symbols; i++)
		if (symbols[i].addr == addr)
			return symbols[i].name;
	if (nr_symbols == MAX_SYMBOLS || !(f = fopen("/proc/kallsyms", "r")))
		return NULL;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%llx %c %63s", &a, &type, name) == 3 && a == addr;
	fclose(f);
	symbols[nr_symbols].addr = addr;
	if (found)
		snprintf(symbols[nr_symbols].name, sizeof(symbols[0].name), "%s", name);
	else
		snprintf(symbols[nr_symbols].name, sizeof(symbols[0].name), "0x%llx", (unsigned long long)addr);
	if (found && !opt.text) {
		n = snprintf(json, sizeof(json), "{\"0x%llx\":\"%s\"}", (unsigned long long)addr, name);
		write_frame(NLT_FRAME_SYMBOLS, json, n, NULL, 0);
	}
	return symbols[nr_symbols++].name;
}

/* ---- flow ------------------------------------------------------------------ */

static const char *protocol_name(__u16 protocol)
{
	static char buf[16];

	switch (protocol) {
	case 0: return "NETLINK_ROUTE";
	case 2: return "NETLINK_USERSOCK";
	case 4: return "NETLINK_SOCK_DIAG";
	case 16: return "NETLINK_GENERIC";
	}
	snprintf(buf, sizeof(buf), "protocol %u", protocol);
	return buf;
}

/* An indented tree on the console: the head line, then one line per call. */
static void print_tree(const struct nlt_record *rec)
{
	__u32 len = 0, seq = 0;
	__u16 type = 0, flags = 0;

	if (rec->msg_len >= 16) {
		memcpy(&len, rec->msg, 4);
		memcpy(&type, rec->msg + 4, 2);
		memcpy(&flags, rec->msg + 6, 2);
		memcpy(&seq, rec->msg + 8, 4);
	}
	fprintf(out, "%llu.%06llu %s[%u] %s", (unsigned long long)(rec->ts_ns / 1000000000),
		(unsigned long long)(rec->ts_ns / 1000 % 1000000), rec->comm, rec->pid,
		rec->protocol == 0xffff ? "" : protocol_name(rec->protocol));
	if (rec->msg_len >= 16)
		fprintf(out, " type %u flags 0x%x seq %u len %u", type, flags, seq, len);
	if (rec->genl_family[0] && rec->msg_len >= 17)
		fprintf(out, " %s cmd %u", rec->genl_family, rec->msg[16]);
	if (rec->handler)
		fprintf(out, " handler %s", symbolize(rec->handler));
	if (rec->error)
		fprintf(out, " error %d", rec->error);
	if (rec->extack[0])
		fprintf(out, " \"%s\"", rec->extack);
	fputc('\n', out);
	for (int i = 0; i < rec->nr_nodes && i < NLT_MAX_NODES; i++) {
		const struct nlt_node *n = &rec->nodes[i];
		const char *name = n->func < NLT_FN_MAX ? nlt_func_names[n->func] : NULL;

		fprintf(out, "%*s%s", 2 * (n->depth + 1), "", name ? name : "?");
		if (!n->end_ns) {
			fputs(" (no return seen)\n", out);
			continue;
		}
		fprintf(out, " %llu.%03llu us", (unsigned long long)((n->end_ns - n->start_ns) / 1000),
			(unsigned long long)((n->end_ns - n->start_ns) % 1000));
		if (n->func == NLT_FN_netlink_ack)
			fprintf(out, " ack %d", (int)n->aux);
		else if (n->func >= NLT_FN_MAX || !nlt_func_void[n->func])
			fprintf(out, " = %lld", (long long)n->ret);
		fputc('\n', out);
	}
}

static int on_record(void *ctx, void *data, size_t size)
{
	const struct nlt_record *rec = data;

	(void)ctx;
	if (opt.text) {
		print_tree(rec);
		return 0;
	}
	if (rec->handler)
		symbolize(rec->handler);   /* its SYMBOLS frame goes before the record */
	write_frame(NLT_FRAME_RECORD, data, size, NULL, 0);
	return 0;
}

/* ---- latency --------------------------------------------------------------- */

/* One HISTOGRAMS frame: every key of the per-CPU hash, summed over CPUs; the
 * max entries are taken as the largest per CPU and deleted, so that each
 * frame's maxima cover the time since the previous frame. */
static void write_histograms(int map_fd)
{
	int cpus = libbpf_num_possible_cpus(), n = 0, cap = 256;
	struct nlt_hist_entry *entries = calloc(cap, sizeof(*entries));
	__u64 *values = calloc(cpus, sizeof(__u64));
	struct nlt_hist_key key, next, *prev = NULL;
	struct nlt_hist_head head = { .ts_ns = now_ns() };

	if (!entries || !values)
		die("out of memory");
	while (!bpf_map_get_next_key(map_fd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(map_fd, &key, values))
			continue;   /* deleted meanwhile */
		if (n == cap && !(entries = realloc(entries, (cap *= 2) * sizeof(*entries))))
			die("out of memory");
		memset(&entries[n], 0, sizeof(entries[n]));
		entries[n].key = key;
		for (int c = 0; c < cpus; c++) {
			if (key.slot == NLT_SLOT_MAX)
				entries[n].value = values[c] > entries[n].value ? values[c] : entries[n].value;
			else
				entries[n].value += values[c];
		}
		n++;
	}
	for (int i = 0; i < n; i++)
		if (entries[i].key.slot == NLT_SLOT_MAX)
			bpf_map_delete_elem(map_fd, &entries[i].key);
	head.nr_entries = n;
	write_frame(NLT_FRAME_HISTOGRAMS, &head, sizeof(head), entries, n * sizeof(*entries));
	free(entries);
	free(values);
}

/* ---- attaching ------------------------------------------------------------- */

static void not_traced(const char *name, const char *why)
{
	size_t len = strlen(missing_text);

	fprintf(stderr, "nltrace-agent: not traced: %s (%s)\n", name, why);
	list_add(missing, sizeof(missing), name);
	snprintf(missing_text + len, sizeof(missing_text) - len, "%s%s", len ? ", " : "", name);
}

static bool attach_one(const char *prog_name, const struct nlt_probe *p, bool retprobe)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, prog_name);
	struct bpf_link *link;

	if (!prog)
		return false;
	if (p->kind == NLT_PROBE_RAW_TRACEPOINT)
		link = bpf_program__attach_raw_tracepoint(prog, p->symbol);
	else
		link = bpf_program__attach_kprobe(prog, retprobe, p->symbol);
	if (!link)
		return false;
	links[nr_links++] = link;
	return true;
}

/* Every probe of the table; a function missing on this kernel is reported
 * and skipped. Returns and inner calls are attached before the roots, so
 * that no tree starts before the probes inside it exist. */
static void attach_all(void)
{
	int n = sizeof(nlt_probes) / sizeof(nlt_probes[0]);

	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < n; i++) {
			const struct nlt_probe *p = &nlt_probes[i];
			char why[128];

			if (p->is_root != pass || (p->on_demand && !opt.rtnl))
				continue;
			if (!p->symbol) {
				if (!pass)
					not_traced(p->name, "absent from the vmlinux it was built for");
				continue;
			}
			if (p->exit_prog && !attach_one(p->exit_prog, p, true)) {
				snprintf(why, sizeof(why), "return probe: %s", strerror(errno));
				not_traced(p->name, why);
				continue;
			}
			if (!attach_one(p->entry_prog, p, false)) {
				snprintf(why, sizeof(why), "%s", strerror(errno));
				not_traced(p->name, why);
				if (p->exit_prog)
					bpf_link__destroy(links[--nr_links]);
				continue;
			}
			list_add(attached, sizeof(attached), p->name);
			nr_attached++;
		}
	}
}

static void configure(void)
{
	const char *names[] = { "rtnl_msg_handlers", "rtnl_mutex", "netlink_sendmsg" };
	const __u64 built[] = { NLT_BUILD_ADDR_rtnl_msg_handlers, NLT_BUILD_ADDR_rtnl_mutex };
	__u64 addrs[3], config[NLT_CFG_MAX] = { 0 };
	struct bpf_map *map = bpf_object__find_map_by_name(obj, "config");

	kallsyms_lookup(names, addrs, 3);
	/* kallsyms without data symbols (CONFIG_KALLSYMS_ALL off): take the
	 * vmlinux's addresses, moved as far as netlink_sendmsg moved. */
	for (int i = 0; i < 2; i++)
		if (!addrs[i] && addrs[2] && built[i])
			addrs[i] = built[i] + (addrs[2] - NLT_BUILD_ANCHOR_ADDR);
	if (!addrs[0])
		fprintf(stderr, "nltrace-agent: no address for rtnl_msg_handlers (kptr_restrict?): "
			"rtnetlink handlers will not be named\n");
	config[NLT_CFG_PID] = opt.pid;
	config[NLT_CFG_SKIP_RECV] = opt.no_recv;
	config[NLT_CFG_RTNL_HANDLERS] = addrs[0];
	config[NLT_CFG_RTNL_MUTEX] = addrs[1];
	if (opt.comm) {
		char comm[16] = { 0 };

		strncpy(comm, opt.comm, 15);
		memcpy(&config[NLT_CFG_COMM_LO], comm, 8);
		memcpy(&config[NLT_CFG_COMM_HI], comm + 8, 8);
	}
	for (__u32 i = 0; i < NLT_CFG_MAX; i++)
		if (bpf_map_update_elem(bpf_map__fd(map), &i, &config[i], BPF_ANY))
			die("cannot configure the programs: %s", strerror(errno));
}

static __u64 counter_sum(int fd, __u32 index)
{
	int cpus = libbpf_num_possible_cpus();
	__u64 values[cpus], sum = 0;

	if (bpf_map_lookup_elem(fd, &index, values))
		return 0;
	for (int c = 0; c < cpus; c++)
		sum += values[c];
	return sum;
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

static int open_and_load(void)
{
	if (opt.latency)
		obj = bpf_object__open_mem(latency_obj, latency_obj_end - latency_obj, NULL);
	else
		obj = bpf_object__open_mem(flow_obj, flow_obj_end - flow_obj, NULL);
	if (!obj)
		die("cannot open the embedded BPF object: %s", strerror(errno));
	return bpf_object__load(obj);
}

/* The 32-bit ARM JIT of ARMv6 kernels keeps constants in a literal pool
 * that an instruction reaches only within 4 KB, so it compiles programs of
 * only about 200 instructions or fewer, and the kernel refuses longer ones
 * (ENOTSUPP, 524). The flow programs fit; the latency programs that add to
 * histograms do not. The JIT setting counts when a program is loaded, so
 * those are loaded with it off, for the interpreter, and it is switched
 * back on at once. */
static void load_programs(void)
{
	int err = open_and_load();

	if (err == -524 && jit_enabled() == 1) {
		bpf_object__close(obj);
		load_log[0] = 0;
		if (!set_jit(0))
			die("this kernel's BPF JIT cannot compile the programs, and %s cannot be "
			    "set to 0 (CONFIG_BPF_JIT_ALWAYS_ON?)", JIT_SYSCTL);
		err = open_and_load();
		set_jit(1);
		if (!err)
			fprintf(stderr, "nltrace-agent: this kernel's BPF JIT cannot compile programs "
				"this long (ENOTSUPP); they were loaded for the interpreter, and "
				"bpf_jit_enable is 1 again for every other program\n");
	}
	if (err) {
		fputs(load_log, stderr);
		die("cannot load the BPF programs: %s%s", strerror(-err),
		    -err == EPERM ? " (run as root)" : "");
	}
}

/* ---- main ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: nltrace-agent [-d SECONDS] [-o FILE] [-p PID] [-c COMM] [--no-recv] [--text]\n"
		"       nltrace-agent --latency [-i SECONDS] [--rtnl] [-d SECONDS] [-o FILE] [-p PID] [-c COMM]\n"
		"Attach the netlink probes and write an nltrace stream to stdout (or -o FILE)\n"
		"until Ctrl-C, SIGTERM or -d. Read it on a host with\n"
		"  nltrace flow --input FILE|-     or     nltrace latency --input FILE|-\n"
		"  --text         print an indented tree per message instead (flow only)\n"
		"  --latency      keep latency histograms in the kernel; write them every -i\n"
		"                 seconds and at the end\n"
		"  --rtnl         with --latency: also time the wait for the RTNL mutex\n"
		"  -p, -c         only this process id / command name\n"
		"  --no-recv      do not start trees at netlink_recvmsg\n"
		"  --force        run on a kernel release other than the one it was built for\n"
		"                 (struct offsets may be wrong there)\n"
		"  -v             libbpf's debug log\n"
		"Built by nltrace build for %s, kernel %s.\n", NLT_BUILD_TARGET, NLT_BUILD_RELEASE);
}

static double parse_seconds(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (*end || v <= 0)
		die("%s wants a positive number of seconds, not '%s'", what, s);
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "duration", required_argument, 0, 'd' }, { "output", required_argument, 0, 'o' },
		{ "pid", required_argument, 0, 'p' }, { "comm", required_argument, 0, 'c' },
		{ "interval", required_argument, 0, 'i' }, { "text", no_argument, 0, 'T' },
		{ "latency", no_argument, 0, 'L' }, { "rtnl", no_argument, 0, 'R' },
		{ "no-recv", no_argument, 0, 'N' }, { "force", no_argument, 0, 'F' },
		{ "help", no_argument, 0, 'h' }, { 0 }
	};
	int c;
	char *end;

	while ((c = getopt_long(argc, argv, "d:o:p:c:i:vh", longs, NULL)) != -1) {
		switch (c) {
		case 'd': opt.duration = parse_seconds(optarg, "-d"); break;
		case 'i': opt.interval = parse_seconds(optarg, "-i"); break;
		case 'o': opt.output = optarg; break;
		case 'p':
			opt.pid = strtol(optarg, &end, 10);
			if (*end || opt.pid <= 0)
				die("-p wants a process id, not '%s'", optarg);
			break;
		case 'c': opt.comm = optarg; break;
		case 'T': opt.text = true; break;
		case 'L': opt.latency = true; break;
		case 'R': opt.rtnl = true; break;
		case 'N': opt.no_recv = true; break;
		case 'F': opt.force = true; break;
		case 'v': opt.verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (opt.text && opt.latency)
		die("--text prints flow trees; read --latency streams with nltrace latency --input");
	if ((opt.interval || opt.rtnl) && !opt.latency)
		die("-i and --rtnl go with --latency");
}

int main(int argc, char **argv)
{
	struct ring_buffer *rb = NULL;
	struct utsname u;
	__u64 deadline, next_report;
	int err;

	parse_args(argc, argv);
	uname(&u);
	if (strcmp(u.release, NLT_BUILD_RELEASE) && !opt.force)
		die("built for kernel %s, but this is %s: struct offsets come from the kernel's own "
		    "vmlinux, so rebuild with nltrace build --vmlinux for this kernel (or --force)",
		    NLT_BUILD_RELEASE, u.release);
	out = opt.output ? fopen(opt.output, "wb") : stdout;
	if (!out)
		die("cannot write %s: %s", opt.output, strerror(errno));

	libbpf_set_print(libbpf_log);
	load_programs();
	configure();

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);   /* a closed pipe shows as a write error: detach and exit */
	if (access("/sys/bus/event_source/devices/kprobe", F_OK) &&
	    access("/sys/kernel/tracing/kprobe_events", F_OK) &&
	    access("/sys/kernel/debug/tracing/kprobe_events", F_OK))
		die("this kernel has no kprobes (no kprobe PMU, no kprobe_events): it needs "
		    "CONFIG_KPROBES and CONFIG_KPROBE_EVENTS");
	attaching = true;
	attach_all();
	attaching = false;
	if (!nr_attached)
		die("no probe could be attached (is this kernel built with CONFIG_KPROBES?)");

	if (!opt.text)
		write_header();
	fprintf(stderr, "Tracing netlink: %d probes attached, not traced: %s. Ctrl-C to end.\n",
		nr_attached, missing_text[0] ? missing_text : "none");
	if (!opt.latency) {
		rb = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(obj, "events")),
				      on_record, NULL, NULL);
		if (!rb)
			die("cannot open the ring buffer: %s", strerror(errno));
	}

	deadline = opt.duration ? now_ns() + (__u64)(opt.duration * 1e9) : 0;
	next_report = opt.interval ? now_ns() + (__u64)(opt.interval * 1e9) : 0;
	while (!stopping && (!deadline || now_ns() < deadline)) {
		usleep(100000);   /* the programs wake no one (BPF_RB_NO_WAKEUP) */
		if (rb) {
			err = ring_buffer__consume(rb);
			if (err < 0)
				die("reading the ring buffer: %s", strerror(-err));
		} else if (next_report && now_ns() >= next_report) {
			write_histograms(bpf_map__fd(bpf_object__find_map_by_name(obj, "hists")));
			next_report += (__u64)(opt.interval * 1e9);
		}
		fflush(out);
	}

	/* Detach first, then read what is left, so the counters are final. */
	while (nr_links)
		bpf_link__destroy(links[--nr_links]);
	if (rb) {
		ring_buffer__consume(rb);
		ring_buffer__free(rb);
	} else {
		write_histograms(bpf_map__fd(bpf_object__find_map_by_name(obj, "hists")));
	}
	{
		int fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "counters"));
		char json[256];
		int n = snprintf(json, sizeof(json), "{\"lost\":%llu,\"truncated\":%llu,\"incomplete\":%llu}",
				 (unsigned long long)counter_sum(fd, NLT_CNT_LOST),
				 (unsigned long long)counter_sum(fd, NLT_CNT_TRUNCATED),
				 (unsigned long long)counter_sum(fd, NLT_CNT_INCOMPLETE));

		if (opt.text)
			fprintf(out, "nltrace-agent: %s\n", json);
		else
			write_frame(NLT_FRAME_COUNTERS, json, n, NULL, 0);
	}
	fflush(out);
	bpf_object__close(obj);
	if (out_failed)
		fprintf(stderr, "nltrace-agent: output closed; detached\n");
	return 0;
}
