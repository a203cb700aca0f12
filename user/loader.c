// SPDX-License-Identifier: Apache-2.0
/* loader.c - see loader.h. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <sluice/abi.h>
#include <sluice/pin.h>

#include "loader.h"
#include "handover.h"
#include "log.h"
#include "mapdump.h"
#include "edge.skel.h"
#include "pod_egress.skel.h"
#include "pod_ingress.skel.h"
#include "sock_lb.skel.h"
#include "sockops.skel.h"

#define BPF_FS_MAGIC		0xcafe4a11
#define CGROUP2_SUPER_MAGIC	0x63677270
#define SL_CGROUP2_MOUNT	"/run/sluice/cgroup2"
#define SL_BPF_TCX_INGRESS	46	/* enum bpf_attach_type; newer than Debian's uapi headers */
#define SL_BPF_TCX_EGRESS	47

struct loader {
	struct sock_lb *sock_lb;
	struct sockops *sockops;
	struct pod_ingress *pod_ingress;
	struct pod_egress *pod_egress;
	struct edge *edge;
	char edge_attach[LOADER_UPLINKS_MAX][IF_NAMESIZE + 8];	/* "xdp <ifname>" for loader_programs */
	size_t n_edges;
	struct bpf_object *objs[8];	/* the above, for iteration */
	size_t n_objs;
	char root[192];			/* pins below it must fit loader_*_info */
	char cgroup[PATH_MAX];
	int lock_fd;
	int cg_fd;
	bool reused;
	bool inherited;			/* the lock came from the agent taken over */
	bool ingress_clsact;		/* forced, or tcx found missing */
	bool no_sockmap;		/* same-node acceleration off */
	char agent_cg[PATH_MAX];	/* the agent's cgroup, when outside cgroup; else "" */
	struct loader_prog_info *progs;
	size_t n_progs;
	struct bpf_link **links;
};

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

static long fs_type_of(const char *path)
{
	struct statfs st;

	return statfs(path, &st) ? -errno : (long)st.f_type;
}

/* The nearest existing ancestor of path (or path itself) into buf. */
static void existing_ancestor(const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "%s", path);
	while (access(buf, F_OK)) {
		char *slash = strrchr(buf, '/');

		if (!slash || slash == buf) {
			snprintf(buf, len, "/");
			return;
		}
		*slash = '\0';
	}
}

/* Make root a directory on a bpffs: mount bpffs at /sys/fs/bpf (the usual place)
 * when root lies below it, else at root itself. */
static int ensure_bpffs(const char *root)
{
	char anc[PATH_MAX];
	int err;

	existing_ancestor(root, anc, sizeof(anc));
	if (fs_type_of(anc) == BPF_FS_MAGIC)
		return mkdir_p(root, 0700);
	if (!strncmp(root, "/sys/fs/bpf/", 12) && fs_type_of("/sys/fs/bpf") != BPF_FS_MAGIC) {
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700")) {
			err = -errno;
			pr_err("loader: cannot mount bpffs at /sys/fs/bpf: %s", strerror(errno));
			return err;
		}
		pr_info("loader: mounted bpffs at /sys/fs/bpf");
		return mkdir_p(root, 0700);
	}
	err = mkdir_p(root, 0700);
	if (err)
		return err;
	if (mount("bpf", root, "bpf", 0, "mode=0700")) {
		err = -errno;
		pr_err("loader: cannot mount bpffs at %s: %s", root, strerror(errno));
		return err;
	}
	pr_info("loader: mounted bpffs at %s", root);
	return 0;
}

/* The cgroup v2 root: an existing cgroup2 mount, or one we mount. */
static int cgroup2_root(char *buf, size_t len)
{
	FILE *f = setmntent("/proc/self/mounts", "r");
	struct mntent *m;

	while (f && (m = getmntent(f))) {
		if (!strcmp(m->mnt_type, "cgroup2")) {
			snprintf(buf, len, "%s", m->mnt_dir);
			endmntent(f);
			return 0;
		}
	}
	if (f)
		endmntent(f);
	if (mkdir_p(SL_CGROUP2_MOUNT, 0755))
		return -errno;
	if (mount("none", SL_CGROUP2_MOUNT, "cgroup2", 0, NULL)) {
		int err = -errno;

		pr_err("loader: no cgroup v2 mounted and mounting one at %s failed: %s",
		       SL_CGROUP2_MOUNT, strerror(errno));
		return err;
	}
	pr_info("loader: mounted cgroup v2 at %s", SL_CGROUP2_MOUNT);
	snprintf(buf, len, "%s", SL_CGROUP2_MOUNT);
	return 0;
}

static int lock_root(const char *root)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = -errno;

		close(fd);
		if (err == -EWOULDBLOCK)
			pr_err("loader: %s is in use by another sluice-agent (flock held)", root);
		return err == -EWOULDBLOCK ? -EBUSY : err;
	}
	return fd;
}

static uint64_t cgroup_id_of_fd(int fd)
{
	struct stat st;

	/* On cgroup v2 the cgroup id is the directory's inode number. */
	return fstat(fd, &st) ? 0 : (uint64_t)st.st_ino;
}

/* Attach prog at the cgroup through the link pinned at pin, reusing that link
 * (new program swapped in atomically) when it exists and targets our cgroup. */
static struct bpf_link *attach_pinned(struct loader *l, struct bpf_program *prog, const char *pin,
				      int cg_fd, const char *cg_name)
{
	struct bpf_link *link = access(pin, F_OK) ? NULL : bpf_link__open(pin);
	int err;

	if (link) {
		struct bpf_link_info info = { 0 };
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) &&
		    info.type == BPF_LINK_TYPE_CGROUP &&
		    info.cgroup.cgroup_id == cgroup_id_of_fd(cg_fd) &&
		    !bpf_link__update_program(link, prog))
			return link;
		/* Another cgroup, or not updatable: replace it. */
		pr_info("loader: replacing pinned link %s", pin);
		bpf_link__unpin(link);
		bpf_link__detach(link);
		bpf_link__destroy(link);
	}
	link = bpf_program__attach_cgroup(prog, cg_fd);
	if (!link) {
		err = -errno;
		pr_err("loader: attach %s to %s: %s", bpf_program__name(prog), cg_name, strerror(-err));
		errno = -err;
		return NULL;
	}
	err = bpf_link__pin(link, pin);
	if (err) {
		pr_err("loader: pin link %s: %s", pin, strerror(-err));
		bpf_link__destroy(link);
		errno = -err;
		return NULL;
	}
	return link;
}

