/* SPDX-License-Identifier: Apache-2.0 */
/* handover.h - upgrade without resets: a new agent takes over the kernel
 * objects of the running one (listening sockets, per-pod BPF links, the lock
 * of the bpffs root) by SCM_RIGHTS, so no listener ever closes and no queued
 * connection is lost.
 *
 * Every module that creates such an object offers it under a key that names
 * what it is, independent of the process ("pod <netns dev>:<ino> 0.0.0.0:15001",
 * "status /run/sluice/agent.sock"), and withdraws it before closing it. A new
 * agent started with --takeover asks the running one over the handover socket
 * (SOCK_SEQPACKET, 0600, one record per message):
 *
 *   new -> old   "HELLO 1 <pid>"
 *   old -> new   "FD <key>" with one fd, for every offered object;
 *                "END <pid>"; or "NO <reason>"
 *   new -> old   "READY" once it serves with what it took
 *   old -> new   per plaintext relay: "CONN <json>" with its two sockets,
 *                "DATA <0|1>\n<bytes>" records of what it held each way;
 *                then "DONE"
 *
 * Between HELLO and READY the old agent keeps serving (the sockets are shared,
 * so connections go to whichever accepts) but freezes its control plane: the
 * maps are the new agent's from HELLO on. On READY the old agent stops
 * accepting, hands over its plaintext relays (tunnel_export) and drains its
 * TLS connections (handover_ops.handed_over); if the new one goes away
 * before READY, the old one thaws and carries on (handover_ops.abort).
 *
 * The new agent's modules take what they would otherwise create
 * (handover_take) and offer it again, for the next upgrade. What nobody took
 * (a pod gone meanwhile) is closed by handover_ready.
 *
 * The two registries are process-wide, as the objects are: one agent per
 * process.
 */
#ifndef SL_HANDOVER_H
#define SL_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define HANDOVER_KEY_MAX	240

struct loop;
struct handover;

/* ---- both sides: the registries ---- */

/* Offer fd under a printf key (replacing an older offer of the same fd).
 * Logs and forgets on error: an object not offered is recreated by the next
 * agent, which is what an agent without handover did anyway. */
void handover_offerf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Before close(fd). No-op for an fd never offered. */
void handover_withdraw(int fd);
size_t handover_n_offered(void);

/* The inherited fd of that key (the caller owns it), or -1. */
int handover_takef(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
size_t handover_n_inherited(void);

/* ---- the new agent ---- */

/* Ask the agent at path to hand over. 0: the fds are inherited, *from is its
 * pid; -ENOENT: no agent listens there (start as usual); other -errno: it
 * refused or failed (logged). */
int handover_request(const char *path, pid_t *from);
/* A relay the old agent hands over (after READY): its two sockets, the bytes
 * it held each way and its description. 0, or -errno; the fds are the
 * callee's either way. */
typedef int (*handover_adopt_fn)(void *arg, const char *meta, const int fd[2], const struct iovec data[2]);
/* Tell the old agent this one serves; close what was inherited and not taken;
 * relays it hands over then come to adopt, from the loop. No-op without a
 * request. */
void handover_ready(struct loop *l, handover_adopt_fn adopt, void *arg);
bool handover_pending(void);	/* requested, not ready yet */

/* ---- the running agent ---- */

struct handover_ops {
	void (*freeze)(void *arg, pid_t successor);	/* stop writing maps */
	void (*handed_over)(void *arg, pid_t successor);	/* stop accepting, drain */
	void (*abort)(void *arg, pid_t successor, const char *why);	/* thaw */
};

/* Listen at path (or on the inherited socket for it). 0 or -errno (logged). */
int handover_serve(struct handover **out, struct loop *l, const char *path,
		   const struct handover_ops *ops, void *arg);
/* From handed_over: send one relay ("CONN <meta>" with the two fds, then
 * "DATA <d>" records of the bytes held). 0, or -errno (the successor is gone:
 * the rest drains). The caller closes its copies of the fds after 0. */
int handover_send_relay(struct handover *h, const char *meta, const int fd[2], const struct iovec data[2]);
/* Stop accepting requests (after handing over). */
void handover_stop(struct handover *h);
void handover_free(struct handover *h);	/* NULL-safe; unlinks the socket it bound */

#endif
