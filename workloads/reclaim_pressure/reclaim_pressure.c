// SPDX-License-Identifier: Apache-2.0
/*
 * reclaim_pressure: a memory cgroup (cgroup v2) driven into reclaim and swap
 * while its memory is migrated between NUMA nodes and forked.
 *
 * The parent makes its own cgroup, kstress-reclaim_pressure-PID, under the
 * root of the cgroup v2 hierarchy (where systemd mounted it, or a cgroup2
 * mount of its own in a private mount namespace), enables the memory
 * controller for it and, since a cgroup with children may hold no processes,
 * gives every worker a leaf of its own (w0, w1, ...).  It stays outside them:
 *   - every 100-500 ms it takes a seeded decision: a new memory.max for the
 *     whole cgroup, a new memory.high for one leaf, or a memory.reclaim
 *     (proactive reclaim, sometimes with swappiness=) of a leaf or of all;
 *   - it reads memory.events and memory.stat for its progress lines and the
 *     summary, and removes the cgroups at the end, on SIGTERM, SIGINT and
 *     SIGHUP too (cgroup.kill, then rmdir).
 * Each worker, a forked process, moves itself into its leaf and then maps
 * its memory there, more than its share of the limits: small-page anonymous
 * memory (MADV_NOHUGEPAGE), THP-backed anonymous memory (MADV_HUGEPAGE, 2
 * MiB aligned) and shared memory (a memfd), and fills every page with a
 * seeded pattern.  Its main thread
 *   - verifies random runs of pages and rewrites others with a new
 *     generation (checking the old one first);
 *   - sweeps all of it in order: swap-ins under the cgroup's pressure;
 *   - now and then replaces a THP block by a fresh mapping and writes it: a
 *     new THP, charged at once, which reclaim swaps out whole or splits;
 *   - forks children that verify a sample of the anonymous pages they
 *     inherited (copy-on-write snapshots of the moment of the fork);
 * and a migrator thread move_pages() seeded batches of its pages to the
 * other node.  When the parent says stop, a worker that has not yet swept
 * all its memory once finishes that sweep, so every page is read back.
 *
 * Limits (W = the working set of all workers): with swap, memory.max goes
 * between 3/8 and 5/8 of W and each leaf's memory.high between 3/8 and 3/4
 * of its worker's memory (now and then "max"), so pages go to swap and come
 * back all the time, mostly by memory.high and, where the highs add up to
 * more than memory.max, at memory.max.  Without swap (or with less free
 * than W + 32 MiB) both stay above the working set, since nothing could be
 * reclaimed and anything less would be an OOM kill, and a note says so.
 * Where there is no cgroup v2 memory controller (a host whose memory
 * controller is bound to cgroup v1) the workers run without limits and a
 * note says why.
 *
 * Every page holds 512 words, (generation << 40 | offset) ^ a seeded key of
 * the worker, so data that comes back wrong names where it came from.
 * Choices follow from --seed; --plan N prints each stream's first N
 * decisions and --log N has a run print the first N it took.
 *
 * Exit status: 0 done; 1 data came back wrong (the first differing offset,
 * expected and found values and the page's state are on stderr) or a worker
 * or child died of a signal other than SIGKILL; 2 usage; 125 the workload
 * failed: a syscall of its own failed, or an OOM kill in its cgroup (it
 * sized its memory wrongly: memory.events is printed), not the kernel's
 * fault.  The summary on stdout is key=value text.
 */
#define PROG "reclaim_pressure"
#define USAGE "usage: " PROG " --duration SECONDS --seed N [--workers N] [--mb MIB] [--log N]\n" \
	"       " PROG " --plan N --seed N [--workers N] [--mb MIB]\n"
#include "kstress.h"

#include <sched.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#define CGROUP2_SUPER_MAGIC 0x63677270
#define CGROUP_MOUNT "/sys/fs/cgroup"
#define MAX_WORKERS 8
#define CHUNK_PAGES 16
#define MIG_CHUNKS 4
#define MIG_BATCH (MIG_CHUNKS * CHUNK_PAGES)
#define MIB (1UL << 20)
#define SWAP_SLACK_MB 32     /* free swap beyond W that pressure needs */
#define KILL_WAIT 10.0       /* seconds for a killed cgroup to empty */
#define OFF_BITS 40

/* -- configuration ------------------------------------------------------ */

static long duration = -1, seed = -1, nworkers = 2, mb = 64, plan_n = -1;
static int self_test_corrupt, self_test_oom;

/* Offsets of the seeded streams: the controller, the self-test, then three
 * per worker (its operations, its migrator, its pattern key). */
enum { RNG_CONTROL = 1, RNG_SELFTEST = 2, RNG_WORKER = 8 };
enum { WS_OPS, WS_MIGRATOR, WS_KEY, WS_COUNT };

static uint64_t stream(uint64_t k)
{
	return seed_stream(seed, 0x7ec1a1e5ULL * (k + 1));
}

static uint64_t worker_stream(int w, int which)
{
	return stream(RNG_WORKER + (uint64_t)w * WS_COUNT + which);
}

/* One worker's memory, in pages: small-page anon, THP anon, then shmem.
 * Each part is whole 2 MiB blocks; pages are numbered across all three. */
static size_t small_pages, thp_pages, shmem_pages, anon_pages, npages, nchunks;

static void size_layout(void)
{
	size_t blocks = mb / 2, shmem_b = blocks / 4, thp_b = (blocks - shmem_b) / 2;

	mb = blocks * 2;   /* whole 2 MiB blocks */
	small_pages = (blocks - shmem_b - thp_b) * (THP / PAGE);
	thp_pages = thp_b * (THP / PAGE);
	shmem_pages = shmem_b * (THP / PAGE);
	anon_pages = small_pages + thp_pages;
	npages = anon_pages + shmem_pages;
	nchunks = npages / CHUNK_PAGES;
}

static const char *region_name(size_t pg)
{
	return pg < small_pages ? "small-page anon" : pg < anon_pages ? "THP anon" : "shmem (memfd)";
}

static size_t region_first(size_t pg)
{
	return pg < small_pages ? 0 : pg < anon_pages ? small_pages : anon_pages;
}

/* -- seeded decisions --------------------------------------------------- */

enum { C_MAX, C_HIGH, C_RECLAIM_LEAF, C_RECLAIM_ALL };
static const char *const control_name[] = { "max", "high", "reclaim-leaf", "reclaim-all" };

struct control_op {
	int kind, leaf;
	unsigned permille;     /* where in its range the new value lies */
	int swappiness;        /* memory.reclaim's swappiness=, or -1 for none */
	unsigned delay_ms;     /* until the next decision */
};

static struct control_op control_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	unsigned k = r % 100;
	struct control_op op;

	op.kind = k < 30 ? C_MAX : k < 60 ? C_HIGH : k < 85 ? C_RECLAIM_LEAF : C_RECLAIM_ALL;
	op.leaf = (r >> 8) % nworkers;
	op.permille = (r >> 16) % 1001;
	op.swappiness = (r >> 32) % 2 ? -1 : (int)((r >> 33) % 201);
	op.delay_ms = 100 + (r >> 48) % 401;
	return op;
}

enum { W_VERIFY, W_WRITE, W_SWEEP, W_THP_REFRESH, W_FORK };
static const char *const work_name[] = { "verify", "write", "sweep", "thp-refresh", "fork" };

struct work_op {
	int kind;
	size_t chunk;
	unsigned nch;
	uint64_t child_seed;
};

