/* nlload: netlink requests in a tight loop, one at a time, each awaiting its
 * answer; prints one JSON line with the rate.
 *
 *   nlload get  [--ifindex N] (--count N | --duration S)   RTM_GETLINK for one link
 *   nlload dump               (--count N | --duration S)   RTM_GETLINK dump, to NLMSG_DONE
 *   nlload genl               (--count N | --duration S)   CTRL_CMD_GETFAMILY "nlctrl"
 *
 * Plain libc and raw AF_NETLINK sockets, no libmnl: it is built at bench time
 * with `gcc -O2 -static`, and with `arm-linux-gnueabi-gcc -static` for the
 * emulated ARMv6 board, so it assumes nothing about word size (the netlink
 * structs are fixed-width; counters are unsigned long long). Written in C
 * rather than Python so that the generator itself costs little next to the
 * kernel work it measures.
 *
 * Every answer is checked: its sequence number, its type, and for an error
 * ack the errno. Error acks are counted; any error exits 1, except ENODEV
 * when --ifindex was given (asking for a missing link on purpose).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Big enough for any dump part the kernel builds (it caps them at 32 KiB). */
#define RECV_BUF_SIZE 65536
/* --duration reads the clock once per this many requests. */
#define CLOCK_EVERY 16

enum mode { MODE_GET, MODE_DUMP, MODE_GENL };

struct request {
	struct nlmsghdr nlh;
	union {
		struct ifinfomsg ifi;
		struct {
			struct genlmsghdr genl;
			struct nlattr name_attr;
			char name[8];   /* "nlctrl\0" padded to NLA_ALIGNTO */
		} family;
	} body;
};

struct totals {
	unsigned long long requests;
	unsigned long long errors;      /* error acks (each also a request) */
	unsigned long long messages;    /* netlink messages received */
	unsigned long long reads;       /* recv() calls */
};

static unsigned char recv_buf[RECV_BUF_SIZE] __attribute__((aligned(NLMSG_ALIGNTO)));

static void usage(void)
{
	fprintf(stderr, "usage: nlload get|dump|genl [--ifindex N] (--count N | --duration SECONDS)\n");
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_socket(int protocol)
{
	struct sockaddr_nl local = { .nl_family = AF_NETLINK };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);

	if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0) {
		perror("nlload: netlink socket");
		exit(1);
	}
	return fd;
}

static void build_request(struct request *req, enum mode mode, int ifindex)
{
	memset(req, 0, sizeof(*req));
	req->nlh.nlmsg_flags = NLM_F_REQUEST;
	if (mode == MODE_GENL) {
		req->nlh.nlmsg_type = GENL_ID_CTRL;
		req->nlh.nlmsg_len = NLMSG_LENGTH(sizeof(req->body.family));
		req->body.family.genl.cmd = CTRL_CMD_GETFAMILY;
		req->body.family.genl.version = 1;
		req->body.family.name_attr.nla_type = CTRL_ATTR_FAMILY_NAME;
		req->body.family.name_attr.nla_len = NLA_HDRLEN + sizeof("nlctrl");
		strcpy(req->body.family.name, "nlctrl");
		return;
	}
	req->nlh.nlmsg_type = RTM_GETLINK;
	req->nlh.nlmsg_len = NLMSG_LENGTH(sizeof(req->body.ifi));
	req->body.ifi.ifi_family = AF_UNSPEC;
	if (mode == MODE_DUMP)
		req->nlh.nlmsg_flags |= NLM_F_DUMP;
	else
		req->body.ifi.ifi_index = ifindex;
}

/* Read the answer to request seq: one reply or error ack, or for a dump
 * every part up to NLMSG_DONE. Returns 0, or the errno of an error ack. */
static int read_answer(int fd, enum mode mode, unsigned int seq, struct totals *t)
{
	int reply_type = mode == MODE_GENL ? GENL_ID_CTRL : RTM_NEWLINK;

	for (;;) {
		ssize_t len = recv(fd, recv_buf, sizeof(recv_buf), 0);
		struct nlmsghdr *nlh;

		if (len < 0) {
			if (errno == EINTR)
				continue;
			perror("nlload: recv");
			exit(1);
		}
		t->reads++;
		for (nlh = (struct nlmsghdr *)recv_buf; NLMSG_OK(nlh, len); nlh = NLMSG_NEXT(nlh, len)) {
			t->messages++;
			if (nlh->nlmsg_seq != seq) {
				fprintf(stderr, "nlload: answer with seq %u, expected %u\n", nlh->nlmsg_seq, seq);
				exit(1);
			}
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *err = NLMSG_DATA(nlh);

				return -err->error;   /* 0 would be an ack, never asked for */
			}
			if (nlh->nlmsg_type == NLMSG_DONE && mode == MODE_DUMP)
				return 0;
			if (nlh->nlmsg_type != reply_type) {
				fprintf(stderr, "nlload: unexpected message type %u\n", nlh->nlmsg_type);
				exit(1);
			}
			if (mode != MODE_DUMP)
				return 0;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct totals t = { 0 };
	struct request req;
	enum mode mode;
	unsigned long long count = 0;
	double duration = 0, start, end, deadline;
	int ifindex = 1, missing_link_ok = 0, fd, i;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "get"))
		mode = MODE_GET;
	else if (!strcmp(argv[1], "dump"))
		mode = MODE_DUMP;
	else if (!strcmp(argv[1], "genl"))
		mode = MODE_GENL;
	else
		usage();
	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--count"))
			count = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--duration"))
			duration = strtod(argv[i + 1], NULL);
		else if (!strcmp(argv[i], "--ifindex") && mode == MODE_GET) {
			ifindex = atoi(argv[i + 1]);
			missing_link_ok = 1;
		} else
			usage();
	}
	if (i != argc || (count == 0) == (duration <= 0))
		usage();

	fd = open_socket(mode == MODE_GENL ? NETLINK_GENERIC : NETLINK_ROUTE);
	build_request(&req, mode, ifindex);
	start = now_s();
	deadline = start + duration;
	for (;;) {
		int err;

		req.nlh.nlmsg_seq = (unsigned int)t.requests + 1;
		if (sendto(fd, &req, req.nlh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
			perror("nlload: send");
			return 1;
		}
		err = read_answer(fd, mode, req.nlh.nlmsg_seq, &t);
		t.requests++;
		if (err) {
			t.errors++;
			if (!(err == ENODEV && missing_link_ok)) {
				fprintf(stderr, "nlload: request %llu failed: %s\n", t.requests, strerror(err));
				return 1;
			}
		}
		if (count ? t.requests == count : t.requests % CLOCK_EVERY == 0 && now_s() >= deadline)
			break;
	}
	end = now_s();
	printf("{\"mode\":\"%s\",\"requests\":%llu,\"errors\":%llu,\"messages\":%llu,\"reads\":%llu,"
	       "\"seconds\":%.6f,\"req_per_s\":%.1f}\n",
	       argv[1], t.requests, t.errors, t.messages, t.reads, end - start, t.requests / (end - start));
	return 0;
}
