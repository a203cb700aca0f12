/* SPDX-License-Identifier: Apache-2.0 */
/* polmap.h - NetworkPolicy maps (include/sluice/abi.h) filled and read by
 * hand, for tests of the BPF programs that enforce them (pod_ingress,
 * pod_egress, edge) without the agent's compiler.
 *
 * Objects are loaded without pins (pm_unpin) and share one set of maps
 * (pm_share), so nothing touches a bpffs and the test's maps vanish with it.
 * Addresses are IPv4 or IPv6 literals; ports are host order here and go into
 * the maps in network order.
 */
#ifndef SL_POLMAP_H
#define SL_POLMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bpf/libbpf.h>
#include <sluice/abi.h>

struct pm_fds {
	int polid, polep, polrule, polport, polrange, polstat, polct, polctport, polev, polevrl, metrics;
};

/* Drop every map's pin path of obj (before load): nothing is pinned or reused by pin. */
void pm_unpin(struct bpf_object *obj);
/* Before loading to: each map of to with a namesake in from (loaded) uses from's map. */
int pm_share(struct bpf_object *from, struct bpf_object *to);
/* The policy maps and sl_metrics_v1 of a loaded obj. Returns 0 or -ENOENT. */
int pm_fds_get(struct bpf_object *obj, struct pm_fds *m);

/* sl_polep_v1[ip] = {ep_id, flags, {deny_in, deny_out}}. */
int pm_put_ep(const struct pm_fds *m, const char *ip, uint32_t ep_id, uint32_t flags,
	      uint32_t deny_in, uint32_t deny_out);
/* sl_polid_v1["a.b.c.d/len" or "v6/len"; no "/": a host] = id. */
int pm_put_id(const struct pm_fds *m, const char *cidr, uint32_t id);
/* sl_polrule_v1: ep_id, peer, dir, proto, the first port_bits bits of port
 * (16: exactly port; 0: every port) -> slot; a single port or every port goes
 * into sl_polport_v1 too, a block of ports into sl_polrange_v1, as the agent
 * writes them. */
int pm_put_rule(const struct pm_fds *m, uint32_t ep, uint32_t peer, uint8_t dir, uint8_t proto,
		uint16_t port, unsigned int port_bits, uint32_t slot);

/* The sum over CPUs of sl_polstat_v1[slot] (0 when absent). */
uint64_t pm_stat(const struct pm_fds *m, uint32_t slot);
/* The sum over CPUs of sl_polstat_v1 over all slots. */
uint64_t pm_stat_total(const struct pm_fds *m);
/* The sum over CPUs of sl_metrics_v1[counter]. */
uint64_t pm_metric(const struct pm_fds *m, uint32_t counter);
/* All counters at once (SL_CNT_MAX of them). */
void pm_metrics(const struct pm_fds *m, uint64_t *out, size_t n);

/* Deny events drained from sl_polev_v1. */
#define PM_EV_MAX 64
struct pm_events {
	struct ring_buffer *rb;
	int budget_fd;			/* sl_polevrl_v1: refilled by every drain */
	size_t n;			/* events seen by the last pm_events_drain (all counted) */
	struct sl_polev ev[PM_EV_MAX];	/* the first PM_EV_MAX of them */
};
int pm_events_open(struct pm_events *e, const struct pm_fds *m);
/* Consumes what is in the ring and gives every CPU a full event budget
 * again (a test counts one event per deny); returns how many. */
size_t pm_events_drain(struct pm_events *e);
void pm_events_close(struct pm_events *e);

/* An sl_addr and SL_AF_* family from a literal; returns the family or -1. */
int pm_addr(const char *ip, struct sl_addr *a);

