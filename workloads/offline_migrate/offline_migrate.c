// SPDX-License-Identifier: Apache-2.0
/*
 * offline_migrate: memory blocks offlined and onlined again while the
 * memory in them is in use.
 *
 * Offlining a memory block (/sys/devices/system/memory/memoryN/state)
 * isolates its pageblocks and migrates every page out of it, whoever maps
 * it; then the block is onlined again.  Candidates are the online blocks of
 * ZONE_MOVABLE (valid_zones "Movable"): memory hot-added and onlined movable
 * (kstress's guest.hotplug_dimms), or boot memory made movable (the kernel's
 * movablecore= or kernelcore=).  Meanwhile:
 *   - faulter threads write, read back and verify anonymous memory (small
 *     pages and MADV_HUGEPAGE ranges, each region preferring one NUMA node,
 *     where ZONE_MOVABLE fills first), and MADV_DONTNEED chunks and fault
 *     them in again, so new pages land in blocks just onlined;
 *   - the offliner thread picks a seeded candidate, notes which of our pages
 *     sit in it (/proc/self/pagemap), writes "offline" (under a timeout: the
 *     kernel retries a busy block until a signal comes), and after a
 *     successful offline checks that each of those pages kept its data and
 *     maps a PFN outside the block (one inside an offline block is the
 *     kernel's fault); it holds the block offline for a seeded while and
 *     onlines it again (online_movable, else online).  EBUSY, EAGAIN, EINVAL
 *     and a timeout are normal outcomes (an unmovable page, memory holes)
 *     and are counted; a block that keeps failing the same way is left out
 *     of the picks (blocks_dropped);
 *   - the main thread forks children that verify what they inherited.
 * A supervisor process onlines again any candidate block left offline,
 * however the workload ends (exit, a fatal error, SIGTERM/SIGINT/SIGHUP,
 * SIGKILL).
 *
 * With no candidate block the workload says so (blocks_offlined=0 and a
 * note naming what the guest needs) and exits 0 after one verification
 * pass: kstress then fails it as "no evidence" (pgmigrate_success did not
 * move), which is the truth, rather than passing it.
 *
 * Every page holds 512 words, word = generation << 40 | its byte offset in
 * the region (generation 0: the page was zapped and reads as zeros), so data
 * that comes back wrong names where it came from.  Choices follow from
 * --seed (each thread its own splitmix64 stream; --plan N prints them).
 *
 * --dry-run never writes a block's state (for hosts: their memory is not
 * ours to offline); --memory-dir DIR reads and writes blocks under DIR
 * instead of /sys/devices/system/memory (tests of the machinery).
 *
 * Exit status: 0 done; 1 data came back wrong (the first differing offset,
 * expected and found words and the page's pagemap state on stderr), a page
 * maps a PFN inside a block that is offline, or a fork child or the workload
 * process died of a signal other than SIGKILL; 2 usage; 125 the workload
 * failed (a syscall failed unexpectedly, a block could not be written for
 * want of permission, or a block it offlined could not be onlined again).
 */
#define PROG "offline_migrate"
#define USAGE "usage: " PROG " --duration SECONDS --seed N [--mb MIB] [--faulters N]\n" \
	"       [--offline-timeout SECONDS] [--dry-run] [--memory-dir DIR]\n" \
	"       " PROG " --plan N --seed N [--mb MIB] [--faulters N]\n"
#include "kstress.h"

#include <dirent.h>

#define REGIONS 4
#define CHUNK_PAGES 16
#define CHUNK (CHUNK_PAGES * PAGE)
#define MAX_FAULTERS 8
#define MAX_BLOCKS 256
#define FORK_EVERY 0.1
#define ONLINE_TRIES 5
#define MPOL_PREFERRED 1

/* -- configuration and seeded choices ------------------------------------ */

enum { RNG_LAYOUT, RNG_OFFLINER, RNG_FORK, RNG_SELFTEST, RNG_FAULTER };

static long duration = -1, seed = -1, mb = 128, plan_n = -1, nfaulters = 2, offline_timeout = 10;
static int dry_run, self_test_corrupt;
static const char *memory_dir = "/sys/devices/system/memory";

static uint64_t stream(int k)
{
	return seed_stream(seed, 0x6f66666cULL * (uint64_t)(k + 1));
}

static char *mem;
static size_t npages, nchunks, region_pages;
static unsigned char region_thp[REGIONS];
static uint32_t *gen;              /* per page: its generation, 0 = zeros */
static uint32_t *seq;              /* per chunk: seqlock, odd while written */
static pthread_rwlock_t fork_gate;  /* writers share it, fork takes it alone */

