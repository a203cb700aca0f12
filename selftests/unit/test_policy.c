// SPDX-License-Identifier: Apache-2.0
/* test_policy.c - NetworkPolicy: the spec's decision (policy_decide) and the
 * compiled kernel tables (policy_lookup) against the truth tables of
 * ../shared/netpol/cases (an independent model of the spec) and of
 * selftests/netpol/cases, plus compiler corner cases. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lib/test.h"
#include "model.h"
#include "policy.h"

static struct sl_model *build_file(const char *path)
{
	struct sl_resources *r = config_resources_new();
	struct sl_model *m = NULL;
	struct diags errs = { 0 };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");

	if (!ASSERT_OK_PTR(f, path) || !ASSERT_OK_PTR(r, "resources"))
		goto out;
	buf = malloc(1 << 22);
	if (!buf)
		goto out;
	len = fread(buf, 1, (1 << 22) - 1, f);
	if (!ASSERT_OK(config_decode_buf(r, path, buf, len, &errs), "decode")) {
		char b[512];

		for (size_t i = 0; i < errs.n; i++)
			printf("  %s\n", diag_str(&errs.v[i], b, sizeof(b)));
		goto out;
	}
	ASSERT_OK(model_build(r, "node-1", &m, &errs), "model");
	r = NULL;
out:
	if (f)
		fclose(f);
	free(buf);
	resources_free(r);
	diags_clear(&errs);
	return m;
}

static uint8_t proto_of(const char *s)
{
	return !strcmp(s, "UDP") ? SL_IPPROTO_UDP : !strcmp(s, "SCTP") ? 132 : SL_IPPROTO_TCP;
}

/* A deciding rule as the case names it. "isolated by a, b" (a case may list
 * every isolating policy) matches our "isolated by a" (the first one). */
static bool reason_eq(const char *want, const char *got)
{
	const char *pfx = "isolated by ";
	size_t pl = strlen(pfx);

	if (!strcmp(want, got))
		return true;
	if (strncmp(want, pfx, pl) || strncmp(got, pfx, pl))
		return false;
	for (const char *p = want + pl; *p; p += strspn(p, ", ")) {
		size_t n = strcspn(p, ",");

		if (n == strlen(got + pl) && !strncmp(p, got + pl, n))
			return true;
		p += n;
	}
	return false;
}

/* One case folder: every probe by the spec and by the compiled tables. */
static void run_case(const char *dir, size_t *n_checked)
{
	char kpath[PATH_MAX + 16], epath[PATH_MAX + 16];
	struct policy_registry *reg = NULL;
	struct policy *pol = NULL;
	struct diags errs = { 0 };
	struct sl_model *m = NULL;
	json_error_t jerr;
	json_t *exp, *cases;
	size_t i, bad = 0;
	json_t *c;

	snprintf(kpath, sizeof(kpath), "%s/k8s.json", dir);
	snprintf(epath, sizeof(epath), "%s/expect.json", dir);
	m = build_file(kpath);
	exp = json_load_file(epath, 0, &jerr);
	if (!ASSERT_OK_PTR(m, kpath) || !ASSERT_OK_PTR(exp, epath))
		goto out;
	if (!ASSERT_OK(policy_registry_new(&reg), "registry") ||
	    !ASSERT_OK(policy_compile(m, NULL, POLICY_SCOPE_ALL, reg, &pol, &errs), "compile"))
		goto out;
	cases = json_object_get(exp, "cases");
	json_array_foreach(cases, i, c) {
		const char *want = json_string_value(json_object_get(c, "verdict"));
		const char *win = json_string_value(json_object_get(c, "ingress"));
		const char *weg = json_string_value(json_object_get(c, "egress"));
		uint16_t port = (uint16_t)json_integer_value(json_object_get(c, "port"));
		uint8_t proto = proto_of(json_string_value(json_object_get(c, "protocol")));
		struct sl_ip src, dst;
		struct policy_decision d;
		bool kin = true, keg = true, kernel;
		uint32_t slot;
		int r;

		if (sl_ip_parse(json_string_value(json_object_get(c, "src_ip")), &src) ||
		    sl_ip_parse(json_string_value(json_object_get(c, "dst_ip")), &dst)) {
			ASSERT_TRUE(false, "case addresses");
			break;
		}
		policy_decide(m, &src, &dst, port, proto, &d);
		if (json_is_true(json_object_get(c, "loopback"))) {
			kernel = true;	/* a pod to itself never leaves it */
		} else {
			r = policy_lookup(pol, SL_DIR_EGRESS, &src, &dst, port, proto, &slot);
			keg = r != 0;
			r = policy_lookup(pol, SL_DIR_INGRESS, &dst, &src, port, proto, &slot);
			kin = r != 0;
			kernel = kin && keg;
		}
		(*n_checked)++;
		if (d.allow == !strcmp(want, "allow") && kernel == d.allow && reason_eq(win, d.ingress) &&
		    reason_eq(weg, d.egress))
			continue;
		if (bad++ < 20)
			printf("%s: %s -> %s:%u/%s: want %s (in: %s; eg: %s), spec %s (in: %s; eg: %s), tables %s (in %d eg %d)\n",
			       dir, json_string_value(json_object_get(c, "src_ip")),
			       json_string_value(json_object_get(c, "dst_ip")), port,
			       json_string_value(json_object_get(c, "protocol")), want, win, weg,
			       d.allow ? "allow" : "deny", d.ingress, d.egress, kernel ? "allow" : "deny", kin, keg);
	}
	ASSERT_EQ(bad, 0, dir);
out:
	json_decref(exp);
	policy_free(pol);
	policy_registry_free(reg);
	model_free(m);
	diags_clear(&errs);
}