/* The cgroup (v2 id) this process runs in; 0 if unknown. */
static uint64_t own_cgroup_id(const char *cg_root, char *path, size_t len)
{
	char line[PATH_MAX], full[PATH_MAX * 2];
	struct stat st;
	FILE *f = fopen("/proc/self/cgroup", "re");

	path[0] = '\0';
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = '\0';
		snprintf(path, len, "%s", line + 3);
	}
	if (f)
		fclose(f);
	snprintf(full, sizeof(full), "%s%s", cg_root, path);
	return path[0] && !stat(full, &st) ? (uint64_t)st.st_ino : 0;
}

/* The agent's cgroup is a second guard against capturing its own connects,
 * but only when it lies outside the attach point: excluding the attach cgroup
 * (or an ancestor) would exclude every pod. Its id, and its path into path;
 * 0 when it is not outside. */
static uint64_t agent_cgroup_guard(const struct loader *l, char *path, size_t len)
{
	char root[PATH_MAX], own[PATH_MAX];
	const char *rel;
	size_t rl, ol;
	uint64_t id;

	path[0] = '\0';
	if (cgroup2_root(root, sizeof(root)))
		return 0;
	id = own_cgroup_id(root, own, sizeof(own));
	rl = strlen(root);
	if (!id || strncmp(l->cgroup, root, rl))
		return 0;	/* the attach point is not under the v2 mount we know */
	rel = l->cgroup + rl;	/* e.g. "/sluice-lab-0/node-1", "" for the root */
	ol = strlen(own);
	if (!strcmp(own, "/") || (!strncmp(rel, own, ol) && (rel[ol] == '\0' || rel[ol] == '/')))
		return 0;	/* own cgroup is the attach point or above it */
	if (snprintf(path, len, "%s%s", root, own) >= (int)len)
		path[0] = '\0';
	return id;
}

/* sockmap_msg as the verdict program of sl_socks_v1, through a pinned link
 * (reused, program swapped, when it exists); with no_sockmap the link goes. */
static struct bpf_link *attach_sockmap(struct loader *l, struct bpf_program *prog, const char *pin)
{
	struct bpf_link *link = access(pin, F_OK) ? NULL : bpf_link__open(pin);
	int map_fd = bpf_map__fd(l->sockops->maps.sl_socks_v1), fd, err;

	if (link && !l->no_sockmap && !bpf_link__update_program(link, prog))
		return link;
	if (link) {
		bpf_link__unpin(link);
		bpf_link__detach(link);
		bpf_link__destroy(link);
	}
	if (l->no_sockmap)
		return NULL;
	fd = bpf_link_create(bpf_program__fd(prog), map_fd, BPF_SK_MSG_VERDICT, NULL);
	if (fd < 0) {
		err = -errno;
		pr_err("loader: attach %s to %s: %s", bpf_program__name(prog), SL_MAP_SOCKS, strerror(-err));
		errno = -err;
		return NULL;
	}
	if (bpf_obj_pin(fd, pin)) {
		err = -errno;
		pr_err("loader: pin link %s: %s", pin, strerror(-err));
		close(fd);
		errno = -err;
		return NULL;
	}
	close(fd);
	return bpf_link__open(pin);
}

/* Attach every program of the cgroup objects (sock_lb, sockops) at the
 * attach point, sockops also at the agent's cgroup, and sockmap_msg to
 * sl_socks_v1. */
