/* nltrace-agent --text: each message's tree as indented lines, for a serial
 * console, with the names nltrace flow gives (agent_names.c). */
#include <errno.h>
#include <string.h>
#include <linux/netlink.h>

#include "agent.h"

static const char *value_name(const struct nlt_name *table, int n, int value)
{
	for (int i = 0; i < n; i++)
		if (table[i].value == value)
			return table[i].name;
	return NULL;
}

static const char *protocol_name(__u16 protocol)
{
	static char buf[24];
	const char *name = value_name(nlt_protocol_names, nlt_nr_protocol_names, protocol);

	if (name)
		return name;
	snprintf(buf, sizeof(buf), "NETLINK_%u", protocol);
	return buf;
}

static const char *errno_name(int err)
{
	static char buf[16];
	const char *name = value_name(nlt_errno_names, nlt_nr_errno_names, err < 0 ? -err : err);

	if (name)
		return name;
	snprintf(buf, sizeof(buf), "E%d", err < 0 ? -err : err);
	return buf;
}

static const struct nlt_type_name *type_name(__u16 protocol, __u16 type)
{
	for (int i = 0; i < nlt_nr_type_names; i++)
		if (nlt_type_names[i].protocol == protocol && nlt_type_names[i].type == type)
			return &nlt_type_names[i];
	return NULL;
}

static const char *genl_cmd_name(const char *family, __u8 cmd)
{
	for (int i = 0; i < nlt_nr_genl_names; i++)
		if (nlt_genl_names[i].cmd == cmd && !strcmp(nlt_genl_names[i].family, family))
			return nlt_genl_names[i].name;
	return NULL;
}

/* "REQUEST|ACK", as the host's view shows flags; bits without a name in hex. */
static void print_flags(FILE *out, __u16 flags, char kind)
{
	__u16 rest = flags;
	const char *sep = "";

	for (int i = 0; i < nlt_nr_flag_names; i++) {
		const struct nlt_flag_name *f = &nlt_flag_names[i];

		if ((f->kind && f->kind != kind) || (flags & f->bit) != f->bit || !(rest & f->bit))
			continue;
		fprintf(out, "%s%s", sep, f->name + strlen("NLM_F_"));
		rest &= ~f->bit;
		sep = "|";
	}
	if (rest)
		fprintf(out, "%s%#x", sep, rest);
	else if (!*sep)
		fputc('-', out);
}

static void print_socket(FILE *out, const struct nlt_record *rec)
{
	struct nlt_socket facts;

	memcpy(&facts, rec->msg, sizeof(facts));
	fputs(" socket", out);
	if (facts.portid)
		fprintf(out, " portid %u", facts.portid);
	if (facts.groups)
		fprintf(out, " groups 0x%x", facts.groups);
	if (facts.netns)
		fprintf(out, " netns %u", facts.netns);
}

/* Two returns are the kernel's signals, not failures, named as the host's
 * view names them (nltrace/trees.py, mark_signals): a broadcast's -ESRCH
 * when no socket listens on the group, and the -EINTR of a call that
 * started a dump. */
static int is_broadcast(__u32 func)
{
	return func == NLT_FN_netlink_broadcast || func == NLT_FN_netlink_broadcast_filtered;
}

/* Does node i's subtree (the nodes after it, deeper than it) hold a netlink_dump? */
static int dumps_below(const struct nlt_record *rec, int i)
{
	for (int j = i + 1; j < rec->nr_nodes && j < NLT_MAX_NODES && rec->nodes[j].depth > rec->nodes[i].depth; j++)
		if (rec->nodes[j].func == NLT_FN_netlink_dump)
			return 1;
	return 0;
}

/* The message, as the host's view names it: TYPE [FLAGS] seq= portid= len=. */
static void print_message(FILE *out, const struct nlt_record *rec)
{
	__u32 len, seq, portid;
	__u16 type, flags;
	const struct nlt_type_name *t;
	const char *family;
	char kind;

	memcpy(&len, rec->msg, 4);
	memcpy(&type, rec->msg + 4, 2);
	memcpy(&flags, rec->msg + 6, 2);
	memcpy(&seq, rec->msg + 8, 4);
	memcpy(&portid, rec->msg + 12, 4);
	t = type_name(rec->protocol, type);
	family = nlt_genl_family(rec);
	kind = t ? t->kind : rec->protocol == NETLINK_GENERIC ? 'g' : 0;   /* genl: GET's flag meanings */
	if (family && !t && rec->msg_len >= 17) {
		const char *cmd = genl_cmd_name(family, rec->msg[16]);

		if (cmd)
			fprintf(out, " %s/%s", family, cmd);
		else
			fprintf(out, " %s/%u", family, rec->msg[16]);
	} else if (t) {
		fprintf(out, " %s", t->name);
	} else {
		fprintf(out, " type %u", type);
	}
	fputs(" [", out);
	print_flags(out, flags, kind);
	fprintf(out, "] seq=%u portid=%u len=%u", seq, portid, len);
}

/* The head line, then one line per call. */
void nlt_print_tree(struct nlt_agent *a, const struct nlt_record *rec)
{
	FILE *out = a->out;

	fprintf(out, "%llu.%06llu %s[%u/%u] %s", (unsigned long long)(rec->ts_ns / 1000000000),
		(unsigned long long)(rec->ts_ns / 1000 % 1000000), rec->comm, rec->pid, rec->tid,
		rec->protocol == 0xffff ? "?" : protocol_name(rec->protocol));
	if (rec->flags & NLT_REC_SOCKET)
		print_socket(out, rec);
	else if (rec->msg_len >= 16)
		print_message(out, rec);
	else
		fputs(" (no message captured)", out);
	if (rec->handler)
		fprintf(out, " -> %s", nlt_symbolize(a, rec->handler));
	if (rec->error)
		fprintf(out, "  %s", errno_name(rec->error));
	if (rec->extack[0])
		fprintf(out, " \"%s\"", rec->extack);
	fputc('\n', out);
	for (int i = 0; i < rec->nr_nodes && i < NLT_MAX_NODES; i++) {
		const struct nlt_node *n = &rec->nodes[i];
		const char *name = n->func < NLT_FN_MAX ? nlt_func_names[n->func] : NULL;

		fprintf(out, "%*s%s", 2 * (n->depth + 1), "", name ? name : "?");
		if (!n->end_ns) {
			fputs(n->flags & NLT_NODE_INLINED ? " (inlined: no duration)\n" : " (return not seen)\n", out);
			continue;
		}
		fprintf(out, " %llu.%03llu us", (unsigned long long)((n->end_ns - n->start_ns) / 1000),
			(unsigned long long)((n->end_ns - n->start_ns) % 1000));
		if (n->func == NLT_FN_netlink_ack)
			fprintf(out, " ack %d", (int)n->aux);
		else if (n->func == NLT_FN_netlink_insert)
			fprintf(out, " portid %u", n->aux);
		else if (n->func == NLT_FN_genl_bind)
			fprintf(out, " group %u", n->aux);
		if (n->func >= NLT_FN_MAX || !nlt_func_void[n->func]) {
			fprintf(out, " = %lld", (long long)n->ret);
			if (is_broadcast(n->func) && n->ret == -ESRCH)
				fputs(" (no listener)", out);
			else if (n->ret == -EINTR && dumps_below(rec, i))
				fputs(" (dump started)", out);
			else if (n->ret < 0 && n->ret >= -4095)
				fprintf(out, " %s", errno_name((int)n->ret));
		}
		fputc('\n', out);
	}
}