static size_t run_dir(const char *root)
{
	struct dirent **ents = NULL;
	size_t checked = 0;
	int n = scandir(root, &ents, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];

		if (ents[i]->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", root, ents[i]->d_name);
			run_case(path, &checked);
		}
		free(ents[i]);
	}
	free(ents);
	return checked;
}

void test_policy_truth_tables_shared(void)
{
	const char *root = getenv("SLUICE_NETPOL_CASES") ? getenv("SLUICE_NETPOL_CASES") : "../shared/netpol/cases";
	DIR *d = opendir(root);

	if (!d) {
		test_skip("no case folder %s (a plain clone has none)", root);
		return;
	}
	closedir(d);
	ASSERT_GE(run_dir(root), 1, "probes checked");
}

void test_policy_truth_tables_own(void)
{
	DIR *d = opendir("selftests/netpol/cases");

	if (!d) {
		test_skip("no selftests/netpol/cases");
		return;
	}
	closedir(d);
	ASSERT_GE(run_dir("selftests/netpol/cases"), 1, "probes checked");
}

/* ---- compiler corner cases ---- */

static struct sl_model *build_yaml(const char *yaml)
{
	struct sl_resources *r = config_resources_new();
	struct sl_model *m = NULL;
	struct diags errs = { 0 };

	if (ASSERT_OK(config_decode_buf(r, "t.yaml", yaml, strlen(yaml), &errs), "decode"))
		ASSERT_OK(model_build(r, "node-1", &m, &errs), "model");
	else
		resources_free(r);
	for (size_t i = 0; i < errs.n; i++) {
		char b[512];

		printf("  %s\n", diag_str(&errs.v[i], b, sizeof(b)));
	}
	diags_clear(&errs);
	return m;
}

static const char pods_yaml[] =
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: x}}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a, labels: {app: web}}\n"
	"spec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}\n"
	"status: {podIPs: [{ip: 10.0.0.1}, {ip: 'fd00::1'}]}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: cli, namespace: a, labels: {app: cli}}\n"
	"spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIPs: [{ip: 10.0.0.2}]}\n---\n";

/* pods_yaml and yaml compiled for node-1, every pod in scope; NULL (and a
 * failed assert) when that fails. *m gets the model, for model_free. */
static struct policy *compile_with_pods(const char *yaml, struct policy_registry *reg, struct sl_model **m,
					struct diags *errs)
{
	char buf[4096];
	struct policy *p = NULL;

