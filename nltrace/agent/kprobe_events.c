/* Return probes with room for many calls in flight, made through tracefs's
 * kprobe_events (CONFIG_KPROBE_EVENTS), as BCC makes the host's. The kprobe
 * PMU that libbpf uses takes the kernel's default room, which before 6.x on
 * a kernel without preemption is one call per CPU: the second
 * netlink_unicast of a request's tree (its ack), or any call made while a
 * reader waits in netlink_recvmsg, then loses its return. Each event is
 * named after this process (nltrace/nlt_<pid>_<n>) and removed at detach;
 * those of an agent that was killed are removed by the next one. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>

#include "agent.h"

#define GROUP "nltrace"
static const char *const tracefs_dirs[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };

static const char *tracefs(void)
{
	char path[128];

	for (size_t i = 0; i < sizeof(tracefs_dirs) / sizeof(tracefs_dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/kprobe_events", tracefs_dirs[i]);
		if (!access(path, W_OK))
			return tracefs_dirs[i];
	}
	return NULL;
}

/* One line to kprobe_events (appended: the other tools' events stay). */
static int kprobe_events_write(const char *line)
{
	char path[128];
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/kprobe_events", tracefs());
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, line, strlen(line)) < 0)
		err = -errno;
	close(fd);
	return err;
}

void nlt_kprobe_events_remove(const char *event)
{
	char line[160];

	snprintf(line, sizeof(line), "-:" GROUP "/%s\n", event);
	kprobe_events_write(line);
}

/* The events of agents no longer running. */
void nlt_kprobe_events_remove_stale(void)
{
	char path[128], line[512], event[128];
	FILE *f;
	int pid;

	if (!tracefs())
		return;
	snprintf(path, sizeof(path), "%s/kprobe_events", tracefs());
	f = fopen(path, "re");
	if (!f)
		return;
	/* "r128:nltrace/nlt_412_3 netlink_unicast" */
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%*[^:]:" GROUP "/%127s", event) == 1 && sscanf(event, "nlt_%d_", &pid) == 1 &&
		    kill(pid, 0) && errno == ESRCH)
			nlt_kprobe_events_remove(event);
	fclose(f);
}

/* A perf event for a new return probe on symbol with room for maxactive
 * calls; its name in event. Returns the perf event's fd, or -errno
 * (-ENOENT: no writable tracefs). */
int nlt_kretprobe_event(const char *symbol, int maxactive, char *event, size_t size)
{
	static int serial;
	struct perf_event_attr attr = { .type = PERF_TYPE_TRACEPOINT, .size = sizeof(attr),
					.sample_period = 1, .wakeup_events = 1 };
	char line[256], path[256];
	FILE *f;
	int err, fd;

	if (!tracefs())
		return -ENOENT;
	snprintf(event, size, "nlt_%d_%d", (int)getpid(), serial++);
	snprintf(line, sizeof(line), "r%d:" GROUP "/%s %s\n", maxactive, event, symbol);
	err = kprobe_events_write(line);
	if (err)
		return err;
	snprintf(path, sizeof(path), "%s/events/" GROUP "/%s/id", tracefs(), event);
	f = fopen(path, "re");
	if (!f || fscanf(f, "%llu", (unsigned long long *)&attr.config) != 1) {
		err = f ? -EINVAL : -errno;
		if (f)
			fclose(f);
		nlt_kprobe_events_remove(event);
		return err;
	}
	fclose(f);
	/* a kprobe event's BPF program runs on every CPU: cpu 0 only names the event */
	fd = syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		nlt_kprobe_events_remove(event);
		return err;
	}
	return fd;
}