static struct work_op work_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	unsigned k = r % 100;
	struct work_op op;

	op.kind = k < 33 ? W_VERIFY : k < 61 ? W_WRITE : k < 93 ? W_SWEEP : k < 97 ? W_THP_REFRESH
		: W_FORK;
	if (op.kind == W_THP_REFRESH) {
		/* One whole 2 MiB block of the THP part. */
		op.nch = THP / PAGE / CHUNK_PAGES;
		op.chunk = (small_pages + (r >> 8) % (thp_pages * PAGE / THP) * (THP / PAGE)) /
			   CHUNK_PAGES;
	} else {
		op.chunk = (r >> 8) % nchunks;
		op.nch = 1 + (r >> 40) % 8;
		if (op.chunk + op.nch > nchunks)
			op.nch = nchunks - op.chunk;
	}
	op.child_seed = op.kind == W_FORK ? rnd(rng) : 0;
	return op;
}

struct mig_op {
	size_t chunk;
	unsigned nch, stride, first;
};

static struct mig_op mig_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	struct mig_op op;

	op.chunk = (r >> 8) % nchunks;
	op.nch = 1 + (r >> 32) % MIG_CHUNKS;
	if (op.chunk + op.nch > nchunks)
		op.nch = nchunks - op.chunk;
	op.stride = 1u << ((r >> 40) % 3);   /* every page, 2nd or 4th */
	op.first = (r >> 48) % op.stride;
	return op;
}

static size_t selftest_offset(void)
{
	uint64_t r = stream(RNG_SELFTEST);

	return rnd(&r) % (npages * PAGE);
}

static void format_control(char *buf, size_t len, long n, const struct control_op *op)
{
	snprintf(buf, len, "decision control n=%ld kind=%s leaf=%d permille=%u swappiness=%d "
		 "delay_ms=%u", n, control_name[op->kind], op->leaf, op->permille, op->swappiness,
		 op->delay_ms);
}

static void format_work(char *buf, size_t len, int w, long n, const struct work_op *op)
{
	snprintf(buf, len, "decision worker%d n=%ld kind=%s chunk=%zu nch=%u child_seed=0x%llx",
		 w, n, work_name[op->kind], op->chunk, op->nch, (unsigned long long)op->child_seed);
}

static void format_mig(char *buf, size_t len, int w, long n, const struct mig_op *op)
{
	snprintf(buf, len, "decision migrator%d n=%ld chunk=%zu nch=%u stride=%u first=%u", w, n,
		 op->chunk, op->nch, op->stride, op->first);
}

/* A slot for the next decision in a thread's log (kstress.h's struct dlog,
 * --log N kept in log_decisions), or NULL when it is full. */
static char *log_slot(struct dlog *l)
{
	if (l->n >= log_decisions)
		return NULL;
	return l->buf + LOG_LINE * l->n++;
}

static void log_init(struct dlog *l)
{
	l->n = 0;
	dlog_alloc(l);
}

static void log_print(const struct dlog *l)
{
	print_log(l);
	fflush(stdout);
}

/* -- what the workers report, in memory shared with the parent ---------- */

struct worker_stats {
	unsigned long long verify_ops, write_ops, sweep_ops, sweeps, thp_refreshes, pages_verified,
		pages_written, final_pages_verified, forks, children_reaped, child_pages_verified,
		mig_batches;
	long major_faults, minor_faults;
	int thp_off;          /* MADV_HUGEPAGE was EINVAL */
	struct move_stats mv;
};

static struct shared {
	atomic_int stop;      /* the parent's word to its workers */
	struct worker_stats w[MAX_WORKERS];
} *shared;

/* -- small file helpers ------------------------------------------------- */

/* Writes text to dir/file: 0, or the errno. */
static int write_file(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	int fd, err = 0;
	size_t len = strlen(text);
	ssize_t w;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if ((w = write(fd, text, len)) != (ssize_t)len)
		err = w < 0 ? errno : EIO;
	close(fd);
	return err;
}

/* Reads dir/file (dir may be NULL) into buf: its length, or -errno. */
static ssize_t read_file(const char *dir, const char *file, char *buf, size_t size)
{
	char path[PATH_MAX];
	ssize_t n, got = 0;
	int fd;

	snprintf(path, sizeof(path), "%s%s%s", dir ? dir : "", dir ? "/" : "", file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (got < (ssize_t)size - 1 && (n = read(fd, buf + got, size - 1 - got)) > 0)
		got += n;
	buf[got] = 0;
	close(fd);
	return got;
}

/* The number after "key " at the start of a line of text, or -1. */
static long long key_value(const char *text, const char *key)
{
	size_t kl = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return strtoll(p + kl + 1, NULL, 10);
	return -1;
}

/* Whether a space-separated list holds word. */
static int has_word(const char *list, const char *word)
{
	size_t wl = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += wl)
		if ((p == list || p[-1] == ' ') && (p[wl] == 0 || p[wl] == ' ' || p[wl] == '\n'))
			return 1;
	return 0;
}

/* -- the cgroups -------------------------------------------------------- */

static struct {
	int on;
	const char *mount_kind;   /* existing, private, none */
	char root[64], top[128], leaf[MAX_WORKERS][160];
	char tmp_mount[64];       /* a mkdtemp directory we mounted on, or "" */
	int top_made, leaves_made, reclaim_swappiness_ok, reclaim_ok;
	char off_reason[512];
	/* The ranges of the limits, MiB, and whether they squeeze. */
	long max_lo, max_hi, high_lo, high_hi;
	int pressure;
	char no_pressure_reason[256];
	/* What the controller did. */
	long cur_max, cur_high[MAX_WORKERS];   /* MiB; -1: "max" */
	unsigned long long max_writes, high_writes, reclaim_writes, reclaim_mb, reclaim_short,
		reclaim_interrupted;
} cg;

static void cgroup_off(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void cgroup_off(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cg.off_reason, sizeof(cg.off_reason), fmt, ap);
	va_end(ap);
	cg.on = 0;
}

/* The cgroup v2 hierarchy: at /sys/fs/cgroup if systemd (or anyone) mounted
 * it there; else a cgroup2 mount of our own in a private mount namespace,
 * so nothing outlives the process but perhaps an empty directory. */