	snprintf(buf, sizeof(buf), "%s%s", pods_yaml, yaml);
	*m = build_yaml(buf);
	if (!ASSERT_OK_PTR(*m, "model") ||
	    !ASSERT_OK(policy_compile(*m, "node-1", POLICY_SCOPE_ALL, reg, &p, errs), "compile"))
		return NULL;
	return p;
}

static int lookup(const struct policy *p, int dir, const char *local, const char *peer, uint16_t port, uint8_t proto)
{
	struct sl_ip l, r;
	uint32_t slot;

	sl_ip_parse(local, &l);
	sl_ip_parse(peer, &r);
	return policy_lookup(p, dir, &l, &r, port, proto, &slot);
}

/* endPort ranges become prefixes: both ends in, one past each end out. */
void test_policy_port_range(void)
{
	static const char yaml[] =
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: r, namespace: a}\n"
		"spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
		"  - ports: [{port: 1001, endPort: 40000}, {port: http}, {protocol: UDP}]\n";
	struct policy_registry *reg = NULL;
	struct policy *p = NULL;
	struct diags errs = { 0 };
	struct sl_model *m = NULL;

	if (!ASSERT_OK(policy_registry_new(&reg), "reg") || !(p = compile_with_pods(yaml, reg, &m, &errs)))
		goto out;
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 1000, SL_IPPROTO_TCP), 0, "1000");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 1001, SL_IPPROTO_TCP), 1, "1001");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 32768, SL_IPPROTO_TCP), 1, "32768");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 40000, SL_IPPROTO_TCP), 1, "40000");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 40001, SL_IPPROTO_TCP), 0, "40001");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 8080, SL_IPPROTO_TCP), 1, "named");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 53, SL_IPPROTO_UDP), 1, "any UDP");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "fd00::1", "192.0.2.1", 40000, SL_IPPROTO_TCP), 1, "v6 ep");
	ASSERT_EQ(lookup(p, SL_DIR_EGRESS, "10.0.0.1", "10.0.0.2", 1, SL_IPPROTO_TCP), 1, "egress open");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.2", "10.0.0.1", 1, SL_IPPROTO_TCP), 1, "cli open");
	/* At most 2 x 16 prefixes for any range. */
	ASSERT_LE(p->t.n_rules, 40, "prefixes");
out:
	policy_free(p);
	policy_registry_free(reg);
	model_free(m);
	diags_clear(&errs);
}