static int attach_all(struct loader *l)
{
	struct bpf_object *cg_objs[] = { l->sock_lb->obj, l->sockops->obj };
	struct bpf_program *prog;
	/* sockops must see the agent's sockets too, the other end of every
	 * accelerated hop: also at the agent's cgroup when it lies outside the
	 * attach point (as in the lab). */
	int agent_cg_fd = l->agent_cg[0] ? open(l->agent_cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	size_t n = 1;	/* sockops at the agent's cgroup */

	for (size_t i = 0; i < 2; i++)
		bpf_object__for_each_program(prog, cg_objs[i])
			n++;
	l->progs = calloc(n, sizeof(*l->progs));
	l->links = calloc(n, sizeof(*l->links));
	if (!l->progs || !l->links) {
		if (agent_cg_fd >= 0)
			close(agent_cg_fd);
		return -ENOMEM;
	}
	for (size_t i = 0; i < 2; i++)
	bpf_object__for_each_program(prog, cg_objs[i]) {
		struct loader_prog_info *pi = &l->progs[l->n_progs];
		const char *sec = bpf_program__section_name(prog);
		struct bpf_link *link;

		pi->name = bpf_program__name(prog);
		pi->attach = sec;
		snprintf(pi->link_pin, sizeof(pi->link_pin), "%.191s/%s/%.48s", l->root, SL_LINKS_DIR,
			 pi->name);
		if (!strcmp(sec, "sk_msg")) {
			pi->attach = "sk_msg " SL_MAP_SOCKS;
			link = attach_sockmap(l, prog, pi->link_pin);
			if (!link && l->no_sockmap)
				continue;	/* off: not listed */
		} else {
			link = attach_pinned(l, prog, pi->link_pin, l->cg_fd, l->cgroup);
		}
		if (!link) {
			if (agent_cg_fd >= 0)
				close(agent_cg_fd);
			return -errno;
		}
		l->links[l->n_progs++] = link;
	}
	if (agent_cg_fd >= 0) {
		struct loader_prog_info *pi = &l->progs[l->n_progs];

		pi->name = bpf_program__name(l->sockops->progs.sockops_prog);
		pi->attach = "sockops (agent cgroup)";
		snprintf(pi->link_pin, sizeof(pi->link_pin), "%.191s/%s/%.40s_agent", l->root,
			 SL_LINKS_DIR, pi->name);
		l->links[l->n_progs] = attach_pinned(l, l->sockops->progs.sockops_prog, pi->link_pin,
						     agent_cg_fd, l->agent_cg);
		close(agent_cg_fd);
		if (!l->links[l->n_progs])
			return -errno;
		l->n_progs++;
	}
	return 0;
}

/* A pinned map whose layout differs from this build's (a newer agent grew a
 * map, e.g. more counters) cannot be reused: unpin it so that the load
 * creates the new one. Programs of the old agent keep the old map until
 * their links take the new programs; the agent rewrites what the maps hold.
 *
 * A hash map that differs only in max_entries (--max-services, --map-max) is
 * resized instead: its pin is moved aside here, the load creates the map of
 * the new size, and migrate_maps() copies every entry over before any link
 * takes the new programs, so no Service goes missing in between. A map that
 * holds more entries than the new size is not touched: the start fails with
 * the sizes and the flag to change (never a silent loss). */
struct loader_resize {
	struct bpf_map *map;		/* of the object being loaded */
	int old_fd;			/* the pinned map, moved aside */
	uint32_t old_max;
	char pin[PATH_MAX];
};

/* The option that sizes map name, for messages. */
static const char *size_flag(const struct loader_opts *o, const char *name, char *buf, size_t len)
{
	for (size_t i = 0; i < o->n_map_max; i++)
		if (!strcmp(o->map_max[i].name, name)) {
			snprintf(buf, len, "--map-max %s=N", name);
			return buf;
		}
	if (!strcmp(name, SL_MAP_SVC) || !strcmp(name, SL_MAP_BE))
		return "--max-services";
	snprintf(buf, len, "--map-max %s=N", name);
	return buf;
}

static const char *map_type_name(enum bpf_map_type t)
{
	const char *n = libbpf_bpf_map_type_str(t);

	return n ? n : "unknown type";
}

static bool resizable(enum bpf_map_type t)
{
	return t == BPF_MAP_TYPE_HASH || t == BPF_MAP_TYPE_LRU_HASH;
}

static int replace_stale_maps(struct bpf_object *obj, const struct loader_opts *o, struct loader_resize *rs,
			      size_t *n_rs, size_t max_rs)
{
	struct bpf_map *m;

	bpf_object__for_each_map(m, obj) {
		const char *pin = bpf_map__pin_path(m);
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		int fd;

		if (!pin || access(pin, F_OK))
			continue;
		fd = bpf_obj_get(pin);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) ||
		    (info.type == bpf_map__type(m) && info.key_size == bpf_map__key_size(m) &&
		     info.value_size == bpf_map__value_size(m) && info.max_entries == bpf_map__max_entries(m) &&
		     info.map_flags == bpf_map__map_flags(m))) {
			close(fd);
			continue;
		}
		if (info.type == bpf_map__type(m) && resizable(info.type) && info.key_size == bpf_map__key_size(m) &&
		    info.value_size == bpf_map__value_size(m) && info.map_flags == bpf_map__map_flags(m) &&
		    *n_rs < max_rs) {
			uint32_t want = bpf_map__max_entries(m);
			void *keys = NULL, *vals = NULL;
			size_t n = 0;
			char flag[48];
			int err = 0;

			if (want < info.max_entries && info.type == BPF_MAP_TYPE_HASH) {
				err = map_dump(fd, info.key_size, info.value_size, info.max_entries, &keys, &vals, &n);
				free(keys);
				free(vals);
				if (err) {
					pr_err("loader: pinned map %s: cannot count its entries: %s", pin, strerror(-err));
					close(fd);
					return err;
				}
				if (n > want) {
					const char *name = bpf_map__name(m), *f = size_flag(o, name, flag, sizeof(flag));
					bool by_svc = !strcmp(f, "--max-services");
					char hint[64];

					/* sl_be_v1 holds LOADER_BE_PER_SVC slots per --max-services */
					if (by_svc)
						snprintf(hint, sizeof(hint), "--max-services %zu",
							 strcmp(name, SL_MAP_BE) ? n
										 : (n + LOADER_BE_PER_SVC - 1) / LOADER_BE_PER_SVC);
					else
						snprintf(hint, sizeof(hint), "--map-max %s=%zu", name, n);
					pr_err("loader: pinned map %s holds %zu entries, more than its new size %u (%s; "
					       "pinned with room for %u): start with %s or more, or remove Services "
					       "from the configuration first; the pinned maps are left as they are",
					       pin, n, want, f, info.max_entries, hint);
					close(fd);
					return -ENOSPC;
				}
			}
			if (unlink(pin)) {
				err = -errno;
				pr_err("loader: unlink %s: %s", pin, strerror(-err));
				close(fd);
				return err;
			}
			rs[*n_rs] = (struct loader_resize){ .map = m, .old_fd = fd, .old_max = info.max_entries };
			snprintf(rs[*n_rs].pin, sizeof(rs[*n_rs].pin), "%s", pin);
			(*n_rs)++;
			continue;
		}
		pr_warn("loader: pinned map %s has another layout (max_entries %u, key %u, value %u, %s; "
			"now %u, %u, %u, %s): replaced with a new one",
			pin, info.max_entries, info.key_size, info.value_size, map_type_name(info.type),
			bpf_map__max_entries(m), bpf_map__key_size(m), bpf_map__value_size(m),
			map_type_name(bpf_map__type(m)));
		if (unlink(pin))
			pr_warn("loader: unlink %s: %s", pin, strerror(errno));
		close(fd);
	}
	return 0;
}

/* Put the maps moved aside back under their pins (a failed start leaves the
 * datapath's maps as they were) and close them. */
static void restore_stale_maps(struct loader_resize *rs, size_t n_rs)
{
	for (size_t i = 0; i < n_rs; i++) {
		unlink(rs[i].pin);	/* a new map the failed load pinned, if any */
		if (bpf_obj_pin(rs[i].old_fd, rs[i].pin))
			pr_err("loader: cannot pin %s back: %s", rs[i].pin, strerror(errno));
		close(rs[i].old_fd);
	}
}

/* Copy every entry of a map moved aside into its resized successor. 0, or
 * -errno (logged) with every map put back as it was. */
static int migrate_maps(struct loader_resize *rs, size_t n_rs, const struct loader_opts *o)
{
	for (size_t i = 0; i < n_rs; i++) {
		struct bpf_map *m = rs[i].map;
		size_t ks = bpf_map__key_size(m), vs = bpf_map__value_size(m), n = 0;
		void *keys = NULL, *vals = NULL;
		int fd = bpf_map__fd(m), err;
		char flag[48];

		err = map_dump(rs[i].old_fd, ks, vs, rs[i].old_max, &keys, &vals, &n);
		if (!err && n) {
			LIBBPF_OPTS(bpf_map_batch_opts, bo);
			__u32 cnt = (__u32)n;

			err = bpf_map_update_batch(fd, keys, vals, &cnt, &bo);
			if (err == -EINVAL || err == -EOPNOTSUPP) {
				err = 0;	/* no batch ops: one by one */
				for (size_t j = 0; j < n && !err; j++)
					if (bpf_map_update_elem(fd, (char *)keys + j * ks, (char *)vals + j * vs, BPF_ANY))
						err = -errno;
			}
		}
		free(keys);
		free(vals);
		if (err) {
			pr_err("loader: resize %s from %u to %u entries: copy: %s; the pinned map is left as it was",
			       rs[i].pin, rs[i].old_max, bpf_map__max_entries(m), strerror(-err));
			restore_stale_maps(rs, n_rs);
			return err;
		}
		pr_info("loader: map %s resized from %u to %u entries (%s): %zu entries copied", bpf_map__name(m),
			rs[i].old_max, bpf_map__max_entries(m), size_flag(o, bpf_map__name(m), flag, sizeof(flag)), n);
	}
	for (size_t i = 0; i < n_rs; i++)
		close(rs[i].old_fd);
	return 0;
}

