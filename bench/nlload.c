/* nlload: netlink requests in a tight loop, one at a time, each awaiting its
 * answer; prints one JSON line with the rate.
 *
 *   nlload get  [--ifindex N] (--count N | --duration S)   RTM_GETLINK for one link
 *   nlload dump               (--count N | --duration S)   RTM_GETLINK dump, to NLMSG_DONE
 *   nlload genl               (--count N | --duration S)   CTRL_CMD_GETFAMILY "nlctrl"
 *
 * How the work per message grows (bench/run.py's growth table):
 *   --batch N    (get, genl) N requests in one sendmsg, then their N answers;
 *                requests counts messages, not sendmsg calls
 *   --senders N  N processes, each with its own socket, all for --duration;
 *                the rate is the sum of theirs
 *   --netns PATH the requests go to that network namespace (setns before the
 *                socket), so a dump's size is the links created there
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
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
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
#define MAX_BATCH 100
#define MAX_SENDERS 16
/* a batch's answers wait in the receive queue until the whole batch is handled */
#define BATCH_RCVBUF (4 << 20)

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
	double seconds;
};

struct options {
	enum mode mode;
	unsigned long long count;
	double duration;
	int ifindex, missing_link_ok, batch, senders;
	const char *netns;
};

static unsigned char recv_buf[RECV_BUF_SIZE] __attribute__((aligned(NLMSG_ALIGNTO)));

static void usage(void)
{
	fprintf(stderr, "usage: nlload get|dump|genl [--ifindex N] [--batch N] [--senders N] [--netns PATH]\n"
			"       (--count N | --duration SECONDS)\n");
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_socket(int protocol, int batch)
{
	struct sockaddr_nl local = { .nl_family = AF_NETLINK };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
	int rcvbuf = BATCH_RCVBUF;

	if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0) {
		perror("nlload: netlink socket");
		exit(1);
	}
	if (batch > 1 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0) {
		perror("nlload: SO_RCVBUFFORCE");
		exit(1);
	}
	return fd;
}

static void enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		fprintf(stderr, "nlload: network namespace %s: %s\n", path, strerror(errno));
		exit(1);
	}
	close(fd);
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

/* One sender's loop: batches of requests until --count or --duration. */
static void send_requests(const struct options *o, struct totals *t)
{
	static struct request batch[MAX_BATCH];
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	double start, deadline;
	int fd = open_socket(o->mode == MODE_GENL ? NETLINK_GENERIC : NETLINK_ROUTE, o->batch);
	int i;

	for (i = 0; i < o->batch; i++)
		build_request(&batch[i], o->mode, o->ifindex);
	start = now_s();
	deadline = start + o->duration;
	for (;;) {
		/* struct request is a multiple of NLMSG_ALIGNTO, so the array is a valid batch */
		for (i = 0; i < o->batch; i++)
			batch[i].nlh.nlmsg_seq = (unsigned int)(t->requests + i + 1);
		if (sendto(fd, batch, o->batch * sizeof(batch[0]), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
			perror("nlload: send");
			exit(1);
		}
		for (i = 0; i < o->batch; i++) {
			int err = read_answer(fd, o->mode, batch[i].nlh.nlmsg_seq, t);

			t->requests++;
			if (err) {
				t->errors++;
				if (!(err == ENODEV && o->missing_link_ok)) {
					fprintf(stderr, "nlload: request %llu failed: %s\n", t->requests, strerror(err));
					exit(1);
				}
			}
		}
		if (o->count ? t->requests >= o->count
			     : (t->requests / o->batch) % CLOCK_EVERY == 0 && now_s() >= deadline)
			break;
	}
	t->seconds = now_s() - start;
	close(fd);
}

/* --senders N: N children, each sending its requests and writing its totals to a pipe. */
static void fork_senders(const struct options *o, struct totals *sum, double *req_per_s)
{
	int pipefd[2], i;

	if (pipe(pipefd) < 0) {
		perror("nlload: pipe");
		exit(1);
	}
	for (i = 0; i < o->senders; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("nlload: fork");
			exit(1);
		}
		if (pid == 0) {
			struct totals t = { 0 };

			close(pipefd[0]);
			send_requests(o, &t);
			if (write(pipefd[1], &t, sizeof(t)) != sizeof(t))
				_exit(1);
			_exit(0);
		}
	}
	close(pipefd[1]);
	for (i = 0; i < o->senders; i++) {
		struct totals t;
		int status;

		if (read(pipefd[0], &t, sizeof(t)) != sizeof(t)) {
			fprintf(stderr, "nlload: a sender failed\n");
			exit(1);
		}
		sum->requests += t.requests;
		sum->errors += t.errors;
		sum->messages += t.messages;
		sum->reads += t.reads;
		sum->seconds = t.seconds > sum->seconds ? t.seconds : sum->seconds;
		*req_per_s += t.requests / t.seconds;
		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "nlload: a sender failed\n");
			exit(1);
		}
	}
}

static int positive(const char *arg, int max)
{
	int n = atoi(arg);

	if (n < 1 || n > max)
		usage();
	return n;
}

int main(int argc, char **argv)
{
	struct options o = { .ifindex = 1, .batch = 1, .senders = 1 };
	struct totals t = { 0 };
	double req_per_s = 0;
	int i;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "get"))
		o.mode = MODE_GET;
	else if (!strcmp(argv[1], "dump"))
		o.mode = MODE_DUMP;
	else if (!strcmp(argv[1], "genl"))
		o.mode = MODE_GENL;
	else
		usage();
	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--count"))
			o.count = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--duration"))
			o.duration = strtod(argv[i + 1], NULL);
		else if (!strcmp(argv[i], "--ifindex") && o.mode == MODE_GET) {
			o.ifindex = atoi(argv[i + 1]);
			o.missing_link_ok = 1;
		} else if (!strcmp(argv[i], "--batch") && o.mode != MODE_DUMP)
			o.batch = positive(argv[i + 1], MAX_BATCH);
		else if (!strcmp(argv[i], "--senders"))
			o.senders = positive(argv[i + 1], MAX_SENDERS);
		else if (!strcmp(argv[i], "--netns"))
			o.netns = argv[i + 1];
		else
			usage();
	}
	if (i != argc || (o.count == 0) == (o.duration <= 0))
		usage();

	if (o.netns)
		enter_netns(o.netns);
	if (o.senders == 1) {
		send_requests(&o, &t);
		req_per_s = t.requests / t.seconds;
	} else
		fork_senders(&o, &t, &req_per_s);
	printf("{\"mode\":\"%s\",\"batch\":%d,\"senders\":%d,\"requests\":%llu,\"errors\":%llu,\"messages\":%llu,"
	       "\"reads\":%llu,\"seconds\":%.6f,\"req_per_s\":%.1f}\n",
	       argv[1], o.batch, o.senders, t.requests, t.errors, t.messages, t.reads, t.seconds, req_per_s);
	return 0;
}