enum { F_READ, F_WRITE, F_ZAP };
static const char *const fop_name[] = { "read", "write", "zap" };

struct fault_op {
	int kind;
	size_t chunk;
	unsigned page, npages;
};

/* Reads go anywhere; faulter i writes and zaps only chunks i, i + n, ... */
static struct fault_op fault_next(uint64_t *rng, int id)
{
	uint64_t r = rnd(rng);
	unsigned k = r % 100;
	struct fault_op op;

	op.kind = k < 55 ? F_READ : k < 92 ? F_WRITE : F_ZAP;
	op.page = (r >> 40) % CHUNK_PAGES;
	if (op.kind == F_READ) {
		op.chunk = (r >> 8) % nchunks;
		op.npages = 1 + (r >> 48) % CHUNK_PAGES;
	} else {
		op.chunk = owned_chunk(r >> 8, id, nfaulters, nchunks);
		op.npages = op.kind == F_ZAP ? CHUNK_PAGES : 1 + (r >> 48) % 4;
	}
	if (op.kind == F_ZAP)
		op.page = 0;
	if (op.page + op.npages > CHUNK_PAGES)
		op.npages = CHUNK_PAGES - op.page;
	return op;
}

struct offline_op {
	unsigned pick;       /* candidate pick % ncandidates */
	unsigned hold_ms;    /* offline this long before onlining */
	unsigned gap_ms;     /* then wait this long */
};

static struct offline_op offline_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	struct offline_op op;

	op.pick = r % 1024;
	op.hold_ms = (r >> 16) % 300;
	op.gap_ms = 50 + (r >> 32) % 450;
	return op;
}

static size_t selftest_offset(void)
{
	uint64_t r = stream(RNG_SELFTEST);

	return rnd(&r) % (npages * PAGE);
}

/* -- the pattern -------------------------------------------------------- */

/* Offset-and-generation words (kstress.h), generation 0 for a zapped page;
 * describe_page (below) gives the state of a page that came back wrong. */
static void describe_page(int fd, size_t pg, char *buf, size_t len);
static struct offgen_mem pattern = {
	.zero_gen_is_zeros = 1, .describe = describe_page, .state_name = "page state",
};

static inline uint64_t *page_words(size_t pg)
{
	return (uint64_t *)(mem + pg * PAGE);
}

/* -- memory blocks ------------------------------------------------------- */

struct block {
	long index;                     /* memoryN */
	uint64_t start_pfn, end_pfn;
	int node;                       /* -1: unknown */
	int lost;                       /* it could not be onlined again */
	int dropped;                    /* out of play: it keeps failing the same way */
	int fail_run, fail_errno;       /* failures in a row, and their errno */
	unsigned long long offlined, busy, einval, timed_out, other;
};

static struct block blocks[MAX_BLOCKS];
static int nblocks_seen, ncand;    /* memory blocks; candidates among them */
static long block_bytes;
static char auto_online[32] = "unknown";
static char blocks_note[320];

static void block_path(char *buf, size_t len, long index, const char *file)
{
	snprintf(buf, len, "%s/memory%ld/%s", memory_dir, index, file);
}

static int block_read(long index, const char *file, char *buf, size_t len)
{
	char path[PATH_MAX];

	block_path(path, sizeof(path), index, file);
	return read_line(path, buf, len);
}

static int block_write(long index, const char *what)
{
	char path[PATH_MAX];

	block_path(path, sizeof(path), index, "state");
	return write_str(path, what);
}

static int block_node(long index)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dir;
	int node = -1;

	snprintf(path, sizeof(path), "%s/memory%ld", memory_dir, index);
	if (!(dir = opendir(path)))
		return -1;
	while ((d = readdir(dir)))
		if (!strncmp(d->d_name, "node", 4) && d->d_name[4] >= '0' && d->d_name[4] <= '9')
			node = atoi(d->d_name + 4);
	closedir(dir);
	return node;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* The candidates: online blocks of ZONE_MOVABLE, in index order. */