static int find_hierarchy(void)
{
	struct statfs sf;
	struct stat st;
	const char *target = CGROUP_MOUNT;

	if (statfs(CGROUP_MOUNT, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC) {
		snprintf(cg.root, sizeof(cg.root), "%s", CGROUP_MOUNT);
		cg.mount_kind = "existing";
		return 1;
	}
	if (geteuid() != 0) {
		cgroup_off("%s is not a cgroup2 mount and mounting one needs root", CGROUP_MOUNT);
		return 0;
	}
	if (unshare(CLONE_NEWNS)) {
		cgroup_off("%s is not a cgroup2 mount and unshare(CLONE_NEWNS) for a private "
			   "mount failed: %s", CGROUP_MOUNT, strerror(errno));
		return 0;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		fail_sys("mount(/, MS_REC|MS_PRIVATE)", errno);
	if (stat(CGROUP_MOUNT, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(cg.tmp_mount, sizeof(cg.tmp_mount), "/tmp/%s-cgroup.XXXXXX", prog);
		if (!mkdtemp(cg.tmp_mount))
			fail_sys("mkdtemp", errno);
		target = cg.tmp_mount;
	}
	if (mount("cgroup2", target, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
		int e = errno;

		if (cg.tmp_mount[0])
			rmdir(cg.tmp_mount);
		cg.tmp_mount[0] = 0;
		cgroup_off("%s is not a cgroup2 mount and mounting cgroup2 on %s failed: %s%s",
			   CGROUP_MOUNT, target, strerror(e),
			   e == ENODEV ? " (no cgroup2 in this kernel: CONFIG_CGROUPS off)" : "");
		return 0;
	}
	snprintf(cg.root, sizeof(cg.root), "%s", target);
	cg.mount_kind = "private";
	return 1;
}

/* The limits' ranges in MiB.  With swap for the working set they squeeze
 * it; without, they stay above it. */
static void size_limits(int swap_devices, long swap_free_mb)
{
	long wset = nworkers * (long)(npages * PAGE / MIB);
	long need = wset + SWAP_SLACK_MB;

	cg.pressure = swap_devices > 0 && swap_free_mb >= need;
	if (swap_devices <= 0)
		snprintf(cg.no_pressure_reason, sizeof(cg.no_pressure_reason), "%s",
			 swap_devices < 0 ? "no /proc/swaps (a kernel without CONFIG_SWAP)"
			 : "no swap device is active (/proc/swaps lists none)");
	else if (!cg.pressure)
		snprintf(cg.no_pressure_reason, sizeof(cg.no_pressure_reason), "only %ld MiB of "
			 "swap is free, less than the working set %ld MiB + %d MiB", swap_free_mb,
			 wset, SWAP_SLACK_MB);
	if (cg.pressure) {
		cg.max_lo = wset * 3 / 8;
		cg.max_hi = wset * 5 / 8;
		cg.high_lo = mb * 3 / 8;
		cg.high_hi = mb * 3 / 4;
		/* Page tables, stacks and the children's own pages need a little. */
		if (cg.max_lo < 16 + 4 * nworkers)
			cg.max_lo = 16 + 4 * nworkers;
		if (cg.max_hi < cg.max_lo)
			cg.max_hi = cg.max_lo;
	} else {
		cg.max_lo = wset + 32 + 8 * nworkers;
		cg.max_hi = cg.max_lo + 32;
		cg.high_lo = mb + 16;
		cg.high_hi = mb + 32;
	}
}

static long in_range(long lo, long hi, unsigned permille)
{
	return lo + (hi - lo) * (long)permille / 1000;
}

/* memory.max of the whole, or memory.high of a leaf; mib < 0 is "max". */
static int set_limit(const char *dir, const char *file, long mib)
{
	char text[32];

	if (mib < 0)
		snprintf(text, sizeof(text), "max");
	else
		snprintf(text, sizeof(text), "%llu", (unsigned long long)mib * MIB);
	return write_file(dir, file, text);
}

static void remove_cgroups(void);

/* A failure of the parent once the cgroups exist: remove them first. */
static _Noreturn void __attribute__((format(printf, 2, 3))) bail(int code, const char *fmt, ...)
{
	va_list ap;

	claim_failure();
	remove_cgroups();
	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	_exit(code);
}

static void setup_cgroups(void)
{
	char buf[512];
	ssize_t n;
	int e;

	cg.on = 1;
	cg.mount_kind = "none";
	cg.reclaim_ok = cg.reclaim_swappiness_ok = 1;
	if (!find_hierarchy())
		return;
	n = read_file(cg.root, "cgroup.controllers", buf, sizeof(buf));
	if (n < 0)
		fail_sys("read(cgroup.controllers)", (int)-n);
	buf[strcspn(buf, "\n")] = 0;
	if (!has_word(buf, "memory")) {
		cgroup_off("the memory controller is not available on cgroup v2 (the root's "
			   "cgroup.controllers: '%s'): it is bound to a cgroup v1 hierarchy, or the "
			   "kernel lacks CONFIG_MEMCG", buf);
		return;
	}
	n = read_file(cg.root, "cgroup.subtree_control", buf, sizeof(buf));
	if (n < 0)
		fail_sys("read(cgroup.subtree_control)", (int)-n);
	/* The root may have processes and still enable controllers. */
	if (!has_word(buf, "memory") && (e = write_file(cg.root, "cgroup.subtree_control", "+memory"))) {
		cgroup_off("enabling the memory controller in %s/cgroup.subtree_control failed: %s",
			   cg.root, strerror(e));
		return;
	}
	snprintf(cg.top, sizeof(cg.top), "%s/kstress-%s-%d", cg.root, prog, (int)getpid());
	if (mkdir(cg.top, 0755)) {
		cgroup_off("mkdir %s failed: %s", cg.top, strerror(errno));
		return;
	}
	cg.top_made = 1;
	/* From here on a failure is ours: the cgroup works, we misuse it. */
	if ((e = write_file(cg.top, "cgroup.subtree_control", "+memory")))
		bail(EXIT_WORKLOAD, "workload failed: enabling memory in %s/cgroup.subtree_control: "
		     "%s", cg.top, strerror(e));
	for (int i = 0; i < nworkers; i++) {
		snprintf(cg.leaf[i], sizeof(cg.leaf[i]), "%s/w%d", cg.top, i);
		if (mkdir(cg.leaf[i], 0755))
			bail(EXIT_WORKLOAD, "workload failed: mkdir %s: %s", cg.leaf[i], strerror(errno));
		cg.leaves_made = i + 1;
	}
	cg.cur_max = cg.max_hi;
	if ((e = set_limit(cg.top, "memory.max", cg.cur_max)))
		bail(EXIT_WORKLOAD, "workload failed: writing %s/memory.max: %s", cg.top, strerror(e));
	for (int i = 0; i < nworkers; i++) {
		cg.cur_high[i] = cg.high_hi;
		if ((e = set_limit(cg.leaf[i], "memory.high", cg.cur_high[i])))
			bail(EXIT_WORKLOAD, "workload failed: writing %s/memory.high: %s", cg.leaf[i],
			     strerror(e));
	}
}

/* Kills what is left in a cgroup and waits until it is empty. */
static void empty_cgroup(const char *dir)
{
	char buf[256];
	double until = now() + KILL_WAIT;

	write_file(dir, "cgroup.kill", "1");   /* ENOENT before Linux 5.14: pids below */
	while (now() < until) {
		if (read_file(dir, "cgroup.events", buf, sizeof(buf)) < 0 ||
		    key_value(buf, "populated") == 0)
			return;
		if (read_file(dir, "cgroup.procs", buf, sizeof(buf)) > 0)
			for (char *p = buf, *end; (end = strchr(p, '\n')); p = end + 1)
				kill((pid_t)atoi(p), SIGKILL);
		usleep(20000);
	}
}

static char cleanup_note[1024];

/* rmdir of a cgroup; a failure is noted for the summary, not fatal. */
static void remove_dir(const char *dir)
{
	size_t len = strlen(cleanup_note);

	if (rmdir(dir) && errno != ENOENT)
		snprintf(cleanup_note + len, sizeof(cleanup_note) - len, "%srmdir %.160s: %.60s",
			 len ? "; " : "", dir, strerror(errno));
}

/* Removes the leaves, the top cgroup and a mount of our own. */
static void remove_cgroups(void)
{
	for (int i = cg.leaves_made - 1; i >= 0; i--) {
		empty_cgroup(cg.leaf[i]);
		remove_dir(cg.leaf[i]);
	}
	cg.leaves_made = 0;
	if (cg.top_made)
		remove_dir(cg.top);
	cg.top_made = 0;
	if (cg.tmp_mount[0]) {
		umount2(cg.tmp_mount, MNT_DETACH);
		rmdir(cg.tmp_mount);
		cg.tmp_mount[0] = 0;
	}
}

/* memory.events and memory.stat of the whole (hierarchical counts). */
struct cg_counts {
	long long ev_low, ev_high, ev_max, ev_oom, ev_oom_kill;
	long long current, swap_current, peak, swap_peak;
	char stat[8192];
};

static void read_counts(struct cg_counts *c)
{
	char buf[512];

	c->ev_low = c->ev_high = c->ev_max = c->ev_oom = c->ev_oom_kill = -1;   /* unknown */
	c->current = c->swap_current = c->peak = c->swap_peak = -1;
	c->stat[0] = 0;
	if (!cg.on)
		return;
	if (read_file(cg.top, "memory.events", buf, sizeof(buf)) > 0) {
		c->ev_low = key_value(buf, "low");
		c->ev_high = key_value(buf, "high");
		c->ev_max = key_value(buf, "max");
		c->ev_oom = key_value(buf, "oom");
		c->ev_oom_kill = key_value(buf, "oom_kill");
	}
	if (read_file(cg.top, "memory.current", buf, sizeof(buf)) > 0)
		c->current = strtoll(buf, NULL, 10);
	if (read_file(cg.top, "memory.swap.current", buf, sizeof(buf)) > 0)
		c->swap_current = strtoll(buf, NULL, 10);
	if (read_file(cg.top, "memory.peak", buf, sizeof(buf)) > 0)
		c->peak = strtoll(buf, NULL, 10);
	if (read_file(cg.top, "memory.swap.peak", buf, sizeof(buf)) > 0)
		c->swap_peak = strtoll(buf, NULL, 10);
	read_file(cg.top, "memory.stat", c->stat, sizeof(c->stat));
}

static const char *events_text(const struct cg_counts *c, char *buf, size_t len)
{
	snprintf(buf, len, "memory.events of %s: low %lld, high %lld, max %lld, oom %lld, "
		 "oom_kill %lld", cg.top, c->ev_low, c->ev_high, c->ev_max, c->ev_oom, c->ev_oom_kill);
	return buf;
}

/* One controller decision, applied. */
static void apply_control(const struct control_op *op)
{
	char text[64];
	const char *dir;
	long mib;
	int e;

	if (!cg.on)
		return;
	switch (op->kind) {
	case C_MAX:
		mib = in_range(cg.max_lo, cg.max_hi, op->permille);
		if ((e = set_limit(cg.top, "memory.max", mib)) && e != EINTR)
			bail(EXIT_WORKLOAD, "workload failed: writing %ld MiB to %s/memory.max: %s",
			     mib, cg.top, strerror(e));
		cg.cur_max = mib;
		cg.max_writes++;
		return;
	case C_HIGH:
		/* Now and then a leaf goes unthrottled up to memory.max. */
		mib = op->permille > 950 ? -1 : in_range(cg.high_lo, cg.high_hi, op->permille);
		if ((e = set_limit(cg.leaf[op->leaf], "memory.high", mib)) && e != EINTR)
			bail(EXIT_WORKLOAD, "workload failed: writing memory.high of %s: %s",
			     cg.leaf[op->leaf], strerror(e));
		cg.cur_high[op->leaf] = mib;
		cg.high_writes++;
		return;
	}
	if (!cg.reclaim_ok)
		return;
	dir = op->kind == C_RECLAIM_LEAF ? cg.leaf[op->leaf] : cg.top;
	mib = 1 + (mb / 4 - 1) * (long)op->permille / 1000;
	if (op->kind == C_RECLAIM_ALL)
		mib *= nworkers;
	if (op->swappiness >= 0 && cg.reclaim_swappiness_ok)
		snprintf(text, sizeof(text), "%lluM swappiness=%d", (unsigned long long)mib,
			 op->swappiness);
	else
		snprintf(text, sizeof(text), "%lluM", (unsigned long long)mib);
	e = write_file(dir, "memory.reclaim", text);
	if (e == EINVAL && op->swappiness >= 0 && cg.reclaim_swappiness_ok) {
		cg.reclaim_swappiness_ok = 0;   /* before Linux 6.11? */
		snprintf(text, sizeof(text), "%lluM", (unsigned long long)mib);
		e = write_file(dir, "memory.reclaim", text);
	}
	if (e == ENOENT) {
		cg.reclaim_ok = 0;   /* memory.reclaim came in Linux 5.19 */
		return;
	}
	cg.reclaim_writes++;
	cg.reclaim_mb += mib;
	if (e == EAGAIN)
		cg.reclaim_short++;     /* it could not reclaim all it was asked */
	else if (e == EINTR)
		cg.reclaim_interrupted++;
	else if (e)
		bail(EXIT_WORKLOAD, "workload failed: writing '%s' to %s/memory.reclaim: %s", text,
		     dir, strerror(e));
}

/* -- a worker's memory and its pattern ---------------------------------- */

static int worker_id = -1;
static char *small_mem, *thp_mem, *shmem_mem;
static uint32_t *gen;         /* per page: the generation it holds */
static uint64_t key;          /* the worker's seeded pattern key */
static struct worker_stats *ws;
static int pagemap_fd = -1, kpageflags_fd = -1;

static inline char *page_addr(size_t pg)
{
	if (pg < small_pages)
		return small_mem + pg * PAGE;
	if (pg < anon_pages)
		return thp_mem + (pg - small_pages) * PAGE;
	return shmem_mem + (pg - anon_pages) * PAGE;
}

static inline uint64_t pattern(size_t off, uint32_t g)
{
	return ((uint64_t)(g & 0xffffff) << OFF_BITS | (off & ((1ULL << OFF_BITS) - 1))) ^ key;
}

static void fill_page(size_t pg, uint32_t g)
{
	uint64_t *w = (uint64_t *)page_addr(pg);

	for (unsigned i = 0; i < WORDS; i++)
		w[i] = pattern(pg * PAGE + i * 8, g);
}

/* A page's state for a mismatch report: pagemap, kpageflags, its node. */
static void describe_page(size_t pg, int pm_fd, char *buf, size_t len)
{
	void *addr = page_addr(pg);
	uint64_t e, f;
	int node = STATUS_UNSET;
	int n = 0;

	if (sys_move_pages(1, &addr, NULL, &node, 0) < 0)
		node = -errno;
	n += snprintf(buf + n, len - n, "node %d%s; ", node, node < 0 ? " (a -errno)" : "");
	if (pm_fd < 0 || pread(pm_fd, &e, 8, (off_t)((uintptr_t)addr / PAGE * 8)) != 8) {
		snprintf(buf + n, len - n, "pagemap unreadable");
		return;
	}
	n += snprintf(buf + n, len - n, "pagemap: present=%d swap=%d file_or_shared=%d "
		      "exclusive=%d", !!(e & PM_PRESENT), !!(e & PM_SWAP), !!(e & (1ULL << 61)),
		      !!(e & PM_EXCLUSIVE));
	if ((e & PM_PRESENT) && (e & PM_PFN_MASK)) {
		uint64_t pfn = e & PM_PFN_MASK;

		n += snprintf(buf + n, len - n, " pfn=0x%llx", (unsigned long long)pfn);
		if (kpageflags_fd >= 0 && pread(kpageflags_fd, &f, 8, (off_t)(pfn * 8)) == 8)
			snprintf(buf + n, len - n, "; kpageflags 0x%llx (swapcache %d, locked %d, "
				 "thp %d, anon %d, lru %d)", (unsigned long long)f,
				 (int)KPF(f, KPF_SWAPCACHE), (int)KPF(f, KPF_LOCKED),
				 (int)KPF(f, KPF_THP), (int)KPF(f, KPF_ANON), (int)KPF(f, KPF_LRU));
	} else if (e & PM_SWAP) {
		snprintf(buf + n, len - n, " swap entry 0x%llx",
			 (unsigned long long)(e & PM_PFN_MASK));
	}
}

static _Noreturn void report_mismatch(const char *who, size_t pg, unsigned i, uint64_t want,
				      uint64_t got, int pm_fd, int code)
{
	size_t word_off = pg * PAGE + i * 8;
	unsigned byte = __builtin_ctzll(got ^ want) / 8;
	uint64_t again = ((volatile uint64_t *)page_addr(pg))[i];
	uint64_t dw = want ^ key, dg = got ^ key;
	char state[512];

	claim_failure();
	describe_page(pg, pm_fd, state, sizeof(state));
	finish(code, "%s: data mismatch in the %s memory: first differing offset 0x%x in the "
	       "page (offset 0x%zx of the worker's memory, page %zu, page %zu of its region): "
	       "expected byte 0x%02x, found 0x%02x; the word should be 0x%016llx (offset 0x%llx "
	       "generation %llu), was 0x%016llx (decodes to offset 0x%llx generation %llu), reads "
	       "0x%016llx now; page state: %s; cgroup %s", who, region_name(pg),
	       i * 8 + byte, word_off + byte, pg, pg - region_first(pg),
	       (unsigned)(want >> (8 * byte)) & 0xff, (unsigned)(got >> (8 * byte)) & 0xff,
	       (unsigned long long)want, (unsigned long long)(dw & ((1ULL << OFF_BITS) - 1)),
	       (unsigned long long)(dw >> OFF_BITS), (unsigned long long)got,
	       (unsigned long long)(dg & ((1ULL << OFF_BITS) - 1)),
	       (unsigned long long)(dg >> OFF_BITS), (unsigned long long)again, state,
	       cg.on ? cg.leaf[worker_id] : "none");
}

/* Every word of page pg as of generation g, or a report and exit code. */
static void verify_page(size_t pg, uint32_t g, const char *who, int pm_fd, int code)
{
	const uint64_t *w = (const uint64_t *)page_addr(pg);

	for (unsigned i = 0; i < WORDS; i++) {
		uint64_t want = pattern(pg * PAGE + i * 8, g), got = w[i];

		if (got != want)
			report_mismatch(who, pg, i, want, got, pm_fd, code);
	}
}

static char who[64], who_write[64], who_final[64];

static void verify_chunks(size_t chunk, unsigned nch)
{
	for (size_t pg = chunk * CHUNK_PAGES; pg < (chunk + nch) * CHUNK_PAGES; pg++)
		verify_page(pg, gen[pg], who, pagemap_fd, EXIT_KERNEL);
	ADD(ws->pages_verified, nch * CHUNK_PAGES);
}

/* A write first checks the old contents, then writes a new generation. */
static void write_chunks(size_t chunk, unsigned nch)
{
	for (size_t pg = chunk * CHUNK_PAGES; pg < (chunk + nch) * CHUNK_PAGES; pg++) {
		verify_page(pg, gen[pg], who_write, pagemap_fd, EXIT_KERNEL);
		gen[pg] = (gen[pg] + 1) & 0xffffff;
		fill_page(pg, gen[pg]);
	}
	ADD(ws->pages_verified, nch * CHUNK_PAGES);
	ADD(ws->pages_written, nch * CHUNK_PAGES);
}

/* A THP block verified, replaced by a fresh mapping (MAP_FIXED: its pages,
 * swap entries and page table go, which MADV_DONTNEED would keep) and
 * written afresh: the first write faults in a new THP, charged to the
 * cgroup at once, which reclaim splits again on its way to swap. */
static void refresh_block(size_t chunk, unsigned nch)
{
	size_t first = chunk * CHUNK_PAGES, n = (size_t)nch * CHUNK_PAGES;
	char *at = page_addr(first);

	verify_chunks(chunk, nch);
	if (mmap(at, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		 -1, 0) != at)
		fail_sys("mmap(MAP_FIXED)", errno);
	/* Advised like its neighbours, it merges back into their VMA. */
	if (!ws->thp_off && madvise(at, n * PAGE, MADV_HUGEPAGE))
		fail_sys("madvise(MADV_HUGEPAGE)", errno);
	for (size_t pg = first; pg < first + n; pg++) {
		gen[pg] = (gen[pg] + 1) & 0xffffff;
		fill_page(pg, gen[pg]);
	}
	ADD(ws->pages_written, n);
}

/* -- a worker's fork children and migrator ------------------------------ */

/* A child verifies one whole anonymous chunk and a sample of anonymous
 * pages against the generations it inherited, then exits. */
static _Noreturn void child_main(uint64_t child_seed)
{
	uint64_t rng = child_seed;
	size_t first = rnd(&rng) % (anon_pages / CHUNK_PAGES) * CHUNK_PAGES;
	unsigned sample = 32 + rnd(&rng) % 65;
	unsigned long long done = 0;
	int fd;
	char child_who[64];

	child_begin();
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);   /* the worker's is its own */
	snprintf(child_who, sizeof(child_who), "fork child %d of worker %d", (int)getpid(),
		 worker_id);
	for (unsigned i = 0; i < CHUNK_PAGES + sample; i++) {
		size_t pg = i < CHUNK_PAGES ? first + i : rnd(&rng) % anon_pages;

		verify_page(pg, gen[pg], child_who, fd, EXIT_CHILD_MISMATCH);
		done++;
	}
	ADD_SHARED(ws->child_pages_verified, done);
	_exit(0);
}

static int mig_on, mig_query, mig_flags;   /* moves pages; can query where they are */
static char mig_off_reason[160];
static struct dlog mig_log;

static void *migrator_main(void *arg)
{
	uint64_t rng = worker_stream(worker_id, WS_MIGRATOR);
	void *pages[MIG_BATCH];
	int from[MIG_BATCH], to[MIG_BATCH], status[MIG_BATCH];
	long n_ops = 0;

	(void)arg;
	while (!stopping()) {
		struct mig_op op = mig_next(&rng);
		char *line = log_slot(&mig_log);
		int n = 0;

		if (line)
			format_mig(line, LOG_LINE, worker_id, n_ops, &op);
		n_ops++;
		for (size_t c = op.chunk; c < op.chunk + op.nch; c++)
			for (unsigned p = op.first; p < CHUNK_PAGES; p += op.stride)
				pages[n++] = page_addr(c * CHUNK_PAGES + p);
		if (mig_on) {
			int k = present_pages(&ws->mv, n, pages, from, to);

			if (k)
				move_pages_to(&ws->mv, k, pages, from, to, mig_flags);
		} else if (mig_query) {
			query_nodes(&ws->mv, n, pages, status);
		}
		ADD(ws->mig_batches, 1);
		usleep(1000);   /* leave most of the CPU to reclaim and the verifiers */
	}
	return NULL;
}

/* -- a worker ----------------------------------------------------------- */

static void join_leaf(int id)
{
	char pid[24];
	int e;

	if (!cg.on)
		return;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if ((e = write_file(cg.leaf[id], "cgroup.procs", pid)))
		die(EXIT_WORKLOAD, "workload failed: worker %d could not join %s (writing its pid to "
		    "cgroup.procs: %s)", id, cg.leaf[id], strerror(e));
}

static void map_memory(void)
{
	int fd;

	small_mem = map_aligned(small_pages * PAGE, PAGE, 0);
	thp_mem = map_aligned(thp_pages * PAGE, THP, 0);
	if (madvise(small_mem, small_pages * PAGE, MADV_NOHUGEPAGE) && errno != EINVAL)
		fail_sys("madvise(MADV_NOHUGEPAGE)", errno);
	if (madvise(thp_mem, thp_pages * PAGE, MADV_HUGEPAGE)) {
		if (errno != EINVAL)
			fail_sys("madvise(MADV_HUGEPAGE)", errno);
		ws->thp_off = 1;   /* no CONFIG_TRANSPARENT_HUGEPAGE */
	}
	fd = memfd_create(prog, MFD_CLOEXEC);
	if (fd < 0)
		fail_sys("memfd_create", errno);
	if (ftruncate(fd, shmem_pages * PAGE))
		fail_sys("ftruncate(memfd)", errno);
	shmem_mem = mmap(NULL, shmem_pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shmem_mem == MAP_FAILED)
		fail_sys("mmap(memfd)", errno);
	close(fd);
	gen = malloc(npages * sizeof(*gen));
	if (!gen)
		die(EXIT_WORKLOAD, "workload failed: out of memory for the generations");
	for (size_t pg = 0; pg < npages; pg++) {
		gen[pg] = 1;
		fill_page(pg, 1);
	}
}

/* Hidden --self-test-corrupt: worker 0 flips one byte behind the kernel's
 * back, as a lost write would, and verifies the page the way it always does. */
static _Noreturn void self_test(void)
{
	size_t off = selftest_offset(), pg = off / PAGE;

	fprintf(stderr, "%s: self-test: flipping the byte at offset 0x%zx\n", prog, off);
	page_addr(pg)[off % PAGE] ^= 0x5a;
	verify_page(pg, gen[pg], "worker 0 (self-test)", pagemap_fd, EXIT_KERNEL);
	die(EXIT_WORKLOAD, "workload failed: self-test: the byte flipped at 0x%zx went unnoticed", off);
}

static _Noreturn void worker_main(int id, pid_t parent)
{
	uint64_t rng = worker_stream(id, WS_OPS);
	struct dlog log;
	pthread_t mig_tid;
	struct rusage ru;
	size_t cursor = 0;
	double start;
	long n_ops = 0;

	child_begin();
	worker_id = id;
	ws = &shared->w[id];
	die_with_parent();
	if (getppid() != parent)
		_exit(EXIT_WORKLOAD);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	join_leaf(id);   /* before any memory of its own is charged */
	{
		uint64_t k = worker_stream(id, WS_KEY);

		key = rnd(&k);
	}
	log_init(&log);
	log_init(&mig_log);
	map_memory();
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	snprintf(who, sizeof(who), "worker %d", id);
	snprintf(who_write, sizeof(who_write), "worker %d (before rewriting the page)", id);
	snprintf(who_final, sizeof(who_final), "worker %d (final pass)", id);
	start_thread(&mig_tid, migrator_main, NULL);
	start = now();
	while (!atomic_load(&shared->stop)) {
		struct work_op op = work_next(&rng);
		char *line = log_slot(&log);

		if (line)
			format_work(line, LOG_LINE, id, n_ops, &op);
		n_ops++;
		if (self_test_corrupt && id == 0 && now() - start >= 1.0)
			self_test();
		switch (op.kind) {
		case W_VERIFY:
			verify_chunks(op.chunk, op.nch);
			ADD(ws->verify_ops, 1);
			break;
		case W_WRITE:
			write_chunks(op.chunk, op.nch);
			ADD(ws->write_ops, 1);
			break;
		case W_SWEEP:
			/* The next 32 chunks in order: a whole pass every nchunks/32 sweeps. */
			for (int j = 0; j < 32; j++) {
				verify_chunks(cursor, 1);
				if (++cursor == nchunks) {
					cursor = 0;
					ADD(ws->sweeps, 1);
				}
			}
			ADD(ws->sweep_ops, 1);
			break;
		case W_THP_REFRESH:
			refresh_block(op.chunk, op.nch);
			ADD(ws->thp_refreshes, 1);
			break;
		case W_FORK:
			reap_slot(forks);
			if (fork_child() == 0)
				child_main(op.child_seed);
			ADD(ws->forks, 1);
			break;
		}
	}
	stop_and_reap();   /* the migrator stops, the children are reaped */
	check_pthread("pthread_join", pthread_join(mig_tid, NULL));
	ADD(ws->children_reaped, children_reaped);
	/* Every page read back at least once: a run too short (or a guest too
	 * slow) for one whole sweep finishes the first one now. */
	for (; !GET(ws->sweeps); cursor = (cursor + 1) % nchunks) {
		for (size_t pg = cursor * CHUNK_PAGES; pg < (cursor + 1) * CHUNK_PAGES; pg++)
			verify_page(pg, gen[pg], who_final, pagemap_fd, EXIT_KERNEL);
		ADD(ws->final_pages_verified, CHUNK_PAGES);
		if (cursor == nchunks - 1)
			ADD(ws->sweeps, 1);
	}
	ru = self_rusage();
	ws->major_faults = ru.ru_majflt;
	ws->minor_faults = ru.ru_minflt;
	log_print(&log);
	log_print(&mig_log);
	_exit(0);
}

/* -- the parent --------------------------------------------------------- */

static pid_t workers[MAX_WORKERS];
static int worker_status[MAX_WORKERS], worker_done[MAX_WORKERS], killed_by_us[MAX_WORKERS];
static int workers_left;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
	atomic_store(&stop, 1);
}

static void record_exit(pid_t pid, int st)
{
	for (int i = 0; i < nworkers; i++)
		if (workers[i] == pid && !worker_done[i]) {
			worker_status[i] = st;
			worker_done[i] = 1;
			workers_left--;
		}
}

/* Reaps workers that have exited; 1 if one ended before it was told to. */
static int poll_workers(void)
{
	int st, early = 0;
	pid_t pid = 0;

	while (workers_left && (pid = waitpid(-1, &st, WNOHANG)) > 0) {
		record_exit(pid, st);
		early = 1;
	}
	if (pid < 0 && errno != ECHILD && errno != EINTR)
		bail(EXIT_WORKLOAD, "workload failed: waitpid: %s", strerror(errno));
	return early;
}

static void kill_workers(void)
{
	for (int i = 0; i < nworkers; i++)
		if (!worker_done[i]) {
			kill(workers[i], SIGKILL);
			killed_by_us[i] = 1;
		}
}

static void wait_workers(void)
{
	int st;
	pid_t pid;

	while (workers_left) {
		pid = waitpid(-1, &st, 0);
		if (pid > 0) {
			record_exit(pid, st);
		} else if (errno == EINTR) {
			if (interrupted)
				kill_workers();
		} else {
			bail(EXIT_WORKLOAD, "workload failed: waitpid: %s", strerror(errno));
		}
	}
}

/* Every worker's counts added up. */
static struct worker_stats sum_workers(void)
{
	struct worker_stats t;

	memset(&t, 0, sizeof(t));
	for (int i = 0; i < nworkers; i++) {
		const struct worker_stats *w = &shared->w[i];
		const unsigned long long *from = &w->verify_ops;
		unsigned long long *to = &t.verify_ops;

		/* The run of counters from verify_ops to mig_batches. */
		for (size_t k = 0; k <= offsetof(struct worker_stats, mig_batches) / sizeof(*to) -
		     offsetof(struct worker_stats, verify_ops) / sizeof(*to); k++)
			to[k] += __atomic_load_n(&from[k], __ATOMIC_RELAXED);
		t.major_faults += w->major_faults;
		t.minor_faults += w->minor_faults;
		t.thp_off |= w->thp_off;
		t.mv.query_calls += GET(w->mv.query_calls);
		t.mv.calls += GET(w->mv.calls);
		t.mv.requested += GET(w->mv.requested);
		t.mv.moved += GET(w->mv.moved);
		t.mv.not_moved += GET(w->mv.not_moved);
		t.mv.nothing_to_move += GET(w->mv.nothing_to_move);
		t.mv.nomem_calls += GET(w->mv.nomem_calls);
		t.mv.busy += GET(w->mv.busy);
		t.mv.again += GET(w->mv.again);
		t.mv.access += GET(w->mv.access);
		t.mv.absent += GET(w->mv.absent);
		t.mv.nomem += GET(w->mv.nomem);
		t.mv.unset += GET(w->mv.unset);
	}
	return t;
}

static void progress(double t)
{
	struct worker_stats s = sum_workers();
	struct cg_counts c;
	char cgroup[256] = "no memory cgroup";

	read_counts(&c);
	if (cg.on)
		snprintf(cgroup, sizeof(cgroup), "%llu limit changes, %llu reclaim writes, cgroup "
			 "memory %lld MiB, swap %lld MiB, events high %lld max %lld oom_kill %lld",
			 cg.max_writes + cg.high_writes, cg.reclaim_writes, c.current >> 20,
			 c.swap_current >> 20, c.ev_high, c.ev_max, c.ev_oom_kill);
	printf("%s progress: %.0fs: %llu pages verified, %llu written, %llu forks, %llu pages "
	       "moved; %s\n", prog, t, s.pages_verified, s.pages_written, s.forks, s.mv.moved, cgroup);
}

/* Active swap devices, or -1 when there is no /proc/swaps (no CONFIG_SWAP). */
static int count_swap_devices(void)
{
	char buf[4096];
	ssize_t n = read_file(NULL, "/proc/swaps", buf, sizeof(buf));
	int lines = 0;

	if (n == -ENOENT)
		return -1;
	if (n < 0)
		fail_sys("read(/proc/swaps)", (int)-n);
	for (char *p = buf; *p; p++)
		lines += *p == '\n';
	return lines > 0 ? lines - 1 : 0;
}

static long swap_free_mb(void)
{
	char buf[8192];
	ssize_t n = read_file(NULL, "/proc/meminfo", buf, sizeof(buf));
	const char *p;

	if (n < 0)
		fail_sys("read(/proc/meminfo)", (int)-n);
	p = strstr(buf, "SwapFree:");
	return p ? strtol(p + 9, NULL, 10) / 1024 : 0;
}

static void print_plan(void)
{
	char line[LOG_LINE];
	uint64_t rng = stream(RNG_CONTROL);

	printf("plan seed %ld: %ld workers of %zu pages (%zu small-page anon, %zu THP anon, %zu "
	       "shmem), %zu chunks of %d pages each\n", seed, nworkers, npages, small_pages,
	       thp_pages, shmem_pages, nchunks, CHUNK_PAGES);
	printf("plan self-test: worker 0, byte at offset 0x%zx\n", selftest_offset());
	for (long i = 0; i < plan_n; i++) {
		struct control_op op = control_next(&rng);

		format_control(line, sizeof(line), i, &op);
		printf("%s\n", line);
	}
	for (int w = 0; w < nworkers; w++) {
		rng = worker_stream(w, WS_OPS);
		for (long i = 0; i < plan_n; i++) {
			struct work_op op = work_next(&rng);

			format_work(line, sizeof(line), w, i, &op);
			printf("%s\n", line);
		}
		rng = worker_stream(w, WS_MIGRATOR);
		for (long i = 0; i < plan_n; i++) {
			struct mig_op op = mig_next(&rng);

			format_mig(line, sizeof(line), w, i, &op);
			printf("%s\n", line);
		}
	}
}

static void parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		FLAG("--self-test-corrupt", &self_test_corrupt),   /* hidden: tests the checker */
		FLAG("--self-test-oom", &self_test_oom),   /* hidden: tests the OOM report */
		RUN_OPTS(&duration, &seed),
		NUM("--workers", &nworkers, 1, MAX_WORKERS),
		NUM("--mb", &mb, 8, 4096),
		NUM("--log", &log_decisions, 0, 10000),
		PLAN_OPT(&plan_n),
		{ NULL },
	};

	parse_opts(argc, argv, opts);
	if (seed < 0)
		usage("--seed is required");
	if (duration < 0 && plan_n < 0)
		usage("--duration is required (or --plan N)");
}

