/* nltrace-agent's command line, main loop and signals: parse, load, attach, read until the end, detach. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/utsname.h>
#include <bpf/libbpf.h>

#include "agent.h"

volatile sig_atomic_t nlt_stopping;

static void on_signal(int signo)
{
	(void)signo;
	nlt_stopping = 1;
}

void nlt_die(const char *fmt, ...)
{
	va_list ap;

	fputs("nltrace-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

__u64 nlt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);   /* the clock bpf_ktime_get_ns() reads */
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: nltrace-agent [-d SECONDS] [-o FILE] [FILTERS] [--no-recv] [--text]\n"
		"       nltrace-agent --latency [-i SECONDS] [--rtnl] [-d SECONDS] [-o FILE] [FILTERS]\n"
		"       nltrace-agent --check\n"
		"Attach the netlink probes and write an nltrace stream to stdout (or -o FILE)\n"
		"until Ctrl-C, SIGTERM or -d. Read it on a host with\n"
		"  nltrace flow --input FILE|-     or     nltrace latency --input FILE|-\n"
		"  --text         print an indented tree per message instead (flow only)\n"
		"  --check        say whether this kernel can run the agent, and what to do\n"
		"                 about each line that fails; exit status 1 if it cannot\n"
		"  --latency      keep latency histograms in the kernel; write them every -i\n"
		"                 seconds and at the end\n"
		"  --rtnl         with --latency: also time the wait for the RTNL mutex\n"
		"FILTERS:\n"
		"  -p, -c         only this process id / command name\n"
		"  --protocol P   only this protocol: ROUTE, GENERIC, NETLINK_USERSOCK, 2, ...\n"
		"  --type T       only this message type: RTM_GETLINK, NFT_MSG_NEWTABLE, a\n"
		"                 generic netlink FAMILY[/COMMAND] (nlctrl/CTRL_CMD_GETFAMILY), or a number\n"
		"  --no-recv      do not start trees at netlink_recvmsg\n"
		"  --snaplen N    capture at most N bytes of each message (16 to %d, the default;\n"
		"                 16: headers only, no payloads)\n"
		"  --force        run on a kernel release other than the one it was built for\n"
		"                 (struct offsets may be wrong there)\n"
		"  --ready-file PATH\n"
		"                 once every probe is attached, write {\"probes\": N} to PATH\n"
		"  -v             libbpf's debug log\n"
		"Built by nltrace build for %s, kernel %s.\n", NLT_BUILD_TARGET, NLT_BUILD_RELEASE);
}

static double parse_seconds(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (*end || v <= 0)
		nlt_die("%s wants a positive number of seconds, not '%s'", what, s);
	return v;
}

