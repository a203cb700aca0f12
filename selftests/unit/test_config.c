// SPDX-License-Identifier: Apache-2.0
/* test_config.c - config.c: every kind and field, defaults, Lists and JSON,
 * problems with their exact "file:line: reason", directory loading, big files
 * cut in pieces (the same outcome as one parse), limits, fuzz regressions,
 * the inotify watch, and the 10k Services / 100k endpoints scale point (time
 * and memory).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "loop.h"
#include "lib/test.h"

/* ---- helpers ----------------------------------------------------------- */

static struct sl_resources *decode(const char *name, const char *text, struct diags *errs, int *ret)
{
	struct sl_resources *r = config_resources_new();

	*ret = -ENOMEM;
	if (!r)
		return NULL;
	*ret = config_decode_buf(r, name, text, strlen(text), errs);
	return r;
}

static void dump_diags(const struct diags *e)
{
	char buf[1024];

	for (size_t i = 0; i < e->n; i++)
		printf("  diag[%zu]: %s\n", i, diag_str(&e->v[i], buf, sizeof(buf)));
}

/* Is "file:line: msg" among the problems? Prints them all when not. */
static bool has_diag(const struct diags *e, const char *want)
{
	char buf[1024];

	for (size_t i = 0; i < e->n; i++)
		if (!strcmp(diag_str(&e->v[i], buf, sizeof(buf)), want))
			return true;
	printf("missing diag: %s\n", want);
	dump_diags(e);
	return false;
}

static bool ip_is(const struct sl_ip *ip, const char *want)
{
	char buf[INET6_ADDRSTRLEN] = "";

	inet_ntop(ip->family == SL_AF_INET ? AF_INET : AF_INET6, &ip->addr, buf, sizeof(buf));
	if (strcmp(buf, want)) {
		printf("ip %s != %s\n", buf, want);
		return false;
	}
	return true;
}

static const char *label(const struct sl_labels *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].key, key))
			return l->v[i].value;
	return NULL;
}

static int write_file(const char *dir, const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fputs(text, f);
	return fclose(f) ? -errno : 0;
}

static const char *in_dir(const char *dir, const char *rel)
{
	static char path[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(path[k], sizeof(path[k]), "%s/%s", dir, rel);
	return path[k];
}

/* ---- kinds and fields ----------------------------------------------------- */

static const char svc_full[] =
	"apiVersion: v1\n"					/* 1 */
	"kind: Service\n"
	"metadata:\n"
	"  name: web\n"
	"  namespace: shop\n"					/* 5 */
	"  annotations:\n"
	"    kubectl.kubernetes.io/last-applied-configuration: |\n"
	"      {\"apiVersion\": \"v1\"}\n"
	"spec:\n"
	"  type: LoadBalancer\n"				/* 10 */
	"  clusterIP: 10.96.0.10\n"
	"  clusterIPs: [10.96.0.10, \"fd00::10\"]\n"
	"  ports:\n"
	"  - name: http\n"
	"    port: 80\n"					/* 15 */
	"    targetPort: http-web\n"
	"    appProtocol: kubernetes.io/h2c\n"
	"  - name: dns\n"
	"    port: 53\n"
	"    targetPort: 5353\n"				/* 20 */
	"    protocol: UDP\n"
	"  - name: sctp\n"
	"    port: 3868\n"
	"    protocol: SCTP\n"
	"  selector:\n"						/* 25 */
	"    app: web\n"
	"    tier: front\n"
	"  sessionAffinity: ClientIP\n"
	"  sessionAffinityConfig:\n"
	"    clientIP:\n"					/* 30 */
	"      timeoutSeconds: 600\n"
	"  internalTrafficPolicy: Local\n";

void test_config_service_fields(void)
{
	struct diags e = { 0 };
	struct sl_resources *r;
	const struct sl_service *s;
	int ret;

	r = decode("svc.yaml", svc_full, &e, &ret);
	if (!ASSERT_OK_PTR(r, "decode") || !ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_services, 1, "n"))
		goto out;
	s = &r->services[0];
	ASSERT_STREQ(s->ns, "shop", "ns");
	ASSERT_STREQ(s->name, "web", "name");
	ASSERT_STREQ(s->src.file, "svc.yaml", "src.file");
	ASSERT_EQ(s->src.line, 1, "src.line");
	ASSERT_EQ(s->type, SL_SVC_LOAD_BALANCER, "type");
	ASSERT_FALSE(s->headless, "headless");
	if (ASSERT_EQ(s->n_cluster_ips, 2, "n_cluster_ips")) {
		ASSERT_TRUE(ip_is(&s->cluster_ips[0], "10.96.0.10"), "ip0");
		ASSERT_EQ(s->cluster_ips[0].family, SL_AF_INET, "ip0 family");
		ASSERT_TRUE(ip_is(&s->cluster_ips[1], "fd00::10"), "ip1");
		ASSERT_EQ(s->cluster_ips[1].family, SL_AF_INET6, "ip1 family");
	}
	if (ASSERT_EQ(s->n_ports, 3, "n_ports")) {
		ASSERT_STREQ(s->ports[0].name, "http", "p0 name");
		ASSERT_EQ(s->ports[0].port, 80, "p0 port");
		ASSERT_EQ(s->ports[0].proto, SL_IPPROTO_TCP, "p0 proto");
		ASSERT_EQ(s->ports[0].target_port, 0, "p0 target_port");
		ASSERT_STREQ(s->ports[0].target_port_name, "http-web", "p0 named targetPort");
		ASSERT_STREQ(s->ports[0].app_protocol, "kubernetes.io/h2c", "p0 appProtocol");
		ASSERT_EQ(s->ports[1].port, 53, "p1 port");
		ASSERT_EQ(s->ports[1].proto, SL_IPPROTO_UDP, "p1 proto");
		ASSERT_EQ(s->ports[1].target_port, 5353, "p1 target_port");
		ASSERT_TRUE(s->ports[1].target_port_name == NULL, "p1 no target name");
		ASSERT_TRUE(s->ports[1].app_protocol == NULL, "p1 no appProtocol");
		ASSERT_EQ(s->ports[2].proto, 132, "p2 SCTP");
		ASSERT_EQ(s->ports[2].target_port, 3868, "p2 target_port defaults to port");
	}
	ASSERT_TRUE(s->has_selector, "has_selector");
	ASSERT_EQ(s->selector.n, 2, "selector.n");
	ASSERT_STREQ(label(&s->selector, "app"), "web", "selector app");
	ASSERT_STREQ(label(&s->selector, "tier"), "front", "selector tier");
	ASSERT_TRUE(s->affinity_client_ip, "affinity");
	ASSERT_EQ(s->affinity_timeout, 600, "affinity timeout");
	ASSERT_TRUE(s->itp_local, "itp_local");
	ASSERT_EQ(e.n, 0, "no problems");
out:
	resources_free(r);
	diags_clear(&e);
}

void test_config_service_defaults(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: db}\n"
				   "spec:\n"
				   "  clusterIP: 10.96.5.5\n"
				   "  ports: [{port: 5432}]\n"
				   "  selector: {}\n";
	struct diags e = { 0 };
	struct sl_resources *r;
	const struct sl_service *s;
	int ret;

	r = decode("db.yaml", text, &e, &ret);
	if (!ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_services, 1, "n"))
		goto out;
	s = &r->services[0];
	ASSERT_STREQ(s->ns, "default", "ns defaults to default");
	ASSERT_EQ(s->type, SL_SVC_CLUSTER_IP, "type defaults to ClusterIP");
	ASSERT_EQ(s->n_cluster_ips, 1, "clusterIP alone");
	ASSERT_TRUE(ip_is(&s->cluster_ips[0], "10.96.5.5"), "clusterIP");
	ASSERT_EQ(s->n_ports, 1, "n_ports");
	ASSERT_TRUE(s->ports[0].name == NULL, "unnamed single port");
	ASSERT_EQ(s->ports[0].proto, SL_IPPROTO_TCP, "protocol defaults to TCP");
	ASSERT_EQ(s->ports[0].target_port, 5432, "targetPort defaults to port");
	ASSERT_FALSE(s->has_selector, "empty selector is no selector");
	ASSERT_FALSE(s->affinity_client_ip, "affinity None");
	ASSERT_EQ(s->affinity_timeout, 10800, "default affinity timeout");
	ASSERT_FALSE(s->itp_local, "itp Cluster");
	ASSERT_FALSE(s->headless, "not headless");
out:
	resources_free(r);
	diags_clear(&e);
}

void test_config_service_headless(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: a}\n"
				   "spec: {clusterIP: None, ports: [{port: 80}]}\n"
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: b}\n"
				   "spec: {clusterIP: None, clusterIPs: [None]}\n"
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: c}\n"
				   "spec: {clusterIPs: [\"fd00::1\", 10.1.2.3], type: NodePort}\n"
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: d}\n"
				   "spec: {type: ExternalName, externalName: db.example.com}\n";
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("h.yaml", text, &e, &ret);
	if (!ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_services, 4, "n"))
		goto out;
	ASSERT_TRUE(r->services[0].headless, "a headless");
	ASSERT_EQ(r->services[0].n_cluster_ips, 0, "a no ips");
	ASSERT_TRUE(r->services[1].headless, "b headless");
	ASSERT_FALSE(r->services[2].headless, "c not headless");
	ASSERT_EQ(r->services[2].type, SL_SVC_NODE_PORT, "c NodePort");
	if (ASSERT_EQ(r->services[2].n_cluster_ips, 2, "c dual-stack")) {
		ASSERT_TRUE(ip_is(&r->services[2].cluster_ips[0], "fd00::1"), "c ip0 (IPv6 first)");
		ASSERT_TRUE(ip_is(&r->services[2].cluster_ips[1], "10.1.2.3"), "c ip1");
	}
	ASSERT_EQ(r->services[3].type, SL_SVC_EXTERNAL_NAME, "d ExternalName");
	ASSERT_EQ(r->services[3].src.line, 16, "d line");
out:
	resources_free(r);
	diags_clear(&e);
}

static int affinity(uint32_t *timeout, const char *value, struct diags *e)
{
	char text[512];
	struct sl_resources *r;
	int ret;

	snprintf(text, sizeof(text),
		 "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n"
		 "  sessionAffinity: ClientIP\n"
		 "  sessionAffinityConfig: {clientIP: {timeoutSeconds: %s}}\n", value);
	r = decode("aff.yaml", text, e, &ret);
	if (r && !ret && r->n_services == 1)
		*timeout = r->services[0].affinity_timeout;
	resources_free(r);
	return ret;
}

void test_config_affinity_timeout_bounds(void)
{
	struct diags e = { 0 };
	uint32_t t = 0;

	ASSERT_OK(affinity(&t, "1", &e), "1 is the least");
	ASSERT_EQ(t, 1, "1");
	ASSERT_OK(affinity(&t, "86400", &e), "86400 is the most");
	ASSERT_EQ(t, 86400, "86400");
	ASSERT_EQ(e.n, 0, "no problems so far");
	ASSERT_EQ(affinity(&t, "0", &e), -EINVAL, "0");
	ASSERT_TRUE(has_diag(&e, "aff.yaml:6: Service default/a: spec.sessionAffinityConfig.clientIP.timeoutSeconds: expected an integer 1-86400, got \"0\""),
		    "0 reason");
	ASSERT_EQ(affinity(&t, "86401", &e), -EINVAL, "86401");
	ASSERT_TRUE(has_diag(&e, "aff.yaml:6: Service default/a: spec.sessionAffinityConfig.clientIP.timeoutSeconds: expected an integer 1-86400, got \"86401\""),
		    "86401 reason");
	ASSERT_EQ(affinity(&t, "\"600\"", &e), -EINVAL, "quoted");
	ASSERT_TRUE(has_diag(&e, "aff.yaml:6: Service default/a: spec.sessionAffinityConfig.clientIP.timeoutSeconds: expected an integer 1-86400, got the string \"600\" (drop the quotes)"),
		    "quoted reason");
	diags_clear(&e);
}

static const char pod_full[] =
	"apiVersion: v1\n"					/* 1 */
	"kind: Pod\n"
	"metadata:\n"
	"  name: web-7d9f-x2\n"
	"  namespace: shop\n"					/* 5 */
	"  labels: {app: web, pod-template-hash: 7d9f}\n"
	"  deletionTimestamp: \"2024-05-01T10:00:00Z\"\n"
	"spec:\n"
	"  nodeName: node-1.example\n"
	"  serviceAccountName: web-sa\n"			/* 10 */
	"  hostNetwork: true\n"
	"  containers:\n"
	"  - name: app\n"
	"    ports:\n"
	"    - {name: http, containerPort: 8080}\n"		/* 15 */
	"    - {containerPort: 5353, protocol: UDP}\n"
	"  - name: sidecar\n"
	"  - name: metrics\n"
	"    ports: [{name: metrics, containerPort: 9090}]\n"
	"status:\n"						/* 20 */
	"  podIP: 10.0.1.5\n"
	"  podIPs: [{ip: 10.0.1.5}, {ip: \"fd00::1:5\"}]\n"
	"  conditions:\n"
	"  - {type: Initialized, status: \"True\"}\n"
	"  - {type: Ready, status: \"False\"}\n";		/* 25 */

void test_config_pod_fields(void)
{
	struct diags e = { 0 };
	struct sl_resources *r;
	const struct sl_pod *p;
	int ret;

	r = decode("pod.yaml", pod_full, &e, &ret);
	if (!ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_pods, 1, "n"))
		goto out;
	p = &r->pods[0];
	ASSERT_STREQ(p->ns, "shop", "ns");
	ASSERT_STREQ(p->name, "web-7d9f-x2", "name");
	ASSERT_STREQ(p->node, "node-1.example", "node");
	ASSERT_STREQ(p->service_account, "web-sa", "sa");
	ASSERT_EQ(p->labels.n, 2, "labels");
	ASSERT_STREQ(label(&p->labels, "pod-template-hash"), "7d9f", "label");
	ASSERT_TRUE(p->terminating, "deletionTimestamp");
	ASSERT_TRUE(p->host_network, "hostNetwork");
	ASSERT_FALSE(p->ready, "Ready False");
	if (ASSERT_EQ(p->n_ips, 2, "n_ips")) {
		ASSERT_TRUE(ip_is(&p->ips[0], "10.0.1.5"), "ip0");
		ASSERT_TRUE(ip_is(&p->ips[1], "fd00::1:5"), "ip1");
	}
	if (ASSERT_EQ(p->n_ports, 3, "ports of all containers")) {
		ASSERT_STREQ(p->ports[0].name, "http", "p0 name");
		ASSERT_EQ(p->ports[0].port, 8080, "p0");
		ASSERT_EQ(p->ports[0].proto, SL_IPPROTO_TCP, "p0 TCP");
		ASSERT_TRUE(p->ports[1].name == NULL, "p1 unnamed");
		ASSERT_EQ(p->ports[1].proto, SL_IPPROTO_UDP, "p1 UDP");
		ASSERT_STREQ(p->ports[2].name, "metrics", "p2 from the third container");
		ASSERT_EQ(p->ports[2].port, 9090, "p2");
	}
out:
	resources_free(r);
	diags_clear(&e);
}

void test_config_pod_defaults(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Pod\n"
				   "metadata: {name: a}\n"
				   "spec: {containers: [{name: c}]}\n"
				   "status:\n"
				   "  podIP: \"fd00::7\"\n"
				   "  conditions: [{type: PodScheduled, status: \"True\"}]\n"
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Pod\n"
				   "metadata: {name: b}\n"
				   "spec: {serviceAccount: legacy}\n"
				   "status: {conditions: [{type: Ready, status: \"True\"}]}\n";
	struct diags e = { 0 };
	struct sl_resources *r;
	const struct sl_pod *p;
	int ret;

	r = decode("pods.yaml", text, &e, &ret);
	if (!ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_pods, 2, "n"))
		goto out;
	p = &r->pods[0];
	ASSERT_STREQ(p->ns, "default", "ns default");
	ASSERT_STREQ(p->service_account, "default", "sa default");
	ASSERT_TRUE(p->node == NULL, "no node");
	ASSERT_TRUE(p->ready, "ready when no Ready condition");
	ASSERT_FALSE(p->terminating, "not terminating");
	ASSERT_FALSE(p->host_network, "no hostNetwork");
	ASSERT_EQ(p->n_ports, 0, "no ports");
	if (ASSERT_EQ(p->n_ips, 1, "podIP alone"))
		ASSERT_TRUE(ip_is(&p->ips[0], "fd00::7"), "podIP");
	ASSERT_STREQ(r->pods[1].service_account, "legacy", "deprecated serviceAccount");
	ASSERT_TRUE(r->pods[1].ready, "Ready True");
	ASSERT_EQ(r->pods[1].src.line, 9, "second pod's line");
out:
	resources_free(r);
	diags_clear(&e);
}

void test_config_namespace(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Namespace\n"
				   "metadata:\n"
				   "  name: shop\n"
				   "  labels:\n"
				   "    istio.io/dataplane-mode: ambient\n"
				   "    team: \"\"\n"
				   "    empty:\n";
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("ns.yaml", text, &e, &ret);
	if (!ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_namespaces, 1, "n"))
		goto out;
	ASSERT_STREQ(r->namespaces[0].name, "shop", "name");
	ASSERT_EQ(r->namespaces[0].labels.n, 3, "labels");
	ASSERT_STREQ(label(&r->namespaces[0].labels, "istio.io/dataplane-mode"), "ambient", "prefixed key");
	ASSERT_STREQ(label(&r->namespaces[0].labels, "team"), "", "empty value");
	ASSERT_STREQ(label(&r->namespaces[0].labels, "empty"), "", "null value");
out:
	resources_free(r);
	diags_clear(&e);
}