static void start_workers(void)
{
	pid_t self = getpid();

	fflush(stdout);
	for (int i = 0; i < nworkers; i++) {
		pid_t pid = fork();

		if (pid < 0)
			bail(EXIT_WORKLOAD, "workload failed: fork: %s", strerror(errno));
		if (pid == 0)
			worker_main(i, self);
		workers[i] = pid;
		workers_left++;
	}
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;   /* no SA_RESTART: a blocked waitpid returns */
	sigemptyset(&sa.sa_mask);
	for (int s = 0; s < 3; s++)
		if (sigaction((int[]){ SIGTERM, SIGINT, SIGHUP }[s], &sa, NULL))
			fail_sys("sigaction", errno);
}

/* Hidden --self-test-oom: no swap for the cgroup and a memory.max far below
 * what it holds, so the write of memory.max ends in an OOM kill, which the
 * parent must report as the workload's sizing trouble. */
static void self_test_oom_now(void)
{
	int e;

	if (!cg.on)
		bail(EXIT_WORKLOAD, "workload failed: --self-test-oom needs a memory cgroup (%s)",
		     cg.off_reason);
	fprintf(stderr, "%s: self-test: memory.swap.max 0 and memory.max 8 MiB for %s: an OOM "
		"kill is to come\n", prog, cg.top);
	if ((e = write_file(cg.top, "memory.swap.max", "0")))
		bail(EXIT_WORKLOAD, "workload failed: writing %s/memory.swap.max: %s", cg.top,
		     strerror(e));
	cg.cur_max = 8;
	set_limit(cg.top, "memory.max", cg.cur_max);
}

