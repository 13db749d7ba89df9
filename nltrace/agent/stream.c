/* nltrace-agent's output stream (records.h): its frames, header, symbols, records, histograms and counters. */
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"

void nlt_write_frame(struct nlt_agent *a, __u8 kind, const void *x, __u32 xlen, const void *y, __u32 ylen)
{
	struct nlt_frame frame = { .kind = kind, .length = xlen + ylen };

	if (a->out_failed)
		return;
	if (fwrite(&frame, sizeof(frame), 1, a->out) != 1 || (xlen && fwrite(x, xlen, 1, a->out) != 1) ||
	    (ylen && fwrite(y, ylen, 1, a->out) != 1)) {
		a->out_failed = true;   /* the reader went away: stop, detach, exit */
		nlt_stopping = 1;
	}
}

/* Append ,"name" to a comma-separated JSON list of identifiers. */
void nlt_list_add(char *list, size_t size, const char *name)
{
	size_t len = strlen(list);

	snprintf(list + len, size - len, "%s\"%s\"", len ? "," : "", name);
}

void nlt_write_header(struct nlt_agent *a)
{
	struct timespec real, mono;
	struct utsname u;
	char json[4096];
	int n;

	uname(&u);
	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	/* A kernel release holds no quotes or backslashes, a probe name neither. */
	n = snprintf(json, sizeof(json),
		     "{\"version\":%d,\"record_size\":%u,\"node_size\":%u,\"arch\":\"%s\","
		     "\"pointer_size\":%u,\"endianness\":\"%s\",\"kernel_release\":\"%s\","
		     "\"built_for\":\"%s\",\"clock\":\"CLOCK_MONOTONIC\",\"realtime_offset_ns\":%lld,"
		     "\"source\":\"nltrace-agent\","
		     "\"mode\":\"%s\",\"probes\":[%s],\"not_traced\":[%s]}",
		     NLT_STREAM_VERSION, (unsigned)sizeof(struct nlt_record),
		     (unsigned)sizeof(struct nlt_node), u.machine, (unsigned)sizeof(void *),
		     __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? "little" : "big", u.release,
		     NLT_BUILD_RELEASE,
		     (long long)(real.tv_sec - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec),
		     a->opt.latency ? "latency" : "flow", a->attached, a->missing);
	fwrite("NLTRACE", 8, 1, a->out);   /* the magic, with its NUL */
	nlt_write_frame(a, NLT_FRAME_HEADER, json, n, NULL, 0);
}

/* The name of the function at addr, looked up in /proc/kallsyms once per
 * address; the stream gets a SYMBOLS frame for each name found. */
const char *nlt_symbolize(struct nlt_agent *a, __u64 addr)
{
	char line[512], name[64], type, json[128];
	unsigned long long found_addr;
	bool found = false;
	FILE *f;
	int i, n;

	for (i = 0; i < a->nr_symbols; i++)
		if (a->symbols[i].addr == addr)
			return a->symbols[i].name;
	if (a->nr_symbols == NLT_MAX_SYMBOLS || !(f = fopen("/proc/kallsyms", "r")))
		return NULL;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%llx %c %63s", &found_addr, &type, name) == 3 && found_addr == addr;
	fclose(f);
	a->symbols[a->nr_symbols].addr = addr;
	if (found)
		snprintf(a->symbols[a->nr_symbols].name, sizeof(a->symbols[0].name), "%s", name);
	else
		snprintf(a->symbols[a->nr_symbols].name, sizeof(a->symbols[0].name), "0x%llx",
			 (unsigned long long)addr);
	if (found && !a->opt.text) {
		n = snprintf(json, sizeof(json), "{\"0x%llx\":\"%s\"}", (unsigned long long)addr, name);
		nlt_write_frame(a, NLT_FRAME_SYMBOLS, json, n, NULL, 0);
	}
	return a->symbols[a->nr_symbols++].name;
}

/* flow's ring buffer callback (ctx: the agent): one RECORD frame, or a
 * tree on the console with --text. */
int nlt_on_record(void *ctx, void *data, size_t size)
{
	static struct nlt_record clean;   /* the ring's pages are read-only here */
	struct nlt_agent *a = ctx;
	const struct nlt_record *rec = data;

	if (!nlt_record_matches(&a->opt, rec))
		return 0;
	if (a->opt.text) {
		nlt_print_tree(a, rec);
		return 0;
	}
	if (rec->handler)
		nlt_symbolize(a, rec->handler);   /* its SYMBOLS frame goes before the record */
	/* The kernel reuses a thread's record: msg[] past this message still
	 * holds earlier ones, which must not reach the stream. */
	if (size > sizeof(clean) || rec->msg_len > NLT_MSG_CAPTURE)
		return 0;
	memcpy(&clean, data, size);
	memset(clean.msg + clean.msg_len, 0, NLT_MSG_CAPTURE - clean.msg_len);
	nlt_write_frame(a, NLT_FRAME_RECORD, &clean, size, NULL, 0);
	return 0;
}

/* One HISTOGRAMS frame: every key of the per-CPU hash, summed over CPUs; the
 * max entries are taken as the largest per CPU and deleted, so that each
 * frame's maxima cover the time since the previous frame. */
void nlt_write_histograms(struct nlt_agent *a)
{
	int map_fd = bpf_map__fd(a->hists);
	int cpus = libbpf_num_possible_cpus(), n = 0, cap = 256;
	struct nlt_hist_entry *entries = calloc(cap, sizeof(*entries));
	__u64 *values = calloc(cpus, sizeof(__u64));
	struct nlt_hist_key key, next, *prev = NULL;
	struct nlt_hist_head head = { .ts_ns = nlt_now_ns() };

	if (!entries || !values)
		nlt_die("out of memory");
	while (!bpf_map_get_next_key(map_fd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(map_fd, &key, values))
			continue;   /* deleted meanwhile */
		if (n == cap && !(entries = realloc(entries, (cap *= 2) * sizeof(*entries))))
			nlt_die("out of memory");
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
	nlt_write_frame(a, NLT_FRAME_HISTOGRAMS, &head, sizeof(head), entries, n * sizeof(*entries));
	free(entries);
	free(values);
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

/* The last frame: what the programs counted (a line with --text). */
void nlt_write_counters(struct nlt_agent *a)
{
	int fd = bpf_map__fd(a->counters);
	char json[256];
	int n = snprintf(json, sizeof(json), "{\"lost\":%llu,\"truncated\":%llu,\"incomplete\":%llu}",
			 (unsigned long long)counter_sum(fd, NLT_CNT_LOST),
			 (unsigned long long)counter_sum(fd, NLT_CNT_TRUNCATED),
			 (unsigned long long)counter_sum(fd, NLT_CNT_INCOMPLETE));

	if (a->opt.text)
		fprintf(a->out, "nltrace-agent: %s\n", json);
	else
		nlt_write_frame(a, NLT_FRAME_COUNTERS, json, n, NULL, 0);
}
