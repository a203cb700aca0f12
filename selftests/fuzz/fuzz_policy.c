// SPDX-License-Identifier: Apache-2.0
/* fuzz_policy.c - libFuzzer target: NetworkPolicy, differentially.
 *
 * The input is a config (YAML or JSON, as fuzz_config) of Namespaces, Pods and
 * NetworkPolicies. When it decodes and resolves, it is compiled for every pod
 * (scope all), and for every pair of pod addresses, a few outside addresses,
 * and the ports the policies and pods name, the compiled tables
 * (policy_lookup, what the kernel does) must agree with the spec's decision
 * (policy_decide). A disagreement aborts: it is a compiler bug.
 *
 * fuzz-srcs: user/config.c user/model.c user/policy.c user/lib/diag.c user/lib/log.c user/lib/loop.c
 * fuzz-libs: -lyaml -lpthread
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ADDRS	24
#define MAX_PORTS	24

static void add_port(uint16_t *ports, size_t *n, uint32_t p)
{
	if (!p || p > 65535 || *n >= MAX_PORTS)
		return;
	for (size_t i = 0; i < *n; i++)
		if (ports[i] == p)
			return;
	ports[(*n)++] = (uint16_t)p;
}

static void add_addr(struct sl_ip *v, size_t *n, const struct sl_ip *ip)
{
	if (*n < MAX_ADDRS)
		v[(*n)++] = *ip;
}

/* Addresses and ports worth probing: every pod's, every ipBlock's edges, and
 * every port a rule or a container names, with their neighbours. */
static void probes(const struct sl_resources *r, struct sl_ip *addrs, size_t *na, uint16_t *ports, size_t *np)
{
	static const char *const outside[] = { "192.0.2.10", "2001:db8::10" };
	struct sl_ip ip;

	for (size_t i = 0; i < r->n_pods; i++) {
		for (size_t j = 0; j < r->pods[i].n_ips; j++)
			add_addr(addrs, na, &r->pods[i].ips[j]);
		for (size_t j = 0; j < r->pods[i].n_ports; j++)
			add_port(ports, np, r->pods[i].ports[j].port);
	}
	for (size_t i = 0; i < 2; i++)
		if (!sl_ip_parse(outside[i], &ip))
			add_addr(addrs, na, &ip);
	for (size_t i = 0; i < r->n_netpols; i++) {
		const struct sl_netpol *np_ = &r->netpols[i];

		for (int dir = 0; dir < 2; dir++) {
			const struct sl_np_rule *rules = dir ? np_->egress : np_->ingress;
			size_t n = dir ? np_->n_egress : np_->n_ingress;

			for (size_t j = 0; j < n; j++) {
				for (size_t k = 0; k < rules[j].n_ports; k++) {
					const struct sl_np_port *p = &rules[j].ports[k];

					add_port(ports, np, p->port);
					add_port(ports, np, (uint32_t)p->port + 1);
					add_port(ports, np, p->port ? (uint32_t)p->port - 1 : 0);
					add_port(ports, np, p->end_port);
					add_port(ports, np, (uint32_t)p->end_port + 1);
				}
				for (size_t k = 0; k < rules[j].n_peers; k++) {
					const struct sl_np_peer *p = &rules[j].peers[k];

					if (!p->ip_block)
						continue;
					add_addr(addrs, na, &p->cidr.ip);
					for (size_t e = 0; e < p->n_except; e++)
						add_addr(addrs, na, &p->except[e].ip);
				}
			}
		}
	}
	add_port(ports, np, 80);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t protos[] = { SL_IPPROTO_TCP, SL_IPPROTO_UDP };
	struct sl_resources *r = config_resources_new();
	struct policy_registry *reg = NULL;
	struct policy *p = NULL;
	struct sl_model *m = NULL;
	struct diags errs = { 0 };
	struct sl_ip addrs[MAX_ADDRS];
	uint16_t ports[MAX_PORTS];
	size_t na = 0, np = 0;

	if (!r)
		return 0;
	if (config_decode_buf(r, size % 2 ? "f.json" : "f.yaml", (const char *)data, size, &errs)) {
		resources_free(r);
		goto out;
	}
	if (model_build(r, "node-1", &m, &errs))
		goto out;
	if (policy_registry_new(&reg) || policy_compile(m, NULL, POLICY_SCOPE_ALL, reg, &p, &errs))
		goto out;
	probes(m->res, addrs, &na, ports, &np);
	for (size_t s = 0; s < na; s++) {
		for (size_t d = 0; d < na; d++) {
			if (s == d || addrs[s].family != addrs[d].family)
				continue;
			for (size_t q = 0; q < np; q++) {
				for (size_t k = 0; k < 2; k++) {
					struct policy_decision dec;
					uint32_t slot;
					int in, eg;
					bool tables;

					policy_decide(m, &addrs[s], &addrs[d], ports[q], protos[k], &dec);
					if (dec.src_pod && dec.src_pod == dec.dst_pod)
						continue;	/* loopback: never leaves the pod */
					eg = policy_lookup(p, SL_DIR_EGRESS, &addrs[s], &addrs[d], ports[q], protos[k], &slot);
					in = policy_lookup(p, SL_DIR_INGRESS, &addrs[d], &addrs[s], ports[q], protos[k], &slot);
					tables = eg != 0 && in != 0;
					if (tables != dec.allow) {
						char a[SL_IP_STRLEN], b[SL_IP_STRLEN];

						fprintf(stderr, "mismatch: %s -> %s:%u/%u: spec %s (in: %s; eg: %s), tables in %d eg %d\n",
							sl_ip_str(&addrs[s], a), sl_ip_str(&addrs[d], b), ports[q], protos[k],
							dec.allow ? "allow" : "deny", dec.ingress, dec.egress, in, eg);
						abort();
					}
				}
			}
		}
	}
out:
	policy_free(p);
	policy_registry_free(reg);
	model_free(m);
	diags_clear(&errs);
	return 0;
}