/* A recompile of the same input gives the same tables (ids from the registry). */
void test_policy_stable_ids(void)
{
	static const char yaml[] =
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: r, namespace: a}\n"
		"spec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress:\n"
		"  - from: [{podSelector: {matchLabels: {app: cli}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/30]}}]\n";
	char buf[2048];
	struct policy_registry *reg = NULL;
	struct policy *p1 = NULL, *p2 = NULL;
	struct diags errs = { 0 };
	struct sl_model *m = NULL;

	snprintf(buf, sizeof(buf), "%s%s", pods_yaml, yaml);
	m = build_yaml(buf);
	if (!ASSERT_OK_PTR(m, "model") || !ASSERT_OK(policy_registry_new(&reg), "reg") ||
	    !ASSERT_OK(policy_compile(m, "node-1", POLICY_SCOPE_ALL, reg, &p1, &errs), "compile 1") ||
	    !ASSERT_OK(policy_compile(m, "node-1", POLICY_SCOPE_ALL, reg, &p2, &errs), "compile 2"))
		goto out;
	ASSERT_EQ(p1->t.n_rules, p2->t.n_rules, "rules");
	ASSERT_EQ(memcmp(p1->t.rule_keys, p2->t.rule_keys, p1->t.n_rules * sizeof(*p1->t.rule_keys)), 0, "same keys");
	ASSERT_EQ(p1->t.n_ids, p2->t.n_ids, "ids");
	/* cli by label; 10.0.0.3 is in the except, 10.1.2.3 in the block; web isolated both ways. */
	ASSERT_EQ(lookup(p1, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 80, SL_IPPROTO_TCP), 1, "cli");
	ASSERT_EQ(lookup(p1, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.3", 80, SL_IPPROTO_TCP), 0, "except");
	ASSERT_EQ(lookup(p1, SL_DIR_INGRESS, "10.0.0.1", "10.1.2.3", 80, SL_IPPROTO_UDP), 1, "block");
	ASSERT_EQ(lookup(p1, SL_DIR_INGRESS, "10.0.0.1", "192.0.2.1", 80, SL_IPPROTO_UDP), 0, "outside");
	ASSERT_EQ(lookup(p1, SL_DIR_EGRESS, "10.0.0.1", "10.0.0.2", 80, SL_IPPROTO_TCP), 0, "egress deny");
out:
	policy_free(p1);
	policy_free(p2);
	policy_registry_free(reg);
	model_free(m);
	diags_clear(&errs);
}

/* Bad NetworkPolicies are refused with the field that is wrong. */
void test_policy_bad_input(void)
{
	static const struct {
		const char *spec, *want;
	} bad[] = {
		{ "ingress: [{from: [{}]}]", "needs one of ipBlock" },
		{ "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]", "cannot be combined" },
		{ "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]", "not a CIDR" },
		{ "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]", "not a strict subset" },
		{ "ingress: [{ports: [{port: 80, endPort: 79}]}]", "endPort" },
		{ "ingress: [{ports: [{port: http, endPort: 90}]}]", "needs a numeric port" },
		{ "ingress: [{ports: [{port: Bad_Name}]}]", "not a port number or name" },
		{ "ingress: [{ports: [{protocol: ICMP}]}]", "expected TCP, UDP or SCTP" },
		{ "policyTypes: [Sideways]", "expected Ingress or Egress" },
		{ "ingress: [{from: [{podSelector: {matchExpressions: [{key: a, operator: In}]}}]}]", "needs at least one value" },
		{ "ingress: [{from: [{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}]}]", "takes no values" },
		{ "ingress: [{from: [{podSelector: {matchExpressions: [{key: a, operator: Near}]}}]}]", "expected In, NotIn" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char yaml[1024];
		struct sl_resources *r = config_resources_new();
		struct diags errs = { 0 };
		char b[512] = "";

		snprintf(yaml, sizeof(yaml),
			 "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\n"
			 "spec:\n  podSelector: {}\n  %s\n", bad[i].spec);
		ASSERT_ERR(config_decode_buf(r, "t.yaml", yaml, strlen(yaml), &errs), bad[i].spec);
		if (errs.n)
			diag_str(&errs.v[0], b, sizeof(b));
		ASSERT_HAS(b, bad[i].want, bad[i].spec);
		ASSERT_EQ(r->n_netpols, 0, "nothing kept");
		diags_clear(&errs);
		resources_free(r);
	}
}

/* The flags of an endpoint's value in sl_polep_v1, by address (NULL: none). */
static const struct sl_polep_val *ep_of(const struct policy *p, const char *ip)
{
	struct sl_ip a;

	sl_ip_parse(ip, &a);
	for (size_t i = 0; i < p->t.n_eps; i++)
		if (p->t.ep_keys[i].family == a.family && !memcmp(&p->t.ep_keys[i].addr, &a.addr, sizeof(a.addr)))
			return &p->t.ep_vals[i];
	return NULL;
}

/* Lookups the kernel may skip are flagged only where nothing could match
 * them: NO_ANY_PEER where no rule of that direction allows every peer,
 * NO_ALL_PORTS where no entry of that direction allows every port, NO_TCP
 * (UDP, SCTP) where no entry of that direction names the protocol. */
void test_policy_skip_flags(void)
{
	static const char yaml[] =
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: s, namespace: a}\n"
		"spec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress, Egress]\n"
		"  ingress:\n  - from: [{podSelector: {matchLabels: {app: cli}}}]\n    ports: [{port: 8080}]\n"
		"  egress:\n  - ports: [{protocol: UDP, port: 53}]\n  - to: [{ipBlock: {cidr: 192.0.2.0/24}}]\n";
	struct policy_registry *reg = NULL;
	struct policy *p = NULL;
	struct diags errs = { 0 };
	const struct sl_polep_val *web;
	struct sl_model *m = NULL;

	if (!ASSERT_OK(policy_registry_new(&reg), "reg") || !(p = compile_with_pods(yaml, reg, &m, &errs)))
		goto out;
	web = ep_of(p, "10.0.0.1");
	if (!ASSERT_OK_PTR(web, "web is an endpoint"))
		goto out;
	ASSERT_TRUE(web->flags & SL_EP_F_NO_RANGES, "no ranges");
	ASSERT_TRUE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_ANY_PEER, SL_DIR_INGRESS), "in: only cli");
	ASSERT_TRUE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_ALL_PORTS, SL_DIR_INGRESS), "in: only 8080");
	ASSERT_FALSE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_ANY_PEER, SL_DIR_EGRESS), "out: UDP 53 to every peer");
	ASSERT_FALSE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_ALL_PORTS, SL_DIR_EGRESS), "out: every port to 192.0.2.0/24");
	ASSERT_FALSE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_TCP, SL_DIR_INGRESS), "in: TCP 8080");
	ASSERT_TRUE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_UDP, SL_DIR_INGRESS), "in: no UDP rule");
	ASSERT_TRUE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_SCTP, SL_DIR_INGRESS), "in: no SCTP rule");
	ASSERT_FALSE(web->flags & SL_EP_F_DIR(SL_EP_F_NO_TCP | SL_EP_F_NO_UDP | SL_EP_F_NO_SCTP, SL_DIR_EGRESS),
		     "out: every protocol to 192.0.2.0/24");
	/* and the decisions they take part in */
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 8080, SL_IPPROTO_TCP), 1, "cli 8080");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 8081, SL_IPPROTO_TCP), 0, "cli 8081");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "192.0.2.1", 8080, SL_IPPROTO_TCP), 0, "other peer");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "10.0.0.2", 8080, SL_IPPROTO_UDP), 0, "cli UDP 8080");
	ASSERT_EQ(lookup(p, SL_DIR_EGRESS, "10.0.0.1", "10.0.0.2", 53, SL_IPPROTO_UDP), 1, "DNS anywhere");
	ASSERT_EQ(lookup(p, SL_DIR_EGRESS, "10.0.0.1", "10.0.0.2", 53, SL_IPPROTO_TCP), 0, "TCP 53 not");
	ASSERT_EQ(lookup(p, SL_DIR_EGRESS, "10.0.0.1", "192.0.2.9", 443, SL_IPPROTO_TCP), 1, "every port there");
	ASSERT_EQ(lookup(p, SL_DIR_EGRESS, "10.0.0.1", "10.0.0.2", 443, SL_IPPROTO_TCP), 0, "not elsewhere");