static const char slice_text[] =
	"apiVersion: discovery.k8s.io/v1\n"			/* 1 */
	"kind: EndpointSlice\n"
	"metadata:\n"
	"  name: web-abc12\n"
	"  namespace: shop\n"					/* 5 */
	"  labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: x}\n"
	"addressType: IPv4\n"
	"ports:\n"
	"- {name: http, port: 8080, protocol: TCP}\n"
	"- {name: \"\", port: 53, protocol: UDP}\n"		/* 10 */
	"endpoints:\n"
	"- addresses: [10.0.1.5]\n"
	"  conditions: {ready: true, serving: true, terminating: false}\n"
	"  nodeName: node-1\n"
	"  targetRef: {kind: Pod, name: web-1, namespace: shop}\n"	/* 15 */
	"- addresses: [10.0.1.6, 10.0.1.7]\n"
	"  conditions: {ready: false, terminating: true}\n"
	"  targetRef: {kind: Node, name: n}\n"
	"- addresses: [10.0.1.8]\n"
	"  conditions: {ready: false, serving: true}\n"	/* 20 */
	"---\n"
	"apiVersion: discovery.k8s.io/v1\n"
	"kind: EndpointSlice\n"
	"metadata: {name: web-v6, namespace: shop, labels: {kubernetes.io/service-name: web}}\n"
	"addressType: IPv6\n"					/* 25 */
	"endpoints: [{addresses: [\"fd00::5\"]}]\n"
	"---\n"
	"apiVersion: discovery.k8s.io/v1\n"
	"kind: EndpointSlice\n"
	"metadata: {name: web-fqdn, labels: {kubernetes.io/service-name: web}}\n"	/* 30 */
	"addressType: FQDN\n"
	"endpoints: [{addresses: [db.example.com]}]\n";

void test_config_slice_fields(void)
{
	struct diags e = { 0 };
	struct sl_resources *r;
	const struct sl_endpoint_slice *s;
	int ret;

	r = decode("es.yaml", slice_text, &e, &ret);
	if (!ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_slices, 2, "FQDN slice left out"))
		goto out;
	ASSERT_EQ(r->n_ignored, 1, "FQDN slice counted as ignored");
	s = &r->slices[0];
	ASSERT_STREQ(s->ns, "shop", "ns");
	ASSERT_STREQ(s->name, "web-abc12", "name");
	ASSERT_STREQ(s->service, "web", "service");
	ASSERT_EQ(s->family, SL_AF_INET, "IPv4");
	if (ASSERT_EQ(s->n_ports, 2, "ports")) {
		ASSERT_STREQ(s->ports[0].name, "http", "port name");
		ASSERT_EQ(s->ports[0].port, 8080, "port");
		ASSERT_TRUE(s->ports[1].name == NULL, "empty name is none");
		ASSERT_EQ(s->ports[1].proto, SL_IPPROTO_UDP, "UDP");
	}
	if (ASSERT_EQ(s->n_endpoints, 3, "endpoints")) {
		const struct sl_endpoint *ep = s->endpoints;

		ASSERT_EQ(ep[0].n_addrs, 1, "e0 addrs");
		ASSERT_TRUE(ip_is(&ep[0].addrs[0], "10.0.1.5"), "e0 addr");
		ASSERT_TRUE(ep[0].ready && ep[0].serving && !ep[0].terminating, "e0 conditions");
		ASSERT_STREQ(ep[0].node, "node-1", "e0 node");
		ASSERT_STREQ(ep[0].pod, "web-1", "e0 pod");
		ASSERT_EQ(ep[1].n_addrs, 2, "e1 addrs");
		ASSERT_TRUE(ip_is(&ep[1].addrs[1], "10.0.1.7"), "e1 addr1");
		ASSERT_FALSE(ep[1].ready, "e1 not ready");
		ASSERT_FALSE(ep[1].serving, "e1 serving defaults to ready");
		ASSERT_TRUE(ep[1].terminating, "e1 terminating");
		ASSERT_TRUE(ep[1].pod == NULL, "e1 targetRef not a Pod");
		ASSERT_TRUE(ep[1].node == NULL, "e1 no node");
		ASSERT_TRUE(!ep[2].ready && ep[2].serving, "e2 serving while not ready");
	}
	s = &r->slices[1];
	ASSERT_EQ(s->family, SL_AF_INET6, "IPv6");
	ASSERT_EQ(s->src.line, 22, "line of the second document");
	if (ASSERT_EQ(s->n_endpoints, 1, "v6 endpoints")) {
		ASSERT_TRUE(ip_is(&s->endpoints[0].addrs[0], "fd00::5"), "v6 addr");
		ASSERT_TRUE(s->endpoints[0].ready && s->endpoints[0].serving, "conditions absent: ready");
	}
out:
	resources_free(r);
	diags_clear(&e);
}

void test_config_multi_doc(void)
{
	static const char text[] = "# leading comment\n"
				   "---\n"
				   "---\n"
				   "apiVersion: v1\n"			/* 4 */
				   "kind: Namespace\n"
				   "metadata: {name: a}\n"
				   "...\n"
				   "---\n"
				   "\n"
				   "---\n"
				   "apiVersion: v1\n"			/* 11 */
				   "kind: Namespace\n"
				   "metadata: {name: b}\n"
				   "--- {apiVersion: v1, kind: Namespace, metadata: {name: c}}\n"	/* 14 */
				   "---\n"
				   "~\n";
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("m.yaml", text, &e, &ret);
	if (!ASSERT_OK(ret, "ret") || !ASSERT_EQ(r->n_namespaces, 3, "n"))
		goto out;
	ASSERT_STREQ(r->namespaces[0].name, "a", "a");
	ASSERT_EQ(r->namespaces[0].src.line, 4, "a line");
	ASSERT_STREQ(r->namespaces[1].name, "b", "b");
	ASSERT_EQ(r->namespaces[1].src.line, 11, "b line");
	ASSERT_STREQ(r->namespaces[2].name, "c", "c");
	ASSERT_EQ(r->namespaces[2].src.line, 14, "c line");
out:
	resources_free(r);
	diags_clear(&e);
}

/* As `kubectl get svc,endpointslices,pods -o json` prints it: tabs (here),
 * "items" before "kind", \u escapes (Go escapes <, > and &), and a surrogate
 * pair as Python's json.dumps writes one. */
static const char list_json[] =
	"{\n"							/* 1 */
	"\t\"apiVersion\": \"v1\",\n"
	"\t\"items\": [\n"
	"\t\t{\n"
	"\t\t\t\"apiVersion\": \"v1\",\n"			/* 5 */
	"\t\t\t\"kind\": \"Service\",\n"
	"\t\t\t\"metadata\": {\n"
	"\t\t\t\t\"annotations\": {\"note\": \"caf\\u00e9 \\ud83d\\ude00 \\u003cb\\u003e \\u2028\"},\n"
	"\t\t\t\t\"labels\": {\"note\": \"caf\\u00e9\"},\n"
	"\t\t\t\t\"name\": \"web\",\n"			/* 10 */
	"\t\t\t\t\"namespace\": \"default\"\n"
	"\t\t\t},\n"
	"\t\t\t\"spec\": {\n"
	"\t\t\t\t\"clusterIP\": \"10.96.1.1\",\n"
	"\t\t\t\t\"clusterIPs\": [\"10.96.1.1\"],\n"	/* 15 */
	"\t\t\t\t\"ports\": [{\"port\": 80, \"protocol\": \"TCP\", \"targetPort\": 8080}],\n"
	"\t\t\t\t\"selector\": {\"app\": \"web\"}\n"
	"\t\t\t}\n"
	"\t\t},\n"
	"\t\t{\n"						/* 20 */
	"\t\t\t\"apiVersion\": \"v1\",\n"
	"\t\t\t\"kind\": \"Pod\",\n"
	"\t\t\t\"metadata\": {\"name\": \"web-1\", \"namespace\": \"default\"},\n"
	"\t\t\t\"status\": {\"podIP\": \"10.0.0.300\"}\n"
	"\t\t},\n"						/* 25 */
	"\t\t{\n"
	"\t\t\t\"apiVersion\": \"discovery.k8s.io/v1\",\n"
	"\t\t\t\"kind\": \"EndpointSlice\",\n"
	"\t\t\t\"metadata\": {\"labels\": {\"kubernetes.io/service-name\": \"web\"}, \"name\": \"web-x\"},\n"
	"\t\t\t\"addressType\": \"IPv4\",\n"			/* 30 */
	"\t\t\t\"endpoints\": [{\"addresses\": [\"10.0.0.5\"], \"conditions\": {\"ready\": true}}],\n"
	"\t\t\t\"ports\": [{\"name\": \"\", \"port\": 8080, \"protocol\": \"TCP\"}]\n"
	"\t\t}\n"
	"\t],\n"
	"\t\"kind\": \"List\",\n"				/* 35 */
	"\t\"metadata\": {\"resourceVersion\": \"\"}\n"
	"}\n";

void test_config_list_kubectl_json(void)
{
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("x.json", list_json, &e, &ret);
	if (!ASSERT_OK_PTR(r, "decode"))
		goto out;
	/* The Pod is bad (and reported); the Service and slice around it decode. */
	ASSERT_EQ(ret, -EINVAL, "ret");
	ASSERT_TRUE(has_diag(&e, "x.json:24: Pod default/web-1: status.podIP: not an IP address: \"10.0.0.300\""),
		    "bad pod IP");
	ASSERT_EQ(e.n, 1, "one problem");
	ASSERT_EQ(r->n_pods, 0, "bad pod left out");
	if (ASSERT_EQ(r->n_services, 1, "service")) {
		ASSERT_STREQ(r->services[0].name, "web", "svc name");
		ASSERT_EQ(r->services[0].src.line, 4, "svc line");
		ASSERT_EQ(r->services[0].ports[0].target_port, 8080, "targetPort");
	}
	if (ASSERT_EQ(r->n_slices, 1, "slice")) {
		ASSERT_EQ(r->slices[0].src.line, 26, "slice line");
		ASSERT_STREQ(r->slices[0].ns, "default", "slice ns defaults");
	}
out:
	resources_free(r);
	diags_clear(&e);
}

void test_config_json_escapes(void)
{
	/* A name the validator rejects, so the decoded text shows in the message. */
	static const char text[] = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\",\n"
				   "\t\"metadata\": {\"name\": \"caf\\u00e9\\ud83d\\ude00\\u003c\\/\"}}\n";
	static const char raw[] = "\t{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"x\","
				  "\"annotations\":{\"a\":\"\x7f \xc2\x85 \xe2\x80\xa9 \\ud800 lone\"},"
				  "\"labels\":{\"k\":\"v\"}}}";
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("u.json", text, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "ret");
	ASSERT_HAS(e.n ? e.v[0].msg : NULL, "not a valid name: \"caf\xc3\xa9\xf0\x9f\x98\x80</\"",
		   "escapes decoded (\\u, surrogate pair, \\/)");
	ASSERT_EQ(e.n ? e.v[0].line : 0, 2, "line");
	resources_free(r);
	diags_clear(&e);
	/* Raw DEL, NEL, U+2029 and a lone surrogate: JSON allows them, YAML not as is. */
	r = decode("raw.json", raw, &e, &ret);
	ASSERT_OK(ret, "raw ret");
	if (!ret)
		ASSERT_EQ(r->n_namespaces, 1, "raw decoded");
	dump_diags(&e);
	resources_free(r);
	diags_clear(&e);
}

void test_config_typed_list(void)
{
	/* kind before items (as the API server writes lists), items untyped */
	static const char yaml[] = "kind: ServiceList\n"
				   "apiVersion: v1\n"
				   "items:\n"
				   "- metadata: {name: a}\n"
				   "  spec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n"
				   "- metadata: {name: b}\n"
				   "  spec: {ports: [{port: 81}]}\n";
	/* items before kind (kubectl's sorted keys), untyped: decoded at the end */
	static const char json[] = "{\"items\": [\n"
				   "  {\"metadata\": {\"name\": \"p1\", \"namespace\": \"x\"}, \"status\": {\"podIP\": \"10.1.0.1\"}},\n"
				   "  {\"metadata\": {\"name\": \"p2\"}}\n"
				   "], \"kind\": \"PodList\", \"apiVersion\": \"v1\"}\n";
	static const char plain[] = "apiVersion: v1\n"
				    "kind: List\n"
				    "items:\n"
				    "- {apiVersion: v1, kind: Namespace, metadata: {name: n1}}\n"
				    "- {metadata: {name: n2}}\n"
				    "- {apiVersion: v1, kind: List, items: []}\n";
	struct diags e = { 0 };
	struct sl_resources *r = config_resources_new();

	if (!ASSERT_OK_PTR(r, "new"))
		return;
	ASSERT_OK(config_decode_buf(r, "sl.yaml", yaml, strlen(yaml), &e), "ServiceList");
	ASSERT_OK(config_decode_buf(r, "pl.json", json, strlen(json), &e), "PodList");
	if (ASSERT_EQ(r->n_services, 2, "services")) {
		ASSERT_STREQ(r->services[1].name, "b", "b");
		ASSERT_EQ(r->services[1].src.line, 6, "b line");
	}
	if (ASSERT_EQ(r->n_pods, 2, "pods")) {
		ASSERT_STREQ(r->pods[0].ns, "x", "p1 ns");
		ASSERT_EQ(r->pods[1].src.line, 3, "p2 line");
	}
	ASSERT_EQ(config_decode_buf(r, "l.yaml", plain, strlen(plain), &e), -EINVAL, "List");
	ASSERT_TRUE(has_diag(&e, "l.yaml:5: missing kind"), "untyped item of a plain List");
	ASSERT_TRUE(has_diag(&e, "l.yaml:6: a List (List) inside a List"), "nested List");
	ASSERT_EQ(r->n_namespaces, 1, "the typed item decodes");
	resources_free(r);
	diags_clear(&e);
}

void test_config_ignored_kinds(void)
{
	static const char *const kinds[][2] = {
		{ "gateway.networking.k8s.io/v1alpha3", "BackendTLSPolicy" },
		{ "apps/v1", "Deployment" },
		{ "apps/v1", "StatefulSet" },
		{ "apps/v1", "DaemonSet" },
		{ "apps/v1", "ReplicaSet" },
		{ "v1", "ConfigMap" },
		{ "v1", "ServiceAccount" },
	};
	const size_t n = sizeof(kinds) / sizeof(kinds[0]);
	char text[8192];
	size_t o = 0;
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
				      "---\napiVersion: %s\nkind: %s\nmetadata: {name: x}\ndata: {k: v}\n",
				      kinds[i][0], kinds[i][1]);
	r = decode("ign.yaml", text, &e, &ret);
	ASSERT_OK(ret, "accepted");
	ASSERT_EQ(r->n_ignored, n, "each counted");
	ASSERT_EQ(r->n_services + r->n_pods + r->n_slices + r->n_namespaces, 0, "nothing decoded");
	dump_diags(&e);
	resources_free(r);
	diags_clear(&e);
}

/* ---- Gateway API and TLS Secrets ------------------------------------------ */

static const char route_full[] =
	"apiVersion: gateway.networking.k8s.io/v1\n"		/* 1 */
	"kind: HTTPRoute\n"
	"metadata:\n"
	"  name: web\n"
	"  namespace: shop\n"					/* 5 */
	"  generation: 7\n"
	"  creationTimestamp: \"2024-05-01T10:00:00Z\"\n"
	"spec:\n"
	"  parentRefs:\n"
	"  - name: gw\n"					/* 10 */
	"    namespace: infra\n"
	"    sectionName: http\n"
	"    port: 8080\n"
	"  - {group: \"\", kind: Service, name: web}\n"
	"  hostnames: [\"shop.example.com\", \"*.example.org\"]\n"	/* 15 */
	"  rules:\n"
	"  - name: main\n"
	"    matches:\n"
	"    - path: {type: Exact, value: /cart}\n"
	"      headers:\n"					/* 20 */
	"      - {name: x-env, value: canary}\n"
	"      - {type: RegularExpression, name: x-user, value: \"^a.*\"}\n"
	"      queryParams: [{name: q, value: \"1\"}]\n"
	"      method: POST\n"
	"    - path: {type: RegularExpression, value: \"^/api/v[0-9]+\"}\n"	/* 25 */
	"    filters:\n"
	"    - type: RequestHeaderModifier\n"
	"      requestHeaderModifier:\n"
	"        set: [{name: x-set, value: s}]\n"
	"        add: [{name: x-add, value: a}]\n"		/* 30 */
	"        remove: [x-drop]\n"
	"    - type: ResponseHeaderModifier\n"
	"      responseHeaderModifier: {add: [{name: x-resp, value: r}]}\n"
	"    - type: URLRewrite\n"
	"      urlRewrite: {hostname: internal.shop, path: {type: ReplaceFullPath, replaceFullPath: /v2/cart}}\n"	/* 35 */
	"    - type: RequestMirror\n"
	"      requestMirror: {backendRef: {name: shadow, port: 8080}, percent: 25}\n"
	"    - type: RequestMirror\n"
	"      requestMirror: {backendRef: {name: shadow2, namespace: qa, port: 81}, fraction: {numerator: 1, denominator: 3}}\n"
	"    - type: CORS\n"					/* 40 */
	"      cors:\n"
	"        allowOrigins: [\"https://a.example\"]\n"
	"        allowMethods: [GET, PUT]\n"
	"        allowHeaders: [x-a]\n"
	"        exposeHeaders: [x-b]\n"			/* 45 */
	"        allowCredentials: true\n"
	"        maxAge: 600\n"
	"    - type: ExtensionRef\n"
	"      extensionRef: {group: example.net, kind: Limit, name: slow}\n"
	"    backendRefs:\n"					/* 50 */
	"    - name: web-v1\n"
	"      port: 80\n"
	"      weight: 90\n"
	"    - name: web-v2\n"
	"      namespace: canary\n"				/* 55 */
	"      port: 80\n"
	"      weight: 0\n"
	"      filters:\n"
	"      - type: RequestHeaderModifier\n"
	"        requestHeaderModifier: {set: [{name: x-v, value: \"2\"}]}\n"	/* 60 */
	"    timeouts: {request: 10s, backendRequest: 500ms}\n"
	"    retry: {codes: [500, 503], attempts: 3, backoff: 1h2m}\n"
	"  - matches: [{path: {type: PathPrefix, value: /old}}]\n"
	"    filters:\n"
	"    - type: RequestRedirect\n"				/* 65 */
	"      requestRedirect:\n"
	"        scheme: https\n"
	"        hostname: new.example.com\n"
	"        port: 8443\n"
	"        statusCode: 301\n"				/* 70 */
	"        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}\n";