/* What a load error usually means, for the operator (docs/troubleshooting.md). */
static const char *load_hint(int err)
{
	switch (-err) {
	case ESRCH:	/* libbpf: "Error loading vmlinux BTF" */
		return " (no kernel BTF: sluice needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, "
		       "which provides /sys/kernel/btf/vmlinux)";
	case EINVAL:
		return " (a pinned map of another layout? see `sluice-agent --uninstall`)";
	case EACCES:
		return " (the verifier refused a program: its log is above, as libbpf lines)";
	case EPERM:
		return " (not privileged: the agent needs root, or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN "
		       "and CAP_SYS_ADMIN: docs/security.md)";
	default:
		return "";
	}
}

static int load_one(struct loader *l, struct bpf_object *obj, int (*load)(void *), void *skel,
		    const char *name, const struct loader_opts *o)
{
	struct loader_resize rs[16];
	size_t n_rs = 0;
	int err;

	err = replace_stale_maps(obj, o, rs, &n_rs, sizeof(rs) / sizeof(rs[0]));
	if (err) {
		restore_stale_maps(rs, n_rs);
		return err;
	}
	err = load(skel);
	if (err) {
		pr_err("loader: load %s: %s%s", name, strerror(-err), load_hint(err));
		restore_stale_maps(rs, n_rs);
		return err;
	}
	err = migrate_maps(rs, n_rs, o);
	if (err)
		return err;
	if (l->n_objs >= sizeof(l->objs) / sizeof(l->objs[0])) {
		pr_err("loader: more BPF objects than the loader has room for (%zu)", l->n_objs);
		return -E2BIG;
	}
	l->objs[l->n_objs++] = obj;
	return 0;
}

static int load_sock_lb(void *s)
{
	return sock_lb__load(s);
}

static int load_sockops(void *s)
{
	return sockops__load(s);
}

static int load_pod_ingress(void *s)
{
	return pod_ingress__load(s);
}

static int load_pod_egress(void *s)
{
	return pod_egress__load(s);
}

static int load_edge(void *s)
{
	return edge__load(s);
}

/* --max-services and --map-max: resize the named map in every object that
 * declares it (one pinned map must have one size everywhere). Only hash maps:
 * the programs index arrays by constants. --max-services N sizes the maps that
 * grow with Services: sl_svc_v1 to N frontends and sl_be_v1 to
 * LOADER_BE_PER_SVC * N backend slots (the built-in sizes' ratio); a --map-max
 * of either wins. 0, or -EINVAL (logged). */
static int resize_maps(struct bpf_object *const *objs, size_t n_objs, const struct loader_opts *o)
{
	struct loader_map_max svc[2] = { { SL_MAP_SVC, 0 }, { SL_MAP_BE, 0 } };
	size_t n_svc = 0;

	if (o->max_services) {
		svc[0].max_entries = o->max_services;
		svc[1].max_entries = o->max_services * LOADER_BE_PER_SVC;
		n_svc = 2;
		pr_info("loader: --max-services %u: %s holds at most %u frontends, %s %u backend slots",
			o->max_services, SL_MAP_SVC, svc[0].max_entries, SL_MAP_BE, svc[1].max_entries);
	}
	for (size_t i = 0; i < n_svc + o->n_map_max; i++) {
		const struct loader_map_max *mm = i < n_svc ? &svc[i] : &o->map_max[i - n_svc];
		bool found = false;

		for (size_t j = 0; j < n_objs; j++) {
			struct bpf_map *m = bpf_object__find_map_by_name(objs[j], mm->name);
			enum bpf_map_type t;

			if (!m)
				continue;
			t = bpf_map__type(m);
			if (t != BPF_MAP_TYPE_HASH && t != BPF_MAP_TYPE_LRU_HASH) {
				pr_err("loader: --map-max %s: only hash maps can be resized", mm->name);
				return -EINVAL;
			}
			if (bpf_map__set_max_entries(m, mm->max_entries)) {
				pr_err("loader: --map-max %s=%u: cannot resize", mm->name, mm->max_entries);
				return -EINVAL;
			}
			found = true;
		}
		if (!found) {
			pr_err("loader: --map-max: no map named %s", mm->name);
			return -EINVAL;
		}
		if (i >= n_svc)
			pr_info("loader: map %s holds at most %u entries (--map-max)", mm->name, mm->max_entries);
	}
	return 0;
}

int loader_polct_ports_fill(int ct_fd, int ports_fd)
{
	static struct sl_polct_ports want[2], have;	/* 24 KiB: not on the stack; one caller, at start */
	struct sl_polct_key k, next;
	void *prev = NULL;
	int err;

	memset(want, 0, sizeof(want));
	while (!bpf_map_get_next_key(ct_fd, prev, &next)) {
		if (next.side <= SL_DIR_EGRESS)
			want[next.side].bits[SL_POLCT_PORT_WORD(SL_POLCT_KEY_PORT(&next))] |=
				SL_POLCT_PORT_BIT(SL_POLCT_KEY_PORT(&next));
		k = next;
		prev = &k;
	}
	if (errno != ENOENT)
		return -errno;
	for (uint32_t side = 0; side < 2; side++) {
		if (bpf_map_lookup_elem(ports_fd, &side, &have))
			return -errno;
		for (size_t i = 0; i < SL_POLCT_PORT_WORDS; i++)
			have.bits[i] |= want[side].bits[i];
		err = bpf_map_update_elem(ports_fd, &side, &have, BPF_ANY);
		if (err)
			return -errno;
	}
	return 0;
}