static void find_blocks(void)
{
	char path[PATH_MAX], buf[128];
	static long idx[4096];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "%s/block_size_bytes", memory_dir);
	if (read_line(path, buf, sizeof(buf)) == 0)
		block_bytes = strtol(buf, NULL, 16);
	snprintf(path, sizeof(path), "%s/auto_online_blocks", memory_dir);
	if (read_line(path, auto_online, sizeof(auto_online)))
		snprintf(auto_online, sizeof(auto_online), "unknown");
	if (!(dir = opendir(memory_dir))) {
		snprintf(blocks_note, sizeof(blocks_note), "%s cannot be read (%s; a kernel without "
			 "CONFIG_MEMORY_HOTPLUG?): no block can be offlined", memory_dir, strerror(errno));
		return;
	}
	while ((d = readdir(dir)) && n < (int)(sizeof(idx) / sizeof(idx[0])))
		if (!strncmp(d->d_name, "memory", 6) && d->d_name[6] >= '0' && d->d_name[6] <= '9')
			idx[n++] = atol(d->d_name + 6);
	closedir(dir);
	qsort(idx, n, sizeof(idx[0]), cmp_long);
	nblocks_seen = n;
	for (int i = 0; i < n && ncand < MAX_BLOCKS; i++) {
		char state[32], zones[64], phys[32];
		struct block *b = &blocks[ncand];

		if (block_read(idx[i], "state", state, sizeof(state)) ||
		    block_read(idx[i], "valid_zones", zones, sizeof(zones)) ||
		    strncmp(state, "online", 6) || strcmp(zones, "Movable"))
			continue;
		b->index = idx[i];
		if (block_bytes > 0 && block_read(idx[i], "phys_index", phys, sizeof(phys)) == 0) {
			b->start_pfn = strtoull(phys, NULL, 16) * (block_bytes / PAGE);
			b->end_pfn = b->start_pfn + block_bytes / PAGE;
		}
		b->node = block_node(idx[i]);
		ncand++;
	}
	if (!ncand)
		snprintf(blocks_note, sizeof(blocks_note), "none of the %d memory blocks under %s is "
			 "online in ZONE_MOVABLE, so none is offlined: the guest needs memory "
			 "hot-added and onlined movable (guest.hotplug_dimms) or movable boot memory "
			 "(guest.extra_cmdline: movablecore=512M)", n, memory_dir);
}