void test_config_httproute_fields(void)
{
	struct diags e = { 0 };
	const struct sl_route_filter *f;
	const struct sl_route_rule *r;
	const struct sl_http_match *m;
	const struct sl_route *rt;
	struct sl_resources *res;
	int ret;

	res = decode("route.yaml", route_full, &e, &ret);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "decode") || !ASSERT_EQ(res->n_routes, 1, "one route"))
		goto out;
	rt = &res->routes[0];
	ASSERT_EQ(rt->kind, SL_ROUTE_HTTP, "kind");
	ASSERT_STREQ(rt->ns, "shop", "ns");
	ASSERT_STREQ(rt->name, "web", "name");
	ASSERT_EQ(rt->generation, 7, "generation");
	ASSERT_STREQ(rt->created, "2024-05-01T10:00:00Z", "creationTimestamp");
	ASSERT_STREQ(rt->src.file, "route.yaml", "src file");
	ASSERT_EQ(rt->src.line, 1, "src line");
	ASSERT_EQ(res->n_ignored, 0, "not ignored any more");
	if (ASSERT_EQ(rt->n_parents, 2, "parents")) {
		ASSERT_STREQ(rt->parents[0].group, "gateway.networking.k8s.io", "parent group default");
		ASSERT_STREQ(rt->parents[0].kind, "Gateway", "parent kind default");
		ASSERT_STREQ(rt->parents[0].ns, "infra", "parent ns");
		ASSERT_STREQ(rt->parents[0].name, "gw", "parent name");
		ASSERT_STREQ(rt->parents[0].section_name, "http", "sectionName");
		ASSERT_EQ(rt->parents[0].port, 8080, "parent port");
		ASSERT_STREQ(rt->parents[1].group, "", "mesh parent: core group");
		ASSERT_STREQ(rt->parents[1].kind, "Service", "mesh parent: Service");
		ASSERT_TRUE(rt->parents[1].ns == NULL, "parent ns: the route's");
		ASSERT_TRUE(rt->parents[1].section_name == NULL, "no sectionName");
	}
	if (ASSERT_EQ(rt->n_hostnames, 2, "hostnames")) {
		ASSERT_STREQ(rt->hostnames[0], "shop.example.com", "hostname");
		ASSERT_STREQ(rt->hostnames[1], "*.example.org", "wildcard hostname");
	}
	if (!ASSERT_EQ(rt->n_rules, 2, "rules"))
		goto out;
	r = &rt->rules[0];
	ASSERT_STREQ(r->name, "main", "rule name");
	if (ASSERT_EQ(r->n_matches, 2, "matches")) {
		m = &r->matches[0];
		ASSERT_TRUE(m->has_path, "has path");
		ASSERT_EQ(m->path_type, SL_MATCH_EXACT, "Exact");
		ASSERT_STREQ(m->path, "/cart", "path");
		if (ASSERT_EQ(m->n_headers, 2, "headers")) {
			ASSERT_EQ(m->headers[0].type, SL_MATCH_EXACT, "header Exact by default");
			ASSERT_STREQ(m->headers[0].name, "x-env", "header name");
			ASSERT_STREQ(m->headers[0].value, "canary", "header value");
			ASSERT_EQ(m->headers[1].type, SL_MATCH_REGEX, "header regex");
			ASSERT_STREQ(m->headers[1].value, "^a.*", "header regex value");
		}
		if (ASSERT_EQ(m->n_query, 1, "query")) {
			ASSERT_EQ(m->query[0].type, SL_MATCH_EXACT, "query Exact");
			ASSERT_STREQ(m->query[0].name, "q", "query name");
			ASSERT_STREQ(m->query[0].value, "1", "query value");
		}
		ASSERT_STREQ(m->method, "POST", "method");
		ASSERT_FALSE(m->has_grpc, "not gRPC");
		ASSERT_EQ(r->matches[1].path_type, SL_MATCH_REGEX, "RegularExpression");
		ASSERT_STREQ(r->matches[1].path, "^/api/v[0-9]+", "regex path");
		ASSERT_TRUE(r->matches[1].method == NULL, "any method");
	}
	if (ASSERT_EQ(r->n_filters, 7, "filters")) {
		f = &r->filters[0];
		ASSERT_EQ(f->type, SL_FILTER_REQUEST_HEADER, "RequestHeaderModifier");
		if (ASSERT_EQ(f->headers.n_set, 1, "set") && ASSERT_EQ(f->headers.n_add, 1, "add") &&
		    ASSERT_EQ(f->headers.n_remove, 1, "remove")) {
			ASSERT_STREQ(f->headers.set[0].name, "x-set", "set name");
			ASSERT_STREQ(f->headers.set[0].value, "s", "set value");
			ASSERT_STREQ(f->headers.add[0].name, "x-add", "add name");
			ASSERT_STREQ(f->headers.add[0].value, "a", "add value");
			ASSERT_STREQ(f->headers.remove[0], "x-drop", "remove");
		}
		f = &r->filters[1];
		ASSERT_EQ(f->type, SL_FILTER_RESPONSE_HEADER, "ResponseHeaderModifier");
		if (ASSERT_EQ(f->headers.n_add, 1, "response add"))
			ASSERT_STREQ(f->headers.add[0].name, "x-resp", "response add name");
		f = &r->filters[2];
		ASSERT_EQ(f->type, SL_FILTER_REWRITE, "URLRewrite");
		ASSERT_STREQ(f->hostname, "internal.shop", "rewrite hostname");
		ASSERT_EQ(f->path.type, SL_PATH_MOD_FULL, "ReplaceFullPath");
		ASSERT_STREQ(f->path.value, "/v2/cart", "rewrite path");
		f = &r->filters[3];
		ASSERT_EQ(f->type, SL_FILTER_MIRROR, "RequestMirror");
		ASSERT_STREQ(f->mirror.name, "shadow", "mirror backend");
		ASSERT_STREQ(f->mirror.kind, "Service", "mirror kind default");
		ASSERT_EQ(f->mirror.port, 8080, "mirror port");
		ASSERT_EQ(f->mirror_num, 25, "percent");
		ASSERT_EQ(f->mirror_den, 100, "percent of 100");
		f = &r->filters[4];
		ASSERT_STREQ(f->mirror.ns, "qa", "mirror ns");
		ASSERT_EQ(f->mirror_num, 1, "fraction numerator");
		ASSERT_EQ(f->mirror_den, 3, "fraction denominator");
		f = &r->filters[5];
		ASSERT_EQ(f->type, SL_FILTER_CORS, "CORS");
		if (ASSERT_EQ(f->allow_origins.n, 1, "origins") && ASSERT_EQ(f->allow_methods.n, 2, "methods") &&
		    ASSERT_EQ(f->allow_headers.n, 1, "allow headers") &&
		    ASSERT_EQ(f->expose_headers.n, 1, "expose headers")) {
			ASSERT_STREQ(f->allow_origins.v[0], "https://a.example", "origin");
			ASSERT_STREQ(f->allow_methods.v[1], "PUT", "method");
			ASSERT_STREQ(f->allow_headers.v[0], "x-a", "allow header");
			ASSERT_STREQ(f->expose_headers.v[0], "x-b", "expose header");
		}
		ASSERT_TRUE(f->allow_credentials, "allowCredentials");
		ASSERT_EQ(f->max_age, 600, "maxAge");
		f = &r->filters[6];
		ASSERT_EQ(f->type, SL_FILTER_EXTENSION, "ExtensionRef");
		ASSERT_STREQ(f->extension, "example.net/Limit/slow", "extension");
	}
	if (ASSERT_EQ(r->n_backends, 2, "backends")) {
		ASSERT_STREQ(r->backends[0].group, "", "backend core group");
		ASSERT_STREQ(r->backends[0].kind, "Service", "backend kind default");
		ASSERT_STREQ(r->backends[0].name, "web-v1", "backend name");
		ASSERT_TRUE(r->backends[0].ns == NULL, "backend ns: the route's");
		ASSERT_EQ(r->backends[0].port, 80, "backend port");
		ASSERT_EQ(r->backends[0].weight, 90, "weight");
		ASSERT_EQ(r->backends[0].n_filters, 0, "no backend filters");
		ASSERT_STREQ(r->backends[1].ns, "canary", "backend ns");
		ASSERT_EQ(r->backends[1].weight, 0, "weight 0");
		if (ASSERT_EQ(r->backends[1].n_filters, 1, "backend filter") &&
		    ASSERT_EQ(r->backends[1].filters[0].headers.n_set, 1, "backend filter set"))
			ASSERT_STREQ(r->backends[1].filters[0].headers.set[0].value, "2", "backend filter value");
	}
	ASSERT_EQ(r->timeouts.request_ms, 10000, "request timeout");
	ASSERT_EQ(r->timeouts.backend_request_ms, 500, "backendRequest timeout");
	ASSERT_TRUE(r->has_retry, "retry");
	if (ASSERT_EQ(r->retry.n_codes, 2, "retry codes")) {
		ASSERT_EQ(r->retry.codes[0], 500, "code 500");
		ASSERT_EQ(r->retry.codes[1], 503, "code 503");
	}
	ASSERT_EQ(r->retry.attempts, 3, "attempts");
	ASSERT_EQ(r->retry.backoff_ms, 3720000, "backoff 1h2m");
	r = &rt->rules[1];
	ASSERT_TRUE(r->name == NULL, "unnamed rule");
	ASSERT_FALSE(r->has_retry, "no retry");
	ASSERT_EQ(r->timeouts.request_ms, 0, "no timeout");
	if (ASSERT_EQ(r->n_filters, 1, "redirect")) {
		f = &r->filters[0];
		ASSERT_EQ(f->type, SL_FILTER_REDIRECT, "RequestRedirect");
		ASSERT_STREQ(f->scheme, "https", "scheme");
		ASSERT_STREQ(f->hostname, "new.example.com", "redirect hostname");
		ASSERT_EQ(f->port, 8443, "redirect port");
		ASSERT_EQ(f->status, 301, "statusCode");
		ASSERT_EQ(f->path.type, SL_PATH_MOD_PREFIX, "ReplacePrefixMatch");
		ASSERT_STREQ(f->path.value, "/new", "redirect path");
	}
out:
	resources_free(res);
	diags_clear(&e);
}

void test_config_httproute_defaults(void)
{
	static const char text[] =
		"apiVersion: gateway.networking.k8s.io/v1beta1\n"
		"kind: HTTPRoute\n"
		"metadata: {name: min}\n"
		"spec:\n"
		"  parentRefs: [{name: gw}]\n"
		"  rules:\n"
		"  - matches: [{path: {value: /x}}, {headers: [{name: h, value: v}]}, {path: {}}, null]\n"
		"    backendRefs: [{name: svc, port: 80}]\n"
		"    filters:\n"
		"    - {type: RequestRedirect, requestRedirect: {}}\n"
		"    - {type: RequestMirror, requestMirror: {backendRef: {name: m}}}\n"
		"    - {type: RequestMirror, requestMirror: {backendRef: {name: m}, fraction: {numerator: 5}}}\n"
		"    - {type: CORS, cors: {}}\n"
		"    timeouts: {request: 0s, backendRequest: 1s}\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: HTTPRoute\n"
		"metadata: {name: norules, namespace: a, creationTimestamp: null}\n"
		"spec: {parentRefs: [{name: gw}]}\n";
	struct diags e = { 0 };
	const struct sl_route_filter *f;
	const struct sl_route_rule *r;
	const struct sl_route *rt;
	struct sl_resources *res;
	int ret;

	res = decode("min.yaml", text, &e, &ret);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "decode") || !ASSERT_EQ(res->n_routes, 2, "routes"))
		goto out;
	rt = &res->routes[0];
	ASSERT_STREQ(rt->ns, "default", "namespace default");
	ASSERT_EQ(rt->generation, 0, "no generation");
	ASSERT_TRUE(rt->created == NULL, "no creationTimestamp");
	ASSERT_EQ(rt->n_hostnames, 0, "no hostnames");
	if (ASSERT_EQ(rt->n_parents, 1, "parent")) {
		ASSERT_STREQ(rt->parents[0].group, "gateway.networking.k8s.io", "group");
		ASSERT_STREQ(rt->parents[0].kind, "Gateway", "kind");
		ASSERT_TRUE(rt->parents[0].ns == NULL, "ns");
		ASSERT_EQ(rt->parents[0].port, 0, "port unset");
	}
	if (!ASSERT_EQ(rt->n_rules, 1, "rule"))
		goto out;
	r = &rt->rules[0];
	if (ASSERT_EQ(r->n_matches, 4, "matches")) {
		ASSERT_TRUE(r->matches[0].has_path, "path given");
		ASSERT_EQ(r->matches[0].path_type, SL_MATCH_PREFIX, "PathPrefix by default");
		ASSERT_STREQ(r->matches[0].path, "/x", "value");
		ASSERT_FALSE(r->matches[1].has_path, "no path");
		ASSERT_EQ(r->matches[1].path_type, SL_MATCH_PREFIX, "no path: PathPrefix");
		ASSERT_STREQ(r->matches[1].path, "/", "no path: /");
		ASSERT_TRUE(r->matches[2].has_path, "empty path");
		ASSERT_EQ(r->matches[2].path_type, SL_MATCH_PREFIX, "empty path: PathPrefix");
		ASSERT_STREQ(r->matches[2].path, "/", "empty path: /");
		ASSERT_FALSE(r->matches[3].has_path, "null match: every request");
		ASSERT_STREQ(r->matches[3].path, "/", "null match: /");
	}
	if (ASSERT_EQ(r->n_backends, 1, "backend")) {
		ASSERT_STREQ(r->backends[0].group, "", "core group");
		ASSERT_STREQ(r->backends[0].kind, "Service", "Service");
		ASSERT_EQ(r->backends[0].weight, 1, "weight 1");
	}
	if (ASSERT_EQ(r->n_filters, 4, "filters")) {
		f = &r->filters[0];
		ASSERT_EQ(f->status, 302, "redirect 302");
		ASSERT_TRUE(f->scheme == NULL && f->hostname == NULL, "scheme, hostname unset");
		ASSERT_EQ(f->port, 0, "redirect port unset");
		ASSERT_EQ(f->path.type, SL_PATH_MOD_NONE, "no path change");
		f = &r->filters[1];
		ASSERT_EQ(f->mirror_num, 100, "mirror all: num");
		ASSERT_EQ(f->mirror_den, 100, "mirror all: den");
		ASSERT_EQ(f->mirror.port, 0, "mirror port unset");
		ASSERT_STREQ(f->mirror.group, "", "mirror group");
		f = &r->filters[2];
		ASSERT_EQ(f->mirror_num, 5, "fraction num");
		ASSERT_EQ(f->mirror_den, 100, "fraction denominator 100");
		f = &r->filters[3];
		ASSERT_EQ(f->max_age, 5, "maxAge 5");
		ASSERT_FALSE(f->allow_credentials, "no credentials");
		ASSERT_EQ(f->allow_origins.n, 0, "no origins");
	}
	ASSERT_EQ(r->timeouts.request_ms, 0, "0s: no timeout");
	ASSERT_EQ(r->timeouts.backend_request_ms, 1000, "backendRequest under an unlimited request");
	rt = &res->routes[1];
	ASSERT_STREQ(rt->ns, "a", "ns");
	ASSERT_TRUE(rt->created == NULL, "null creationTimestamp");
	if (ASSERT_EQ(rt->n_rules, 1, "the CRD's default rule")) {
		ASSERT_EQ(rt->rules[0].n_matches, 0, "matches everything");
		ASSERT_EQ(rt->rules[0].n_backends, 0, "no backends");
		ASSERT_EQ(rt->rules[0].n_filters, 0, "no filters");
	}
out:
	resources_free(res);
	diags_clear(&e);
}

void test_config_grpcroute_fields(void)
{
	static const char text[] =
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: GRPCRoute\n"
		"metadata: {name: g, namespace: rpc, generation: 2}\n"
		"spec:\n"
		"  parentRefs: [{name: gw}]\n"
		"  hostnames: [grpc.example.com]\n"
		"  rules:\n"
		"  - name: echo\n"
		"    matches:\n"
		"    - method: {service: grpc.Echo, method: Ping}\n"
		"      headers: [{name: x-tenant, value: a}]\n"
		"    - method: {type: RegularExpression, service: 'grpc\\..*'}\n"
		"    - headers: [{type: RegularExpression, name: x-v, value: \"v[12]\"}]\n"
		"    filters:\n"
		"    - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [x-internal]}}\n"
		"    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 9000}}}\n"
		"    backendRefs:\n"
		"    - {name: echo-v1, port: 7070, weight: 3}\n"
		"    - name: echo-v2\n"
		"      port: 7070\n"
		"      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-v, value: \"2\"}]}}]\n";
	struct diags e = { 0 };
	const struct sl_http_match *m;
	const struct sl_route_rule *r;
	const struct sl_route *rt;
	struct sl_resources *res;
	int ret;

	res = decode("grpc.yaml", text, &e, &ret);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "decode") || !ASSERT_EQ(res->n_routes, 1, "route"))
		goto out;
	rt = &res->routes[0];
	ASSERT_EQ(rt->kind, SL_ROUTE_GRPC, "GRPCRoute");
	ASSERT_EQ(rt->generation, 2, "generation");
	if (ASSERT_EQ(rt->n_hostnames, 1, "hostname"))
		ASSERT_STREQ(rt->hostnames[0], "grpc.example.com", "hostname");
	if (!ASSERT_EQ(rt->n_rules, 1, "rule"))
		goto out;
	r = &rt->rules[0];
	ASSERT_STREQ(r->name, "echo", "rule name");
	if (ASSERT_EQ(r->n_matches, 3, "matches")) {
		m = &r->matches[0];
		ASSERT_TRUE(m->has_grpc, "method match");
		ASSERT_EQ(m->grpc_type, SL_MATCH_EXACT, "Exact by default");
		ASSERT_STREQ(m->grpc_service, "grpc.Echo", "service");
		ASSERT_STREQ(m->grpc_method, "Ping", "method");
		ASSERT_FALSE(m->has_path, "no path for gRPC");
		if (ASSERT_EQ(m->n_headers, 1, "header"))
			ASSERT_STREQ(m->headers[0].name, "x-tenant", "header name");
		m = &r->matches[1];
		ASSERT_EQ(m->grpc_type, SL_MATCH_REGEX, "RegularExpression");
		ASSERT_STREQ(m->grpc_service, "grpc\\..*", "service regex");
		ASSERT_TRUE(m->grpc_method == NULL, "any method");
		m = &r->matches[2];
		ASSERT_FALSE(m->has_grpc, "headers only");
		if (ASSERT_EQ(m->n_headers, 1, "regex header"))
			ASSERT_EQ(m->headers[0].type, SL_MATCH_REGEX, "header regex");
	}
	if (ASSERT_EQ(r->n_filters, 2, "filters")) {
		ASSERT_EQ(r->filters[0].type, SL_FILTER_RESPONSE_HEADER, "ResponseHeaderModifier");
		ASSERT_EQ(r->filters[0].headers.n_remove, 1, "remove");
		ASSERT_EQ(r->filters[1].type, SL_FILTER_MIRROR, "RequestMirror");
		ASSERT_EQ(r->filters[1].mirror.port, 9000, "mirror port");
	}
	if (ASSERT_EQ(r->n_backends, 2, "backends")) {
		ASSERT_EQ(r->backends[0].weight, 3, "weight");
		ASSERT_EQ(r->backends[1].weight, 1, "default weight");
		if (ASSERT_EQ(r->backends[1].n_filters, 1, "backend filter"))
			ASSERT_EQ(r->backends[1].filters[0].type, SL_FILTER_REQUEST_HEADER, "backend filter type");
	}