static void parse_args(struct nlt_agent_options *opt, int argc, char **argv)
{
	static const struct option longs[] = {
		{ "duration", required_argument, 0, 'd' }, { "output", required_argument, 0, 'o' },
		{ "pid", required_argument, 0, 'p' }, { "comm", required_argument, 0, 'c' },
		{ "interval", required_argument, 0, 'i' }, { "text", no_argument, 0, 'T' },
		{ "latency", no_argument, 0, 'L' }, { "rtnl", no_argument, 0, 'R' },
		{ "no-recv", no_argument, 0, 'N' }, { "force", no_argument, 0, 'F' },
		{ "ready-file", required_argument, 0, 'Y' }, { "check", no_argument, 0, 'C' },
		{ "protocol", required_argument, 0, 'P' }, { "type", required_argument, 0, 'M' },
		{ "snaplen", required_argument, 0, 'S' },
		{ "help", no_argument, 0, 'h' }, { 0 }
	};
	int c;
	char *end;

	while ((c = getopt_long(argc, argv, "d:o:p:c:i:vh", longs, NULL)) != -1) {
		switch (c) {
		case 'd': opt->duration = parse_seconds(optarg, "-d"); break;
		case 'i': opt->interval = parse_seconds(optarg, "-i"); break;
		case 'o': opt->output = optarg; break;
		case 'p':
			opt->pid = strtol(optarg, &end, 10);
			if (*end || opt->pid <= 0)
				nlt_die("-p wants a process id, not '%s'", optarg);
			break;
		case 'c': opt->comm = optarg; break;
		case 'S':
			opt->snaplen = strtol(optarg, &end, 10);
			if (*end || opt->snaplen < NLT_SNAPLEN_MIN || opt->snaplen > NLT_MSG_CAPTURE)
				nlt_die("--snaplen wants %d to %d bytes, not '%s'", NLT_SNAPLEN_MIN, NLT_MSG_CAPTURE,
					optarg);
			break;
		case 'T': opt->text = true; break;
		case 'L': opt->latency = true; break;
		case 'R': opt->rtnl = true; break;
		case 'N': opt->skip_recv = true; break;
		case 'F': opt->force = true; break;
		case 'Y': opt->ready_file = optarg; break;
		case 'C': opt->check = true; break;
		case 'P': opt->protocol_arg = optarg; break;
		case 'M': opt->type_arg = optarg; break;
		case 'v': opt->verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		nlt_die("unexpected argument '%s' (see --help)", argv[optind]);
	if (opt->text && opt->latency)
		nlt_die("--text prints flow trees; read --latency streams with nltrace latency --input");
	if ((opt->interval || opt->rtnl) && !opt->latency)
		nlt_die("-i and --rtnl go with --latency");
	nlt_resolve_filters(opt);
}

/* The handshake for whoever started the agent and waits for it (pwru's
 * --ready-file): written once every probe is attached, under another name
 * first and then renamed, so that whoever sees PATH sees the whole line. */
static void write_ready_file(const char *path, int nr_probes)
{
	size_t size = strlen(path) + 32;
	char *tmp = malloc(size);
	FILE *f;
	bool ok;

	if (!tmp)
		nlt_die("out of memory");
	snprintf(tmp, size, "%s.%ld.tmp", path, (long)getpid());
	f = fopen(tmp, "w");
	ok = f && fprintf(f, "{\"probes\": %d}\n", nr_probes) > 0;
	if (!f || fclose(f) || !ok || rename(tmp, path)) {
		int err = errno;

		unlink(tmp);
		nlt_die("cannot write %s: %s", path, strerror(err));
	}
	free(tmp);
}

int main(int argc, char **argv)
{
	static struct nlt_agent agent;   /* zeroed, in .bss: not in the file */
	struct nlt_agent *a = &agent;
	struct ring_buffer *rb = NULL;
	struct utsname u;
	__u64 deadline, next_report;
	int err;

	a->opt.protocol = a->opt.msg_type = a->opt.cmd = -1;   /* any, unless --protocol or --type */
	a->opt.snaplen = NLT_MSG_CAPTURE;
	parse_args(&a->opt, argc, argv);
	if (a->opt.check)
		return nlt_check();
	uname(&u);
	if (strcmp(u.release, NLT_BUILD_RELEASE) && !a->opt.force)
		nlt_die("built for kernel %s, but this is %s: struct offsets come from the kernel's own "
			"vmlinux, so rebuild with nltrace build --vmlinux for this kernel (or --force)",
			NLT_BUILD_RELEASE, u.release);
	a->out = a->opt.output ? fopen(a->opt.output, "wb") : stdout;
	if (!a->out)
		nlt_die("cannot write %s: %s", a->opt.output, strerror(errno));

	nlt_load_programs(a);
	nlt_configure(a);

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);   /* a closed pipe shows as a write error: detach and exit */
	if (access("/sys/bus/event_source/devices/kprobe", F_OK) &&
	    access("/sys/kernel/tracing/kprobe_events", F_OK) &&
	    access("/sys/kernel/debug/tracing/kprobe_events", F_OK))
		nlt_die("this kernel has no kprobes (no kprobe PMU, no kprobe_events): it needs "
			"CONFIG_KPROBES and CONFIG_KPROBE_EVENTS");
	nlt_attach_all(a);
	if (!a->nr_attached)
		nlt_die("no probe could be attached (is this kernel built with CONFIG_KPROBES?)");

	if (!a->opt.text)
		nlt_write_header(a);
	fprintf(stderr, "Tracing netlink: %d probes attached, not traced: %s. Ctrl-C to end.\n",
		a->nr_attached, a->missing_text[0] ? a->missing_text : "none");
	if (a->opt.ready_file)
		write_ready_file(a->opt.ready_file, a->nr_attached);
	if (!a->opt.latency) {
		rb = ring_buffer__new(bpf_map__fd(a->events), nlt_on_record, a, NULL);
		if (!rb)
			nlt_die("cannot open the ring buffer: %s", strerror(errno));
	}

	deadline = a->opt.duration ? nlt_now_ns() + (__u64)(a->opt.duration * 1e9) : 0;
	next_report = a->opt.interval ? nlt_now_ns() + (__u64)(a->opt.interval * 1e9) : 0;
	while (!nlt_stopping && (!deadline || nlt_now_ns() < deadline)) {
		usleep(100000);   /* the programs wake no one (BPF_RB_NO_WAKEUP) */
		if (rb) {
			err = ring_buffer__consume(rb);
			if (err < 0)
				nlt_die("reading the ring buffer: %s", strerror(-err));
		} else if (next_report && nlt_now_ns() >= next_report) {
			nlt_write_histograms(a);
			next_report += (__u64)(a->opt.interval * 1e9);
		}
		fflush(a->out);
	}

	/* Detach first, then read what is left, so the counters are final. */
	nlt_detach_all(a);
	if (rb) {
		ring_buffer__consume(rb);
		ring_buffer__free(rb);
	} else {
		nlt_write_histograms(a);
	}
	nlt_write_counters(a);
	fflush(a->out);
	nlt_unload(a);
	if (a->out_failed)
		fprintf(stderr, "nltrace-agent: output closed; detached\n");
	return 0;
}