/* Onlines a block again: online_movable, else online.  0, or -1 with errno. */
static int online_block(long index, int *fallback)
{
	*fallback = 0;
	if (block_write(index, "online_movable") == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	*fallback = 1;
	return block_write(index, "online");
}

static int block_offline(long index)
{
	char state[32];

	return block_read(index, "state", state, sizeof(state)) == 0 && !strcmp(state, "offline");
}

/* The supervisor's restore(): every candidate online again. */
static int restore_blocks(void)
{
	int ok = 1, fallback, left = 0, onlined = 0;

	for (int i = 0; i < ncand; i++) {
		if (!block_offline(blocks[i].index))
			continue;
		for (int t = 0; t < ONLINE_TRIES && online_block(blocks[i].index, &fallback); t++)
			usleep(100000);
		if (block_offline(blocks[i].index)) {
			ok = 0;
			left++;
			fprintf(stderr, "%s: memory%ld is still offline: %s\n", prog, blocks[i].index,
				strerror(errno));
		} else {
			onlined++;
		}
	}
	printf("%s blocks: blocks_restored=%s onlined_at_exit=%d offline_at_exit=%d\n", prog,
	       ok ? "yes" : "no", onlined, left);
	return ok ? 0 : -1;
}

/* -- pagemap ------------------------------------------------------------ */

static int pagemap_fd = -1;
static char pagemap_note[200];

/* pagemap entries of pages [first, first + n). */
static int read_pagemap(int fd, size_t first, size_t n, uint64_t *out)
{
	return pagemap_read(fd, mem + first * PAGE, n, out);
}

static void describe_page(int fd, size_t pg, char *buf, size_t len)
{
	uint64_t e;
	void *addr = mem + pg * PAGE;
	int node = STATUS_UNSET;
	char where[48] = "";

	if (sys_move_pages(1, &addr, NULL, &node, 0) == 0)
		snprintf(where, sizeof(where), ", move_pages says node %d", node);
	if (fd < 0 || !read_pagemap(fd, pg, 1, &e)) {
		snprintf(buf, len, "pagemap unreadable%s", where);
		return;
	}
	if (!(e & PM_PRESENT)) {
		snprintf(buf, len, "not present (pagemap 0x%llx)%s", (unsigned long long)e, where);
		return;
	}
	uint64_t pfn = e & PM_PFN_MASK;
	int n = snprintf(buf, len, "present pfn 0x%llx%s", (unsigned long long)pfn, where);

	for (int i = 0; pfn && i < ncand; i++)
		if (pfn >= blocks[i].start_pfn && pfn < blocks[i].end_pfn)
			snprintf(buf + n, len - n, ", in memory%ld (now %s)", blocks[i].index,
				 block_offline(blocks[i].index) ? "offline" : "online");
}

static void verify_page(const char *who, size_t pg, uint64_t *buf, unsigned long long *retries)
{
	uint32_t g = seq_copy_page(&seq[pg / CHUNK_PAGES], &gen[pg], page_words(pg), buf, retries);

	offgen_check(&pattern, who, pg, buf, g, pagemap_fd, EXIT_KERNEL);
}

/* -- faulters ----------------------------------------------------------- */

struct faulter {
	pthread_t tid;
	int id;
	uint64_t rng;
	unsigned long long ops, pages_read, pages_written, zaps, pages_verified, seq_retries;
	uint64_t buf[WORDS];
};

static struct faulter faulters[MAX_FAULTERS];

/* Bumps a page's generation.  Word 0 first, so the first touch is the
 * write fault (maybe on a migration entry, maybe a fresh page after a
 * zap); the rest is checked against the old generation, then rewritten. */
static void write_page(struct faulter *f, size_t pg)
{
	uint64_t *w = page_words(pg);
	uint32_t g = gen[pg], ng = (g + 1) & 0xffffff ? g + 1 : 1;
	struct offgen_mismatch m;

	__atomic_store_n(&w[0], offgen_word(&pattern, pg * PAGE, ng), __ATOMIC_RELAXED);
	copy_words(w, f->buf);
	if (offgen_compare(&pattern, pg, f->buf, ng, g, &m))
		offgen_report(&pattern, "faulter (writing)", pg, &m, pagemap_fd, EXIT_KERNEL);
	ADD(f->pages_verified, 1);
	__atomic_store_n(&gen[pg], ng, __ATOMIC_RELAXED);
	offgen_fill(&pattern, pg, ng, 1);
}

static void *faulter_main(void *arg)
{
	struct faulter *f = arg;

	while (!stopping()) {
		struct fault_op op = fault_next(&f->rng, f->id);
		size_t pg = op.chunk * CHUNK_PAGES + op.page;

		if (op.kind == F_READ) {
			for (unsigned i = 0; i < op.npages; i++)
				verify_page("faulter", pg + i, f->buf, &f->seq_retries);
			ADD(f->pages_read, op.npages);
			ADD(f->pages_verified, op.npages);
		} else {
			check_pthread("pthread_rwlock_rdlock", pthread_rwlock_rdlock(&fork_gate));
			seq_write_begin(&seq[op.chunk]);
			if (op.kind == F_ZAP) {
				if (madvise(mem + op.chunk * CHUNK, CHUNK, MADV_DONTNEED))
					fail_sys("madvise(MADV_DONTNEED)", errno);
				for (unsigned i = 0; i < CHUNK_PAGES; i++)
					__atomic_store_n(&gen[pg + i], 0, __ATOMIC_RELAXED);
				ADD(f->zaps, 1);
			} else {
				for (unsigned i = 0; i < op.npages; i++)
					write_page(f, pg + i);
				ADD(f->pages_written, op.npages);
			}
			seq_write_end(&seq[op.chunk]);
			check_pthread("pthread_rwlock_unlock", pthread_rwlock_unlock(&fork_gate));
		}
		ADD(f->ops, 1);
		/* Leaves CPU to the offline, which runs in the offliner's context. */
		usleep(200);
	}
	return NULL;
}

/* -- offliner ----------------------------------------------------------- */

static struct {
	pthread_t tid;
	uint64_t rng;
	uint64_t *pm;      /* pagemap of the whole region */
	size_t *in_block;  /* our pages in the block being offlined */
	uint64_t buf[WORDS];
	unsigned long long attempts, offlined, onlined, online_fallbacks, online_failures, lost,
		busy, again, timed_out, cut_short, einval, dropped, nomem, other, last_other_errno,
		pages_in_block, pages_moved_out, pages_verified, seq_retries, dry_picks;
	double longest_offline, total_offline;
} off;

static void offliner_sleep(unsigned ms)
{
	double until = now() + ms / 1000.0;

	while (!stopping() && now() < until)
		usleep(10000);
}

static void sigalrm_handler(int sig)
{
	(void)sig;   /* only interrupts the write to state */
}

/* Our pages that pagemap shows inside b, into off.in_block; their number. */
static size_t pages_in(const struct block *b)
{
	size_t n = 0;

	if (pagemap_fd < 0 || !b->end_pfn || !read_pagemap(pagemap_fd, 0, npages, off.pm))
		return 0;
	for (size_t pg = 0; pg < npages; pg++) {
		uint64_t pfn = off.pm[pg] & PM_PFN_MASK;

		if ((off.pm[pg] & PM_PRESENT) && pfn >= b->start_pfn && pfn < b->end_pfn)
			off.in_block[n++] = pg;
	}
	return n;
}

/* After b went offline: every page that was in it kept its data and maps
 * a PFN outside it now. */
static void check_moved_out(const struct block *b, size_t n)
{
	uint64_t e;

	for (size_t i = 0; i < n; i++) {
		size_t pg = off.in_block[i];

		verify_page("offliner (after the offline)", pg, off.buf, &off.seq_retries);
		ADD(off.pages_verified, 1);
		if (!read_pagemap(pagemap_fd, pg, 1, &e) || !(e & PM_PRESENT))
			continue;
		if ((e & PM_PFN_MASK) >= b->start_pfn && (e & PM_PFN_MASK) < b->end_pfn &&
		    block_offline(b->index))
			die(EXIT_KERNEL, "page %zu (offset 0x%zx) maps pfn 0x%llx inside memory%ld, "
			    "which is offline (pfns 0x%llx-0x%llx)", pg, pg * PAGE,
			    (unsigned long long)(e & PM_PFN_MASK), b->index,
			    (unsigned long long)b->start_pfn, (unsigned long long)b->end_pfn - 1);
		ADD(off.pages_moved_out, 1);
	}
}

/* A block that failed with EINVAL twice running (memory holes in it, or it
 * spans zones) or EBUSY DROP_BUSY times running (an unmovable page that
 * stays, such as memblock's reservations at the top of a node) is left
 * out of the picks from then on: the others get the offlines. */
#define DROP_BUSY 3

static void note_failure_run(struct block *b, int e)
{
	b->fail_run = b->fail_errno == e ? b->fail_run + 1 : 1;
	b->fail_errno = e;
	if ((e == EINVAL && b->fail_run >= 2) || (e == EBUSY && b->fail_run >= DROP_BUSY)) {
		b->dropped = 1;
		ADD(off.dropped, 1);
	}
}

static void count_failure(struct block *b, int e)
{
	note_failure_run(b, e);
	switch (e) {
	case EINVAL: ADD(off.einval, 1); b->einval++; return;   /* holes, zones */
	case EBUSY: ADD(off.busy, 1); b->busy++; return;   /* an unmovable page */
	case EAGAIN: ADD(off.again, 1); b->other++; return;
	case EINTR: ADD(off.timed_out, 1); b->timed_out++; return;   /* our alarm */
	case ENOMEM: ADD(off.nomem, 1); b->other++; return;
	case EACCES: case EPERM: case EROFS:
		die(EXIT_WORKLOAD, "workload failed: cannot write %s/memoryN/state: %s (offlining "
		    "memory needs root; --dry-run leaves the blocks alone)", memory_dir, strerror(e));
	}
	ADD(off.other, 1);
	b->other++;
	off.last_other_errno = e;
}

/* The candidate a pick means: pick % candidates, or the next one still in play. */
static struct block *picked(unsigned pick)
{
	for (int i = 0; i < ncand; i++) {
		struct block *b = &blocks[(pick + i) % ncand];

		if (!b->lost && !b->dropped)
			return b;
	}
	return NULL;
}

static void offline_cycle(struct offline_op op)
{
	struct block *b = picked(op.pick);
	double t0, took;
	int rc, e, fallback;
	size_t n;

	if (!b) {
		offliner_sleep(op.gap_ms);   /* every candidate is out of play */
		return;
	}
	n = pages_in(b);
	ADD(off.attempts, 1);
	if (dry_run) {
		ADD(off.dry_picks, 1);
		ADD(off.pages_in_block, n);
		offliner_sleep(op.gap_ms);
		return;
	}
	t0 = now();
	alarm(offline_timeout);
	rc = block_write(b->index, "offline");
	e = errno;
	alarm(0);
	took = now() - t0;
	if (rc && e == EINTR && stopping()) {
		ADD(off.cut_short, 1);   /* the run ended: main interrupted it */
		return;
	}
	if (rc) {
		count_failure(b, e);
		offliner_sleep(op.gap_ms);
		return;
	}
	ADD(off.offlined, 1);
	b->offlined++;
	b->fail_run = 0;
	ADD(off.pages_in_block, n);
	if (took > off.longest_offline)
		off.longest_offline = took;
	off.total_offline += took;
	check_moved_out(b, n);
	offliner_sleep(op.hold_ms);
	for (int t = 0; ; t++) {
		if (online_block(b->index, &fallback) == 0)
			break;
		if (t + 1 == ONLINE_TRIES) {
			/* The supervisor tries again at the end; the run fails then. */
			b->lost = 1;
			ADD(off.lost, 1);
			fprintf(stderr, "%s: cannot online memory%ld again: %s\n", prog, b->index,
				strerror(errno));
			return;
		}
		ADD(off.online_failures, 1);
		usleep(100000);
	}
	ADD(off.onlined, 1);
	ADD(off.online_fallbacks, fallback);
	offliner_sleep(op.gap_ms);
}

static void *offliner_main(void *arg)
{
	sigset_t alrm;

	(void)arg;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	check_pthread("pthread_sigmask", pthread_sigmask(SIG_UNBLOCK, &alrm, NULL));
	while (!stopping())
		offline_cycle(offline_next(&off.rng));
	return NULL;
}

/* -- fork children ------------------------------------------------------ */

static struct shared {
	unsigned long long child_pages_verified;
} *shared;

/* A child checks pages against gen[] as of the fork: no writer was inside
 * the fork gate then. */
static void child_check(size_t pg, unsigned i)
{
	(void)i;
	offgen_child_check(&pattern, pg);
}

static void __attribute__((noreturn)) child_main(struct fork_op op)
{
	child_check_pages(op, 0, npages, CHUNK_PAGES, child_check, &shared->child_pages_verified);
}

/* -- setup -------------------------------------------------------------- */

static void parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		FLAG("--self-test-corrupt", &self_test_corrupt),   /* hidden: tests the checker */
		FLAG("--dry-run", &dry_run),
		RUN_OPTS(&duration, &seed),
		NUM("--mb", &mb, 8, 4096),
		NUM("--faulters", &nfaulters, 1, MAX_FAULTERS),
		NUM("--offline-timeout", &offline_timeout, 1, 3600),
		PLAN_OPT(&plan_n),
		STR("--memory-dir", &memory_dir),
		{ NULL },
	};

	parse_opts(argc, argv, opts);
	require_seed_and_duration(seed, duration, plan_n);
}

