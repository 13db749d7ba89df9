/* bmcnl: what an OpenBMC BMC's own daemons send over netlink, for the
 * emulated board (no Python there). Each subcommand prints one JSON line.
 *
 *   bmcnl networkd   like phosphor-networkd: one NETLINK_ROUTE socket bound to
 *                    RTMGRP_LINK|IPV4_IFADDR|IPV6_IFADDR|IPV4_ROUTE|IPV6_ROUTE|NEIGH,
 *                    the initial dumps of links, addresses, routes and
 *                    neighbours, then the notifications it reads until an
 *                    RTM_DELADDR (or --seconds S, default 30); prints
 *                    "ready" on stderr once it listens
 *   bmcnl ncsi IFNAME   NC-SI over generic netlink: family NCSI,
 *                    NCSI_CMD_PKG_INFO (a dump) for IFNAME, as the
 *                    ncsi-netlink tool sends it
 *   bmcnl mctp       MCTP over rtnetlink on lo: RTM_NEWLINK with
 *                    IFLA_MCTP_NET 1, RTM_NEWADDR with AF_MCTP EID 8,
 *                    RTM_NEWROUTE to EID 9 (kernels with CONFIG_MCTP)
 *
 * Each request asks for an ack; the JSON has what the kernel answered: 0
 * or -errno (a dump: its message count). Raw AF_NETLINK and plain libc,
 * like bench/nlload.c, built static for the board.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../nltrace/agent/genl_family.h"

#ifndef AF_MCTP
#define AF_MCTP 45
#endif
#ifndef IFLA_MCTP_NET
#define IFLA_MCTP_NET 1
#endif
/* include/uapi/linux/ncsi.h */
#define NCSI_CMD_PKG_INFO 1
#define NCSI_ATTR_IFINDEX 1

static unsigned char buf[65536] __attribute__((aligned(NLMSG_ALIGNTO)));
static unsigned int seq;

struct msg {
	struct nlmsghdr n;
	char body[512];
};