/* ---- the scenario of the policy tests (test_policy_tc, test_edge) ----
 *
 *   S 10.10.0.10 / fd00:10::10  ep 1, isolated in, not steered; identity 9
 *       in:  C (id 7) TCP 80 (slot 1); any peer TCP 8443 (2);
 *            C TCP 4096-4111 as one prefix (3); ipBlock 192.168.50.0/24
 *            except .16/28 (id 20; the except id 21) TCP 443 (4);
 *            C UDP 53 (5); D (id 8) every UDP port (6); deny slot 100
 *   C 10.20.0.5 / fd00:20::5    ep 2, isolated in and out; identity 7
 *       in:  D UDP 5000 (10); deny slot 200
 *       out: any peer UDP 53 (7); S TCP 80 (8); deny slot 201
 *   E 10.10.0.11 / fd00:10::11  ep 3, isolated in, enrolled (HBONE is the agent's); deny slot 300
 *   O 10.10.0.12 / fd00:10::12  ep 4, isolated out only: any peer, every TCP port (9); deny 401
 *   D 10.20.0.6 (id 8); W 10.99.0.1, N 10.30.0.53, NOPOL 10.10.0.99: no identity (world)
 *   ipBlock hosts 192.168.50.{5,16,31,32}, 192.168.51.1 / fd00:50::{5,10,1f,20}, fd00:51::1
 * Ten rule entries in all. The IPv6 twin of each IPv4 address is pm_v6().
 */
#define PM_S		"10.10.0.10"
#define PM_E		"10.10.0.11"
#define PM_O		"10.10.0.12"
#define PM_C		"10.20.0.5"
#define PM_D		"10.20.0.6"
#define PM_W		"10.99.0.1"
#define PM_N		"10.30.0.53"
#define PM_NOPOL	"10.10.0.99"
#define PM_SCENARIO_RULES 10

/* The decision paths the rule_scale tests time, by S's flags (its scenario
 * decisions for TCP 80 and 81 and UDP 9000 from C are the same on each): the
 * LPM trie; the hash tables with S's port range in a list (sl_polrange_v1);
 * the hash table (as if S had no range); the hash table skipping the
 * every-peer and every-port lookups (S has such entries, for other ports and
 * protocols); and that with no UDP rule (S has some, for other peers and
 * ports): a UDP datagram is denied without a lookup. */
struct pm_path {
	const char *name;
	uint32_t flags;
};
static const struct pm_path pm_paths[] = {
	{ "LPM trie", 0 },
	{ "range list", SL_EP_F_RANGE_LIST },
	{ "hash", SL_EP_F_NO_RANGES },
	{ "hash, skips", SL_EP_F_NO_RANGES | SL_EP_F_DIR(SL_EP_F_NO_ANY_PEER, SL_DIR_INGRESS) |
				 SL_EP_F_DIR(SL_EP_F_NO_ALL_PORTS, SL_DIR_INGRESS) },
	{ "hash, skips, no UDP rule", SL_EP_F_NO_RANGES | SL_EP_F_DIR(SL_EP_F_NO_ANY_PEER, SL_DIR_INGRESS) |
					      SL_EP_F_DIR(SL_EP_F_NO_ALL_PORTS, SL_DIR_INGRESS) |
					      SL_EP_F_DIR(SL_EP_F_NO_UDP, SL_DIR_INGRESS) },
};
#define PM_PATHS (sizeof(pm_paths) / sizeof(pm_paths[0]))

/* Fillers for scale tests: rule entries [from, to) of other endpoints
 * (1000 + i / 100), peers and ports, and peer identities [from, to) as
 * /32s in 10.200/16 and /128s in fd00:200::/112. Return 0 or -errno. */
int pm_fill_rules(const struct pm_fds *m, unsigned int from, unsigned int to);
int pm_fill_ids(const struct pm_fds *m, unsigned int from, unsigned int to);

/* Fill the scenario's entries of one family. Returns 0 or -errno. */
int pm_scenario(const struct pm_fds *m, bool v6);
/* The IPv6 address of an IPv4 scenario address (others unchanged). */
const char *pm_v6(const char *v4);
struct pkt_opts;
/* The IPv6 twin of an IPv4 packet: addresses mapped, IPv4 options become a
 * hop-by-hop header, an IPv4 fragment (offset, MF) a fragment header, ICMP
 * ICMPv6. */
void pm_to_v6(const struct pkt_opts *in, struct pkt_opts *out);

struct pkt;
/* Mean ns per run of prog on p over total runs (batches of 2,000, the event
 * ring drained between them), asserting retval want; -1 on failure. */
double pm_ns_per_packet(int prog, const struct pkt *p, struct pm_events *ev, int want, int total);

#endif