out:
	resources_free(res);
	diags_clear(&e);
}

void test_config_tcp_tls_routes(void)
{
	static const char text[] =
		"apiVersion: gateway.networking.k8s.io/v1alpha2\n"
		"kind: TCPRoute\n"
		"metadata: {name: t, namespace: db}\n"
		"spec:\n"
		"  parentRefs: [{name: gw, sectionName: tcp}]\n"
		"  rules: [{backendRefs: [{name: pg, port: 5432}]}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1alpha2\n"
		"kind: TLSRoute\n"
		"metadata: {name: s}\n"
		"spec:\n"
		"  parentRefs: [{name: gw}]\n"
		"  hostnames: [db.example.com]\n"
		"  rules: [{name: r, backendRefs: [{name: tls, port: 443, weight: 2}]}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1alpha2\n"
		"kind: TCPRoute\n"
		"metadata: {name: empty}\n"
		"spec: {}\n";
	struct diags e = { 0 };
	struct sl_resources *res;
	int ret;

	res = decode("l4.yaml", text, &e, &ret);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "decode") || !ASSERT_EQ(res->n_routes, 3, "routes"))
		goto out;
	ASSERT_EQ(res->routes[0].kind, SL_ROUTE_TCP, "TCPRoute");
	ASSERT_STREQ(res->routes[0].parents[0].section_name, "tcp", "sectionName");
	if (ASSERT_EQ(res->routes[0].n_rules, 1, "tcp rule") &&
	    ASSERT_EQ(res->routes[0].rules[0].n_backends, 1, "tcp backend")) {
		ASSERT_STREQ(res->routes[0].rules[0].backends[0].name, "pg", "tcp backend name");
		ASSERT_EQ(res->routes[0].rules[0].backends[0].port, 5432, "tcp backend port");
	}
	ASSERT_EQ(res->routes[1].kind, SL_ROUTE_TLS, "TLSRoute");
	ASSERT_STREQ(res->routes[1].ns, "default", "ns");
	if (ASSERT_EQ(res->routes[1].n_hostnames, 1, "tls hostname"))
		ASSERT_STREQ(res->routes[1].hostnames[0], "db.example.com", "sni");
	if (ASSERT_EQ(res->routes[1].n_rules, 1, "tls rule")) {
		ASSERT_STREQ(res->routes[1].rules[0].name, "r", "tls rule name");
		ASSERT_EQ(res->routes[1].rules[0].backends[0].weight, 2, "tls weight");
	}
	ASSERT_EQ(res->routes[2].n_rules, 0, "no default rule outside HTTPRoute");
out:
	resources_free(res);
	diags_clear(&e);
}

void test_config_gateway_fields(void)
{
	static const char text[] =
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: GatewayClass\n"
		"metadata: {name: sluice}\n"
		"spec: {controllerName: sluice.dev/gateway-controller}\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: gw, namespace: infra, generation: 3}\n"
		"spec:\n"
		"  gatewayClassName: sluice\n"
		"  addresses:\n"
		"  - {value: 10.0.0.9}\n"
		"  - {type: IPAddress, value: \"fd00::9\"}\n"
		"  - {type: Hostname, value: gw.example.com}\n"
		"  listeners:\n"
		"  - name: http\n"
		"    port: 80\n"
		"    protocol: HTTP\n"
		"    allowedRoutes: {namespaces: {from: All}}\n"
		"  - name: https\n"
		"    hostname: \"*.example.com\"\n"
		"    port: 443\n"
		"    protocol: HTTPS\n"
		"    tls:\n"
		"      certificateRefs:\n"
		"      - name: cert\n"
		"      - {group: \"\", kind: Secret, name: other, namespace: certs}\n"
		"    allowedRoutes:\n"
		"      namespaces:\n"
		"        from: Selector\n"
		"        selector: {matchLabels: {gateway-access: \"true\"}}\n"
		"      kinds: [{kind: HTTPRoute}, {group: gateway.networking.k8s.io, kind: GRPCRoute}]\n"
		"  - name: tls\n"
		"    port: 8443\n"
		"    protocol: TLS\n"
		"    tls: {mode: Passthrough}\n";
	struct diags e = { 0 };
	const struct sl_listener *l;
	const struct sl_gateway *gw;
	struct sl_resources *res;
	int ret;

	res = decode("gw.yaml", text, &e, &ret);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "decode"))
		goto out;
	if (ASSERT_EQ(res->n_gateway_classes, 1, "class")) {
		ASSERT_STREQ(res->gateway_classes[0].name, "sluice", "class name");
		ASSERT_STREQ(res->gateway_classes[0].controller, "sluice.dev/gateway-controller", "controllerName");
		ASSERT_EQ(res->gateway_classes[0].src.line, 1, "class line");
	}
	if (!ASSERT_EQ(res->n_gateways, 1, "gateway"))
		goto out;
	gw = &res->gateways[0];
	ASSERT_STREQ(gw->ns, "infra", "ns");
	ASSERT_STREQ(gw->name, "gw", "name");
	ASSERT_STREQ(gw->class_name, "sluice", "gatewayClassName");
	ASSERT_EQ(gw->generation, 3, "generation");
	ASSERT_EQ(gw->src.line, 6, "line");
	if (ASSERT_EQ(gw->n_addresses, 2, "IP addresses only")) {
		ASSERT_TRUE(ip_is(&gw->addresses[0], "10.0.0.9"), "IPAddress by default");
		ASSERT_TRUE(ip_is(&gw->addresses[1], "fd00::9"), "IPv6");
	}
	if (!ASSERT_EQ(gw->n_listeners, 3, "listeners"))
		goto out;
	l = &gw->listeners[0];
	ASSERT_STREQ(l->name, "http", "listener name");
	ASSERT_TRUE(l->hostname == NULL, "any hostname");
	ASSERT_EQ(l->port, 80, "port");
	ASSERT_STREQ(l->protocol, "HTTP", "protocol");
	ASSERT_TRUE(l->tls_mode == NULL, "no tls");
	ASSERT_EQ(l->routes_from, SL_ROUTES_FROM_ALL, "from All");
	ASSERT_EQ(l->n_route_kinds, 0, "kinds by protocol");
	l = &gw->listeners[1];
	ASSERT_STREQ(l->hostname, "*.example.com", "wildcard hostname");
	ASSERT_STREQ(l->tls_mode, "Terminate", "Terminate by default");
	if (ASSERT_EQ(l->n_certs, 2, "certificateRefs")) {
		ASSERT_STREQ(l->certs[0].group, "", "cert group default");
		ASSERT_STREQ(l->certs[0].kind, "Secret", "cert kind default");
		ASSERT_STREQ(l->certs[0].name, "cert", "cert name");
		ASSERT_TRUE(l->certs[0].ns == NULL, "cert ns: the gateway's");
		ASSERT_STREQ(l->certs[1].ns, "certs", "cert ns");
	}
	ASSERT_EQ(l->routes_from, SL_ROUTES_FROM_SELECTOR, "from Selector");
	if (ASSERT_EQ(l->routes_selector.match.n, 1, "selector"))
		ASSERT_STREQ(label(&l->routes_selector.match, "gateway-access"), "true", "selector label");
	if (ASSERT_EQ(l->n_route_kinds, 2, "kinds")) {
		ASSERT_STREQ(l->route_kinds[0].group, "gateway.networking.k8s.io", "kind group default");
		ASSERT_STREQ(l->route_kinds[0].kind, "HTTPRoute", "kind");
		ASSERT_STREQ(l->route_kinds[1].kind, "GRPCRoute", "kind 2");
	}
	l = &gw->listeners[2];
	ASSERT_STREQ(l->tls_mode, "Passthrough", "Passthrough");
	ASSERT_EQ(l->n_certs, 0, "no certs");
	ASSERT_EQ(l->routes_from, SL_ROUTES_FROM_SAME, "from Same by default");
out:
	resources_free(res);
	diags_clear(&e);
}

void test_config_ref_grant(void)
{
	static const char text[] =
		"apiVersion: gateway.networking.k8s.io/v1beta1\n"
		"kind: ReferenceGrant\n"
		"metadata: {name: allow, namespace: backends}\n"
		"spec:\n"
		"  from:\n"
		"  - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}\n"
		"  to:\n"
		"  - {group: \"\", kind: Service}\n"
		"  - {group: \"\", kind: Secret, name: cert}\n";
	struct diags e = { 0 };
	const struct sl_ref_grant *g;
	struct sl_resources *res;
	int ret;

	res = decode("grant.yaml", text, &e, &ret);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "decode") || !ASSERT_EQ(res->n_ref_grants, 1, "grant"))
		goto out;
	g = &res->ref_grants[0];
	ASSERT_STREQ(g->ns, "backends", "ns");
	ASSERT_STREQ(g->name, "allow", "name");
	if (ASSERT_EQ(g->n_from, 1, "from")) {
		ASSERT_STREQ(g->from[0].group, "gateway.networking.k8s.io", "from group");
		ASSERT_STREQ(g->from[0].kind, "HTTPRoute", "from kind");
		ASSERT_STREQ(g->from[0].ns, "shop", "from namespace");
	}
	if (ASSERT_EQ(g->n_to, 2, "to")) {
		ASSERT_STREQ(g->to[0].group, "", "core group");
		ASSERT_STREQ(g->to[0].kind, "Service", "to kind");
		ASSERT_TRUE(g->to[0].name == NULL, "any name");
		ASSERT_STREQ(g->to[1].name, "cert", "to name");
	}
out:
	resources_free(res);
	diags_clear(&e);
}

#define PEM_CRT "-----BEGIN CERTIFICATE-----\nABC\n-----END CERTIFICATE-----\n"
#define PEM_KEY "-----BEGIN PRIVATE KEY-----\nDEF\n-----END PRIVATE KEY-----\n"

void test_config_secret(void)
{
	static const char text[] =
		/* kubectl's key order: data comes before kind */
		"apiVersion: v1\n"
		"data:\n"
		"  ca.crt: bm90IGtlcHQ=\n"
		"  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFCQwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==\n"
		"  tls.key: |\n"
		"    LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t\n"
		"    CkRFRgotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==\n"
		"kind: Secret\n"
		"metadata: {name: cert, namespace: infra}\n"
		"type: kubernetes.io/tls\n"
		"---\n"
		"apiVersion: v1\n"
		"kind: Secret\n"
		"metadata: {name: plain}\n"
		"stringData:\n"
		"  tls.crt: |\n"
		"    " "-----BEGIN CERTIFICATE-----\n"
		"    ABC\n"
		"    -----END CERTIFICATE-----\n"
		"data: {tls.crt: QUI=, tls.key: QUJD}\n"
		"---\n"
		"apiVersion: v1\n"
		"kind: Secret\n"
		"metadata: {name: opaque}\n"
		"data: {password: aHVudGVyMg==, tls.key: \"\"}\n"
		"---\n"
		"apiVersion: v1\n"
		"kind: Secret\n"
		"metadata: {name: empty}\n";
	static const char json[] =
		"{\"apiVersion\": \"v1\", \"kind\": \"SecretList\", \"items\": [\n"
		"  {\"data\": {\"tls.crt\": \"QUJDRA==\"}, \"kind\": \"Secret\", \"apiVersion\": \"v1\",\n"
		"   \"metadata\": {\"name\": \"j\", \"namespace\": \"x\"}, \"type\": \"kubernetes.io/tls\"}]}\n";
	struct diags e = { 0 };
	struct sl_resources *res;
	int ret;

	res = decode("secrets.yaml", text, &e, &ret);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "decode") || !ASSERT_EQ(res->n_secrets, 4, "secrets"))
		goto out;
	ASSERT_STREQ(res->secrets[0].ns, "infra", "ns");
	ASSERT_STREQ(res->secrets[0].name, "cert", "name");
	ASSERT_STREQ(res->secrets[0].type, "kubernetes.io/tls", "type");
	ASSERT_STREQ(res->secrets[0].tls_crt, PEM_CRT, "tls.crt decoded");
	ASSERT_STREQ(res->secrets[0].tls_key, PEM_KEY, "tls.key decoded across lines");
	ASSERT_EQ(res->secrets[0].src.line, 1, "line");
	ASSERT_STREQ(res->secrets[1].type, "Opaque", "type Opaque by default");
	ASSERT_STREQ(res->secrets[1].tls_crt, PEM_CRT, "stringData as is, over data");
	ASSERT_STREQ(res->secrets[1].tls_key, "ABC", "data where stringData has none");
	ASSERT_TRUE(res->secrets[2].tls_crt == NULL, "no tls.crt");
	ASSERT_STREQ(res->secrets[2].tls_key, "", "empty tls.key");
	ASSERT_TRUE(res->secrets[3].tls_crt == NULL && res->secrets[3].tls_key == NULL, "no data");
	ASSERT_EQ(config_decode_buf(res, "s.json", json, strlen(json), &e), 0, "JSON List");
	dump_diags(&e);
	if (ASSERT_EQ(res->n_secrets, 5, "JSON secret"))
		ASSERT_STREQ(res->secrets[4].tls_crt, "ABCD", "JSON tls.crt");
out:
	resources_free(res);
	diags_clear(&e);
}