/* The controller: seeded limit changes and reclaim until the time is up, a
 * signal comes, or a worker ends early. */
static int control_loop(double start, struct dlog *log)
{
	uint64_t rng = stream(RNG_CONTROL);
	double next_step = start, next_progress = start + PROGRESS_EVERY, t;
	long n_ops = 0;
	int early = 0, oom_done = 0;

	while (!stopping() && (t = now()) - start < duration) {
		if (self_test_oom && !oom_done && t - start >= 2.0) {
			oom_done = 1;
			self_test_oom_now();
			continue;
		}
		if (t >= next_step) {
			struct control_op op = control_next(&rng);
			char *line = log_slot(log);

			if (line)
				format_control(line, LOG_LINE, n_ops, &op);
			n_ops++;
			if (!oom_done)
				apply_control(&op);
			next_step = t + op.delay_ms / 1000.0;
		}
		if ((early = poll_workers()))
			break;
		if (progress_due(t, &next_progress))
			progress(t - start);
		usleep(20000);
	}
	return early;
}

/* Signals a worker gets from the kernel for its own memory (SIGKILL and
 * SIGTERM come from the OOM killer or from outside). */
static int fault_signal(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE;
}

/* The outcome once every worker is reaped: returns only if all went well. */
static void judge(const struct cg_counts *c)
{
	char ev[512];
	int oom = c->ev_oom_kill > 0;

	/* A kernel fault first: wrong data, or a signal we did not send. */
	for (int i = 0; i < nworkers; i++) {
		int st = worker_status[i];

		if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_KERNEL)
			die(EXIT_KERNEL, "worker %d found data that differs from what it wrote or a "
			    "child of it did (exit %d; its report is above)", i, EXIT_KERNEL);
		if (WIFSIGNALED(st) && fault_signal(WTERMSIG(st)))
			die(EXIT_KERNEL, "worker %d was killed by signal %d (%s) on its own memory", i,
			    WTERMSIG(st), strsignal(WTERMSIG(st)));
	}
	if (oom)
		die(EXIT_WORKLOAD, "workload failed: an OOM kill in its cgroup (%s; memory.max %ld "
		    "MiB, memory.high of w0 %ld MiB; working set %ld MiB): the workload sized its "
		    "memory wrongly for these limits, not a kernel failure",
		    events_text(c, ev, sizeof(ev)), cg.cur_max, cg.cur_high[0],
		    nworkers * (long)(npages * PAGE / MIB));
	for (int i = 0; i < nworkers; i++) {
		int st = worker_status[i];

		if (WIFSIGNALED(st) && !killed_by_us[i])
			die(EXIT_WORKLOAD, "workload failed: worker %d was killed by signal %d (%s), "
			    "not by the OOM killer of its cgroup (%s)", i, WTERMSIG(st),
			    strsignal(WTERMSIG(st)), events_text(c, ev, sizeof(ev)));
		if (WIFEXITED(st) && WEXITSTATUS(st))
			die(EXIT_WORKLOAD, "workload failed: worker %d exited with status %d (its "
			    "report is above)", i, WEXITSTATUS(st));
	}
}