/* Open and load every object; maps of one name are one pinned map. */
static int load_objects(struct loader *l, const struct loader_opts *o)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = l->root);
	int err;

	l->sock_lb = sock_lb__open_opts(&oo);
	l->sockops = sockops__open_opts(&oo);
	l->pod_ingress = pod_ingress__open_opts(&oo);
	l->pod_egress = pod_egress__open_opts(&oo);
	l->edge = edge__open_opts(&oo);
	if (!l->sock_lb || !l->sockops || !l->pod_ingress || !l->pod_egress || !l->edge) {
		err = -errno;
		pr_err("loader: open BPF objects: %s", strerror(errno));
		return err ? err : -ENOMEM;
	}
	l->sock_lb->rodata->cfg_agent_cgroup_id = agent_cgroup_guard(l, l->agent_cg, sizeof(l->agent_cg));
	l->sockops->rodata->cfg_sockmap = !l->no_sockmap;
	err = resize_maps((struct bpf_object *const[]){ l->sock_lb->obj, l->sockops->obj, l->pod_ingress->obj,
							l->pod_egress->obj, l->edge->obj },
			  5, o);
	if (!err)
		err = load_one(l, l->sock_lb->obj, load_sock_lb, l->sock_lb, "sock_lb", o);
	if (!err)
		err = load_one(l, l->sockops->obj, load_sockops, l->sockops, "sockops", o);
	if (!err)
		err = load_one(l, l->pod_ingress->obj, load_pod_ingress, l->pod_ingress, "pod_ingress", o);
	if (!err)
		err = load_one(l, l->pod_egress->obj, load_pod_egress, l->pod_egress, "pod_egress", o);
	if (!err)
		err = load_one(l, l->edge->obj, load_edge, l->edge, "edge", o);
	return err;
}

int loader_open(struct loader **out, const struct loader_opts *o)
{
	struct loader *l = calloc(1, sizeof(*l));
	char path[PATH_MAX + 32];
	bool ports_new;
	int err;

	if (!l)
		return -ENOMEM;
	l->lock_fd = l->cg_fd = -1;
	l->ingress_clsact = o->ingress_clsact;
	l->no_sockmap = o->no_sockmap;
	if (snprintf(l->root, sizeof(l->root), "%s", o->bpffs_root ? o->bpffs_root : SL_BPFFS_ROOT) >=
	    (int)sizeof(l->root)) {
		pr_err("loader: bpffs root path is too long (at most %zu bytes)", sizeof(l->root) - 1);
		err = -ENAMETOOLONG;
		goto out;
	}
	if (o->cgroup) {
		snprintf(l->cgroup, sizeof(l->cgroup), "%s", o->cgroup);
	} else {
		err = cgroup2_root(l->cgroup, sizeof(l->cgroup));
		if (err)
			goto out;
	}
	if (fs_type_of(l->cgroup) != CGROUP2_SUPER_MAGIC) {
		pr_err("loader: %s is not a cgroup v2 directory (cgroup v1 only? mount one: "
		       "mount -t cgroup2 none <dir>)", l->cgroup);
		err = -ENOTDIR;
		goto out;
	}
	l->cg_fd = open(l->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->cg_fd < 0) {
		err = -errno;
		pr_err("loader: open %s: %s", l->cgroup, strerror(errno));
		goto out;
	}
	err = ensure_bpffs(l->root);
	if (err)
		goto out;
	snprintf(path, sizeof(path), "%s/%s", l->root, SL_LINKS_DIR);
	err = mkdir_p(path, 0700);
	if (err)
		goto out;
	/* A takeover inherits the lock (flock belongs to the open file, shared
	 * with the old agent until it exits). */
	l->lock_fd = handover_takef("lock %s", l->root);
	l->inherited = l->lock_fd >= 0;
	if (!l->inherited)
		l->lock_fd = lock_root(l->root);
	if (l->lock_fd < 0) {
		err = l->lock_fd;
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s", l->root, SL_MAP_SVC);
	l->reused = !access(path, F_OK);
	snprintf(path, sizeof(path), "%s/%s", l->root, SL_MAP_POLCTPORT);
	ports_new = access(path, F_OK) != 0;

	err = load_objects(l, o);
	if (err)
		goto out;
	/* Pins of an agent without the port bitmap: its UDP flows are in the
	 * LRU, their ports not yet in the new bitmap. Filled before any link
	 * takes the programs that read it (none writes it before). */
	if (l->reused && ports_new) {
		err = loader_polct_ports_fill(bpf_map__fd(l->edge->maps.sl_polct_v1),
					      bpf_map__fd(l->edge->maps.sl_polctport_v1));
		if (err) {
			pr_err("loader: %s from %s: %s", SL_MAP_POLCTPORT, SL_MAP_POLCT, strerror(-err));
			goto out;
		}
	}
	err = attach_all(l);
	if (err)
		goto out;
	/* A new agent has no connection: pairs and counts of a previous one go;
	 * but after a takeover the old agent still relays (and drains) its own. */
	if (!l->inherited) {
		map_clear(bpf_map__fd(l->sockops->maps.sl_hoppair_v1), sizeof(struct sl_hop_key));
		map_clear(bpf_map__fd(l->sockops->maps.sl_hopstat_v1), sizeof(struct sl_hop_key));
	}
	handover_offerf(l->lock_fd, "lock %s", l->root);
	pr_info("loader: %s %zu programs at %s, maps %s under %s", l->reused ? "re-attached" : "attached",
		l->n_progs, l->cgroup, l->reused ? "reused" : "pinned", l->root);
	*out = l;
	return 0;
out:
	if (l->lock_fd >= 0 && !l->reused) {
		/* a first start that failed leaves no empty directories behind
		 * (rmdir removes nothing that holds a pin) */
		snprintf(path, sizeof(path), "%s/%s", l->root, SL_LINKS_DIR);
		rmdir(path);
		rmdir(l->root);
	}
	loader_free(l);
	return err;
}

void loader_free(struct loader *l)
{
	if (!l)
		return;
	for (size_t i = 0; l->links && i < l->n_progs; i++)
		bpf_link__destroy(l->links[i]);	/* the pin keeps the attachment */
	free(l->links);
	free(l->progs);
	pod_ingress__destroy(l->pod_ingress);
	pod_egress__destroy(l->pod_egress);
	edge__destroy(l->edge);
	sockops__destroy(l->sockops);
	sock_lb__destroy(l->sock_lb);
	if (l->cg_fd >= 0)
		close(l->cg_fd);
	if (l->lock_fd >= 0) {
		handover_withdraw(l->lock_fd);
		close(l->lock_fd);
	}
	free(l);
}

static struct bpf_map *find_map(const struct loader *l, const char *name)
{
	for (size_t i = 0; i < l->n_objs; i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(l->objs[i], name);

		if (m)
			return m;
	}
	return NULL;
}

int loader_map_fd(const struct loader *l, const char *name)
{
	struct bpf_map *m = find_map(l, name);

	return m ? bpf_map__fd(m) : -ENOENT;
}

uint32_t loader_map_max(const struct loader *l, const char *name)
{
	struct bpf_map *m = find_map(l, name);

	return m ? bpf_map__max_entries(m) : 0;
}

static uint32_t count_entries(int fd, uint32_t key_size, uint32_t max)
{
	char k[256], next[256];
	void *prev = NULL;
	uint32_t n = 0;

	if (key_size > sizeof(k))
		return 0;
	while (n <= max && !bpf_map_get_next_key(fd, prev, next)) {
		memcpy(k, next, key_size);
		prev = k;
		n++;
	}
	return n;
}

/* The key of k's peer: the same hop seen from the other end. */
static struct sl_hop_key hop_key_swap(const struct sl_hop_key *k)
{
	struct sl_hop_key p = *k;

	p.local = k->remote;
	p.remote = k->local;
	p.lport = k->rport;
	p.rport = k->lport;
	return p;
}

int loader_sockmap_list(const struct loader *l, struct loader_sock **out, size_t *n)
{
	int fd = bpf_map__fd(l->sockops->maps.sl_socks_v1);
	struct sl_hop_key k, next;
	struct loader_sock *v = NULL;
	size_t cap = 0;
	void *prev = NULL;

	*n = 0;
	while (*n < SL_SOCKS_MAX && !bpf_map_get_next_key(fd, prev, &next)) {
		struct sl_hop_key peer = hop_key_swap(&next);
		uint64_t cookie;

		k = next;
		prev = &k;
		if (bpf_map_lookup_elem(fd, &k, &cookie))
			continue;	/* closed meanwhile */
		if (*n == cap) {
			struct loader_sock *nv = realloc(v, (cap ? cap * 2 : 64) * sizeof(*v));

			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = cap ? cap * 2 : 64;
		}
		v[*n] = (struct loader_sock){ .key = k, .cookie = cookie };
		v[(*n)++].peer = !bpf_map_lookup_elem(fd, &peer, &cookie);
	}
	*out = v;
	return 0;
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

static void hop_addr(const struct sockaddr_storage *ss, struct sl_addr *a, __be16 *port, uint8_t *family)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		memcpy(&s4, ss, sizeof(s4));
		a->v4 = s4.sin_addr.s_addr;
		*port = s4.sin_port;
		*family = SL_AF_INET;
		return;
	}
	memcpy(&s6, ss, sizeof(s6));
	memcpy(a->octets, &s6.sin6_addr, 16);
	*port = s6.sin6_port;
	*family = SL_AF_INET6;
}