void test_config_gateway_api_errors(void)
{
	static const char text[] =
		"apiVersion: gateway.networking.k8s.io/v1\n"		/* 1 */
		"kind: HTTPRoute\n"
		"metadata: {name: bad, namespace: shop}\n"
		"spec:\n"
		"  parentRefs: [{name: gw, port: 0}]\n"		/* 5 */
		"  hostnames: [\"Shop.example.com\"]\n"
		"  rules:\n"
		"  - matches:\n"
		"    - path: {type: Prefix, value: /x}\n"
		"    - path: {type: Exact, value: x}\n"		/* 10 */
		"    - method: FETCH\n"
		"    - headers: [{name: \"bad header\", value: v}]\n"
		"    filters:\n"
		"    - type: Rewrite\n"
		"    - type: RequestRedirect\n"			/* 15 */
		"      requestRedirect: {statusCode: 304}\n"
		"    - type: URLRewrite\n"
		"    - type: RequestMirror\n"
		"      requestMirror: {backendRef: {name: m}, percent: 50, fraction: {numerator: 1}}\n"
		"    - type: RequestRedirect\n"			/* 20 */
		"      requestRedirect: {path: {type: ReplacePrefixMatch, replaceFullPath: /x}}\n"
		"    backendRefs:\n"
		"    - {name: a, port: 80, weight: 1000001}\n"
		"    - {port: 80}\n"
		"    timeouts: {request: 10sec, backendRequest: 1d}\n"	/* 25 */
		"    retry: {codes: [200], backoff: 1.5s}\n"
		"  - timeouts: {request: 1s, backendRequest: 2s}\n"
		"    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m}, fraction: {numerator: 3, denominator: 2}}}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\n"		/* 30 */
		"kind: GRPCRoute\n"
		"metadata: {name: g}\n"
		"spec:\n"
		"  rules:\n"
		"  - matches: [{method: {type: Exact}}]\n"		/* 35 */
		"    filters: [{type: RequestRedirect, requestRedirect: {}}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: gw}\n"				/* 40 */
		"spec:\n"
		"  listeners:\n"
		"  - {name: http, port: 80}\n"
		"  - {name: https, port: 443, protocol: HTTPS, tls: {mode: Terminated}, allowedRoutes: {namespaces: {from: Selector}}}\n"
		"---\n"							/* 45 */
		"apiVersion: v1\n"
		"kind: Secret\n"
		"metadata: {name: s}\n"
		"data:\n"
		"  tls.crt: \"QUJD!A==\"\n"				/* 50 */
		"  tls.key: QUJDRA\n"
		"---\n"
		"apiVersion: v1\n"
		"kind: Secret\n"
		"metadata: {name: t}\n"				/* 55 */
		"data: {tls.crt: \"QU=D\", tls.key: AA==}\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: HTTPRoute\n"
		"metadata: {name: nospec}\n"				/* 60 */
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1beta1\n"
		"kind: ReferenceGrant\n"
		"metadata: {name: rg}\n"
		"spec:\n"						/* 65 */
		"  from: [{kind: HTTPRoute, namespace: a}]\n"
		"  to: []\n";
	static const char *const want[] = {
		"bad.yaml:5: HTTPRoute shop/bad: spec.parentRefs[0].port: expected an integer 1-65535, got \"0\"",
		"bad.yaml:6: HTTPRoute shop/bad: spec.hostnames[0]: not a valid hostname: \"Shop.example.com\" (lowercase letters, digits, '-' and '.', optionally after \"*.\")",
		"bad.yaml:9: HTTPRoute shop/bad: spec.rules[0].matches[0].path.type: expected Exact, PathPrefix or RegularExpression, got \"Prefix\"",
		"bad.yaml:10: HTTPRoute shop/bad: spec.rules[0].matches[1].path.value: must start with '/' (type Exact)",
		"bad.yaml:11: HTTPRoute shop/bad: spec.rules[0].matches[2].method: expected GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH, got \"FETCH\"",
		"bad.yaml:12: HTTPRoute shop/bad: spec.rules[0].matches[3].headers[0].name: not a valid header name: \"bad header\" (1 to 256 letters, digits and !#$%&'*+-.^_`|~)",
		"bad.yaml:14: HTTPRoute shop/bad: spec.rules[0].filters[0].type: expected RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, CORS or ExtensionRef, got \"Rewrite\"",
		"bad.yaml:16: HTTPRoute shop/bad: spec.rules[0].filters[1].requestRedirect.statusCode: expected 301, 302, 303, 307 or 308, got 304",
		"bad.yaml:17: HTTPRoute shop/bad: spec.rules[0].filters[2].urlRewrite: missing (type URLRewrite needs it)",
		"bad.yaml:19: HTTPRoute shop/bad: spec.rules[0].filters[3].requestMirror: percent and fraction cannot both be set",
		"bad.yaml:21: HTTPRoute shop/bad: spec.rules[0].filters[4].requestRedirect.path.replaceFullPath: only with type ReplaceFullPath",
		"bad.yaml:23: HTTPRoute shop/bad: spec.rules[0].backendRefs[0].weight: expected an integer 0-1000000, got \"1000001\"",
		"bad.yaml:24: HTTPRoute shop/bad: spec.rules[0].backendRefs[1].name: missing",
		"bad.yaml:25: HTTPRoute shop/bad: spec.rules[0].timeouts.request: not a duration: \"10sec\" (1 to 4 parts of up to 5 digits and a unit h, m, s or ms, like 10s, 500ms, 1h30m)",
		"bad.yaml:25: HTTPRoute shop/bad: spec.rules[0].timeouts.backendRequest: not a duration: \"1d\" (1 to 4 parts of up to 5 digits and a unit h, m, s or ms, like 10s, 500ms, 1h30m)",
		"bad.yaml:26: HTTPRoute shop/bad: spec.rules[0].retry.codes[0]: expected an integer 400-599, got \"200\"",
		"bad.yaml:26: HTTPRoute shop/bad: spec.rules[0].retry.backoff: not a duration: \"1.5s\" (1 to 4 parts of up to 5 digits and a unit h, m, s or ms, like 10s, 500ms, 1h30m)",
		"bad.yaml:27: HTTPRoute shop/bad: spec.rules[1].timeouts.backendRequest: longer than the request timeout",
		"bad.yaml:28: HTTPRoute shop/bad: spec.rules[1].filters[0].requestMirror.fraction: numerator 3 is larger than denominator 2",
		"bad.yaml:35: GRPCRoute default/g: spec.rules[0].matches[0].method: needs service or method (or both)",
		"bad.yaml:36: GRPCRoute default/g: spec.rules[0].filters[0].type: expected RequestHeaderModifier, ResponseHeaderModifier, RequestMirror or ExtensionRef, got \"RequestRedirect\"",
		"bad.yaml:42: Gateway default/gw: spec.gatewayClassName: missing",
		"bad.yaml:43: Gateway default/gw: spec.listeners[0].protocol: missing",
		"bad.yaml:44: Gateway default/gw: spec.listeners[1].tls.mode: expected Terminate or Passthrough, got \"Terminated\"",
		"bad.yaml:44: Gateway default/gw: spec.listeners[1].allowedRoutes.namespaces.selector: missing (from: Selector needs it)",
		"bad.yaml:50: Secret default/s: data[\"tls.crt\"]: not valid base64 (\"!\" at offset 4)",
		"bad.yaml:51: Secret default/s: data[\"tls.key\"]: not valid base64 (6 characters, not a multiple of 4)",
		"bad.yaml:56: Secret default/t: data[\"tls.crt\"]: not valid base64 (\"=\" at offset 2)",
		"bad.yaml:56: Secret default/t: data[\"tls.key\"]: decodes to binary data with a NUL byte (want PEM text)",
		"bad.yaml:58: HTTPRoute default/nospec: spec: missing",
		"bad.yaml:66: ReferenceGrant default/rg: spec.from[0].group: missing (\"\" for the core group)",
		"bad.yaml:67: ReferenceGrant default/rg: spec.to: must not be empty",
	};
	struct diags e = { 0 };
	struct sl_resources *res;
	int ret;

	res = decode("bad.yaml", text, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "ret");
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ASSERT_TRUE(has_diag(&e, want[i]), want[i]);
	if (!ASSERT_EQ(e.n, sizeof(want) / sizeof(want[0]), "no other problem"))
		dump_diags(&e);
	ASSERT_EQ(res->n_routes + res->n_gateways + res->n_secrets + res->n_ref_grants, 0, "all left out");
	resources_free(res);
	diags_clear(&e);
}

/* Durations at their edges (GEP-2257): every unit, repeats, leading zeros,
 * four parts at most, five digits each, and what a uint32_t of ms holds. */
void test_config_route_durations(void)
{
	static const struct {
		const char *text;
		long ms;		/* -1: refused */
	} cases[] = {
		{ "0s", 0 }, { "1ms", 1 }, { "1s", 1000 }, { "2m", 120000 }, { "1h", 3600000 },
		{ "1h30m30s500ms", 5430500 }, { "00060m", 3600000 }, { "1s1s", 2000 }, { "99999ms", 99999 },
		{ "1193h", 4294800000 }, { "1194h", -1 }, { "100000ms", -1 }, { "1h1m1s1ms1ms", -1 },
		{ "", -1 }, { "s", -1 }, { "1", -1 }, { "1.5s", -1 }, { "-1s", -1 }, { "1us", -1 },
		{ "1 s", -1 }, { "1H", -1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];
		struct diags e = { 0 };
		struct sl_resources *res;
		int ret;

		snprintf(text, sizeof(text),
			 "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: d}\n"
			 "spec: {rules: [{timeouts: {request: \"%s\"}}]}\n", cases[i].text);
		res = decode("d.yaml", text, &e, &ret);
		if (cases[i].ms < 0) {
			ASSERT_EQ(ret, -EINVAL, cases[i].text);
		} else if (ASSERT_OK(ret, cases[i].text) && ASSERT_EQ(res->n_routes, 1, cases[i].text)) {
			ASSERT_EQ(res->routes[0].rules[0].timeouts.request_ms, cases[i].ms, cases[i].text);
		}
		if (test_failed)
			dump_diags(&e);
		resources_free(res);
		diags_clear(&e);
	}
}

/* The top-level JSON array text[key] of a case file: [*start, *end). */
static bool json_top_array(const char *text, const char *key, size_t *start, size_t *end)
{
	size_t klen = strlen(key), at = 0;
	int depth = 0;

	for (size_t i = 0; text[i]; i++) {
		char c = text[i];

		if (c == '"') {
			size_t s = ++i;

			for (; text[i] && text[i] != '"'; i++)
				if (text[i] == '\\' && text[i + 1])
					i++;
			if (!text[i])
				return false;
			if (depth == 1 && i - s == klen && !memcmp(text + s, key, klen))
				at = i + 1;
			continue;
		}
		if (c == '[' || c == '{') {
			if (at && depth == 1 && c == '[')
				*start = i;
			depth++;
		} else if (c == ']' || c == '}') {
			depth--;
			if (at && depth == 1 && c == ']') {
				*end = i + 1;
				return true;
			}
		} else if (c == ',' && depth == 1) {
			at = 0;
		}
	}
	return false;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
	    (buf = malloc((size_t)n + 1))) {
		if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* Every manifest of the Gateway API conformance cases (../shared/conformance
 * beside the repository, or $SLUICE_CONFORMANCE_CASES) decodes cleanly: the
 * objects real suites apply. Each file's manifests go through as one List,
 * on the lines they hold in the file. */
void test_config_conformance_manifests(void)
{
	const char *root = getenv("SLUICE_CONFORMANCE_CASES");
	struct sl_resources *res = NULL;
	struct dirent **ents = NULL;
	struct diags e = { 0 };
	size_t files = 0;
	int n;

	if (!root)
		root = "../shared/conformance/cases";
	n = scandir(root, &ents, NULL, alphasort);
	if (n < 0) {
		test_skip("no conformance cases in %s (a plain clone has none)", root);
		return;
	}
	res = config_resources_new();
	if (!ASSERT_OK_PTR(res, "set"))
		goto out;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		size_t len = strlen(name), start = 0, end = 0, lines = 0, o = 0;
		char path[1024], *text, *buf;

		if (name[0] == '.' || len < 5 || strcmp(name + len - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, name);
		text = read_text(path);
		if (!ASSERT_OK_PTR(text, path))
			continue;
		if (json_top_array(text, "manifests", &start, &end)) {
			for (size_t k = 0; k < start; k++)
				lines += text[k] == '\n';
			buf = malloc(lines + (end - start) + 64);
			if (ASSERT_OK_PTR(buf, "buf")) {
				memset(buf, '\n', lines);
				o = lines;
				o += (size_t)sprintf(buf + o, "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": ");
				memcpy(buf + o, text + start, end - start);
				o += end - start;
				buf[o++] = '}';
				buf[o] = '\0';
				ASSERT_OK(config_decode_buf(res, name, buf, o, &e), name);
				files++;
			}
			free(buf);
		}
		free(text);
	}
	dump_diags(&e);
	ASSERT_EQ(e.n, 0, "no problems");
	ASSERT_GE(files, 40, "case files");
	ASSERT_GE(res->n_routes, 50, "routes");
	ASSERT_GE(res->n_gateways, 6, "gateways");
	ASSERT_GE(res->n_ref_grants, 1, "reference grants");
	ASSERT_GE(res->n_services, 10, "services");
out:
	for (int i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	resources_free(res);
	diags_clear(&e);
}

/* A set built by hand (priv NULL) owns every string and array: resources_free
 * releases the Gateway API kinds one by one (ASan sees a leak or a double free). */
void test_config_free_hand_built_gateway_api(void)
{
	struct sl_resources *r = calloc(1, sizeof(*r));
	struct sl_route_rule *rule;
	struct sl_route_filter *f;
	struct sl_listener *l;

	if (!ASSERT_OK_PTR(r, "set"))
		return;
	r->routes = calloc(1, sizeof(*r->routes));
	r->gateways = calloc(1, sizeof(*r->gateways));
	r->gateway_classes = calloc(1, sizeof(*r->gateway_classes));
	r->ref_grants = calloc(1, sizeof(*r->ref_grants));
	r->secrets = calloc(1, sizeof(*r->secrets));
	if (!ASSERT_TRUE(r->routes && r->gateways && r->gateway_classes && r->ref_grants && r->secrets,
			 "arrays")) {
		resources_free(r);
		return;
	}
	r->n_routes = r->n_gateways = r->n_gateway_classes = r->n_ref_grants = r->n_secrets = 1;
	r->routes[0].ns = strdup("a");
	r->routes[0].name = strdup("r");
	r->routes[0].created = strdup("2024-01-01T00:00:00Z");
	r->routes[0].parents = calloc(1, sizeof(*r->routes[0].parents));
	r->routes[0].n_parents = 1;
	r->routes[0].parents[0].name = strdup("gw");
	r->routes[0].parents[0].group = strdup("gateway.networking.k8s.io");
	r->routes[0].hostnames = calloc(1, sizeof(char *));
	r->routes[0].hostnames[0] = strdup("h");
	r->routes[0].n_hostnames = 1;
	rule = r->routes[0].rules = calloc(1, sizeof(*rule));
	r->routes[0].n_rules = 1;
	rule->name = strdup("main");
	rule->matches = calloc(1, sizeof(*rule->matches));
	rule->n_matches = 1;
	rule->matches[0].path = strdup("/");
	rule->matches[0].headers = calloc(1, sizeof(*rule->matches[0].headers));
	rule->matches[0].n_headers = 1;
	rule->matches[0].headers[0].name = strdup("x");
	rule->matches[0].headers[0].value = strdup("y");
	rule->matches[0].grpc_service = strdup("s");
	f = rule->filters = calloc(1, sizeof(*f));
	rule->n_filters = 1;
	f->headers.set = calloc(1, sizeof(*f->headers.set));
	f->headers.n_set = 1;
	f->headers.set[0].name = strdup("a");
	f->headers.remove = calloc(1, sizeof(char *));
	f->headers.remove[0] = strdup("b");
	f->headers.n_remove = 1;
	f->mirror.name = strdup("m");
	f->allow_origins.v = calloc(1, sizeof(char *));
	f->allow_origins.v[0] = strdup("*");
	f->allow_origins.n = 1;
	f->extension = strdup("g/k/n");
	rule->backends = calloc(1, sizeof(*rule->backends));
	rule->n_backends = 1;
	rule->backends[0].name = strdup("svc");
	rule->backends[0].filters = calloc(1, sizeof(*rule->backends[0].filters));
	rule->backends[0].n_filters = 1;
	rule->backends[0].filters[0].path.value = strdup("/p");
	rule->retry.codes = calloc(1, sizeof(uint16_t));
	rule->retry.n_codes = 1;
	r->gateways[0].name = strdup("gw");
	l = r->gateways[0].listeners = calloc(1, sizeof(*l));
	r->gateways[0].n_listeners = 1;
	l->name = strdup("http");
	l->certs = calloc(1, sizeof(*l->certs));
	l->n_certs = 1;
	l->certs[0].name = strdup("cert");
	l->route_kinds = calloc(1, sizeof(*l->route_kinds));
	l->n_route_kinds = 1;
	l->route_kinds[0].kind = strdup("HTTPRoute");
	l->routes_selector.match.v = calloc(1, sizeof(struct sl_label));
	l->routes_selector.match.n = 1;
	l->routes_selector.match.v[0].key = strdup("k");
	r->gateways[0].addresses = calloc(1, sizeof(struct sl_ip));
	r->gateways[0].n_addresses = 1;
	r->gateway_classes[0].controller = strdup("c");
	r->ref_grants[0].from = calloc(1, sizeof(*r->ref_grants[0].from));
	r->ref_grants[0].n_from = 1;
	r->ref_grants[0].from[0].kind = strdup("HTTPRoute");
	r->ref_grants[0].to = calloc(1, sizeof(*r->ref_grants[0].to));
	r->ref_grants[0].n_to = 1;
	r->ref_grants[0].to[0].name = strdup("x");
	r->secrets[0].tls_crt = strdup(PEM_CRT);
	r->secrets[0].type = strdup("kubernetes.io/tls");
	resources_free(r);
}

/* ---- problems ---------------------------------------------------------------- */

void test_config_bad_yaml(void)
{
	static const char good[] = "apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n";
	static const char bad[] = "apiVersion: v1\n"
				  "kind: Namespace\n"
				  "metadata: {name: before}\n"
				  "---\n"
				  "apiVersion: v1\n"
				  "kind: Namespace\n"
				  "metadata: name: x\n"			/* 7 */
				  "---\n"
				  "apiVersion: v1\n"
				  "kind: Namespace\n"
				  "metadata: {name: after}\n";
	static const char flow[] = "apiVersion: v1\nkind: Service\nspec: {ports: [1, 2\n";
	static const char tabs[] = "apiVersion: v1\nkind: Service\nmetadata:\n\tname: x\n";
	static const char json[] = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\"\n  \"x\": 1\n}\n";
	static const char utf[] = "apiVersion: v1\nkind: Namespace\n# \xff\n";
	struct diags e = { 0 };
	struct sl_resources *r = config_resources_new();

	if (!ASSERT_OK_PTR(r, "new"))
		return;
	ASSERT_EQ(config_decode_buf(r, "bad.yaml", bad, strlen(bad), &e), -EINVAL, "bad");
	ASSERT_OK(config_decode_buf(r, "good.yaml", good, strlen(good), &e), "good");
	ASSERT_TRUE(has_diag(&e, "bad.yaml:7: YAML syntax: mapping values are not allowed in this context"),
		    "syntax");
	ASSERT_EQ(e.n, 1, "one problem: the file stops there");
	if (ASSERT_EQ(r->n_namespaces, 2, "before the error, and the other file")) {
		ASSERT_STREQ(r->namespaces[0].name, "before", "before");
		ASSERT_STREQ(r->namespaces[1].name, "good", "good");
	}
	diags_clear(&e);
	ASSERT_EQ(config_decode_buf(r, "flow.yaml", flow, strlen(flow), &e), -EINVAL, "flow");
	ASSERT_TRUE(has_diag(&e, "flow.yaml:4: YAML syntax: did not find expected ',' or ']' (while parsing a flow sequence on line 3)"),
		    "flow");
	ASSERT_EQ(config_decode_buf(r, "tabs.yaml", tabs, strlen(tabs), &e), -EINVAL, "tabs");
	ASSERT_TRUE(has_diag(&e, "tabs.yaml:4: YAML syntax: found character that cannot start any token (while scanning for the next token)"),
		    "tabs");
	ASSERT_EQ(config_decode_buf(r, "j.json", json, strlen(json), &e), -EINVAL, "json");
	ASSERT_TRUE(has_diag(&e, "j.json:4: JSON syntax: did not find expected ',' or '}' (while parsing a flow mapping on line 1)"),
		    "json");
	ASSERT_EQ(config_decode_buf(r, "utf.yaml", utf, strlen(utf), &e), -EINVAL, "utf");
	ASSERT_TRUE(has_diag(&e, "utf.yaml:3: YAML syntax: invalid leading UTF-8 octet (byte 0xff)"), "utf");
	resources_free(r);
	diags_clear(&e);
}

void test_config_bad_types(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata:\n"
				   "  name: web\n"
				   "  labels: [a]\n"			/* 5: not read for Services */
				   "spec:\n"
				   "  ports: {port: 80}\n"		/* 7 */
				   "  selector: [app]\n"		/* 8 */
				   "  clusterIP: [10.0.0.1]\n"		/* 9 */
				   "  type: 5\n"			/* 10 */
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Pod\n"
				   "metadata: {name: p, labels: {version: 1.0, on: yes}}\n"	/* 14 */
				   "spec:\n"
				   "  hostNetwork: \"true\"\n"		/* 16 */
				   "  containers: {name: c}\n"		/* 17 */
				   "  nodeName: 42\n"			/* 18 */
				   "status: {podIPs: 10.0.0.1}\n"	/* 19 */
				   "---\n"
				   "apiVersion: discovery.k8s.io/v1\n"
				   "kind: EndpointSlice\n"
				   "metadata: {name: s, labels: {kubernetes.io/service-name: web}}\n"
				   "addressType: IPv4\n"
				   "ports: [{port: \"80\"}]\n"		/* 25 */
				   "endpoints:\n"
				   "- addresses: 10.0.0.1\n"		/* 27 */
				   "- [10.0.0.2]\n"			/* 28 */
				   "- addresses: [10.0.0.3]\n"
				   "  conditions: {ready: 1}\n";	/* 30 */
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("types.yaml", text, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "ret");
	ASSERT_TRUE(has_diag(&e, "types.yaml:7: Service default/web: spec.ports: expected a list, got a mapping"), "ports");
	ASSERT_TRUE(has_diag(&e, "types.yaml:8: Service default/web: spec.selector: expected a mapping, got a list"), "selector");
	ASSERT_TRUE(has_diag(&e, "types.yaml:9: Service default/web: spec.clusterIP: expected an IP address or None, got a list"), "clusterIP");
	ASSERT_TRUE(has_diag(&e, "types.yaml:10: Service default/web: spec.type: expected a string, got the number 5 (quote it)"), "type");
	ASSERT_TRUE(has_diag(&e, "types.yaml:14: Pod default/p: metadata.labels.version: expected a string, got the number 1.0 (quote it)"), "label number");
	ASSERT_TRUE(has_diag(&e, "types.yaml:14: Pod default/p: metadata.labels: expected a string, got the boolean on (quote it)"), "label key bool");
	ASSERT_TRUE(has_diag(&e, "types.yaml:16: Pod default/p: spec.hostNetwork: expected true or false, got \"true\""), "bool quoted");
	ASSERT_TRUE(has_diag(&e, "types.yaml:17: Pod default/p: spec.containers: expected a list, got a mapping"), "containers");
	ASSERT_TRUE(has_diag(&e, "types.yaml:18: Pod default/p: spec.nodeName: expected a string, got the number 42 (quote it)"), "nodeName");
	ASSERT_TRUE(has_diag(&e, "types.yaml:19: Pod default/p: status.podIPs: expected a list, got \"10.0.0.1\""), "podIPs");
	ASSERT_TRUE(has_diag(&e, "types.yaml:25: EndpointSlice default/s: ports[0].port: expected an integer 1-65535, got the string \"80\" (drop the quotes)"), "slice port");
	ASSERT_TRUE(has_diag(&e, "types.yaml:27: EndpointSlice default/s: endpoints[0].addresses: expected a list, got \"10.0.0.1\""), "addresses");
	ASSERT_TRUE(has_diag(&e, "types.yaml:28: EndpointSlice default/s: endpoints[1]: expected a mapping, got a list"), "endpoint");
	ASSERT_TRUE(has_diag(&e, "types.yaml:30: EndpointSlice default/s: endpoints[2].conditions.ready: expected true or false, got \"1\""), "ready");
	ASSERT_EQ(r->n_services + r->n_pods + r->n_slices, 0, "all left out");
	resources_free(r);
	diags_clear(&e);
}

void test_config_missing_fields(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {namespace: shop}\n"	/* 3 */
				   "spec: {ports: [{name: a, targetPort: 80}, {name: b, port: 81}]}\n"	/* 4 */
				   "---\n"
				   "apiVersion: v1\n"			/* 6 */
				   "kind: Pod\n"
				   "---\n"
				   "kind: Namespace\n"			/* 9 */
				   "metadata: {name: x}\n"
				   "---\n"
				   "apiVersion: v1\n"			/* 12 */
				   "metadata: {name: x}\n"
				   "---\n"
				   "apiVersion: discovery.k8s.io/v1\n"	/* 15 */
				   "kind: EndpointSlice\n"
				   "metadata: {name: s}\n"		/* 17 */
				   "endpoints: [{conditions: {}}]\n"	/* 18 */
				   "---\n"
				   "apiVersion: v1\n"			/* 20 */
				   "kind: Service\n"
				   "metadata: {name: two}\n"
				   "spec:\n"
				   "  ports:\n"
				   "  - {port: 80}\n"			/* 25 */
				   "  - {port: 80, name: b}\n"		/* 26 */
				   "---\n"
				   "- just\n"				/* 28 */
				   "- a list\n";
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("miss.yaml", text, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "ret");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:3: Service: metadata.name: missing"), "name");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:4: Service: spec.ports[0].port: missing"), "port");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:6: Pod: metadata: missing"), "metadata");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:9: Namespace: missing apiVersion"), "apiVersion");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:12: missing kind"), "kind");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:15: EndpointSlice default/s: addressType: missing"), "addressType");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:17: EndpointSlice default/s: metadata.labels: missing kubernetes.io/service-name (the Service this slice belongs to)"),
		    "service-name");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:18: EndpointSlice default/s: endpoints[0].addresses: missing"), "addresses");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:25: Service default/two: spec.ports[0].name: required when a Service has more than one port"),
		    "multi-port name");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:26: Service default/two: spec.ports[1].port: 80/TCP is listed twice"), "dup port");
	ASSERT_TRUE(has_diag(&e, "miss.yaml:28: expected an object (a mapping with apiVersion and kind), got a list"), "list doc");
	resources_free(r);
	diags_clear(&e);
}