static void stat_keys(const char *stat, char *buf, size_t len)
{
	static const char *const keys[] = {
		"pgscan", "pgsteal", "pgscan_direct", "pgsteal_direct", "pgscan_kswapd",
		"pgsteal_kswapd", "pgrefill", "pgmajfault", "workingset_refault_anon",
		"workingset_activate_anon", "workingset_restore_anon", "thp_fault_alloc",
		"thp_swpout", "thp_swpout_fallback", "zswpout", NULL,
	};
	size_t n = 0;

	buf[0] = 0;
	for (int i = 0; keys[i] && n < len; i++) {
		long long v = key_value(stat, keys[i]);

		if (v < 0)
			n += snprintf(buf + n, len - n, " %s=n/a", keys[i]);
		else
			n += snprintf(buf + n, len - n, " %s=%lld", keys[i], v);
	}
}

/* A count (shift 0) or a size in MiB (shift 20), "n/a" when unknown (-1). */
static const char *or_na(char *buf, long long v, int shift)
{
	if (v < 0)
		return "n/a";
	snprintf(buf, 24, "%lld", v >> shift);
	return buf;
}

static void print_summary(double secs, int swap_devices, long swap_free, const struct cg_counts *c)
{
	struct worker_stats s = sum_workers();
	char stat[1024], v[7][24];
	long wset = nworkers * (long)(npages * PAGE / MIB);

	stat_keys(c->stat, stat, sizeof(stat));
	printf("%s summary: seed=%ld duration=%.1fs workers=%ld mb_per_worker=%ld "
	       "working_set_mb=%ld allocated_bytes=%zu nodes=%d swap_devices=%d swap_free_mb=%ld "
	       "swap=%s cgroup=%s cgroup_mount=%s pressure=%s migration=%s thp=%s\n", prog, seed,
	       secs, nworkers, mb, wset, (size_t)nworkers * npages * PAGE, nnodes,
	       swap_devices < 0 ? 0 : swap_devices, swap_free, swap_devices > 0 ? "on" : "off",
	       cg.on ? "on" : "off", cg.mount_kind, cg.on && cg.pressure ? "on" : "off",
	       mig_on ? "on" : "off", s.thp_off ? "off" : "on");
	printf("%s layout: small_mb=%zu thp_mb=%zu shmem_mb=%zu pages_per_worker=%zu\n", prog,
	       small_pages * PAGE / MIB, thp_pages * PAGE / MIB, shmem_pages * PAGE / MIB, npages);
	printf("%s limits: max_range_mb=%ld-%ld high_range_mb=%ld-%ld max_writes=%llu "
	       "high_writes=%llu limit_changes=%llu reclaim_writes=%llu reclaim_requested_mb=%llu "
	       "reclaim_short=%llu reclaim_interrupted=%llu\n", prog, cg.max_lo, cg.max_hi,
	       cg.high_lo, cg.high_hi, cg.max_writes, cg.high_writes, cg.max_writes + cg.high_writes,
	       cg.reclaim_writes, cg.reclaim_mb, cg.reclaim_short, cg.reclaim_interrupted);
	printf("%s events: events_low=%s events_high=%s events_max=%s events_oom=%s "
	       "events_oom_kill=%s memory_peak_mb=%s swap_peak_mb=%s\n", prog,
	       or_na(v[0], c->ev_low, 0), or_na(v[1], c->ev_high, 0), or_na(v[2], c->ev_max, 0),
	       or_na(v[3], c->ev_oom, 0), or_na(v[4], c->ev_oom_kill, 0), or_na(v[5], c->peak, 20),
	       or_na(v[6], c->swap_peak, 20));
	printf("%s memory.stat:%s\n", prog, stat);
	printf("%s data: verify_ops=%llu write_ops=%llu sweep_ops=%llu sweeps=%llu "
	       "thp_refreshes=%llu pages_verified=%llu pages_written=%llu final_pages_verified=%llu "
	       "major_faults=%ld minor_faults=%ld\n", prog, s.verify_ops, s.write_ops, s.sweep_ops,
	       s.sweeps, s.thp_refreshes, s.pages_verified, s.pages_written,
	       s.final_pages_verified, s.major_faults, s.minor_faults);
	printf("%s fork: forks=%llu children_reaped=%llu child_pages_verified=%llu\n", prog,
	       s.forks, s.children_reaped, s.child_pages_verified);
	printf("%s move_pages: batches=%llu query_calls=%llu " MOVE_PAGES_KEYS " nomem_calls=%llu "
	       MOVE_STATUS_KEYS "\n", prog, s.mig_batches, s.mv.query_calls,
	       MOVE_PAGES_VALUES(s.mv), s.mv.nomem_calls, MOVE_STATUS_VALUES(s.mv));
	if (!cg.on)
		printf("%s note: no memory cgroup (%s): the workers ran without limits, so nothing "
		       "was reclaimed for them; the cgroup counts are n/a\n", prog, cg.off_reason);
	if (!cg.pressure && cg.on)
		printf("%s note: %s: the limits stayed above the working set (memory.max %ld-%ld "
		       "MiB for %ld MiB), since anything less would be an OOM kill; nothing is "
		       "swapped\n", prog, cg.no_pressure_reason, cg.max_lo, cg.max_hi, wset);
	else if (!cg.pressure)
		printf("%s note: %s: nothing is swapped\n", prog, cg.no_pressure_reason);
	if (cg.on && !cg.reclaim_ok)
		printf("%s note: no memory.reclaim (Linux 5.19+): no proactive reclaim\n", prog);
	if (cg.on && !cg.reclaim_swappiness_ok)
		printf("%s note: memory.reclaim refused swappiness= (Linux 6.11+): reclaim without it\n",
		       prog);
	if (!mig_on)
		printf("%s note: %s\n", prog, mig_off_reason);
	if (s.thp_off)
		printf("%s note: MADV_HUGEPAGE is EINVAL (no CONFIG_TRANSPARENT_HUGEPAGE): the THP "
		       "part is small pages\n", prog);
	if (cleanup_note[0])
		printf("%s note: cleaning up: %s\n", prog, cleanup_note);
}

