/* nltrace-agent --text: each message's tree as indented lines, for a serial console. */
#include <string.h>

#include "agent.h"

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

/* The head line, then one line per call. */
void nlt_print_tree(struct nlt_agent *a, const struct nlt_record *rec)
{
	FILE *out = a->out;
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
	if (rec->flags & NLT_REC_SOCKET) {
		struct nlt_socket facts;

		memcpy(&facts, rec->msg, sizeof(facts));
		fputs(" socket", out);
		if (facts.portid)
			fprintf(out, " portid %u", facts.portid);
		if (facts.groups)
			fprintf(out, " groups 0x%x", facts.groups);
		if (facts.netns)
			fprintf(out, " netns %u", facts.netns);
	} else if (rec->msg_len >= 16) {
		fprintf(out, " type %u flags 0x%x seq %u len %u", type, flags, seq, len);
	}
	if (rec->genl_family[0] && rec->msg_len >= 17)
		fprintf(out, " %s cmd %u", rec->genl_family, rec->msg[16]);
	if (rec->handler)
		fprintf(out, " handler %s", nlt_symbolize(a, rec->handler));
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
		else if (n->func == NLT_FN_netlink_insert)
			fprintf(out, " portid %u = %lld", n->aux, (long long)n->ret);
		else if (n->func == NLT_FN_genl_bind)
			fprintf(out, " group %u = %lld", n->aux, (long long)n->ret);
		else if (n->func >= NLT_FN_MAX || !nlt_func_void[n->func])
			fprintf(out, " = %lld", (long long)n->ret);
		fputc('\n', out);
	}
}