void test_config_bad_ips(void)
{
	static const char json[] = "{\n"
				   "  \"apiVersion\": \"v1\",\n"
				   "  \"kind\": \"Pod\",\n"
				   "  \"metadata\": {\"name\": \"a\"},\n"
				   "  \"status\": {\n"
				   "    \"podIPs\": [{\"ip\": \"10.0.0.3\"}],\n"
				   "    \"podIP\": \"10.0.0.300\"\n"	/* 7 */
				   "  }\n"
				   "}\n";
	static const char yaml[] = "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: a}\n"
				   "spec:\n"
				   "  clusterIPs: [10.0.0.1, \"fd00::1\", 10.0.0.2]\n"	/* 5 */
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: b}\n"
				   "spec:\n"
				   "  clusterIP: 10.0.0.9\n"		/* 11 */
				   "  clusterIPs: [\"fd00::1\", \"fd00::2\"]\n"	/* 12 */
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Pod\n"
				   "metadata: {name: c}\n"
				   "status:\n"
				   "  podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]\n"	/* 18 */
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Pod\n"
				   "metadata: {name: d}\n"
				   "status:\n"
				   "  podIPs: [{ip: 10.0.0.1}, {ip: \"fd00::1\"}, {ip: \"fd00::2\"}]\n"	/* 24 */
				   "  podIP: 10.0.0.01\n"			/* 25 */
				   "---\n"
				   "apiVersion: discovery.k8s.io/v1\n"
				   "kind: EndpointSlice\n"
				   "metadata: {name: s, labels: {kubernetes.io/service-name: web}}\n"
				   "addressType: IPv4\n"
				   "endpoints:\n"
				   "- addresses: [\"fd00::1\"]\n"	/* 32 */
				   "- addresses: [10.0.0.1/24]\n"	/* 33 */
				   "- addresses: []\n";			/* 34 */
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("x.json", json, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "json");
	ASSERT_TRUE(has_diag(&e, "x.json:7: Pod default/a: status.podIP: not an IP address: \"10.0.0.300\""), "pod ip");
	resources_free(r);
	diags_clear(&e);
	r = decode("ips.yaml", yaml, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "yaml");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:5: Service default/a: spec.clusterIPs: more than 2 addresses (at most one IPv4 and one IPv6)"),
		    "3 cluster IPs");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:12: Service default/b: spec.clusterIPs[1]: two IPv6 addresses (fd00::1 and fd00::2); at most one per family"),
		    "two v6");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:11: Service default/b: spec.clusterIP: 10.0.0.9 differs from spec.clusterIPs[0] (fd00::1)"),
		    "clusterIP mismatch");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:18: Pod default/c: status.podIPs[1].ip: two IPv4 addresses (10.0.0.1 and 10.0.0.2); at most one per family"),
		    "two pod v4");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:24: Pod default/d: status.podIPs: more than 2 addresses (at most one IPv4 and one IPv6)"),
		    "3 pod IPs");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:25: Pod default/d: status.podIP: not an IP address: \"10.0.0.01\""), "leading zero");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:32: EndpointSlice default/s: endpoints[0].addresses[0]: fd00::1 is IPv6 but addressType is IPv4"),
		    "wrong family");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:33: EndpointSlice default/s: endpoints[1].addresses[0]: not an IP address: \"10.0.0.1/24\""),
		    "prefix");
	ASSERT_TRUE(has_diag(&e, "ips.yaml:34: EndpointSlice default/s: endpoints[2].addresses: expected 1 to 100 addresses, got 0"),
		    "empty");
	resources_free(r);
	diags_clear(&e);
}

void test_config_unknown_kind(void)
{
	static const char text[] = "apiVersion: bar/v1\n"
				   "kind: Foo\n"
				   "---\n"
				   "apiVersion: discovery.k8s.io/v1beta1\n"	/* 4 */
				   "kind: EndpointSlice\n"
				   "---\n"
				   "apiVersion: extensions/v1beta1\n"	/* 7 */
				   "kind: Deployment\n"
				   "---\n"
				   "apiVersion: v1\n"			/* 10 */
				   "kind: [Service]\n";
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("k.yaml", text, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "ret");
	ASSERT_TRUE(has_diag(&e, "k.yaml:1: unknown kind 'Foo' (apiVersion bar/v1)"), "Foo");
	ASSERT_TRUE(has_diag(&e, "k.yaml:4: unknown kind 'EndpointSlice' (apiVersion discovery.k8s.io/v1beta1; EndpointSlice is discovery.k8s.io/v1)"),
		    "old EndpointSlice");
	ASSERT_TRUE(has_diag(&e, "k.yaml:7: unknown kind 'Deployment' (apiVersion extensions/v1beta1; Deployment is apps/v1)"),
		    "old Deployment");
	ASSERT_TRUE(has_diag(&e, "k.yaml:11: object: kind: expected a string, got a list"), "kind type");
	ASSERT_EQ(r->n_ignored, 0, "nothing ignored");
	resources_free(r);
	diags_clear(&e);
}

void test_config_names_and_labels(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Service\n"
				   "metadata: {name: 1web, namespace: Shop}\n"	/* 3 */
				   "spec:\n"
				   "  selector:\n"
				   "    app: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"	/* 6: 64 */
				   "    \"bad key!\": v\n"		/* 7 */
				   "    example.com/ok: -bad\n"	/* 8 */
				   "  ports:\n"
				   "  - {name: http, port: 80, targetPort: Http_Port}\n"	/* 10 */
				   "  - {name: http, port: 81, appProtocol: \"not valid\"}\n"	/* 11 */
				   "---\n"
				   "apiVersion: v1\n"
				   "kind: Pod\n"
				   "metadata: {name: p}\n"
				   "spec: {containers: [{ports: [{name: this-name-is-too-long, containerPort: 80}]}]}\n";	/* 16 */
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("n.yaml", text, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "ret");
	ASSERT_TRUE(has_diag(&e, "n.yaml:3: Service: metadata.namespace: not a valid name: \"Shop\" (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"),
		    "namespace");
	ASSERT_TRUE(has_diag(&e, "n.yaml:3: Service: metadata.name: not a valid name: \"1web\" (at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit)"),
		    "service name is DNS-1035");
	ASSERT_TRUE(has_diag(&e, "n.yaml:6: Service: spec.selector.app: not a valid label value: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"),
		    "value too long");
	ASSERT_TRUE(has_diag(&e, "n.yaml:7: Service: spec.selector: not a valid label key: \"bad key!\" (an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"),
		    "key");
	ASSERT_TRUE(has_diag(&e, "n.yaml:8: Service: spec.selector[\"example.com/ok\"]: not a valid label value: \"-bad\" (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"),
		    "value");
	ASSERT_TRUE(has_diag(&e, "n.yaml:10: Service: spec.ports[0].targetPort: not a valid port name: \"Http_Port\" (at most 15 lowercase letters, digits and '-', with a letter, no '--')"),
		    "targetPort name");
	ASSERT_TRUE(has_diag(&e, "n.yaml:11: Service: spec.ports[1].name: \"http\" is used by another port too"), "dup name");
	ASSERT_TRUE(has_diag(&e, "n.yaml:11: Service: spec.ports[1].appProtocol: not a valid protocol name: \"not valid\" (a name like http or example.com/proto)"),
		    "appProtocol");
	ASSERT_TRUE(has_diag(&e, "n.yaml:16: Pod default/p: spec.containers[0].ports[0].name: not a valid port name: \"this-name-is-too-long\" (at most 15 lowercase letters, digits and '-', with a letter, no '--')"),
		    "container port name");
	resources_free(r);
	diags_clear(&e);
}