static void print_plan(void)
{
	uint64_t rng = stream(RNG_LAYOUT);

	printf("plan seed %ld: %zu pages in %d regions of %zu, %ld faulters\n", seed, npages,
	       REGIONS, region_pages, nfaulters);
	printf("plan layout: THP regions");
	for (int r = 0; r < REGIONS; r++)
		if (rnd(&rng) % 2)
			printf(" %d", r);
	printf("\nplan self-test: byte at offset 0x%zx\n", selftest_offset());
	for (int f = 0; f < nfaulters; f++) {
		rng = stream(RNG_FAULTER + f);
		for (long i = 0; i < plan_n; i++) {
			struct fault_op op = fault_next(&rng, f);

			printf("plan faulter%d %ld: %s chunk %zu pages %u+%u\n", f, i,
			       fop_name[op.kind], op.chunk, op.page, op.npages);
		}
	}
	rng = stream(RNG_OFFLINER);
	for (long i = 0; i < plan_n; i++) {
		struct offline_op op = offline_next(&rng);

		printf("plan offliner %ld: pick %u, hold %u ms, then %u ms\n", i, op.pick, op.hold_ms,
		       op.gap_ms);
	}
	print_fork_plan(stream(RNG_FORK), plan_n, 0);
}

static char mbind_note[160];