/* The key of the app socket at the other end of the agent's socket fd (as
 * sockops computes it for that socket: IPv4-mapped ends as IPv4). */
static int app_key_of(int fd, struct sl_hop_key *k)
{
	struct sockaddr_storage me = { 0 }, peer = { 0 };
	socklen_t ml = sizeof(me), pl = sizeof(peer), cl = sizeof(k->netns_cookie);
	uint8_t fam;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(k, 0, sizeof(*k));
	if (getsockname(fd, (struct sockaddr *)&me, &ml) || getpeername(fd, (struct sockaddr *)&peer, &pl) ||
	    getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &k->netns_cookie, &cl))
		return -errno;
	hop_addr(&peer, &k->local, &k->lport, &fam);
	hop_addr(&me, &k->remote, &k->rport, &k->family);
	if (k->family == SL_AF_INET6 && !memcmp(k->local.octets, mapped, 12) &&
	    !memcmp(k->remote.octets, mapped, 12)) {
		k->family = SL_AF_INET;
		k->local.v4 = k->local.v6[3];
		k->remote.v4 = k->remote.v6[3];
		k->local.v6[3] = k->remote.v6[3] = 0;
		k->local.v6[2] = k->remote.v6[2] = 0;
	}
	return 0;
}

/* Is the agent's socket fd accelerated and never fell back to TCP? Only then
 * are the bytes it delivered already in its peer's socket when send returns. */
static bool agent_end_clean(const struct loader *l, int fd)
{
	struct sl_sk_accel st;

	return !bpf_map_lookup_elem(bpf_map__fd(l->sockops->maps.sl_sk_accel_v1), &fd, &st) &&
	       !(st.flags & SL_ACCEL_F_STACK);
}

int loader_shortcut_open(const struct loader *l, int client_fd, int server_fd, const uint64_t relayed[2],
			 struct loader_shortcut *sc)
{
	int socks = bpf_map__fd(l->sockops->maps.sl_socks_v1);
	int pairs = bpf_map__fd(l->sockops->maps.sl_hoppair_v1);
	int stats = bpf_map__fd(l->sockops->maps.sl_hopstat_v1);
	struct sl_hop_stat zero = { 0 };
	uint64_t cookie;
	int err;

	memset(sc, 0, sizeof(*sc));
	if (l->no_sockmap)
		return -EOPNOTSUPP;
	err = app_key_of(client_fd, &sc->app[0]);
	if (!err)
		err = app_key_of(server_fd, &sc->app[1]);
	if (err)
		return err;
	if (bpf_map_lookup_elem(socks, &sc->app[0], &cookie) || bpf_map_lookup_elem(socks, &sc->app[1], &cookie))
		return -ENOENT;
	/* Direction d lands in the app behind the agent's socket of d's destination. */
	if (!agent_end_clean(l, server_fd) || !agent_end_clean(l, client_fd))
		return -EPIPE;
	for (int d = 0; d < 2; d++) {
		struct sl_hop_pair pr = { .peer = sc->app[!d], .relayed = relayed[d] };

		if (bpf_map_update_elem(stats, &sc->app[d], &zero, BPF_ANY) ||
		    bpf_map_update_elem(pairs, &sc->app[d], &pr, BPF_ANY)) {
			err = -errno;
			loader_shortcut_close(l, sc, (uint64_t[2]){ 0 });
			return err;
		}
		sc->paired[d] = true;
	}
	return 0;
}

int loader_shortcut_relayed(const struct loader *l, struct loader_shortcut *sc, int client_fd, int server_fd,
			    int d, uint64_t relayed)
{
	int pairs = bpf_map__fd(l->sockops->maps.sl_hoppair_v1);
	struct sl_hop_pair pr = { .peer = sc->app[!d], .relayed = relayed };

	if (!sc->paired[d])
		return -EPIPE;
	if (!agent_end_clean(l, d == 0 ? server_fd : client_fd) ||
	    bpf_map_update_elem(pairs, &sc->app[d], &pr, BPF_EXIST)) {
		bpf_map_delete_elem(pairs, &sc->app[d]);
		sc->paired[d] = false;
		return -EPIPE;
	}
	return 0;
}