void test_config_duplicate_keys(void)
{
	static const char text[] = "apiVersion: v1\n"
				   "kind: Namespace\n"
				   "metadata:\n"
				   "  name: a\n"				/* 4 */
				   "  labels: {x: \"1\", y: \"2\", x: \"3\"}\n"	/* 5 */
				   "  name: b\n"				/* 6 */
				   "---\n"
				   "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"c\"},\n"
				   " \"kind\": \"Pod\"}\n";			/* 9 */
	char big[4096];
	size_t o = 0;
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	r = decode("dup.yaml", text, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "ret");
	ASSERT_TRUE(has_diag(&e, "dup.yaml:5: duplicate key \"x\" (first on line 5)"), "flow");
	ASSERT_TRUE(has_diag(&e, "dup.yaml:6: duplicate key \"name\" (first on line 4)"), "block");
	ASSERT_TRUE(has_diag(&e, "dup.yaml:9: duplicate key \"kind\" (first on line 8)"), "json");
	ASSERT_EQ(r->n_namespaces, 0, "both left out");
	resources_free(r);
	diags_clear(&e);
	/* a big mapping takes the sorted path */
	o += (size_t)snprintf(big + o, sizeof(big) - o, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels:\n");
	for (int i = 0; i < 40; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "    k%d: v\n", i % 39);
	r = decode("big.yaml", big, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "big ret");
	ASSERT_TRUE(has_diag(&e, "big.yaml:45: duplicate key \"k0\" (first on line 6)"), "big");
	ASSERT_EQ(e.n, 1, "once");
	resources_free(r);
	diags_clear(&e);
}

void test_config_limits(void)
{
	size_t n = 200, o = 0;
	char *deep = malloc(4 * n + 64), *bomb;
	struct diags e = { 0 };
	struct sl_resources *r;
	int ret;

	if (!ASSERT_OK_PTR(deep, "malloc"))
		return;
	o += (size_t)sprintf(deep, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: ");
	for (size_t i = 0; i < n; i++)
		deep[o++] = '[';
	for (size_t i = 0; i < n; i++)
		deep[o++] = ']';
	deep[o] = '\0';
	r = decode("deep.yaml", deep, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "deep");
	ASSERT_TRUE(has_diag(&e, "deep.yaml:4: nesting deeper than 64 levels"), "deep reason");
	resources_free(r);
	diags_clear(&e);
	free(deep);

	/* Billion laughs: 9 levels of 10 aliases = 10^9 nodes if expanded. */
	bomb = malloc(8192);
	if (!ASSERT_OK_PTR(bomb, "malloc"))
		return;
	o = (size_t)sprintf(bomb, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nx0: &a0 [lol]\n");
	for (int i = 1; i < 10; i++)
		o += (size_t)sprintf(bomb + o, "x%d: &a%d [*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d]\n", i,
				     i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
	r = decode("bomb.yaml", bomb, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "bomb");
	ASSERT_TRUE(has_diag(&e, "bomb.yaml:10: object too large (more than 1048576 nodes with YAML aliases expanded)"),
		    "bomb reason");
	resources_free(r);
	diags_clear(&e);
	free(bomb);

	/* Deep inside what is not kept is deep all the same. */
	deep = malloc(4 * n + 128);
	if (!ASSERT_OK_PTR(deep, "malloc"))
		return;
	o = (size_t)sprintf(deep, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, annotations: {x: ");
	for (size_t i = 0; i < n; i++)
		deep[o++] = '[';
	for (size_t i = 0; i < n; i++)
		deep[o++] = ']';
	strcpy(deep + o, "}}\n");
	r = decode("deep2.yaml", deep, &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "deep skipped");
	ASSERT_TRUE(has_diag(&e, "deep2.yaml:3: nesting deeper than 64 levels"), "deep skipped reason");
	resources_free(r);
	diags_clear(&e);
	free(deep);

	r = decode("skip.yaml", "apiVersion: v1\nkind: Namespace\n"
				"metadata: {name: a, annotations: &a {x: y}, labels: *a}\n", &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "alias to skipped");
	ASSERT_TRUE(has_diag(&e, "skip.yaml:3: Namespace a: metadata.labels: expected a mapping, got an alias into content the agent does not read (annotations, managedFields, data)"),
		    "alias to skipped reason");
	resources_free(r);
	diags_clear(&e);

	r = decode("alias.yaml", "a: &x [*x]\n---\nb: *nope\n---\n"
				 "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
				 "spec: {ports: [&p {name: a, port: 80}, {<<: *p, name: b}]}\n", &e, &ret);
	ASSERT_EQ(ret, -EINVAL, "aliases");
	ASSERT_TRUE(has_diag(&e, "alias.yaml:1: YAML alias *x refers to a node that contains it"), "recursive");
	ASSERT_TRUE(has_diag(&e, "alias.yaml:3: YAML alias *nope: no such anchor before it"), "undefined");
	ASSERT_TRUE(has_diag(&e, "alias.yaml:8: Service default/s: spec.ports[1].port: missing"), "merge keys are not read");
	resources_free(r);
	diags_clear(&e);
}

/* Every input the fuzzer crashed or hung on, kept so it stays fixed. */
void test_config_fuzz_regressions(void)
{
	static const struct {
		const char *name, *text;
		size_t len;
	} cases[] = {
		{ "empty.yaml", "", 0 },
		{ "nul.yaml", "\0", 1 },
		{ "nul.json", "{\"a\": \"\\u0000\"}", 15 },
		{ "cut.json", "{\"a\": \"\\ud83d", 13 },
		{ "cut2.json", "{\"a\": \"\\ud83d\\u", 15 },
		{ "c2.json", "\"\xc2", 2 },
		{ "e2.json", "\"\xe2\x80", 3 },
		{ "bs.json", "\"\\", 2 },
		{ "items.yaml", "items: [&a {kind: Pod}, *a]\nkind: PodList\n", 41 },
		{ "items2.yaml", "kind: List\nitems: [{a: &a b}, {c: *a}]\n", 37 },
		{ "items3.yaml", "items: [x]\nkind: Service\napiVersion: v1\n", 40 },
		{ "skip.yaml", "kind: Pod\napiVersion: v1\nmetadata: {name: a, annotations: &a {x: y}, labels: *a}\n", 80 },
		{ "nulkey.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {\"a\\0\": b}}\n", 70 },
	};
	struct diags e = { 0 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sl_resources *r = config_resources_new();
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
		int ret;

		if (!ASSERT_OK_PTR(r, "new"))
			return;
		ret = config_decode_buf(r, cases[i].name, cases[i].text, len, &e);
		ASSERT_TRUE(ret == 0 || e.n > 0, cases[i].name);
		ASSERT_TRUE(ret != 0 || e.n == 0, cases[i].name);
		resources_free(r);
		diags_clear(&e);
	}
}

/* The same bytes from a file (config_load_dir) and from memory
 * (config_decode_buf) give the same problems: libyaml reports the first of
 * two close problems by where its reads end, so the file reader must hand it
 * the same pieces. The first input is from fuzz_config_split. */
void test_config_file_equals_memory(void)
{
	static const struct {
		const char *name, *text;
		size_t len;
	} cases[] = {
		{ "a.yaml", "{\n  \"kind\":; \"i\nvn: Namespace\nmetaServiceL    \":\xe8\"\\ud83d\\ufe", 60 },
		{ "b.json", "{\"a\": \"\\ud83d", 13 },
		{ "c.yaml", "a: [1,\nb: \xff\n", 0 },
		{ "d.json", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"x\"}}", 0 },
		{ "e.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\tbad\n", 0 },
	};
	const char *d = test_tmpdir();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
		struct sl_resources *r = NULL, *m = config_resources_new();
		struct diags e = { 0 }, e2 = { 0 };
		char sub[512], path[600];
		FILE *f;

		snprintf(sub, sizeof(sub), "%s/%zu", d, i);
		snprintf(path, sizeof(path), "%s/%s", sub, cases[i].name);
		mkdir(sub, 0755);
		f = fopen(path, "w");
		if (!ASSERT_OK_PTR(f, "fopen") || !ASSERT_OK_PTR(m, "new"))
			return;
		fwrite(cases[i].text, 1, len, f);
		fclose(f);
		ASSERT_EQ(config_load_dir(sub, &r, &e), config_decode_buf(m, cases[i].name, cases[i].text, len, &e2),
			  cases[i].name);
		if (ASSERT_EQ(e.n, e2.n, cases[i].name)) {
			for (size_t k = 0; k < e.n; k++) {
				ASSERT_EQ(e.v[k].line, e2.v[k].line, cases[i].name);
				ASSERT_STREQ(e.v[k].msg, e2.v[k].msg, cases[i].name);
			}
		}
		dump_diags(&e);
		resources_free(r);
		resources_free(m);
		diags_clear(&e);
		diags_clear(&e2);
	}
}

/* ---- directories ------------------------------------------------------------- */

void test_config_load_dir(void)
{
	const char *d = test_tmpdir();
	struct sl_resources *r = NULL;
	struct diags e = { 0 };
	int ret;

	if (!ASSERT_TRUE(d[0], "tmpdir"))
		return;
	mkdir(in_dir(d, "sub"), 0755);
	mkdir(in_dir(d, "sub/deeper"), 0755);
	mkdir(in_dir(d, ".hidden"), 0755);
	mkdir(in_dir(d, "..2024_01_01"), 0755);
	ASSERT_OK(write_file(d, "a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"), "a");
	ASSERT_OK(write_file(d, "sub/b.yml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n"), "b");
	ASSERT_OK(write_file(d, "sub/deeper/c.JSON",
			     "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"c\"}}"), "c");
	ASSERT_OK(write_file(d, "README.md", "not: config\n"), "readme");
	ASSERT_OK(write_file(d, ".hidden/x.yaml", "broken: [\n"), "hidden");
	/* A ConfigMap mount: names are symlinks through ..data. */
	ASSERT_OK(write_file(d, "..2024_01_01/cm.yaml",
			     "apiVersion: v1\nkind: Namespace\nmetadata: {name: cm}\n"), "cm");
	ASSERT_OK(symlink("..2024_01_01", in_dir(d, "..data")), "..data");
	ASSERT_OK(symlink("..data/cm.yaml", in_dir(d, "cm.yaml")), "cm link");
	ASSERT_OK(symlink(".", in_dir(d, "sub/loop")), "loop link");

	ret = config_load_dir(d, &r, &e);
	dump_diags(&e);
	if (!ASSERT_OK(ret, "load") || !ASSERT_OK_PTR(r, "out"))
		goto out;
	if (ASSERT_EQ(r->n_namespaces, 4, "a, cm, sub/b, sub/deeper/c; hidden and loops skipped")) {
		ASSERT_STREQ(r->namespaces[0].name, "a", "name order");
		ASSERT_STREQ(r->namespaces[1].name, "cm", "cm");
		ASSERT_STREQ(r->namespaces[2].name, "b", "b");
		ASSERT_STREQ(r->namespaces[2].src.file, "sub/b.yml", "relative name");
		ASSERT_STREQ(r->namespaces[3].src.file, "sub/deeper/c.JSON", "c");
	}
	resources_free(r);
	r = NULL;

	/* All or nothing, with every file's problems. */
	ASSERT_OK(write_file(d, "sub/bad.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: B}\n"), "bad");
	ASSERT_OK(write_file(d, "z.json", "{\"kind\": \"Foo\", \"apiVersion\": \"x/v1\"}"), "z");
	ret = config_load_dir(d, &r, &e);
	ASSERT_EQ(ret, -EINVAL, "load bad");
	ASSERT_TRUE(r == NULL, "no set");
	ASSERT_TRUE(has_diag(&e, "sub/bad.yaml:3: Namespace: metadata.name: not a valid name: \"B\" (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"),
		    "bad");
	ASSERT_TRUE(has_diag(&e, "z.json:1: unknown kind 'Foo' (apiVersion x/v1)"), "z");
	diags_clear(&e);

	ret = config_load_dir(in_dir(d, "nope"), &r, &e);
	ASSERT_EQ(ret, -ENOENT, "missing dir");
	ASSERT_EQ(e.n, 1, "one problem");
	mkfifo(in_dir(d, "sub/deeper/fifo.yaml"), 0600);
	ASSERT_OK(symlink("gone.yaml", in_dir(d, "dangling.yaml")), "dangling");
	diags_clear(&e);
	ret = config_load_dir(d, &r, &e);
	ASSERT_EQ(ret, -ENOENT, "dangling symlink is an I/O error");
	ASSERT_TRUE(has_diag(&e, "dangling.yaml: cannot read: No such file or directory"), "dangling");
	ASSERT_TRUE(has_diag(&e, "sub/deeper/fifo.yaml: not a regular file"), "fifo");
out:
	resources_free(r);
	diags_clear(&e);
}

static size_t hash_str(size_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h * 31 + 1;
}

/* A digest of what two loads decoded, to compare them. */
static size_t fingerprint(const struct sl_resources *r)
{
	size_t h = r->n_services * 1000003 + r->n_pods * 10007 + r->n_namespaces + r->n_ignored;

	for (size_t i = 0; i < r->n_slices; i++) {
		const struct sl_endpoint_slice *es = &r->slices[i];

		h = hash_str(h, es->name) * 31 + es->n_endpoints + (size_t)es->src.line;
		for (size_t j = 0; j < es->n_endpoints; j++)
			h = hash_str(hash_str(h, es->endpoints[j].pod), es->endpoints[j].node) +
			    es->endpoints[j].addrs[0].addr.v4;
	}
	for (size_t i = 0; i < r->n_services; i++) {
		const struct sl_service *s = &r->services[i];

		h = hash_str(hash_str(h, s->ns), s->name) * 31 + (size_t)s->src.line;
		for (size_t j = 0; j < s->n_ports; j++)
			h = hash_str(h * 31 + s->ports[j].port + s->ports[j].target_port, s->ports[j].target_port_name);
	}
	return h;
}

/* JSON bigger than the reader's window, with escapes cut at every offset: the
 * file reader must give what the memory reader gives. */
void test_config_big_json_file(void)
{
	const char *d = test_tmpdir();
	struct sl_resources *r = NULL, *m = config_resources_new();
	struct diags e = { 0 }, e2 = { 0 };
	size_t cap = 1 << 20, o = 0;
	char *buf = malloc(cap);
	FILE *f;

	if (!ASSERT_OK_PTR(buf, "malloc") || !ASSERT_OK_PTR(m, "new"))
		goto out;
	o += (size_t)snprintf(buf + o, cap - o, "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n");
	for (int i = 0; i < 2000; i++)
		o += (size_t)snprintf(buf + o, cap - o,
				      "%s\t{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"s%d\","
				      " \"annotations\": {\"a\": \"%.*s\\ud83d\\ude00\\u00e9\x7f\xe2\x80\xa8\"}},\n"
				      "\t \"spec\": {\"ports\": [{\"port\": %d}]}}\n",
				      i ? "," : "", i, i % 13, "xxxxxxxxxxxxx", 1 + i);
	o += (size_t)snprintf(buf + o, cap - o, "]}\n");
	f = fopen(in_dir(d, "big.json"), "w");
	if (!ASSERT_OK_PTR(f, "fopen"))
		goto out;
	fwrite(buf, 1, o, f);
	fclose(f);
	ASSERT_GE(o, 3 * 65536, "bigger than the window");
	ASSERT_OK(config_load_dir(d, &r, &e), "load");
	ASSERT_OK(config_decode_buf(m, "big.json", buf, o, &e), "decode");
	dump_diags(&e);
	if (r && ASSERT_EQ(r->n_services, 2000, "all")) {
		ASSERT_EQ(r->services[1999].src.line, 2 * 1999 + 2, "last line");
		ASSERT_EQ(fingerprint(r), fingerprint(m), "file == memory");
	}

	/* The escapes again, where they show: in the message about a bad label. */
	o = (size_t)snprintf(buf, cap, "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n");
	for (int i = 0; i < 1200; i++)
		o += (size_t)snprintf(buf + o, cap - o,
				      "%s\t{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"n%d\","
				      " \"labels\": {\"l\": \"%.*s\\ud83d\\ude00\\u00e9\\\\\x7f\xe2\x80\xa8.\"}}}\n",
				      i ? "," : "", i, i % 17, "xxxxxxxxxxxxxxxxx");
	o += (size_t)snprintf(buf + o, cap - o, "]}\n");
	ASSERT_GE(o, 2 * 65536, "bigger than the window");
	f = fopen(in_dir(d, "big.json"), "w");
	if (!ASSERT_OK_PTR(f, "fopen"))
		goto out;
	fwrite(buf, 1, o, f);
	fclose(f);
	resources_free(r);
	r = NULL;
	diags_clear(&e);
	ASSERT_EQ(config_load_dir(d, &r, &e), -EINVAL, "load bad labels");
	ASSERT_EQ(config_decode_buf(m, "big.json", buf, o, &e2), -EINVAL, "decode bad labels");
	if (ASSERT_GE(e.n, 1000, "file problems") && ASSERT_GE(e2.n, 1000, "memory problems")) {
		for (size_t i = 0; i < 1000; i++) {
			if (!ASSERT_EQ(e.v[i].line, e2.v[i].line, "line") ||
			    !ASSERT_STREQ(e.v[i].msg, e2.v[i].msg, "file == memory"))
				break;
		}
		ASSERT_HAS(e.v[0].msg, "\"\xf0\x9f\x98\x80\xc3\xa9\\\\\\x7f\xe2\x80\xa8.\"", "decoded text");
		ASSERT_EQ(e.v[999].line, 1001, "line of the 1000th item");
	}
out:
	free(buf);
	resources_free(r);
	resources_free(m);
	diags_clear(&e);
	diags_clear(&e2);
}

/* Writes n Services, each with an EndpointSlice of eps endpoints, to path.
 * One in every bad_every Services (0: none) has a bad port. */
static int gen_services(const char *path, int first, int n, int eps, int bad_every)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	for (int i = first; i < first + n; i++) {
		fprintf(f, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\n  namespace: ns%d\n"
			   "spec:\n  clusterIP: 10.96.%d.%d\n  ports:\n  - name: http\n    port: %s\n"
			   "    targetPort: 8080\n  - name: grpc\n    port: 9090\n    targetPort: grpc\n"
			   "  selector:\n    app: app-%d\n",
			i, i % 50, i / 256 % 256, i % 256, bad_every && i % bad_every == 0 ? "http" : "80", i);
		fprintf(f, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
			   "  name: svc-%d-x\n  namespace: ns%d\n  labels:\n    kubernetes.io/service-name: svc-%d\n"
			   "addressType: IPv4\nports:\n- name: http\n  port: 8080\n- name: grpc\n  port: 9090\n"
			   "endpoints:\n",
			i, i % 50, i);
		for (int j = 0; j < eps; j++) {
			int k = i * eps + j;

			fprintf(f, "- addresses: [10.%d.%d.%d]\n  conditions: {ready: true}\n  nodeName: node-%d\n"
				   "  targetRef: {kind: Pod, name: app-%d-%d}\n",
				k >> 16 & 255, k >> 8 & 255, k & 255, k % 100, i, j);
		}
	}
	return fclose(f) ? -errno : 0;
}

/* One big multi-document file is cut in pieces and parsed in parallel: the
 * result, and the line of a problem deep inside, must not show it. */
void test_config_split_file(void)
{
	const char *d = test_tmpdir();
	struct sl_resources *r = NULL, *m = config_resources_new();
	struct diags e = { 0 }, e2 = { 0 };
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int ret;

	if (!ASSERT_OK_PTR(m, "new") || !ASSERT_OK(gen_services(in_dir(d, "big.yaml"), 0, 10000, 4, 2999), "gen"))
		goto out;
	ret = config_load_dir(d, &r, &e);
	ASSERT_EQ(ret, -EINVAL, "bad ports");
	f = fopen(in_dir(d, "big.yaml"), "r");
	if (!ASSERT_OK_PTR(f, "fopen"))
		goto out;
	buf = malloc(64 << 20);
	if (buf)
		len = fread(buf, 1, 64 << 20, f);
	fclose(f);
	ASSERT_GE(len, 9u << 20, "big enough to be cut");
	ASSERT_EQ(config_decode_buf(m, "big.yaml", buf, len, &e2), -EINVAL, "decode");
	if (ASSERT_EQ(e.n, 4, "4 bad Services") && ASSERT_EQ(e2.n, 4, "4 in memory")) {
		for (size_t i = 0; i < 4; i++) {
			ASSERT_EQ(e.v[i].line, e2.v[i].line, "same line");
			ASSERT_STREQ(e.v[i].msg, e2.v[i].msg, "same problem");
		}
	}
	dump_diags(&e);
	ASSERT_EQ(m->n_services, 9996, "good ones decode");
	ASSERT_EQ(m->n_slices, 10000, "slices");
out:
	free(buf);
	resources_free(r);
	resources_free(m);
	diags_clear(&e);
	diags_clear(&e2);
}

/* A List of n Services and their EndpointSlices, as `kubectl get -o yaml`
 * (items at column 0, kind after them) or -o json (items before kind) lays
 * it out, with the twists in flags. */
enum {
	GEN_JSON = 1,		/* -o json, not -o yaml */
	GEN_TRICKY = 2,		/* a "- " line at column 0 in a quoted annotation */
	GEN_BAD = 4,		/* one bad port per 2999 Services */
	GEN_BROKEN = 8,		/* a syntax error in item 30000 */
	GEN_DUP = 16,		/* JSON: "kind" twice, once where the scan cannot see it */
	GEN_BAD_END = 32,	/* YAML: after indented items, a line that ends them wrongly */
};

static int gen_list(const char *path, int n, int flags)
{
	bool json = flags & GEN_JSON, tricky = flags & GEN_TRICKY, bad = flags & GEN_BAD;
	bool broken = flags & GEN_BROKEN, dup = flags & GEN_DUP;
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, json ? "{\n    \"apiVersion\": \"v1\",%s\n    \"items\": [\n" : "apiVersion: v1\nitems:\n%s",
		dup ? " \"kind\": \"List\"," : "");
	for (int i = 0; i < n; i++) {
		const char *port = bad && i % 2999 == 7 ? "\"80\"" : "80";

		if (broken && i == 15000)
			fputs(json ? "        {\"apiVersion\": \"v1\" \"kind\": \"Service\"},\n"
				   : "- apiVersion: v1\n  kind: [Service\n", f);
		if (json) {
			fprintf(f, "        {\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"s%d\", \"namespace\": \"n%d\"},\n"
				   "         \"spec\": {\"clusterIP\": \"10.96.%d.%d\", \"ports\": [{\"port\": %s, \"targetPort\": \"http\"}]}},\n",
				i, i % 7, i / 256 % 256, i % 256, port);
			fprintf(f, "        {\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\",\n"
				   "         \"metadata\": {\"name\": \"s%d-x\", \"namespace\": \"n%d\", \"labels\": {\"kubernetes.io/service-name\": \"s%d\"}},\n"
				   "         \"addressType\": \"IPv4\", \"ports\": [{\"port\": 8080}],\n"
				   "         \"endpoints\": [{\"addresses\": [\"10.1.%d.%d\"], \"nodeName\": \"node-%d\", \"targetRef\": {\"kind\": \"Pod\", \"name\": \"p%d\"}}]}%s\n",
				i, i % 7, i, i / 256 % 256, i % 256, i % 13, i, i + 1 < n ? "," : "");
			continue;
		}
		fprintf(f, "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s%d\n    namespace: n%d\n", i, i % 7);
		if (tricky)
			fprintf(f, "    annotations:\n      note: \"spans lines\n- looks like an item\n        but is not\"\n");
		fprintf(f, "  spec:\n    clusterIP: 10.96.%d.%d\n    ports:\n    - port: %s\n      targetPort: http\n",
			i / 256 % 256, i % 256, port);
		fprintf(f, "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata:\n    name: s%d-x\n"
			   "    namespace: n%d\n    labels:\n      kubernetes.io/service-name: s%d\n  addressType: IPv4\n"
			   "  ports:\n  - port: 8080\n  endpoints:\n  - addresses: [10.1.%d.%d]\n    nodeName: node-%d\n"
			   "    targetRef: {kind: Pod, name: p%d}\n",
			i, i % 7, i, i / 256 % 256, i % 256, i % 13, i);
	}
	fprintf(f, json ? "    ],\n    \"kind\": \"List\",\n    \"metadata\": {\"resourceVersion\": \"\"}\n}\n"
			: "kind: List\nmetadata:\n  resourceVersion: \"\"\n");
	return fclose(f) ? -errno : 0;
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) &&
	    (buf = malloc((size_t)n)))
		*len = fread(buf, 1, (size_t)n, f);
	fclose(f);
	return buf;
}

/* A big List is cut between items and parsed in pieces: the outcome must be
 * what one parse of the whole file gives, problems and lines included, also
 * when a cut lands inside a quoted scalar (then the file is parsed whole). */
static void check_list(const char *name, int flags)
{
	bool json = flags & GEN_JSON;
	char dir[512], path[600];
	struct sl_resources *r = NULL, *m = config_resources_new();
	struct diags e = { 0 }, e2 = { 0 };
	size_t len = 0;
	char *buf = NULL;
	int ret, ret2;

	snprintf(dir, sizeof(dir), "%s/%s", test_tmpdir(), name);
	snprintf(path, sizeof(path), "%s/%s", dir, json ? "all.json" : "all.yaml");
	mkdir(dir, 0755);
	if (!ASSERT_OK_PTR(m, "new") || !ASSERT_OK(gen_list(path, 20000, flags), name))
		goto out;
	if (flags & GEN_BAD_END) {	/* kind first, items indented, a bad line last */
		FILE *f;
		bool in_items = false;

		buf = read_all(path, &len);
		f = fopen(path, "w");
		if (!ASSERT_OK_PTR(buf, "read") || !ASSERT_OK_PTR(f, "fopen"))
			goto out;
		fputs("kind: List\napiVersion: v1\nitems:\n", f);
		for (char *l = buf, *nl; l < buf + len; l = nl + 1) {
			nl = memchr(l, '\n', (size_t)(buf + len - l));
			if (!nl)
				break;
			if (!strncmp(l, "kind: List", 10))
				in_items = false;
			if (in_items)
				fprintf(f, "  %.*s\n", (int)(nl - l), l);
			if (!strncmp(l, "items:", 6))
				in_items = true;
		}
		fputs("  th {name: p1}\n", f);	/* valid alone, wrong after the items */
		fclose(f);
		free(buf);
	}
	buf = read_all(path, &len);
	ASSERT_GE(len, (8u << 20) + 1, "big enough to cut");
	ret = config_load_dir(dir, &r, &e);
	ret2 = config_decode_buf(m, json ? "all.json" : "all.yaml", buf, len, &e2);
	ASSERT_EQ(ret, ret2, name);
	if (ASSERT_EQ(e.n, e2.n, "as many problems")) {
		for (size_t i = 0; i < e.n; i++) {
			ASSERT_EQ(e.v[i].line, e2.v[i].line, "same line");
			ASSERT_STREQ(e.v[i].msg, e2.v[i].msg, "same problem");
		}
	}
	if (!ret && ASSERT_OK_PTR(r, "set")) {
		ASSERT_EQ(r->n_services, 20000, "services");
		ASSERT_EQ(r->n_slices, 20000, "slices");
		ASSERT_EQ(fingerprint(r), fingerprint(m), "same objects");
	}
	if (flags & GEN_BAD)
		ASSERT_EQ(e.n, 7, "the bad ports");
	if (flags & (GEN_BROKEN | GEN_BAD_END))
		ASSERT_EQ(e.n, 1, "the syntax error");
	if (flags & GEN_DUP)
		ASSERT_TRUE(e.n == 1 && strstr(e.v[0].msg, "duplicate key \"kind\""), "the key twice");
	dump_diags(&e);
out:
	free(buf);
	resources_free(r);
	resources_free(m);
	diags_clear(&e);
	diags_clear(&e2);
}

void test_config_split_list(void)
{
	check_list("yaml", 0);
	check_list("json", GEN_JSON);
	check_list("yaml-bad", GEN_BAD);
	check_list("json-bad", GEN_JSON | GEN_BAD);
	check_list("yaml-tricky", GEN_TRICKY);
	check_list("yaml-broken", GEN_BROKEN);
	check_list("json-broken", GEN_JSON | GEN_BROKEN);
	check_list("json-dup", GEN_JSON | GEN_DUP);
	check_list("yaml-bad-end", GEN_BAD_END);	/* found by fuzz_config_split */
}

/* A file cut at "---" where the piece after a cut has bad bytes, and the one
 * before it a problem of its own: one parse of the whole file never gets to
 * that problem (libyaml's reader decodes ahead and fails first, and a broken
 * document stops the file), so the cut file is parsed whole again to report
 * the same. Found by fuzz_config_split. */
void test_config_split_fallback(void)
{
	const char *d = test_tmpdir();
	struct sl_resources *r = NULL, *m = config_resources_new();
	struct diags e = { 0 }, e2 = { 0 };
	char path[512], *buf = NULL;
	size_t len = 0;
	int i = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/big.yaml", d);
	f = fopen(path, "w");
	if (!ASSERT_OK_PTR(f, "fopen") || !ASSERT_OK_PTR(m, "new"))
		goto out;
	while (ftell(f) < (4 << 20) - 200)
		fprintf(f, "apiVersion: v1\nkind: Namespace\nmetadata: {name: n%d}\n---\n", i++);
	fprintf(f, "apiVersion: v1\nkind: Namespace\nkind: Namespace\nmetadata: {name: dup}\n");
	while (ftell(f) < (4 << 20) + 64)
		fputs("# padding to the cut\n", f);
	fputs("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: \xbc}\n", f);
	while (ftell(f) < (9 << 20))
		fprintf(f, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n%d}\n", i++);
	fclose(f);
	buf = read_all(path, &len);
	ASSERT_EQ(config_load_dir(d, &r, &e), -EINVAL, "load");
	ASSERT_EQ(config_decode_buf(m, "big.yaml", buf, len, &e2), -EINVAL, "decode");
	dump_diags(&e);
	if (ASSERT_EQ(e.n, e2.n, "as many problems")) {
		for (size_t k = 0; k < e.n; k++) {
			ASSERT_EQ(e.v[k].line, e2.v[k].line, "same line");
			ASSERT_STREQ(e.v[k].msg, e2.v[k].msg, "same problem");
		}
	}
	ASSERT_HAS(e.n ? e.v[e.n - 1].msg : NULL, "invalid leading UTF-8 octet (byte 0xbc)", "bad byte");
out:
	free(buf);
	resources_free(r);
	resources_free(m);
	diags_clear(&e);
	diags_clear(&e2);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(const char *field)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			v = strtol(line + strlen(field), NULL, 10);
	fclose(f);
	return v;
}

/* The scale point: 10,000 Services + EndpointSlices, 100,000 endpoints, in
 * one file and in 100 files. Times and memory are printed (-v); bounds are
 * loose so a busy machine does not fail it, and off under sanitizers. */
void test_config_scale(void)
{
	const char *d = test_tmpdir();
	char path[512];
	struct sl_resources *r = NULL;
	struct diags e = { 0 };
	double t0, t1, t2;
	long rss0, hwm1, hwm2;
	size_t eps = 0;
	bool sanitized = false;
	int fd;

#if defined(__SANITIZE_ADDRESS__)
	sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	sanitized = true;
#endif
#endif
	mkdir(in_dir(d, "one"), 0755);
	mkdir(in_dir(d, "many"), 0755);
	if (!ASSERT_OK(gen_services(in_dir(d, "one/all.yaml"), 0, 10000, 10, 0), "gen one"))
		return;
	for (int i = 0; i < 100; i++) {
		snprintf(path, sizeof(path), "%s/many/part-%03d.yaml", d, i);
		if (!ASSERT_OK(gen_services(path, i * 100, 100, 10, 0), "gen many"))
			return;
	}
	/* Forget the generator's peak, so the high-water mark is the loader's. */
	fd = open("/proc/self/clear_refs", O_WRONLY);
	if (fd >= 0) {
		(void)!write(fd, "5", 1);
		close(fd);
	}
	rss0 = rss_kib("VmRSS:");
	t0 = now_s();
	if (!ASSERT_OK(config_load_dir(in_dir(d, "one"), &r, &e), "load one"))
		goto out;
	t1 = now_s();
	hwm1 = rss_kib("VmHWM:");
	for (size_t i = 0; i < r->n_slices; i++)
		eps += r->slices[i].n_endpoints;
	ASSERT_EQ(r->n_services, 10000, "services");
	ASSERT_EQ(r->n_slices, 10000, "slices");
	ASSERT_EQ(eps, 100000, "endpoints");
	resources_free(r);
	r = NULL;
	t2 = now_s();
	if (!ASSERT_OK(config_load_dir(in_dir(d, "many"), &r, &e), "load many"))
		goto out;
	hwm2 = rss_kib("VmHWM:");
	ASSERT_EQ(r->n_services, 10000, "services (many)");
	printf("one file: %.3f s, 100 files: %.3f s; RSS before %ld KiB, peak %ld / %ld KiB\n", t1 - t0,
	       now_s() - t2, rss0, hwm1, hwm2);
	if (!sanitized) {
		ASSERT_LE((long)((t1 - t0) * 1000), 2000, "one file ms (target < 500 on an idle 2-core VM)");
		ASSERT_LE(hwm1 - rss0, 48 * 1024, "peak KiB added by loading");
	}
out:
	dump_diags(&e);
	resources_free(r);
	diags_clear(&e);
}

/* ---- watching ---------------------------------------------------------------- */

struct watch_ctx {
	struct loop *loop;
	struct loop_timer act, guard, settle;
	const char *dir;
	int calls;
	int step;
	bool timed_out;
	struct config_watch *w;
};

static void watch_changed(void *arg)
{
	struct watch_ctx *c = arg;

	c->calls++;
	/* Let more (wrongly undebounced) calls show up before stopping. */
	loop_timer_arm(c->loop, &c->settle, 300);
}

static void watch_settled(struct loop_timer *t)
{
	struct watch_ctx *c = t->arg;

	loop_stop(c->loop);
}

static void watch_guard(struct loop_timer *t)
{
	struct watch_ctx *c = t->arg;

	c->timed_out = true;
	loop_stop(c->loop);
}

static int watch_run(struct watch_ctx *c, loop_timer_cb act)
{
	int ret;

	c->calls = 0;
	c->timed_out = false;
	loop_timer_init(&c->act, act, c);
	loop_timer_init(&c->guard, watch_guard, c);
	loop_timer_init(&c->settle, watch_settled, c);
	loop_timer_arm(c->loop, &c->act, 0);
	loop_timer_arm(c->loop, &c->guard, 5000);
	ret = loop_run(c->loop);
	loop_timer_cancel(c->loop, &c->guard);
	loop_timer_cancel(c->loop, &c->settle);
	return ret;
}

static void act_edit(struct loop_timer *t)
{
	struct watch_ctx *c = t->arg;

	/* Three writes at once: one debounced call. */
	write_file(c->dir, "svc.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
	write_file(c->dir, "svc.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n");
	write_file(c->dir, "other.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: d}\n");
}

static void act_swap(struct loop_timer *t)
{
	struct watch_ctx *c = t->arg;

	/* What the kubelet does to update a ConfigMap volume. */
	mkdir(in_dir(c->dir, "..2024_02"), 0755);
	write_file(c->dir, "..2024_02/cm.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: v2}\n");
	symlink("..2024_02", in_dir(c->dir, "..data_tmp"));
	rename(in_dir(c->dir, "..data_tmp"), in_dir(c->dir, "..data"));
}

static void act_subdir(struct loop_timer *t)
{
	struct watch_ctx *c = t->arg;

	if (c->step++ == 0) {
		mkdir(in_dir(c->dir, "new"), 0755);
		return;
	}
	write_file(c->dir, "new/x.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n");
}

static void subdir_changed(void *arg)
{
	struct watch_ctx *c = arg;

	/* After the directory showed up, a file in it must be seen too. */
	if (++c->calls == 1)
		loop_timer_arm(c->loop, &c->act, 0);
	else
		loop_timer_arm(c->loop, &c->settle, 0);
}

static void act_noise(struct loop_timer *t)
{
	struct watch_ctx *c = t->arg;

	write_file(c->dir, ".svc.yaml.swp", "x");
	write_file(c->dir, "notes.txt", "x");
	loop_timer_arm(c->loop, &c->settle, 400);
}

static void free_in_callback(void *arg)
{
	struct watch_ctx *c = arg;

	c->calls++;
	config_watch_free(c->w);	/* allowed: changed() is the watch's last act */
	c->w = NULL;
	loop_stop(c->loop);
}

void test_config_watch(void)
{
	struct watch_ctx c = { 0 };
	struct config_watch *w = NULL;
	const char *d = test_tmpdir();

	c.dir = d;
	if (!ASSERT_OK(loop_new(&c.loop), "loop"))
		return;
	mkdir(in_dir(d, "..2024_01"), 0755);
	write_file(d, "..2024_01/cm.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: v1}\n");
	symlink("..2024_01", in_dir(d, "..data"));
	symlink("..data/cm.yaml", in_dir(d, "cm.yaml"));
	write_file(d, "svc.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n");
	if (!ASSERT_OK(config_watch_new(&w, c.loop, d, watch_changed, &c), "watch"))
		goto out;

	ASSERT_OK(watch_run(&c, act_edit), "run edit");
	ASSERT_FALSE(c.timed_out, "edit seen");
	ASSERT_EQ(c.calls, 1, "debounced to one call");

	ASSERT_OK(watch_run(&c, act_swap), "run swap");
	ASSERT_FALSE(c.timed_out, "..data swap seen");
	ASSERT_EQ(c.calls, 1, "one call for the swap");

	ASSERT_OK(watch_run(&c, act_noise), "run noise");
	ASSERT_EQ(c.calls, 0, "swap files and other names ignored");

	config_watch_free(w);
	c.step = 0;
	if (!ASSERT_OK(config_watch_new(&w, c.loop, d, subdir_changed, &c), "watch 2"))
		goto out;
	ASSERT_OK(watch_run(&c, act_subdir), "run subdir");
	ASSERT_FALSE(c.timed_out, "subdir seen");
	ASSERT_EQ(c.calls, 2, "new directory, then a file inside it");

	config_watch_free(w);
	if (!ASSERT_OK(config_watch_new(&c.w, c.loop, d, free_in_callback, &c), "watch 3"))
		goto out;
	w = NULL;
	ASSERT_OK(watch_run(&c, act_edit), "run free");
	ASSERT_FALSE(c.timed_out, "freed in callback");
	ASSERT_TRUE(c.w == NULL, "freed");

	ASSERT_EQ(config_watch_new(&w, c.loop, in_dir(d, "missing"), watch_changed, &c), -ENOENT,
		  "missing directory");
	ASSERT_TRUE(w == NULL, "no watch");
out:
	config_watch_free(w);
	config_watch_free(c.w);
	loop_free(c.loop);
}

static void act_replace(struct loop_timer *t)
{
	struct watch_ctx *c = t->arg;
	char old[512];

	switch (c->step++) {
	case 0:		/* the directory is replaced by another */
		snprintf(old, sizeof(old), "%s.old", c->dir);
		rename(c->dir, old);
		mkdir(c->dir, 0755);
		write_file(c->dir, "a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n");
		break;
	case 1:		/* ... and the new one is watched */
		write_file(c->dir, "b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
		break;
	case 2:		/* gone for a while */
		unlink(in_dir(c->dir, "a.yaml"));
		unlink(in_dir(c->dir, "b.yaml"));
		rmdir(c->dir);
		break;
	case 3:		/* back: found by the retry */
		mkdir(c->dir, 0755);
		write_file(c->dir, "c.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n");
		break;
	}
}

static void replace_changed(void *arg)
{
	struct watch_ctx *c = arg;

	if (++c->calls < 4)
		loop_timer_arm(c->loop, &c->act, 0);
	else
		loop_timer_arm(c->loop, &c->settle, 0);
}

void test_config_watch_dir_replaced(void)
{
	struct watch_ctx c = { 0 };
	struct config_watch *w = NULL;
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/conf", test_tmpdir());
	c.dir = dir;
	if (!ASSERT_OK(loop_new(&c.loop), "loop"))
		return;
	mkdir(dir, 0755);
	if (!ASSERT_OK(config_watch_new(&w, c.loop, dir, replace_changed, &c), "watch"))
		goto out;
	ASSERT_OK(watch_run(&c, act_replace), "run");
	ASSERT_FALSE(c.timed_out, "all four changes seen");
	ASSERT_EQ(c.calls, 4, "replaced, written, removed, back");
	ASSERT_EQ(c.step, 4, "steps");
out:
	config_watch_free(w);
	loop_free(c.loop);
}