static void map_region(void)
{
	uint64_t rng = stream(RNG_LAYOUT);

	mem = map_aligned(npages * PAGE, THP, MAP_NORESERVE);
	gen = calloc(npages, sizeof(*gen));
	seq = calloc(nchunks, sizeof(*seq));
	off.pm = calloc(npages, sizeof(*off.pm));
	off.in_block = calloc(npages, sizeof(*off.in_block));
	if (!gen || !seq || !off.pm || !off.in_block)
		die(EXIT_WORKLOAD, "workload failed: out of memory for the bookkeeping arrays");
	pattern.base = mem;
	pattern.gen = gen;
	for (int r = 0; r < REGIONS; r++) {
		char *at = mem + (size_t)r * region_pages * PAGE;
		unsigned long mask = 1UL << nodes[r % nnodes];

		region_thp[r] = rnd(&rng) % 2;
		if (madvise(at, region_pages * PAGE, region_thp[r] ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) &&
		    errno != EINVAL)
			fail_sys("madvise(MADV_HUGEPAGE)", errno);
		/* Region r prefers node r % nodes: ZONE_MOVABLE fills first on each. */
		if (numa_ok && nnodes >= 2 &&
		    syscall(SYS_mbind, at, region_pages * PAGE, MPOL_PREFERRED, &mask, MAX_NODES + 1, 0)) {
			if (errno != ENOSYS && errno != EINVAL)
				fail_sys("mbind(MPOL_PREFERRED)", errno);
			snprintf(mbind_note, sizeof(mbind_note), "mbind(MPOL_PREFERRED) refused (%s): "
				 "regions are placed by the default policy", strerror(errno));
		}
	}
	for (size_t pg = 0; pg < npages; pg++) {
		gen[pg] = 1;
		offgen_fill(&pattern, pg, 1, 0);
	}
}

