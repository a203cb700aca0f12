// SPDX-License-Identifier: Apache-2.0
/* sl-flood - a bounded UDP flood for the policy benchmark (libc only).
 *
 *   sl-flood ADDR PORT --seconds S [--cpu N] [--burst N] [--size BYTES]
 *            [--flows N] [--sndbuf BYTES]
 *
 * Sends UDP datagrams of BYTES payload (default 18: a 64-byte Ethernet frame
 * with IPv4) to ADDR:PORT (IPv4 or IPv6, numeric) as fast as it can for S
 * seconds (0.1 .. 3600), in sendmmsg() bursts of N datagrams (default 64, at
 * most 1024), from FLOWS connected sockets (default 1: one source port),
 * taking turns per burst. --cpu pins the process to CPU N first. --sndbuf
 * sets each socket's send buffer (SO_SNDBUFFORCE as root, else SO_SNDBUF):
 * how many datagrams may be queued in the stack (on a veth: in the
 * receiving CPU's backlog) before sends fail with EAGAIN.
 *
 * Nothing is received: the datagrams are meant to be dropped. Errors from
 * the socket (ENOBUFS, EAGAIN, ECONNREFUSED after an ICMP unreachable) are
 * counted and the flood goes on. Prints one line on stdout:
 *
 *   sent=<datagrams> errors=<failed calls> seconds=<elapsed> pps=<sent/elapsed>
 *
 * Exit 0 when anything was sent, 1 when nothing was, 2 on bad usage. It also
 * stops on SIGINT/SIGTERM, and by SIGALRM 2 s after the deadline should a
 * call ever block (it does not: MSG_DONTWAIT), printing what it sent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "tools/tool.h"

#define FLOOD_MAX_BURST 1024
#define FLOOD_MAX_FLOWS 256
#define FLOOD_MAX_SIZE	1472

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fputs("usage: sl-flood ADDR PORT --seconds S [--cpu N] [--burst N] [--size BYTES] "
	      "[--flows N] [--sndbuf BYTES]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static struct mmsghdr msgs[FLOOD_MAX_BURST];
	static struct iovec iov;
	static char payload[FLOOD_MAX_SIZE];
	const char *addr = NULL, *port = NULL;
	long burst = 64, size = 18, flows = 1, cpu = -1, sndbuf = 0;
	double seconds = 0, t0, deadline, elapsed;
	struct sockaddr_storage ss = { 0 };
	socklen_t sslen;
	int fds[FLOOD_MAX_FLOWS];
	unsigned long long sent = 0, errors = 0;
	long turn = 0;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];

		if (o[0] == '-' && o[1] == '-') {
			if (i + 1 >= argc)
				die("option %s needs a value", o);
			const char *v = argv[++i];

			if (!strcmp(o, "--seconds")) {
				seconds = seconds_arg(v, "--seconds");
			} else if (!strcmp(o, "--cpu")) {
				cpu = num(v, "--cpu", 0, CPU_SETSIZE - 1);
			} else if (!strcmp(o, "--burst")) {
				burst = num(v, "--burst", 1, FLOOD_MAX_BURST);
			} else if (!strcmp(o, "--size")) {
				size = num(v, "--size", 0, FLOOD_MAX_SIZE);
			} else if (!strcmp(o, "--sndbuf")) {
				sndbuf = num(v, "--sndbuf", 4096, INT_MAX / 2);
			} else if (!strcmp(o, "--flows")) {
				flows = num(v, "--flows", 1, FLOOD_MAX_FLOWS);
			} else {
				die("unknown option %s", o);
			}
		} else if (!addr) {
			addr = o;
		} else if (!port) {
			port = o;
		} else {
			usage();
		}
	}
	if (!addr || !port || seconds <= 0)
		usage();

	{
		uint16_t p = (uint16_t)num(port, "port", 1, 65535);
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			s4->sin_port = htons(p);
			sslen = sizeof(*s4);
		} else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(p);
			sslen = sizeof(*s6);
		} else {
			die("bad address '%s' (want a numeric IPv4 or IPv6 address)", addr);
		}
	}

	pin_cpu(cpu);

	for (long f = 0; f < flows; f++) {
		fds[f] = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fds[f] < 0)
			die("socket: %s", strerror(errno));
		if (sndbuf) {
			int b = (int)sndbuf;

			if (setsockopt(fds[f], SOL_SOCKET, SO_SNDBUFFORCE, &b, sizeof(b)) &&
			    setsockopt(fds[f], SOL_SOCKET, SO_SNDBUF, &b, sizeof(b)))
				die("--sndbuf %ld: %s", sndbuf, strerror(errno));
		}
		if (connect(fds[f], (struct sockaddr *)&ss, sslen))
			die("connect %s:%s: %s", addr, port, strerror(errno));
	}

	memset(payload, 'f', sizeof(payload));
	iov.iov_base = payload;
	iov.iov_len = (size_t)size;
	for (long i = 0; i < burst; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	stop_on_signals();
	alarm((unsigned int)seconds + 2);

	t0 = now_s();
	deadline = t0 + seconds;
	while (!stop) {
		int n = sendmmsg(fds[turn], msgs, (unsigned int)burst, MSG_DONTWAIT);

		if (n > 0)
			sent += (unsigned long long)n;
		else if (errno != EINTR)
			errors++;
		if (++turn == flows)
			turn = 0;
		/* The clock every burst: a vDSO call, cheap next to 64 sends. */
		if (now_s() >= deadline)
			break;
	}
	elapsed = now_s() - t0;
	alarm(0);
	for (long f = 0; f < flows; f++)
		close(fds[f]);
	printf("sent=%llu errors=%llu seconds=%.3f pps=%.0f\n", sent, errors, elapsed,
	       elapsed > 0 ? (double)sent / elapsed : 0.0);
	return sent ? 0 : 1;
}