void loader_shortcut_bytes(const struct loader *l, const struct loader_shortcut *sc, uint64_t direct[2])
{
	int stats = bpf_map__fd(l->sockops->maps.sl_hopstat_v1);

	for (int d = 0; d < 2; d++) {
		struct sl_hop_stat hs;

		direct[d] = bpf_map_lookup_elem(stats, &sc->app[d], &hs) ? 0 : hs.direct_bytes;
	}
}

void loader_shortcut_close(const struct loader *l, struct loader_shortcut *sc, uint64_t direct[2])
{
	loader_shortcut_bytes(l, sc, direct);
	for (int d = 0; d < 2; d++) {
		bpf_map_delete_elem(bpf_map__fd(l->sockops->maps.sl_hoppair_v1), &sc->app[d]);
		bpf_map_delete_elem(bpf_map__fd(l->sockops->maps.sl_hopstat_v1), &sc->app[d]);
		sc->paired[d] = false;
	}
}

int loader_sockmap_stats(const struct loader *l, struct loader_sockmap_stats *st)
{
	struct loader_sock *v = NULL;
	size_t n = 0, both = 0;
	int err = loader_sockmap_list(l, &v, &n);

	memset(st, 0, sizeof(*st));
	st->enabled = !l->no_sockmap;
	for (size_t i = 0; i < n; i++)
		both += v[i].peer;
	st->sockets = (uint32_t)n;
	st->hops = (uint32_t)(both / 2);
	st->shortcuts = count_entries(bpf_map__fd(l->sockops->maps.sl_hoppair_v1), sizeof(struct sl_hop_key),
				      SL_SOCKS_MAX);
	free(v);
	return err;
}

int loader_maps_info(const struct loader *l, struct loader_map_info **out, size_t *n)
{
	struct bpf_map *m;
	size_t cnt = 0, i = 0;

	for (size_t o = 0; o < l->n_objs; o++)
		bpf_object__for_each_map(m, l->objs[o])
			cnt += !!bpf_map__pin_path(m);
	*out = calloc(cnt ? cnt : 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t o = 0; o < l->n_objs; o++)
	bpf_object__for_each_map(m, l->objs[o]) {
		struct loader_map_info *mi = &(*out)[i];
		enum bpf_map_type type = bpf_map__type(m);
		bool seen = false;

		if (!bpf_map__pin_path(m))
			continue;
		for (size_t j = 0; j < i; j++)	/* one pinned map, several objects */
			seen = seen || !strcmp((*out)[j].name, bpf_map__name(m));
		if (seen)
			continue;
		mi->name = bpf_map__name(m);
		mi->type = libbpf_bpf_map_type_str(type);
		mi->max_entries = bpf_map__max_entries(m);
		mi->key_size = bpf_map__key_size(m);
		mi->value_size = bpf_map__value_size(m);
		mi->entries = type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY
				      ? mi->max_entries
				      : count_entries(bpf_map__fd(m), mi->key_size, mi->max_entries);
		snprintf(mi->pin, sizeof(mi->pin), "%s", bpf_map__pin_path(m));
		i++;
	}
	*n = i;
	return 0;
}

int loader_counters(const struct loader *l, uint64_t out[SL_CNT_MAX])
{
	int ncpu = libbpf_num_possible_cpus(), fd = loader_map_fd(l, SL_MAP_METRICS);
	struct sl_metric *vals;

	memset(out, 0, sizeof(uint64_t) * SL_CNT_MAX);
	if (ncpu <= 0 || fd < 0)
		return ncpu <= 0 ? ncpu : fd;
	vals = calloc((size_t)ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	for (__u32 k = 0; k < SL_CNT_MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, vals))
			continue;
		for (int c = 0; c < ncpu; c++)
			out[k] += vals[c].count;
	}
	free(vals);
	return 0;
}

/* The clsact filter's place: one per interface and direction, ours alone. */
#define TC_FILTER_HANDLE	1
#define TC_FILTER_PRIO		1

static const char *const tc_dir_names[2] = { "pod_ingress", "pod_egress" };

static int tc_prog_fd(const struct loader *l, bool egress)
{
	return egress ? bpf_program__fd(l->pod_egress->progs.pod_egress_tc) :
			bpf_program__fd(l->pod_ingress->progs.pod_ingress_tc);
}

static int pod_tc_clsact(const struct loader *l, int ifindex, bool egress)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_FILTER_HANDLE, .priority = TC_FILTER_PRIO,
		    .prog_fd = tc_prog_fd(l, egress), .flags = BPF_TC_F_REPLACE);
	int err = bpf_tc_hook_create(&hook);

	if (err && err != -EEXIST) {
		pr_err("loader: clsact qdisc on ifindex %d: %s", ifindex, strerror(-err));
		return err;
	}
	err = bpf_tc_attach(&hook, &opts);
	if (err) {
		pr_err("loader: attach %s to ifindex %d (clsact): %s", tc_dir_names[egress], ifindex,
		       strerror(-err));
		return err;
	}
	return LOADER_INGRESS_CLSACT;
}

static int pod_tc_attach(struct loader *l, int ifindex, bool egress, int link_fd)
{
	int fd;

	if (link_fd >= 0) {
		/* The old agent's link (a takeover): our program swapped in, the
		 * hook never empty. */
		fd = bpf_link_update(link_fd, tc_prog_fd(l, egress), NULL);
		if (!fd)
			return link_fd;
		pr_warn("loader: updating the inherited %s link on ifindex %d: %s: attaching anew",
			tc_dir_names[egress], ifindex, strerror(-fd));
		close(link_fd);
	}
	if (l->ingress_clsact)
		return pod_tc_clsact(l, ifindex, egress);
	fd = bpf_link_create(tc_prog_fd(l, egress), ifindex, egress ? SL_BPF_TCX_EGRESS : SL_BPF_TCX_INGRESS,
			     NULL);
	if (fd == -EINVAL || fd == -EOPNOTSUPP) {
		/* No tcx (before Linux 6.6): the classic clsact hook, from now on. */
		pr_info("loader: no tcx (%s): pod programs go to clsact", strerror(-fd));
		l->ingress_clsact = true;
		return pod_tc_clsact(l, ifindex, egress);
	}
	if (fd < 0)
		pr_err("loader: attach %s to ifindex %d (tcx): %s", tc_dir_names[egress], ifindex, strerror(-fd));
	return fd;
}

