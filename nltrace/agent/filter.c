/* --protocol and --type, as nltrace flow and latency take them: a number,
 * a name nltrace decodes (RTM_GETLINK, NFT_MSG_NEWTABLE, ...), or a generic
 * netlink FAMILY[/COMMAND]. Flow trees are filtered here, as the host's
 * Filters do; latency's filters go to the kernel (config words), which
 * compares a genl family's id, asked of the kernel's nlctrl. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/netlink.h>

#include "agent.h"
#include "genl_family.h"

static int number(const char *s)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	v = strtol(s, &end, 10);
	return *end || v > 0xffff ? -1 : (int)v;
}

static int protocol_value(const char *arg)
{
	char name[64];

	if (number(arg) >= 0)
		return number(arg);
	snprintf(name, sizeof(name), "%s%s", strncasecmp(arg, "NETLINK_", 8) ? "NETLINK_" : "", arg);
	for (int i = 0; i < nlt_nr_protocol_names; i++)
		if (!strcasecmp(nlt_protocol_names[i].name, name))
			return nlt_protocol_names[i].value;
	nlt_die("unknown protocol '%s'", arg);
}

void nlt_resolve_filters(struct nlt_agent_options *o)
{
	const char *slash;

	if (o->protocol_arg)
		o->protocol = protocol_value(o->protocol_arg);
	if (!o->type_arg)
		return;
	if (number(o->type_arg) >= 0) {
		o->msg_type = number(o->type_arg);
		return;
	}
	for (int i = 0; i < nlt_nr_type_names; i++) {
		if (!strcasecmp(nlt_type_names[i].name, o->type_arg)) {
			o->protocol = nlt_type_names[i].protocol;
			o->msg_type = nlt_type_names[i].type;
			return;
		}
	}
	/* FAMILY[/COMMAND] */
	slash = strchr(o->type_arg, '/');
	snprintf(o->genl_family, sizeof(o->genl_family), "%.*s",
		 (int)(slash ? slash - o->type_arg : (long)strlen(o->type_arg)), o->type_arg);
	o->protocol = NETLINK_GENERIC;
	if (slash) {
		o->cmd = number(slash + 1);
		for (int i = 0; o->cmd < 0 && i < nlt_nr_genl_names; i++)
			if (!strcmp(nlt_genl_names[i].family, o->genl_family) && !strcasecmp(nlt_genl_names[i].name, slash + 1))
				o->cmd = nlt_genl_names[i].cmd;
		if (o->cmd < 0)
			nlt_die("unknown command '%s' of %s: give its number", slash + 1, o->genl_family);
	}
	if (o->latency) {
		int id = nlt_genl_family_id(o->genl_family);

		if (id == -ENOENT)
			nlt_die("unknown generic netlink family '%s' (not registered on this kernel)", o->genl_family);
		if (id < 0)
			nlt_die("asking nlctrl for the family %s: %s", o->genl_family, strerror(-id));
		o->msg_type = id;
	}
}

/* The family ids this agent has seen a request's dispatch name: a reply or
 * an event carries only the id, which the kernel chose at registration. */
#define NLT_LEARNED_FAMILIES 32
static struct {
	__u16 id;
	char name[NLT_GENL_NAMSIZ];
} learned[NLT_LEARNED_FAMILIES];
static int nr_learned;

/* The generic netlink family of a record's message, as the host's decoding
 * names it: the one its dispatch captured, nlctrl's fixed id, or one the
 * agent learned from an earlier request of that id. */
const char *nlt_genl_family(const struct nlt_record *rec)
{
	__u16 type;
	int i;

	if (rec->protocol != NETLINK_GENERIC || rec->flags & NLT_REC_SOCKET || rec->msg_len < 16)
		return NULL;
	memcpy(&type, rec->msg + 4, 2);
	if (type == GENL_ID_CTRL)
		return "nlctrl";
	for (i = 0; i < nr_learned && learned[i].id != type; i++)
		;
	if (rec->genl_family[0] && (i < nr_learned || nr_learned < NLT_LEARNED_FAMILIES)) {
		learned[i].id = type;
		memcpy(learned[i].name, rec->genl_family, sizeof(learned[i].name));
		nr_learned += i == nr_learned;
	}
	if (rec->genl_family[0])
		return rec->genl_family;
	return i < nr_learned ? learned[i].name : NULL;
}

/* Whether a flow record passes --protocol and --type. */
bool nlt_record_matches(const struct nlt_agent_options *o, const struct nlt_record *rec)
{
	__u16 type;

	if (o->protocol >= 0 && rec->protocol != o->protocol)
		return false;
	if (o->msg_type < 0 && !o->genl_family[0])
		return true;
	if (rec->flags & NLT_REC_SOCKET || rec->msg_len < 16)
		return false;   /* no message: no type */
	memcpy(&type, rec->msg + 4, 2);
	if (o->genl_family[0]) {
		const char *family = nlt_genl_family(rec);

		return family && !strcmp(family, o->genl_family) && (o->cmd < 0 || (rec->msg_len > 16 && rec->msg[16] == o->cmd));
	}
	return type == o->msg_type;
}