out:
	policy_free(p);
	policy_registry_free(reg);
	model_free(m);
	diags_clear(&errs);
}

/* Every verdict and slot of p for web's ingress, port by port, TCP and UDP,
 * from cli and from a stranger: lookups[2][2][65536] of (allowed << 31 | slot). */
static void all_verdicts(const struct policy *p, uint32_t *out)
{
	static const char *const peers[2] = { "10.0.0.2", "192.0.2.1" };
	static const uint8_t protos[2] = { SL_IPPROTO_TCP, SL_IPPROTO_UDP };
	struct sl_ip l, r;

	sl_ip_parse("10.0.0.1", &l);
	for (int pe = 0; pe < 2; pe++) {
		sl_ip_parse(peers[pe], &r);
		for (int pr = 0; pr < 2; pr++)
			for (uint32_t port = 0; port < 65536; port++) {
				uint32_t slot = 0;
				int v = policy_lookup(p, SL_DIR_INGRESS, &l, &r, (uint16_t)port, protos[pr], &slot);

				out[(pe * 2 + pr) * 65536 + port] = (uint32_t)(v == 1) << 31 | slot;
			}
	}
}

/* Set or clear flag on every endpoint of p. */
static void ep_flag(struct policy *p, uint32_t flag, bool on)
{
	for (size_t i = 0; i < p->t.n_eps; i++)
		p->t.ep_vals[i].flags = on ? p->t.ep_vals[i].flags | flag : p->t.ep_vals[i].flags & ~flag;
}

