/* The id the running kernel gave a generic netlink family, asked of nlctrl
 * (CTRL_CMD_GETFAMILY): the agent's --type FAMILY for latency, and the
 * board's test client (tests/clients/bmcnl.c). Returns the id or -errno
 * (-ENOENT: not registered). */
#ifndef NLT_GENL_FAMILY_H
#define NLT_GENL_FAMILY_H

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>

static int nlt_genl_family_id(const char *family)
{
	struct {
		struct nlmsghdr n;
		struct genlmsghdr g;
		char buf[256];
	} req = { .n.nlmsg_type = GENL_ID_CTRL, .n.nlmsg_flags = NLM_F_REQUEST, .g.cmd = CTRL_CMD_GETFAMILY, .g.version = 1 };
	struct nlattr *attr = (struct nlattr *)req.buf;
	char reply[4096] __attribute__((aligned(NLMSG_ALIGNTO)));
	size_t size = strlen(family) + 1;
	int fd, len, id = -ENOENT;

	if (size > sizeof(req.buf) - NLA_HDRLEN)
		return -ENAMETOOLONG;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return -errno;
	attr->nla_type = CTRL_ATTR_FAMILY_NAME;
	attr->nla_len = NLA_HDRLEN + size;
	memcpy((char *)attr + NLA_HDRLEN, family, size);
	req.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(attr->nla_len);
	if (send(fd, &req, req.n.nlmsg_len, 0) < 0 || (len = recv(fd, reply, sizeof(reply), 0)) < 0) {
		id = -errno;
		close(fd);
		return id;
	}
	close(fd);
	struct nlmsghdr *n = (struct nlmsghdr *)reply;
	if (!NLMSG_OK(n, (unsigned)len))
		return -EBADMSG;
	if (n->nlmsg_type == NLMSG_ERROR)
		return ((struct nlmsgerr *)NLMSG_DATA(n))->error ?: -ENOENT;
	len = n->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
	for (attr = (struct nlattr *)((char *)NLMSG_DATA(n) + GENL_HDRLEN); len >= NLA_HDRLEN && attr->nla_len >= NLA_HDRLEN;
	     len -= NLA_ALIGN(attr->nla_len), attr = (struct nlattr *)((char *)attr + NLA_ALIGN(attr->nla_len)))
		if (attr->nla_type == CTRL_ATTR_FAMILY_ID) {
			__u16 value;

			memcpy(&value, (char *)attr + NLA_HDRLEN, sizeof(value));
			id = value;
		}
	return id;
}

#endif