int loader_pod_ingress_attach(struct loader *l, int ifindex, int link_fd)
{
	return pod_tc_attach(l, ifindex, false, link_fd);
}

int loader_pod_egress_attach(struct loader *l, int ifindex, int link_fd)
{
	return pod_tc_attach(l, ifindex, true, link_fd);
}

/* Our filter only: the clsact qdisc may carry other programs (a CNI's). */
static int pod_tc_detach(int ifindex, bool egress)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_FILTER_HANDLE, .priority = TC_FILTER_PRIO);

	return bpf_tc_detach(&hook, &opts);
}

int loader_pod_ingress_detach(int ifindex)
{
	return pod_tc_detach(ifindex, false);
}

int loader_pod_egress_detach(int ifindex)
{
	return pod_tc_detach(ifindex, true);
}

/* edge on an uplink: through the link pinned as links/edge_xdp_<ifname>, the
 * new program swapped in when it exists for that interface (restarts keep
 * the XDP program attached throughout). */
int loader_edge_attach(struct loader *l, const char *ifname)
{
	unsigned int ifindex = if_nametoindex(ifname);
	struct bpf_program *prog = l->edge->progs.edge_xdp;
	struct loader_prog_info *pi, *pv;
	struct bpf_link *link, **lv;
	char pin[256];
	int err;

	if (!ifindex) {
		err = -errno;
		pr_err("loader: uplink %s: %s", ifname, strerror(-err));
		return err;
	}
	snprintf(pin, sizeof(pin), "%.191s/%s/edge_xdp_%.16s", l->root, SL_LINKS_DIR, ifname);
	link = access(pin, F_OK) ? NULL : bpf_link__open(pin);
	if (link) {
		struct bpf_link_info info = { 0 };
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) || info.type != BPF_LINK_TYPE_XDP ||
		    info.xdp.ifindex != ifindex || bpf_link__update_program(link, prog)) {
			pr_info("loader: replacing pinned link %s", pin);
			bpf_link__unpin(link);
			bpf_link__detach(link);
			bpf_link__destroy(link);
			link = NULL;
		}
	}
	if (!link) {
		link = bpf_program__attach_xdp(prog, (int)ifindex);
		if (!link) {
			err = -errno;
			pr_err("loader: attach edge (XDP) to %s: %s%s", ifname, strerror(-err),
			       err == -EBUSY ? " (another XDP program is attached there)" : "");
			return err;
		}
		err = bpf_link__pin(link, pin);
		if (err) {
			pr_err("loader: pin link %s: %s", pin, strerror(-err));
			bpf_link__destroy(link);
			return err;
		}
	}
	pv = realloc(l->progs, (l->n_progs + 1) * sizeof(*pv));
	lv = pv ? realloc(l->links, (l->n_progs + 1) * sizeof(*lv)) : NULL;
	if (pv)
		l->progs = pv;
	if (!pv || !lv) {
		bpf_link__destroy(link);	/* the pin keeps it attached */
		return -ENOMEM;
	}
	l->links = lv;
	pi = &l->progs[l->n_progs];
	memset(pi, 0, sizeof(*pi));
	pi->name = bpf_program__name(prog);
	snprintf(l->edge_attach[l->n_edges % LOADER_UPLINKS_MAX], sizeof(l->edge_attach[0]), "xdp %s", ifname);
	pi->attach = l->edge_attach[l->n_edges % LOADER_UPLINKS_MAX];
	l->n_edges++;
	memcpy(pi->link_pin, pin, sizeof(pi->link_pin));
	l->links[l->n_progs++] = link;
	return 0;
}

int loader_netns_set(const struct loader *l, uint64_t cookie, const struct sl_netns_val *v)
{
	int fd = loader_map_fd(l, SL_MAP_NETNS);

	return fd < 0 ? fd : bpf_map_update_elem(fd, &cookie, v, BPF_ANY);
}

int loader_netns_del(const struct loader *l, uint64_t cookie)
{
	int fd = loader_map_fd(l, SL_MAP_NETNS), err;

	if (fd < 0)
		return fd;
	err = bpf_map_delete_elem(fd, &cookie);
	return err == -ENOENT ? 0 : err;
}

int loader_origdst_take(const struct loader *l, const struct sl_origdst_key *k, struct sl_orig *out)
{
	int fd = loader_map_fd(l, SL_MAP_ORIGDST);

	if (fd < 0)
		return fd;
	return bpf_map_lookup_and_delete_elem(fd, k, out);
}

size_t loader_programs(const struct loader *l, const struct loader_prog_info **out)
{
	*out = l->progs;
	return l->n_progs;
}

bool loader_reused_pins(const struct loader *l)
{
	return l->reused;
}

const char *loader_cgroup(const struct loader *l)
{
	return l->cgroup;
}

const char *loader_bpffs_root(const struct loader *l)
{
	return l->root;
}

int loader_uninstall(const struct loader_opts *o)
{
	const char *root = o->bpffs_root ? o->bpffs_root : SL_BPFFS_ROOT;
	char path[PATH_MAX + 512];
	size_t n_links = 0, n_maps = 0;
	struct dirent *de;
	DIR *d;
	int lock, err = 0;

	if (access(root, F_OK)) {
		pr_info("uninstall: nothing pinned at %s", root);
		return 0;
	}
	lock = lock_root(root);
	if (lock < 0)
		return lock;
	snprintf(path, sizeof(path), "%s/%s", root, SL_LINKS_DIR);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/%s", root, SL_LINKS_DIR, de->d_name);
		fd = bpf_obj_get(path);
		/* Detach even if a running agent still holds the link open. */
		if (fd >= 0) {
			bpf_link_detach(fd);
			close(fd);
		}
		if (unlink(path)) {
			err = err ? err : -errno;
			pr_err("uninstall: unlink %s: %s", path, strerror(errno));
		}
		n_links++;
	}
	if (d)
		closedir(d);
	snprintf(path, sizeof(path), "%s/%s", root, SL_LINKS_DIR);
	rmdir(path);
	d = opendir(root);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
		if (unlink(path)) {
			err = err ? err : -errno;
			pr_err("uninstall: unlink %s: %s", path, strerror(errno));
		}
		n_maps++;
	}
	if (d)
		closedir(d);
	close(lock);
	if (rmdir(root) && errno != EBUSY) {	/* EBUSY: root is a bpffs mount point */
		err = err ? err : -errno;
		pr_err("uninstall: rmdir %s: %s", root, strerror(errno));
	}
	pr_info("uninstall: detached %zu links, removed %zu pinned maps under %s", n_links, n_maps, root);
	return err;
}