static void check_migration(void)
{
	void *a = &mig_on;
	int st;

	mig_flags = move_flags();
	if (sys_move_pages(1, &a, NULL, &st, 0) < 0) {
		if (errno != ENOSYS)
			fail_sys("move_pages(query)", errno);
		snprintf(mig_off_reason, sizeof(mig_off_reason), "move_pages is ENOSYS (a kernel "
			 "without CONFIG_MIGRATION or CONFIG_NUMA): nothing is migrated");
		return;
	}
	mig_query = 1;
	if (nnodes < 2) {
		snprintf(mig_off_reason, sizeof(mig_off_reason), "only %d NUMA node with memory: "
			 "nowhere to migrate to, so pages are only queried, not moved", nnodes);
		return;
	}
	mig_on = 1;
}

int main(int argc, char **argv)
{
	struct dlog log;
	struct cg_counts counts;
	int swap_devices, early;
	long swap_free;
	double start, end;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	size_layout();
	plan_only(plan_n, print_plan);
	find_nodes();
	check_migration();
	swap_devices = count_swap_devices();
	swap_free = swap_devices > 0 ? swap_free_mb() : 0;
	size_limits(swap_devices, swap_free);
	log_init(&log);
	shared = mmap(NULL, (sizeof(*shared) + PAGE - 1) & ~(PAGE - 1), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		fail_sys("mmap(MAP_SHARED)", errno);
	for (int i = 0; i < nworkers; i++)
		shared->w[i].mv.nomem_ok = 1;   /* a full target node is not our failure */
	install_signals();
	setup_cgroups();

	start = now();
	start_workers();
	early = control_loop(start, &log);
	atomic_store(&shared->stop, 1);
	if (early || interrupted)
		kill_workers();
	wait_workers();
	end = now();
	read_counts(&counts);
	remove_cgroups();
	if (interrupted)
		die(128 + interrupted, "interrupted by %s: workers killed, cgroups removed",
		    strsignal(interrupted));
	log_print(&log);
	judge(&counts);
	print_summary(end - start, swap_devices, swap_free, &counts);
	return 0;
}
