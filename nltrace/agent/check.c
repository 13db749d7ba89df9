/* nltrace-agent --check: can this kernel run the agent? A table like
 * `nltrace doctor`'s, each failing line with what to do, and an exit
 * status: 0 when every required line is ok. The options come from
 * nltrace's config fragment (nltrace/kconfig), through agent_build.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/utsname.h>
#include <zlib.h>

#include "agent.h"

static const struct { const char *option, *value; int required; } wanted[] = NLT_KCONFIG_WANTED;
#define NR_WANTED ((int)(sizeof(wanted) / sizeof(wanted[0])))
#define FIX_CONFIG "merge " NLT_KCONFIG_FRAGMENTS " (nltrace/kconfig) into the kernel's config and rebuild it"

static int failed;

static void row(const char *check, int ok, int required, const char *detail, const char *fix)
{
	printf("%-26s %-8s %s%s%s\n", check, ok ? "ok" : required ? "MISSING" : "absent", detail,
	       ok || !fix ? "" : "  -> ", ok || !fix ? "" : fix);
	if (!ok && required)
		failed = 1;
}

/* The value /proc/config.gz gives option ("n" when it is not set); NULL
 * when there is no /proc/config.gz. */
static char (*read_config(void))[64]
{
	static char values[NR_WANTED][64];
	char line[512];
	gzFile f = gzopen("/proc/config.gz", "rb");

	if (!f)
		return NULL;
	for (int i = 0; i < NR_WANTED; i++)
		strcpy(values[i], "n");
	while (gzgets(f, line, sizeof(line))) {
		line[strcspn(line, "\n")] = 0;
		for (int i = 0; i < NR_WANTED; i++) {
			size_t n = strlen(wanted[i].option);

			if (!strncmp(line, wanted[i].option, n) && line[n] == '=')
				snprintf(values[i], sizeof(values[i]), "%s", line + n + 1);
		}
	}
	gzclose(f);
	return values;
}

static int read_int(const char *path, int *value)
{
	FILE *f = fopen(path, "r");
	int ok = f && fscanf(f, "%d", value) == 1;

	if (f)
		fclose(f);
	return ok;
}

int nlt_check(void)
{
	struct utsname u;
	char detail[256];
	char (*config)[64] = read_config();
	int jit;

	uname(&u);
	printf("nltrace-agent --check: kernel %s (%s), agent built for %s\n", u.release, u.machine,
	       NLT_BUILD_RELEASE);
	printf("%-26s %-8s %s\n", "check", "state", "detail");
	snprintf(detail, sizeof(detail), "running %s, built for %s", u.release, NLT_BUILD_RELEASE);
	row("kernel release", !strcmp(u.release, NLT_BUILD_RELEASE), 1, detail,
	    "struct offsets come from the kernel's vmlinux: nltrace build --vmlinux of this kernel");
	row("root", geteuid() == 0, 1, geteuid() == 0 ? "uid 0" : "not uid 0", "run it as root");
	row("/proc/config.gz", config != NULL, 0, config ? "readable" : strerror(errno),
	    "CONFIG_IKCONFIG_PROC=y (in the fragment) lets this check read the options");
	for (int i = 0; config && i < NR_WANTED; i++) {
		int ok = !strcmp(config[i], wanted[i].value);

		snprintf(detail, sizeof(detail), "%s (the fragment sets %s)", config[i], wanted[i].value);
		row(wanted[i].option, ok, wanted[i].required, ok ? wanted[i].value : detail, FIX_CONFIG);
	}
	row("kprobe PMU", !access("/sys/bus/event_source/devices/kprobe/type", F_OK), 1,
	    "/sys/bus/event_source/devices/kprobe", "CONFIG_KPROBES, CONFIG_KPROBE_EVENTS and CONFIG_PERF_EVENTS: " FIX_CONFIG);
	row("bpf() system call", !access("/proc/sys/kernel/unprivileged_bpf_disabled", F_OK), 1,
	    "/proc/sys/kernel/unprivileged_bpf_disabled", "CONFIG_BPF_SYSCALL: " FIX_CONFIG);
	if (read_int("/proc/sys/net/core/bpf_jit_enable", &jit)) {
		snprintf(detail, sizeof(detail), "bpf_jit_enable=%d%s", jit, jit ? "" : " (the interpreter: slower)");
		row("BPF JIT", jit != 0, 0, detail, "echo 1 > /proc/sys/net/core/bpf_jit_enable");
	} else {
		row("BPF JIT", 0, 0, "no /proc/sys/net/core/bpf_jit_enable (the interpreter: slower)",
		    "CONFIG_BPF_JIT: " FIX_CONFIG);
	}
	printf("%s\n", failed ? "nltrace-agent cannot run here: fix the MISSING lines"
			      : "nltrace-agent can run here");
	return failed;
}