static void die(const char *what)
{
	fprintf(stderr, "bmcnl: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int nl_socket(int protocol, unsigned int groups)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = groups };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);

	if (fd < 0)
		die("socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("bind");
	return fd;
}

static void *tail(struct msg *m)
{
	return (char *)&m->n + NLMSG_ALIGN(m->n.nlmsg_len);
}

static struct nlattr *put(struct msg *m, unsigned short type, const void *data, unsigned short len)
{
	struct nlattr *a = tail(m);

	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	if (data)
		memcpy((char *)a + NLA_HDRLEN, data, len);
	m->n.nlmsg_len = NLMSG_ALIGN(m->n.nlmsg_len) + NLA_ALIGN(a->nla_len);
	return a;
}

static void start(struct msg *m, unsigned short type, unsigned short flags, const void *hdr, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->n.nlmsg_type = type;
	m->n.nlmsg_flags = NLM_F_REQUEST | flags;
	m->n.nlmsg_seq = ++seq;
	m->n.nlmsg_len = NLMSG_LENGTH(len);
	memcpy(NLMSG_DATA(&m->n), hdr, len);
}

/* Send m; read to its ack (0 or -errno) or, for a dump, its NLMSG_DONE
 * (the count of messages it carried). */
static int transact(int fd, struct msg *m)
{
	int count = 0;

	if (send(fd, m, m->n.nlmsg_len, 0) < 0)
		die("send");
	for (;;) {
		int len = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *n;

		if (len < 0)
			die("recv");
		for (n = (struct nlmsghdr *)buf; NLMSG_OK(n, (unsigned)len); n = NLMSG_NEXT(n, len)) {
			if (n->nlmsg_seq != m->n.nlmsg_seq)
				continue;   /* a notification, read later */
			if (n->nlmsg_type == NLMSG_ERROR)
				return ((struct nlmsgerr *)NLMSG_DATA(n))->error;
			if (n->nlmsg_type == NLMSG_DONE)
				return count;
			count++;
		}
	}
}

static const char *rtm_name(int type)
{
	switch (type) {
	case RTM_NEWLINK: return "RTM_NEWLINK";
	case RTM_DELLINK: return "RTM_DELLINK";
	case RTM_NEWADDR: return "RTM_NEWADDR";
	case RTM_DELADDR: return "RTM_DELADDR";
	case RTM_NEWROUTE: return "RTM_NEWROUTE";
	case RTM_DELROUTE: return "RTM_DELROUTE";
	case RTM_NEWNEIGH: return "RTM_NEWNEIGH";
	case RTM_DELNEIGH: return "RTM_DELNEIGH";
	}
	return "other";
}

static int networkd(double seconds)
{
	static const int dumps[] = { RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH };
	static const char *const names[] = { "RTM_GETLINK", "RTM_GETADDR", "RTM_GETROUTE", "RTM_GETNEIGH" };
	int fd = nl_socket(NETLINK_ROUTE, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR |
			   RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH);
	struct sockaddr_nl self;
	socklen_t self_len = sizeof(self);
	struct rtgenmsg gen = { .rtgen_family = AF_UNSPEC };
	struct msg m;
	int done = 0, notifications = 0;
	time_t end = time(NULL) + (time_t)seconds;

	getsockname(fd, (struct sockaddr *)&self, &self_len);
	printf("{\"portid\": %u, \"pid\": %d, \"dumps\": {", self.nl_pid, getpid());
	for (int i = 0; i < 4; i++) {
		start(&m, dumps[i], NLM_F_DUMP, &gen, sizeof(gen));
		printf("%s\"%s\": %d", i ? ", " : "", names[i], transact(fd, &m));
	}
	printf("}, \"notifications\": [");
	fflush(stdout);
	fprintf(stderr, "ready\n");
	while (!done && time(NULL) < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int len;

		if (poll(&p, 1, 200) <= 0)
			continue;
		len = recv(fd, buf, sizeof(buf), 0);
		if (len < 0)
			die("recv");
		for (struct nlmsghdr *n = (struct nlmsghdr *)buf; NLMSG_OK(n, (unsigned)len); n = NLMSG_NEXT(n, len)) {
			printf("%s\"%s\"", notifications++ ? ", " : "", rtm_name(n->nlmsg_type));
			done |= n->nlmsg_type == RTM_DELADDR;
		}
	}
	printf("]}\n");
	return done ? 0 : 1;
}

static int ncsi(const char *ifname)
{
	int fd = nl_socket(NETLINK_GENERIC, 0), family = nlt_genl_family_id("NCSI");
	unsigned int ifindex = if_nametoindex(ifname);
	struct genlmsghdr g = { .cmd = NCSI_CMD_PKG_INFO };
	struct msg m;

	if (family < 0) {
		printf("{\"family\": %d}\n", family);
		return 1;
	}
	start(&m, family, NLM_F_DUMP | NLM_F_ACK, &g, sizeof(g));
	put(&m, NCSI_ATTR_IFINDEX, &ifindex, sizeof(ifindex));
	printf("{\"family\": %d, \"ifindex\": %u, \"pkg_info\": %d}\n", family, ifindex, transact(fd, &m));
	return 0;
}

static int mctp(void)
{
	int fd = nl_socket(NETLINK_ROUTE, 0), lo = if_nametoindex("lo");
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = lo };
	struct ifaddrmsg ifa = { .ifa_family = AF_MCTP, .ifa_index = lo };
	struct rtmsg rtm = { .rtm_family = AF_MCTP, .rtm_table = RT_TABLE_DEFAULT, .rtm_protocol = RTPROT_STATIC,
			     .rtm_scope = RT_SCOPE_LINK, .rtm_type = RTN_UNICAST };
	unsigned int net = 1, oif = lo;
	unsigned char local = 8, dst = 9;
	struct nlattr *spec, *mctp_spec;
	struct msg m;
	int link, addr, route;

	start(&m, RTM_NEWLINK, NLM_F_ACK, &ifi, sizeof(ifi));
	spec = put(&m, IFLA_AF_SPEC | NLA_F_NESTED, NULL, 0);
	mctp_spec = put(&m, AF_MCTP | NLA_F_NESTED, NULL, 0);
	put(&m, IFLA_MCTP_NET, &net, sizeof(net));
	mctp_spec->nla_len = (char *)tail(&m) - (char *)mctp_spec;
	spec->nla_len = (char *)tail(&m) - (char *)spec;
	link = transact(fd, &m);
	start(&m, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof(ifa));
	put(&m, IFA_LOCAL, &local, 1);
	addr = transact(fd, &m);
	start(&m, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &rtm, sizeof(rtm));
	put(&m, RTA_DST, &dst, 1);
	put(&m, RTA_OIF, &oif, sizeof(oif));
	route = transact(fd, &m);
	printf("{\"newlink\": %d, \"newaddr\": %d, \"newroute\": %d}\n", link, addr, route);
	return link || addr || route;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "networkd"))
		return networkd(argc == 4 && !strcmp(argv[2], "--seconds") ? atof(argv[3]) : 30);
	if (argc == 3 && !strcmp(argv[1], "ncsi"))
		return ncsi(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "mctp"))
		return mctp();
	fprintf(stderr, "usage: bmcnl networkd [--seconds S] | bmcnl ncsi IFNAME | bmcnl mctp\n");
	return 2;
}