static void open_pagemap(void)
{
	uint64_t e;

	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0) {
		snprintf(pagemap_note, sizeof(pagemap_note), "/proc/self/pagemap cannot be opened "
			 "(%s): pages in a block cannot be told, so pages_in_block is 0",
			 strerror(errno));
		return;
	}
	e = written_page_entry(pagemap_fd, mem);
	if (!(e & PM_PFN_MASK))
		snprintf(pagemap_note, sizeof(pagemap_note), "/proc/self/pagemap hides PFNs (it "
			 "shows them to CAP_SYS_ADMIN only): pages in a block cannot be told, so "
			 "pages_in_block is 0");
}

/* --self-test-corrupt's check, as the faulters check. */
static void self_test_check(size_t pg)
{
	unsigned long long retries = 0;
	static uint64_t buf[WORDS];

	verify_page("main (self-test)", pg, buf, &retries);
}

static void totals(unsigned long long *ops, unsigned long long *verified)
{
	*ops = *verified = 0;
	for (int i = 0; i < nfaulters; i++) {
		*ops += GET(faulters[i].ops);
		*verified += GET(faulters[i].pages_verified);
	}
}

static void progress(double t)
{
	unsigned long long ops, verified;

	totals(&ops, &verified);
	printf("%s progress: %.0fs: %llu offline attempts, %llu blocks offlined, %llu onlined, "
	       "%llu busy, %llu timed out, %llu of our pages moved out, %llu fault ops, %llu pages "
	       "verified (+%llu by children), %llu forks\n", prog, t, GET(off.attempts),
	       GET(off.offlined), GET(off.onlined), GET(off.busy), GET(off.timed_out),
	       GET(off.pages_moved_out), ops, verified, GET(shared->child_pages_verified), forks);
}

