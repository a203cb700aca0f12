// SPDX-License-Identifier: Apache-2.0
/* test_verify.c - every BPF object loads in this kernel; prints each program's
 * instruction count and the verifier's work (`make verify`, after cilium's
 * verifier test), so growth shows up in review. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdio.h>
#include <string.h>

#include "lib/fixture.h"
#include "lib/test.h"
#include "edge.skel.h"
#include "pod_egress.skel.h"
#include "pod_ingress.skel.h"
#include "sock_lb.skel.h"
#include "sockops.skel.h"

static void print_progs(struct bpf_object *obj)
{
	struct bpf_program *p;

	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);

		if (!ASSERT_OK(bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len), "prog info"))
			continue;
		printf("%-24s %8u %10u\n", bpf_program__name(p), info.xlated_prog_len / 8, info.verified_insns);
		ASSERT_LE(info.verified_insns, 100000, "verifier work stays small");
	}
}

/* Every object of the agent, loaded as the loader does (maps shared by pin). */
void test_verify_all(void)
{
	struct fixture fx;
	struct sock_lb *lb = NULL;
	struct sockops *so = NULL;
	struct pod_ingress *pi = NULL;
	struct pod_egress *pe = NULL;
	struct edge *ed = NULL;

	if (!fixture_setup(&fx))
		goto out;
	*strrchr(fx.bpffs, '/') = '\0';	/* pin in the mount itself */
	LIBBPF_OPTS(bpf_object_open_opts, o, .pin_root_path = fx.bpffs);
	lb = sock_lb__open_opts(&o);
	so = sockops__open_opts(&o);
	pi = pod_ingress__open_opts(&o);
	pe = pod_egress__open_opts(&o);
	ed = edge__open_opts(&o);
	if (!ASSERT_OK_PTR(lb, "open sock_lb") || !ASSERT_OK_PTR(so, "open sockops") ||
	    !ASSERT_OK_PTR(pi, "open pod_ingress") || !ASSERT_OK_PTR(pe, "open pod_egress") ||
	    !ASSERT_OK_PTR(ed, "open edge"))
		goto out;
	if (!ASSERT_OK(sock_lb__load(lb), "load sock_lb") || !ASSERT_OK(sockops__load(so), "load sockops") ||
	    !ASSERT_OK(pod_ingress__load(pi), "load pod_ingress") ||
	    !ASSERT_OK(pod_egress__load(pe), "load pod_egress") ||
	    !ASSERT_OK(edge__load(ed), "load edge"))
		goto out;
	printf("%-24s %8s %10s\n", "program", "insns", "verified");
	print_progs(lb->obj);
	print_progs(so->obj);
	print_progs(pi->obj);
	print_progs(pe->obj);
	print_progs(ed->obj);
out:
	edge__destroy(ed);
	pod_egress__destroy(pe);
	pod_ingress__destroy(pi);
	sockops__destroy(so);
	sock_lb__destroy(lb);
	fixture_teardown(&fx);
}