/* Port ranges by hash lookups (sl_polrange_v1) decide exactly as the LPM
 * trie does: same verdict and same counting slot for every port, with
 * overlapping ranges of several rules, an exact port inside a range, ranges
 * for every peer and every UDP port; an endpoint with more blocks for one
 * key than a list holds stays on the trie. */
void test_policy_range_list(void)
{
	static const char yaml[] =
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: r, namespace: a}\n"
		"spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
		"  - from: [{podSelector: {matchLabels: {app: cli}}}]\n    ports: [{port: 1000, endPort: 1100}]\n"
		"  - from: [{podSelector: {matchLabels: {app: cli}}}]\n    ports: [{port: 1050, endPort: 1060}]\n"
		"  - from: [{podSelector: {matchLabels: {app: cli}}}]\n    ports: [{port: 1055}]\n"
		"  - ports: [{port: 2000, endPort: 2999}]\n"
		"  - from: [{podSelector: {matchLabels: {app: cli}}}]\n    ports: [{protocol: UDP}]\n";
	static const char wide[] =
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: w, namespace: a}\n"
		"spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
		"  - ports: [{port: 1, endPort: 65534}, {port: 3, endPort: 40001}]\n";
	uint32_t *got = calloc(4 * 65536, sizeof(*got)), *want = calloc(4 * 65536, sizeof(*want));
	struct policy_registry *reg = NULL;
	struct policy *p = NULL;
	struct diags errs = { 0 };
	const struct sl_polep_val *web;
	struct sl_model *m = NULL;
	size_t differ = 0;

	if (!ASSERT_TRUE(got && want, "calloc"))
		goto out;
	if (!ASSERT_OK(policy_registry_new(&reg), "reg") || !(p = compile_with_pods(yaml, reg, &m, &errs)))
		goto out;
	web = ep_of(p, "10.0.0.1");
	if (!ASSERT_OK_PTR(web, "web is an endpoint"))
		goto out;
	ASSERT_TRUE(web->flags & SL_EP_F_RANGE_LIST, "web's ranges are in lists");
	ASSERT_FALSE(web->flags & SL_EP_F_NO_RANGES, "web has ranges");
	ASSERT_EQ(p->t.n_ranges, 2, "lists: cli TCP, every peer TCP");
	for (size_t i = 0; i < p->t.n_ranges; i++)
		ASSERT_LE(p->t.range_vals[i].n, SL_POLRANGE_N, "a list fits");
	all_verdicts(p, got);
	ep_flag(p, SL_EP_F_RANGE_LIST, false);		/* the trie decides */
	all_verdicts(p, want);
	for (size_t i = 0; i < 4 * 65536; i++)
		differ += got[i] != want[i];
	ASSERT_EQ(differ, 0, "lists decide as the trie, verdict and slot, every port");
	ASSERT_EQ(want[1000] >> 31, 1, "cli TCP 1000 allowed");
	ASSERT_EQ(want[1101] >> 31, 0, "cli TCP 1101 denied");
	ASSERT_NEQ(want[1055], want[1000], "1055: its own rule's slot");
	ASSERT_EQ(want[2 * 65536 + 2500] >> 31, 1, "a stranger on TCP 2500");
	ASSERT_EQ(want[3 * 65536 + 53] >> 31, 0, "a stranger on UDP 53");
	policy_free(p);
	p = NULL;
	model_free(m);

	if (!(p = compile_with_pods(wide, reg, &m, &errs)))
		goto out;
	web = ep_of(p, "10.0.0.1");
	if (!ASSERT_OK_PTR(web, "web is an endpoint (wide)"))
		goto out;
	ASSERT_FALSE(web->flags & (SL_EP_F_RANGE_LIST | SL_EP_F_NO_RANGES), "more blocks than a list: the trie");
	ASSERT_EQ(p->t.n_ranges, 0, "and no list");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "192.0.2.1", 65534, SL_IPPROTO_TCP), 1, "65534");
	ASSERT_EQ(lookup(p, SL_DIR_INGRESS, "10.0.0.1", "192.0.2.1", 65535, SL_IPPROTO_TCP), 0, "65535");
out:
	free(got);
	free(want);
	policy_free(p);
	policy_registry_free(reg);
	model_free(m);
	diags_clear(&errs);
}