static void print_summary(double secs)
{
	struct rusage ru = self_rusage();
	unsigned long long ops, verified, rd = 0, wrt = 0, zaps = 0, retries = off.seq_retries;
	int nthp = 0;
	char list[512] = "", per[1024] = "";
	size_t n = 0, m = 0;

	totals(&ops, &verified);
	for (int i = 0; i < nfaulters; i++) {
		rd += faulters[i].pages_read;
		wrt += faulters[i].pages_written;
		zaps += faulters[i].zaps;
		retries += faulters[i].seq_retries;
	}
	for (int r = 0; r < REGIONS; r++)
		nthp += region_thp[r];
	for (int i = 0; i < ncand && n < sizeof(list) - 32; i++)
		n += snprintf(list + n, sizeof(list) - n, "%s%ld", i ? "," : "", blocks[i].index);
	/* memoryN:offlined/busy/einval/timed_out/other per candidate. */
	for (int i = 0; i < ncand && m < sizeof(per) - 80; i++) {
		const struct block *b = &blocks[i];

		m += snprintf(per + m, sizeof(per) - m, "%smemory%ld:%llu/%llu/%llu/%llu/%llu",
			      i ? "," : "", b->index, b->offlined, b->busy, b->einval, b->timed_out,
			      b->other);
	}
	printf("%s summary: seed=%ld duration=%.1fs mb=%zu pages=%zu regions=%d thp_regions=%d "
	       "faulters=%ld nodes=%d mode=%s memory_blocks=%d block_mb=%ld auto_online_blocks=%s "
	       "candidates=%d candidate_blocks=%s\n", prog, seed, secs, npages * PAGE >> 20, npages,
	       REGIONS, nthp, nfaulters, nnodes, dry_run ? "dry-run" : "offline", nblocks_seen,
	       block_bytes >> 20, auto_online, ncand, ncand ? list : "none");
	printf("%s offline: offline_attempts=%llu blocks_offlined=%llu blocks_onlined=%llu "
	       "online_fallbacks=%llu online_retries=%llu blocks_lost=%llu dry_picks=%llu "
	       "longest_offline=%.2fs offline_seconds=%.1fs\n", prog, off.attempts, off.offlined,
	       off.onlined, off.online_fallbacks, off.online_failures, off.lost, off.dry_picks,
	       off.longest_offline, off.total_offline);
	printf("%s failures: offline_ebusy=%llu offline_eagain=%llu offline_timed_out=%llu "
	       "offline_einval=%llu offline_enomem=%llu offline_other=%llu last_other_errno=%llu "
	       "offline_cut_short=%llu blocks_dropped=%llu per_block=%s\n", prog, off.busy,
	       off.again, off.timed_out, off.einval, off.nomem, off.other,
	       off.last_other_errno, off.cut_short, off.dropped, ncand ? per : "none");
	printf("%s pages: pages_in_block=%llu pages_moved_out=%llu offline_pages_verified=%llu\n",
	       prog, off.pages_in_block, off.pages_moved_out, off.pages_verified);
	printf("%s faults: fault_ops=%llu pages_read=%llu pages_written=%llu zaps=%llu "
	       "pages_verified=%llu child_pages_verified=%llu seq_retries=%llu minor_faults=%ld "
	       "major_faults=%ld\n", prog, ops, rd, wrt, zaps, verified, shared->child_pages_verified,
	       retries, ru.ru_minflt, ru.ru_majflt);
	printf("%s fork: forks=%llu children_reaped=%llu\n", prog, forks, children_reaped);
	print_note(blocks_note);
	if (dry_run)
		print_note("--dry-run: no block's state was written; dry_picks counts the offlines "
			   "it would have tried");
	print_note(pagemap_note);
	print_note(mbind_note);
	for (int i = 0; i < ncand; i++)
		if (blocks[i].lost)
			printf("%s note: memory%ld could not be onlined again\n", prog, blocks[i].index);
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = sigalrm_handler };
	sigset_t alrm;
	uint64_t fork_rng;
	double start, end, next_progress, next_fork;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	size_regions(mb, REGIONS, CHUNK_PAGES, &region_pages, &npages, &nchunks);
	plan_only(plan_n, print_plan);
	find_blocks();
	if (ncand && !dry_run)
		supervise(restore_blocks);   /* what follows runs in its child */

	/* SIGALRM interrupts the offliner's write to state: only it takes it. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL))
		fail_sys("sigaction(SIGALRM)", errno);
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	check_pthread("pthread_sigmask", pthread_sigmask(SIG_BLOCK, &alrm, NULL));

	find_nodes();
	map_region();
	open_pagemap();
	shared = map_shared_page();
	fork_gate_init(&fork_gate);

	start = now();
	if (!ncand) {
		/* Nothing to offline: one verification pass, then say so. */
		for (size_t pg = 0; pg < npages; pg++)
			verify_page("main", pg, faulters[0].buf, &faulters[0].seq_retries);
		faulters[0].pages_verified = npages;
		print_summary(now() - start);
		return 0;
	}
	off.rng = stream(RNG_OFFLINER);
	fork_rng = stream(RNG_FORK);
	next_progress = start + PROGRESS_EVERY;
	next_fork = start;
	for (int i = 0; i < nfaulters; i++) {
		faulters[i].id = i;
		faulters[i].rng = stream(RNG_FAULTER + i);
		start_thread(&faulters[i].tid, faulter_main, &faulters[i]);
	}
	start_thread(&off.tid, offliner_main, NULL);

	for (double t = 0; (t = now()) - start < duration;) {
		if (self_test_corrupt && t - start >= self_test_at(duration))
			self_test_flip(&fork_gate, mem, selftest_offset(), self_test_check);
		if (progress_due(t, &next_progress))
			progress(t - start);
		if (t >= next_fork) {
			fork_checker(&fork_rng, &fork_gate, child_main);
			next_fork = t + FORK_EVERY;
		}
		usleep(10000);
	}
	stop_and_reap();
	/* An offline under way ends now rather than at its timeout. */
	pthread_kill(off.tid, SIGALRM);
	for (int i = 0; i < nfaulters; i++)
		pthread_join(faulters[i].tid, NULL);
	pthread_join(off.tid, NULL);
	end = now();
	print_summary(end - start);
	for (int i = 0; i < ncand; i++)
		if (blocks[i].lost)
			die(EXIT_WORKLOAD, "workload failed: memory%ld, which it offlined, could not be "
			    "onlined again", blocks[i].index);
	return 0;
}
