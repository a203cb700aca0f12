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
#include "sock_lb.skel.h"

void test_verify_sock_lb(void)
{
	struct fixture fx;
	struct sock_lb *skel = NULL;
	struct bpf_program *p;

	if (!fixture_setup(&fx))
		goto out;
	LIBBPF_OPTS(bpf_object_open_opts, o, .pin_root_path = fx.bpffs);
	/* fx.bpffs is <mount>/sluice; pin in the mount itself. */
	*strrchr(fx.bpffs, '/') = '\0';
	skel = sock_lb__open_opts(&o);
	if (!ASSERT_OK_PTR(skel, "open") || !ASSERT_OK(sock_lb__load(skel), "load"))
		goto out;
	printf("%-24s %8s %10s\n", "program", "insns", "verified");
	bpf_object__for_each_program(p, skel->obj) {
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);

		if (!ASSERT_OK(bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len), "prog info"))
			continue;
		printf("%-24s %8u %10u\n", bpf_program__name(p), info.xlated_prog_len / 8, info.verified_insns);
		ASSERT_LE(info.verified_insns, 100000, "verifier work stays small");
	}
out:
	sock_lb__destroy(skel);
	fixture_teardown(&fx);
}
