// SPDX-License-Identifier: Apache-2.0
/*
 * thp_split: THPs split every way the kernel splits them, and above all by
 * the deferred-split shrinker, while every page stays verifiable.
 *
 * The parent process keeps regions of 2 MiB (--thp-mb), each one THP when it
 * is fresh (MADV_HUGEPAGE, 2 MiB aligned, first touched by a write).  Churner
 * threads, each on one region at a time under its lock:
 *   - MADV_DONTNEED part of a region, munmap part of it (a hole, mapped back
 *     later), mprotect part of it read-only and back: the THP becomes PTE-
 *     mapped and partially mapped, and goes on the deferred-split queue;
 *   - MADV_PAGEOUT part of it (reclaim splits a partially-mapped THP first);
 *   - split its THPs through debugfs (/sys/kernel/debug/split_huge_pages,
 *     "<pid>,0x<start>,0x<end>[,<order>]", to order 0, 2 or 4);
 *   - MADV_COLLAPSE it back into a THP (khugepaged, which the workload does
 *     not tune, collapses MADV_HUGEPAGE regions on its own too);
 *   - map it afresh (a new THP), write and verify runs of pages.
 * A migrator thread move_pages()s random pages of the regions to the other
 * NUMA node (partially-mapped THPs among them) and now and then
 * migrate_pages()s the whole process.  The main thread forks children that
 * verify what they inherited, write some of it (COW) and MADV_DONTNEED part
 * of a shared THP in their own copy.
 *
 * The shrinker proof: a pressure child, in a memory cgroup of its own (cgroup
 * v2, created under the hierarchy's root, memory.swap.max=0 so reclaim can
 * not touch its anonymous pages), in rounds: faults THPs in, checks in
 * /proc/kpageflags that they are THPs, MADV_DONTNEEDs a seeded part of each
 * (they are now partially mapped and the unmapped parts stay charged), reads
 * the deferred-split queue of its memcg from the shrinker's own debugfs
 * count file (/sys/kernel/debug/shrinker/thp-deferred_split-<id>/count:
 * lines "<memcg inode> <count on node 0> <count on node 1>..."), then
 * allocates past memory.high.  Reclaim finds no anonymous page it may swap,
 * goes down to priority 0 and calls the memcg's shrinkers: only the
 * deferred-split shrinker can free the unmapped parts, by splitting the
 * THPs.  The child then finds in kpageflags which of its THPs were split
 * (nothing else splits them: it does not touch them, khugepaged is kept off
 * them with MADV_NOHUGEPAGE, compaction skips THPs, nobody migrates them) and
 * reads the queue again.  Every 4th round sets no memory.high: a control
 * (its THPs should stay whole while it allocates).  Whatever is still
 * partially mapped after the allocation, the child asks the shrinker to
 * split through its debugfs scan file ("<memcg inode> <node> <objects to
 * scan>").  The summary says which proof the run holds:
 * shrinker_proof=reclaim (reclaim's own shrinker call split them), scan,
 * none, or unavailable (no memory cgroup, no shrinker debugfs or no
 * kpageflags; a note says why).  The memcg (kstress-thp_split-<pid>) is
 * removed at the end; a workload killed before then leaves it behind, empty.
 *
 * Every page holds 512 words that encode (logical page, generation, word); a
 * page that was zapped must read as zeros.
 *
 * On one NUMA node the migrator only queries where pages are; without
 * debugfs there are no debugfs splits; without a cgroup v2 memory
 * controller the pressure child's rounds still run, with no pressure.  The
 * summary says all of this.
 *
 * Exit status: 0 done; 1 data came back wrong (the first differing offset,
 * expected and found values and the page's pagemap/kpageflags state are
 * printed) or memory the workload has mapped faulted; 2 usage; 125 the
 * workload failed (a syscall failed unexpectedly: the call and errno are
 * printed).  A child exits 3 on a data mismatch and 4 on a fault, which make
 * the parent exit 1.  The summary on stdout is key=value text.
 */
#define PROG "thp_split"
#define USAGE "usage: " PROG " --duration SECONDS --seed N [--writers N] [--thp-mb N]\n" \
	"       [--pressure-thp-mb N] [--pressure-mb N] [--no-fork] [--no-migrate]\n" \
	"       [--no-pressure] [--no-reclaim] [--no-debugfs] [--log N] [--plan N]\n"
#include "kstress.h"

#include <dirent.h>
#include <sys/stat.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define RPAGES 512              /* pages in a region: one PMD-sized THP */
#define MAX_WRITERS 8
#define BATCH 64
#define FORK_SAMPLE 3
#define CHILD_PICKS 32
#define MAGIC 0x7b51ULL          /* of its pattern words (kstress.h) */
#define GEN_MAX PATTERN_GEN_MAX
#define PRESSURE_LP0 (1U << 19) /* the pressure child's logical pages */
#define SAMPLE_EVERY 1.0        /* seconds between shrinker count samples */
#define DEBUGFS "/sys/kernel/debug"
#define THP_SYSFS "/sys/kernel/mm/transparent_hugepage"

/* ---------------------------------------------------------- configuration */

static long duration = -1, seed = -1, nwriters = 2, thp_mb = 32;
static long pressure_thp_mb = 24, pressure_mb = 16;
static int no_fork, no_migrate, no_pressure, no_reclaim, no_debugfs, self_test_corrupt;
/* Offsets of the seeded streams: forker, migrator, pressure child, then
 * churner t at RNG_CHURNER + t. */
enum { RNG_MAIN = 2, RNG_MIGRATOR = 3, RNG_PRESSURE = 4, RNG_CHURNER = 5 };

static __thread const char *cur_op = "setup";
static __thread int cur_region = -1;
static __thread char who[48] = "main thread";

/* ------------------------------------------------------------ the regions */

struct region {
	pthread_mutex_t lock;
	int id;
	char *addr;             /* 2 MiB aligned, never moves */
	uint32_t genctr;
	int holes;              /* pages munmapped */
	uint32_t gen[RPAGES];   /* generation of each page, 0 = zeros */
	uint8_t mapped[RPAGES]; /* 0: a hole (munmapped) */
};

static struct region *regions;
static int nregions;
static char *area;              /* the regions, side by side */

struct stats {
	unsigned long long ops, writes, verifies, dontneed, munmap_part, fill_holes, refresh,
		mprotect, pageout, collapse_ok, collapse_again, collapse_nomem, collapse_busy,
		collapse_inval,
		split_writes, split_einval, split_thp_before, split_thp_after,
		pages_verified, pages_written;
};

static __thread struct stats *me;

/* The pattern word w of logical page lp at generation gen. */
static inline uint64_t pat(uint32_t lp, uint32_t gen, unsigned w)
{
	return pattern_word(MAGIC, lp, gen, w);
}

static uint32_t next_gen(struct region *r)
{
	r->genctr = r->genctr % GEN_MAX + 1;
	return r->genctr;
}

/* ------------------------------------------------------- small file I/O */

/* Reads path into buf (NUL-terminated); its length, or -errno. */
static long read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t have = 0;

	if (fd < 0)
		return -errno;
	while (have < size - 1) {
		ssize_t n = read(fd, buf + have, size - 1 - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			close(fd);
			return -err;
		}
		if (n == 0)
			break;
		have += n;
	}
	close(fd);
	buf[have] = 0;
	return have;
}

/* Writes text to path in one write(2); 0 or -errno. */
static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* The value of "key value" line key in text (memory.stat, memory.events,
 * /proc/vmstat), or -1. */
static long long keyed_value(const char *text, const char *key)
{
	size_t k = strlen(key);
	const char *s = text;

	while (s && *s) {
		if (!strncmp(s, key, k) && s[k] == ' ')
			return strtoll(s + k + 1, NULL, 10);
		s = strchr(s, '\n');
		s = s ? s + 1 : NULL;
	}
	return -1;
}

static long long file_value(const char *path, const char *key)
{
	char buf[8192];

	if (read_text(path, buf, sizeof(buf)) < 0)
		return -1;
	return key ? keyed_value(buf, key) : strtoll(buf, NULL, 10);
}

/* ------------------------------------------------- pagemap and kpageflags */

static int pagemap_fd = -1, kpageflags_fd = -1;

/* Opened again in a child: an open pagemap reads the mm it was opened in. */
static void open_page_monitors(void)
{
	if (pagemap_fd >= 0)
		close(pagemap_fd);
	if (kpageflags_fd >= 0)
		close(kpageflags_fd);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
}

/* The page's pagemap entry, or 0 if unreadable. */
static uint64_t pagemap_entry(const void *addr)
{
	uint64_t ent = 0;

	if (pagemap_fd < 0 || pread(pagemap_fd, &ent, 8, (uintptr_t)addr / PAGE * 8) != 8)
		return 0;
	return ent;
}

/* The kpageflags of the page mapped at addr: 1 with *flags set, 0 if it is
 * not present, -1 if they cannot be read (no root, no kpageflags). */
static int page_flags(const void *addr, uint64_t *flags)
{
	uint64_t ent = pagemap_entry(addr), pfn = ent & PM_PFN_MASK;

	if (!(ent & PM_PRESENT))
		return pagemap_fd < 0 ? -1 : 0;
	if (!pfn || kpageflags_fd < 0 || pread(kpageflags_fd, flags, 8, pfn * 8) != 8)
		return -1;
	return 1;
}

/* 1 if the page at addr is part of a THP (a large anonymous folio). */
static int page_is_thp(const void *addr)
{
	uint64_t f = 0;

	return page_flags(addr, &f) == 1 && KPF(f, KPF_THP);
}

/* Whether page_flags can tell (root with /proc/kpageflags). */
static int kpageflags_ok(void)
{
	return pagemap_fd >= 0 && kpageflags_fd >= 0 && geteuid() == 0;
}

/* What the kernel says about the page at addr: pagemap, kpageflags, node. */
static const char *page_state(const void *addr, char *out, size_t size)
{
	uint64_t ent = pagemap_entry(addr), flags = 0;
	int n = snprintf(out, size, "pagemap: present=%d swapped=%d exclusive=%d soft_dirty=%d pfn=0x%llx",
			 !!(ent & PM_PRESENT), !!(ent & PM_SWAP), !!(ent & PM_EXCLUSIVE),
			 !!(ent & PM_SOFT_DIRTY), (unsigned long long)(ent & PM_PFN_MASK));

	if (pagemap_fd < 0)
		n = snprintf(out, size, "pagemap unreadable");
	if (page_flags(addr, &flags) == 1)
		n += snprintf(out + n, size - n, " kpageflags: thp=%d compound_head=%d compound_tail=%d "
			      "anon=%d lru=%d swapcache=%d locked=%d zero_page=%d",
			      (int)KPF(flags, KPF_THP), (int)KPF(flags, KPF_COMPOUND_HEAD),
			      (int)KPF(flags, KPF_COMPOUND_TAIL), (int)KPF(flags, KPF_ANON),
			      (int)KPF(flags, KPF_LRU), (int)KPF(flags, KPF_SWAPCACHE),
			      (int)KPF(flags, KPF_LOCKED), (int)KPF(flags, KPF_ZERO_PAGE));
	else if (ent & PM_PRESENT)
		n += snprintf(out + n, size - n, " kpageflags: unreadable (needs root)");
	if (numa_ok) {
		void *p = (void *)addr;
		int st = STATUS_UNSET;

		if (sys_move_pages(1, &p, NULL, &st, 0) == 0)
			snprintf(out + n, size - n, " node=%d", st);
	}
	return out;
}

/* --------------------------------------------------------------- failing */

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	char d[512];

	(void)uc;
	claim_failure();
	finish(is_child ? EXIT_CHILD_FAULT : EXIT_KERNEL,
	       "memory access fault: signal %d (code %d) at %p in %s during %s on region %d, memory "
	       "the workload has mapped; page state: %s", sig, si->si_code, si->si_addr, who, cur_op,
	       cur_region, page_state(si->si_addr, d, sizeof(d)));
}

/* The word at w (page p of something whose logical page 0 is lp0) is not
 * what generation g put there. */
static _Noreturn void mismatch(const volatile uint64_t *w, size_t word, uint32_t lp, uint32_t g,
			       uint64_t exp, uint64_t got)
{
	uint64_t x = exp ^ got;
	size_t byte = word * 8 + (x ? __builtin_ctzll(x) / 8 : 0);
	char dec[96], s[512];

	claim_failure();
	decode_word(MAGIC, got, dec, sizeof(dec));
	finish(is_child ? EXIT_CHILD_MISMATCH : EXIT_KERNEL,
	       "data mismatch in %s during %s on region %d: logical page %u (generation %u) at %p: "
	       "first differing offset 0x%zx in the page (logical offset 0x%llx, address %p): "
	       "expected 0x%016llx, found 0x%016llx (%s), reread 0x%016llx; page state: %s",
	       who, cur_op, cur_region, lp, g, (void *)w, byte, (unsigned long long)lp * PAGE + byte,
	       (const char *)w + byte, (unsigned long long)exp, (unsigned long long)got, dec,
	       (unsigned long long)w[word], page_state((const void *)w, s, sizeof(s)));
}

/* The page at p holds logical page lp at generation g (zeros if g is 0). */
static void check_page(const char *p, uint32_t lp, uint32_t g)
{
	const volatile uint64_t *w = (const volatile uint64_t *)p;
	uint64_t base = g ? pat(lp, g, 0) : 0;

	for (size_t i = 0; i < WORDS; i++) {
		uint64_t v = w[i], want = g ? base | i : 0;

		if (v != want)
			mismatch(w, i, lp, g, want, v);
	}
	ADD(me->pages_verified, 1);
}

static void fill_page(char *p, uint32_t lp, uint32_t g)
{
	uint64_t *w = (uint64_t *)p, base = pat(lp, g, 0);

	for (size_t i = 0; i < WORDS; i++)
		w[i] = base | i;
	ADD(me->pages_written, 1);
}

/* A syscall on a region failed: the workload's trouble. */
static _Noreturn void region_fail(const struct region *r, const char *call, int err, const void *a,
				  size_t len)
{
	die(WORKLOAD_FAILURE_EXIT, "%s(%p, %zu pages) failed: %s (errno %d) in %s during %s on "
	    "region %d (%d pages unmapped)", call, a, len / PAGE, strerror(err), err, who, cur_op,
	    r->id, r->holes);
}

/* ----------------------------------------------------------- verification */

static inline char *pg(const struct region *r, size_t p)
{
	return r->addr + p * PAGE;
}

static inline uint32_t lp_of(const struct region *r, size_t p)
{
	return (uint32_t)r->id * RPAGES + p;
}

static void verify_one(struct region *r, size_t p)
{
	if (r->mapped[p])
		check_page(pg(r, p), lp_of(r, p), r->gen[p]);
}

static void write_one(struct region *r, size_t p, uint32_t g)
{
	fill_page(pg(r, p), lp_of(r, p), g);
	r->gen[p] = g;
}

static void verify_range(struct region *r, size_t p0, size_t n)
{
	for (size_t p = p0; p < p0 + n && p < RPAGES; p++)
		verify_one(r, p);
}

/* Verify then rewrite the mapped pages of [p0, p0 + n). */
static void write_range(struct region *r, size_t p0, size_t n)
{
	uint32_t g = next_gen(r);

	for (size_t p = p0; p < p0 + n && p < RPAGES; p++) {
		if (!r->mapped[p])
			continue;
		verify_one(r, p);
		write_one(r, p, g);
	}
}

/* First, last and n seeded pages. */
static void verify_sample(struct region *r, uint64_t x, int n)
{
	verify_one(r, 0);
	verify_one(r, RPAGES - 1);
	for (int i = 0; i < n; i++) {
		verify_one(r, x % RPAGES);
		x = x >> 9 | x << 55;
	}
}

/* The run of mapped pages that starts at the first mapped page at or after
 * p0 % RPAGES (wrapping), at most n long; 0 if the region has none. */
static size_t mapped_run(const struct region *r, size_t p0, size_t n, size_t *start)
{
	size_t p = p0 % RPAGES, k = 0, len = 0;

	while (k < RPAGES && !r->mapped[p]) {
		p = (p + 1) % RPAGES;
		k++;
	}
	if (k == RPAGES)
		return 0;
	*start = p;
	while (p + len < RPAGES && len < n && r->mapped[p + len])
		len++;
	return len;
}

/* ------------------------------------------------------------ operations */

enum {
	OP_WRITE, OP_VERIFY, OP_DONTNEED, OP_MUNMAP, OP_FILL, OP_REFRESH, OP_MPROTECT,
	OP_PAGEOUT, OP_COLLAPSE, OP_SPLIT, NOPS
};
static const char *const op_name[NOPS] = {
	"write", "verify", "dontneed", "munmap_part", "fill_holes", "refresh", "mprotect",
	"pageout", "collapse", "debugfs_split",
};

/* Which op a decision means: fixed by r0 alone. */
static int pick_op(uint64_t r0)
{
	static const unsigned char cut[NOPS] = { 16, 26, 42, 50, 56, 62, 70, 78, 88, 100 };
	unsigned x = (r0 >> 32) % 100;
	int op = 0;

	while (x >= cut[op])
		op++;
	return op;
}

static void op_write(struct region *r, uint64_t r1)
{
	write_range(r, r1 % RPAGES, 1 + (r1 >> 12) % 16);
	ADD(me->writes, 1);
}

static void op_verify(struct region *r, uint64_t r1)
{
	verify_range(r, r1 % RPAGES, 1 + (r1 >> 12) % 64);
	ADD(me->verifies, 1);
}

/* Zap part of the region: its THP is PTE-mapped and partially mapped, and
 * queued for a deferred split; the pages then read as zeros. */
static void op_dontneed(struct region *r, uint64_t r1)
{
	size_t p0, n = mapped_run(r, r1 % RPAGES, 1 + (r1 >> 12) % 384, &p0);

	if (!n)
		return;
	if (madvise(pg(r, p0), n * PAGE, MADV_DONTNEED))
		region_fail(r, "madvise(MADV_DONTNEED)", errno, pg(r, p0), n * PAGE);
	for (size_t p = p0; p < p0 + n; p++)
		r->gen[p] = 0;
	verify_one(r, p0);
	if (r1 >> 40 & 1)   /* fault some back in: small pages beside the THP's */
		write_range(r, p0, 1 + (r1 >> 41) % 8);
	ADD(me->dontneed, 1);
}

/* munmap part of the region: a hole the region keeps until filled. */
static void op_munmap(struct region *r, uint64_t r1)
{
	size_t p0, n = mapped_run(r, r1 % RPAGES, 1 + (r1 >> 12) % 256, &p0);

	if (!n || (size_t)r->holes + n >= RPAGES)
		return;
	if (munmap(pg(r, p0), n * PAGE))
		region_fail(r, "munmap", errno, pg(r, p0), n * PAGE);
	memset(r->mapped + p0, 0, n);
	for (size_t p = p0; p < p0 + n; p++)
		r->gen[p] = 0;
	r->holes += n;
	verify_sample(r, r1 >> 20, 2);
	ADD(me->munmap_part, 1);
}

/* mmap exactly at a, never over anything: nothing else in this process
 * maps memory once the threads run, so EEXIST is the workload's bug. */
static void map_at(struct region *r, char *a, size_t len)
{
	void *got = mmap(a, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (got == MAP_FAILED)
		region_fail(r, "mmap(MAP_FIXED_NOREPLACE)", errno, a, len);
	if (got != a)
		die(WORKLOAD_FAILURE_EXIT, "mmap(%p) returned %p (a kernel without "
		    "MAP_FIXED_NOREPLACE?) in %s on region %d", (void *)a, got, who, r->id);
	if (madvise(a, len, MADV_HUGEPAGE))
		region_fail(r, "madvise(MADV_HUGEPAGE)", errno, a, len);
}

/* Map the holes back; their pages are written (a first touch by a write:
 * a read would map the zero page). */
static void fill_holes(struct region *r)
{
	uint32_t g = next_gen(r);

	for (size_t p = 0; p < RPAGES;) {
		size_t n = 0;

		if (r->mapped[p]) {
			p++;
			continue;
		}
		while (p + n < RPAGES && !r->mapped[p + n])
			n++;
		map_at(r, pg(r, p), n * PAGE);
		memset(r->mapped + p, 1, n);
		for (size_t q = p; q < p + n; q++)
			write_one(r, q, g);
		p += n;
	}
	r->holes = 0;
}

static void op_fill(struct region *r, uint64_t r1)
{
	if (!r->holes)
		return;
	fill_holes(r);
	verify_sample(r, r1, 4);
	ADD(me->fill_holes, 1);
}

/* The whole region unmapped and mapped afresh: a new THP at its first
 * write fault. */
static void op_refresh(struct region *r, uint64_t r1)
{
	uint32_t g = next_gen(r);

	verify_sample(r, r1, 4);
	if (munmap(r->addr, THP))
		region_fail(r, "munmap", errno, r->addr, THP);
	map_at(r, r->addr, THP);
	memset(r->mapped, 1, RPAGES);
	r->holes = 0;
	for (size_t p = 0; p < RPAGES; p++)
		write_one(r, p, g);
	ADD(me->refresh, 1);
}

/* A read-only stretch splits the VMA and the PMD; it is verified, then
 * made writable again (the VMAs merge back). */
static void op_mprotect(struct region *r, uint64_t r1)
{
	size_t p0, n = mapped_run(r, r1 % RPAGES, 1 + (r1 >> 12) % 256, &p0);

	if (!n)
		return;
	if (mprotect(pg(r, p0), n * PAGE, PROT_READ))
		region_fail(r, "mprotect(PROT_READ)", errno, pg(r, p0), n * PAGE);
	verify_range(r, p0, n < 8 ? n : 8);
	if (mprotect(pg(r, p0), n * PAGE, PROT_READ | PROT_WRITE))
		region_fail(r, "mprotect(PROT_READ|PROT_WRITE)", errno, pg(r, p0), n * PAGE);
	write_range(r, p0, 1);
	ADD(me->mprotect, 1);
}

/* MADV_PAGEOUT part of the region: reclaim of a partially-mapped THP
 * splits it; with swap the pages go out and come back on the reads. */
static void op_pageout(struct region *r, uint64_t r1)
{
	size_t p0, n = mapped_run(r, r1 % RPAGES, 1 + (r1 >> 12) % 128, &p0);

	if (!n)
		return;
	if (madvise(pg(r, p0), n * PAGE, MADV_PAGEOUT))
		region_fail(r, "madvise(MADV_PAGEOUT)", errno, pg(r, p0), n * PAGE);
	verify_range(r, p0, n < 4 ? n : 4);
	ADD(me->pageout, 1);
}

/* MADV_COLLAPSE the whole region (holes first mapped back). EAGAIN (pages
 * busy), ENOMEM (no THP to be had), EBUSY (memcg charge) and EINVAL (a
 * kernel before 6.1, or a range it will not collapse: swap or migration
 * entries in it, VMAs that did not merge) are outcomes to count. */
static void op_collapse(struct region *r, uint64_t r1)
{
	if (r->holes)
		fill_holes(r);
	if (madvise(r->addr, THP, MADV_COLLAPSE) == 0) {
		ADD(me->collapse_ok, 1);
	} else if (errno == EAGAIN) {
		ADD(me->collapse_again, 1);
	} else if (errno == ENOMEM) {
		ADD(me->collapse_nomem, 1);
	} else if (errno == EBUSY) {
		ADD(me->collapse_busy, 1);
	} else if (errno == EINVAL) {
		ADD(me->collapse_inval, 1);
	} else {
		region_fail(r, "madvise(MADV_COLLAPSE)", errno, r->addr, THP);
	}
	verify_sample(r, r1, 6);
}

static int split_fd = -1;   /* /sys/kernel/debug/split_huge_pages */

/* How many of every 16th page of [p0, p0 + n) are THP pages. */
static unsigned long long thp_sample(const struct region *r, size_t p0, size_t n)
{
	unsigned long long k = 0;

	for (size_t p = p0; p < p0 + n; p += 16)
		k += r->mapped[p] && page_is_thp(pg(r, p));
	return k;
}

/* Split the THPs of part or all of the region through debugfs, to order 0,
 * 2 or 4 (never 1: anonymous folios cannot be order 1). */
static void op_split(struct region *r, uint64_t r1)
{
	static const int orders[4] = { 0, 0, 2, 4 };
	size_t p0 = r1 & 1 ? 0 : (r1 >> 1) % RPAGES;
	size_t n = r1 & 1 ? RPAGES : 1 + (r1 >> 12) % (RPAGES - p0);
	int order = orders[(r1 >> 24) % 4];
	char cmd[96];

	if (split_fd < 0)
		return;
	ADD(me->split_thp_before, thp_sample(r, p0, n));
	if (order)
		snprintf(cmd, sizeof(cmd), "%d,0x%lx,0x%lx,%d", (int)getpid(), (unsigned long)pg(r, p0),
			 (unsigned long)pg(r, p0 + n), order);
	else
		snprintf(cmd, sizeof(cmd), "%d,0x%lx,0x%lx", (int)getpid(), (unsigned long)pg(r, p0),
			 (unsigned long)pg(r, p0 + n));
	while (write(split_fd, cmd, strlen(cmd)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != EINVAL)
			die(WORKLOAD_FAILURE_EXIT, "write(%s/split_huge_pages, \"%s\") failed: %s (errno %d)",
			    DEBUGFS, cmd, strerror(errno), errno);
		ADD(me->split_einval, 1);
		break;
	}
	ADD(me->split_thp_after, thp_sample(r, p0, n));
	ADD(me->split_writes, 1);
	verify_sample(r, r1 >> 28, 6);
}

/* Decision op on region ri, with its mutex held (churn()). */
static void run_op(int ri, int op, const uint64_t args[2])
{
	struct region *r = &regions[ri];
	uint64_t r1 = args[0];

	cur_region = ri;
	cur_op = op_name[op];
	switch (op) {
	case OP_WRITE: op_write(r, r1); break;
	case OP_VERIFY: op_verify(r, r1); break;
	case OP_DONTNEED: op_dontneed(r, r1); break;
	case OP_MUNMAP: op_munmap(r, r1); break;
	case OP_FILL: op_fill(r, r1); break;
	case OP_REFRESH: op_refresh(r, r1); break;
	case OP_MPROTECT: op_mprotect(r, r1); break;
	case OP_PAGEOUT: op_pageout(r, r1); break;
	case OP_COLLAPSE: op_collapse(r, r1); break;
	case OP_SPLIT: op_split(r, r1); break;
	}
	cur_op = "idle";
}

/* --------------------------------------------------------------- churners */

struct churner {
	int id;
	uint64_t rng;
	struct stats st;
	struct dlog log;
};

static struct churner churners[MAX_WRITERS];
static struct crew crew;   /* the churners and the migrator */

static pthread_mutex_t *region_mutex(int ri)
{
	return &regions[ri].lock;
}

/* Decision n of churner t: two draws, whatever the regions' state. */
static int churner_decide(void *t_, long n, uint64_t args[2])
{
	struct churner *t = t_;
	uint64_t r0 = rnd(&t->rng);
	int ri = r0 % nregions, op = pick_op(r0);

	args[0] = rnd(&t->rng);
	log_line(&t->log, "decision churner%d n=%ld region=%d op=%s arg=%016llx", t->id, n, ri,
		 op_name[op], (unsigned long long)args[0]);
	return ri << 8 | op;
}

static void *churner_main(void *arg)
{
	struct churner *t = arg;

	me = &t->st;
	snprintf(who, sizeof(who), "churner %d", t->id);
	churn(t, &crew.gate, churner_decide, region_mutex, run_op, &me->ops);
	return NULL;
}

/* --------------------------------------------------------------- migrator */

static struct migrator mig;

/* A migrator's draw: any page of the regions. */
static void *migrator_pick(uint64_t x)
{
	return area + (x % ((uint64_t)nregions * RPAGES)) * PAGE;
}

static void *migrator_main(void *arg)
{
	(void)arg;
	snprintf(who, sizeof(who), "migrator");
	migrator_loop(&mig, &crew.gate, BATCH, migrator_pick);
	return NULL;
}

/* ----------------------------------------------------- memcg and shrinker */

static char cg_root[256], cg_dir[320], shrinker_dir[320], memcg_note[1024], shrinker_note[512];
static unsigned long cg_ino;
static int memcg_on, anon_reclaim_off;

/* The cgroup v2 mount point from /proc/mounts; 0 if there is none. */
static int find_cgroup2(void)
{
	char buf[16384], dev[64], mnt[256], type[32];
	const char *s = buf;

	if (read_text("/proc/mounts", buf, sizeof(buf)) < 0)
		return 0;
	while (s && *s) {
		if (sscanf(s, "%63s %255s %31s", dev, mnt, type) == 3 && !strcmp(type, "cgroup2")) {
			snprintf(cg_root, sizeof(cg_root), "%s", mnt);
			return 1;
		}
		s = strchr(s, '\n');
		s = s ? s + 1 : NULL;
	}
	return 0;
}

static int has_word(const char *text, const char *word)
{
	size_t k = strlen(word);

	for (const char *s = strstr(text, word); s; s = strstr(s + 1, word))
		if ((s == text || s[-1] == ' ') && (s[k] == 0 || s[k] == ' ' || s[k] == '\n'))
			return 1;
	return 0;
}

static void cg_path(char *out, size_t size, const char *file)
{
	snprintf(out, size, "%s/%s", cg_dir, file);
}

static int cg_write(const char *file, const char *fmt, ...)
{
	char path[400], text[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cg_path(path, sizeof(path), file);
	return write_text(path, text);
}

static long long cg_value(const char *file, const char *key)
{
	char path[400];

	cg_path(path, sizeof(path), file);
	return file_value(path, key);
}

/* Whether any swap device is active. */
static int swap_active(void)
{
	char buf[4096];
	long n = read_text("/proc/swaps", buf, sizeof(buf));
	const char *nl = n > 0 ? strchr(buf, '\n') : NULL;

	return nl && nl[1];
}

/* Our memory cgroup, a child of the cgroup v2 root where the memory
 * controller is enabled; memcg_note says why not. */
static void setup_memcg(void)
{
	char buf[512] = "", path[300];
	struct stat st;
	int err;

	if (!find_cgroup2()) {
		snprintf(memcg_note, sizeof(memcg_note), "no cgroup2 hierarchy mounted");
		return;
	}
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", cg_root);
	if (read_text(path, buf, sizeof(buf)) < 0 || !has_word(buf, "memory")) {
		snprintf(memcg_note, sizeof(memcg_note), "the memory controller is not enabled for "
			 "children of %s (cgroup.subtree_control: %s)", cg_root, buf);
		return;
	}
	snprintf(cg_dir, sizeof(cg_dir), "%s/kstress-thp_split-%d", cg_root, (int)getpid());
	if (mkdir(cg_dir, 0755)) {
		snprintf(memcg_note, sizeof(memcg_note), "mkdir %s: %s", cg_dir, strerror(errno));
		cg_dir[0] = 0;
		return;
	}
	if (stat(cg_dir, &st))
		fail_sys("stat(memory cgroup)", errno);
	cg_ino = st.st_ino;
	/* Reclaim must not be able to swap the pressure child's anonymous
	 * pages: then it cannot split them on its own (shrink_folio_list splits
	 * partially-mapped THPs it swaps out). */
	err = cg_write("memory.swap.max", "0");
	anon_reclaim_off = err == 0 ? cg_value("memory.swap.max", NULL) == 0 : !swap_active();
	if (err && err != -ENOENT) {
		rmdir(cg_dir);
		die(WORKLOAD_FAILURE_EXIT, "write %s/memory.swap.max: %s", cg_dir, strerror(-err));
	}
	if (!anon_reclaim_off)
		snprintf(memcg_note, sizeof(memcg_note), "swap is active and memory.swap.max cannot "
			 "be set: reclaim may split the pressure child's THPs itself");
	memcg_on = 1;
}

/* Once the pressure child is gone (EBUSY while the kernel still counts it). */
static void remove_memcg(void)
{
	int i;

	if (!cg_dir[0])
		return;
	for (i = 0; rmdir(cg_dir) && i < 50; i++) {
		if (errno != EBUSY)
			die(WORKLOAD_FAILURE_EXIT, "rmdir %s: %s", cg_dir, strerror(errno));
		usleep(100 * 1000);
	}
	if (i == 50)
		die(WORKLOAD_FAILURE_EXIT, "rmdir %s: still busy after 5 s", cg_dir);
	cg_dir[0] = 0;
}

/* The deferred-split shrinker's debugfs directory. */
static void find_shrinker(void)
{
	const char *root = DEBUGFS "/shrinker";
	DIR *d = opendir(root);
	struct dirent *e;

	if (!d) {
		snprintf(shrinker_note, sizeof(shrinker_note), "%s: %s (debugfs not mounted, or a "
			 "kernel without shrinker debugging in debugfs)", root, strerror(errno));
		return;
	}
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "thp-deferred_split-", 19)) {
			snprintf(shrinker_dir, sizeof(shrinker_dir), "%s/%s", root, e->d_name);
			break;
		}
	closedir(d);
	if (!shrinker_dir[0])
		snprintf(shrinker_note, sizeof(shrinker_note), "no thp-deferred_split-* in %s", root);
}

/*
 * The shrinker's count file: one line per memory cgroup with objects,
 * "<memcg inode> <count on node 0> <count on node 1>...". 6.12 keeps one
 * queue per memcg and reports its length for every node, so a memcg's queue
 * is the largest of its columns.  Returns the queue of memcg ino (0 when it
 * has no line), or -1 when the file cannot be read; *all gets the sum over
 * every memcg.
 */
static long shrinker_queue(unsigned long ino, long *all)
{
	static char buf[1 << 16];   /* the main thread's and the pressure child's */
	char path[400];
	long mine = 0, total = 0;
	char *s = buf;

	snprintf(path, sizeof(path), "%s/count", shrinker_dir);
	if (!shrinker_dir[0] || read_text(path, buf, sizeof(buf)) < 0)
		return -1;
	while (*s) {
		char *end;
		unsigned long id = strtoul(s, &end, 10);
		long q = 0;

		while (*end == ' ') {
			long v = strtol(end + 1, &end, 10);

			q = v > q ? v : q;
		}
		total += q;
		if (id == ino)
			mine = q;
		s = strchr(end, '\n');
		if (!s)
			break;
		s++;
	}
	if (all)
		*all = total;
	return mine;
}

/* Ask the shrinker to scan ino's queue (debugfs scan file). */
static void shrinker_scan(unsigned long ino, long nr)
{
	char path[400], cmd[64];
	int err;

	snprintf(path, sizeof(path), "%s/scan", shrinker_dir);
	snprintf(cmd, sizeof(cmd), "%lu 0 %ld", ino, nr);
	err = write_text(path, cmd);
	if (err)
		die(WORKLOAD_FAILURE_EXIT, "write(%s, \"%s\") failed: %s (errno %d)", path, cmd,
		    strerror(-err), -err);
}

/* ----------------------------------------------------------- pressure child */

#define MAX_PTHP 64
#define MAX_ROUNDS 4096

/* What the pressure child found, in memory it shares with the parent. */
struct pressure_stats {
	int stop;
	unsigned long long rounds, thps_formed, thps_partial, reclaim_splits, scan_writes,
		scan_splits, queue_drop, scan_queue_drop, high_events, oom_kills, freed_kb,
		scan_rounds, control_splits,
		rounds_with_reclaim_split, pages_verified, pages_written;
	long queue_max;          /* the largest queue the shrinker counted for our memcg */
	long queue_after_max;
	struct dlog log;
	char log_buf[];
};

static struct pressure_stats *ps;
static pid_t pressure_pid;

/* len bytes aligned to align, with nothing mapped around them that a
 * munmap of the len bytes would leave behind. */
static char *map_trimmed(size_t len, size_t align)
{
	char *raw = mmap(NULL, len + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *p;

	if (raw == MAP_FAILED)
		fail_sys("mmap", errno);
	p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	if ((p > raw && munmap(raw, p - raw)) || (raw + len + align > p + len &&
						    munmap(p + len, raw + align - p)))
		fail_sys("munmap", errno);
	return p;
}

struct round_plan {
	unsigned hole_at[MAX_PTHP], hole_len[MAX_PTHP];
	uint64_t digest;
};

static int pressure_thps(void)
{
	return pressure_thp_mb / 2;
}

/* Every 4th round (and every round with --no-reclaim) sets no limit: a
 * control (nothing should split its THPs) and then a debugfs scan. */
static int scan_round(long n)
{
	return no_reclaim || n % 4 == 3;
}

/* One round's decisions: where each THP is zapped, 1/2 to 3/4 of it. */
static void pressure_decide(uint64_t *rng, long n, struct round_plan *rp)
{
	rp->digest = 0;
	for (int i = 0; i < pressure_thps(); i++) {
		uint64_t x = rnd(rng);

		rp->hole_len[i] = RPAGES / 2 + x % (RPAGES / 4);
		rp->hole_at[i] = (x >> 16) % (RPAGES - rp->hole_len[i] + 1);
		rp->digest = (rp->digest ^ x) * 0x100000001b3ULL;
	}
	log_line(&ps->log, "decision pressure n=%ld kind=%s holes=%016llx", n,
		 scan_round(n) ? "control+scan" : "reclaim", (unsigned long long)rp->digest);
}

static int kept(const struct round_plan *rp, int i, size_t p)
{
	return p < rp->hole_at[i] || p >= rp->hole_at[i] + rp->hole_len[i];
}

/* The first page of THP i the round keeps mapped. */
static size_t first_kept(const struct round_plan *rp, int i)
{
	return rp->hole_at[i] ? 0 : rp->hole_len[i];
}

static void pressure_verify(char *t, char *p, const struct round_plan *rp, uint32_t g)
{
	for (int i = 0; i < pressure_thps(); i++)
		for (size_t q = 0; q < RPAGES; q++)
			check_page(t + (i * RPAGES + q) * PAGE, PRESSURE_LP0 + i * RPAGES + q,
				   kept(rp, i, q) ? g : 0);
	for (size_t q = 0; q < (size_t)pressure_mb * 256; q++)
		check_page(p + q * PAGE, PRESSURE_LP0 + MAX_PTHP * RPAGES + q, g);
}

/* How many of the THPs marked in partial[] are not THPs any more (their
 * first kept page is present and a small page); clears their marks. */
static unsigned long long count_split(char *t, const struct round_plan *rp, int *partial)
{
	unsigned long long n = 0;

	for (int i = 0; i < pressure_thps(); i++) {
		uint64_t f = 0;

		if (partial[i] && page_flags(t + (i * RPAGES + first_kept(rp, i)) * PAGE, &f) == 1 &&
		    !KPF(f, KPF_THP)) {
			partial[i] = 0;
			n++;
		}
	}
	return n;
}

/* The round's limits: over memory.high by half the zapped parts unless the
 * shrinker frees them; memory.max is only a backstop. */
static void set_limits(long n, long long garbage, size_t tlen, size_t plen)
{
	long long base = cg_value("memory.current", NULL);
	long long high = base + tlen + plen - garbage / 2;
	int err;

	if (base < 0)
		die(WORKLOAD_FAILURE_EXIT, "cannot read %s/memory.current", cg_dir);
	err = cg_write("memory.max", "%lld", high + (64LL << 20));
	if (!err)
		err = scan_round(n) ? cg_write("memory.high", "max") : cg_write("memory.high", "%lld", high);
	if (err)
		die(WORKLOAD_FAILURE_EXIT, "cannot set the limits of %s: %s", cg_dir, strerror(-err));
}

/* Fault tlen bytes of THPs in at t, then zap the planned part of each;
 * partial[i]: THP i was a THP and is now partially mapped.  Returns how
 * many are. */
static int make_partial_thps(char *t, size_t tlen, const struct round_plan *rp, uint32_t g, int *partial)
{
	int npartial = 0;

	cur_op = "pressure: fault THPs in";
	if (madvise(t, tlen, MADV_HUGEPAGE))
		fail_sys("madvise(MADV_HUGEPAGE)", errno);
	for (size_t q = 0; q < tlen / PAGE; q++)
		fill_page(t + q * PAGE, PRESSURE_LP0 + q, g);
	/* Keep khugepaged off them: nothing but the shrinker may change them. */
	if (madvise(t, tlen, MADV_NOHUGEPAGE))
		fail_sys("madvise(MADV_NOHUGEPAGE)", errno);
	cur_op = "pressure: zap part of each THP";
	for (int i = 0; i < pressure_thps(); i++) {
		char *thp = t + (size_t)i * THP;
		int was_thp = page_is_thp(thp);

		ps->thps_formed += was_thp;
		if (madvise(thp + rp->hole_at[i] * PAGE, rp->hole_len[i] * PAGE, MADV_DONTNEED))
			fail_sys("madvise(MADV_DONTNEED)", errno);
		partial[i] = was_thp && page_is_thp(thp + first_kept(rp, i) * PAGE);
		npartial += partial[i];
	}
	return npartial;
}

/* The memcg's figures before and after the allocation. */
struct memcg_snap {
	long queue;
	long long high_events, current;
};

static struct memcg_snap memcg_snap(void)
{
	struct memcg_snap m = { -1, 0, 0 };

	if (memcg_on) {
		m.queue = shrinker_queue(cg_ino, NULL);
		m.high_events = cg_value("memory.events", "high");
		m.current = cg_value("memory.current", NULL);
	}
	return m;
}

/* A reclaim round's figures: what reclaim split and freed, and how the
 * shrinker's own count of the memcg's queue fell. */
static void count_reclaim(const struct memcg_snap *a, const struct memcg_snap *b, size_t plen,
			  unsigned long long splits)
{
	/* What the memcg would hold had nothing been freed, less what it holds. */
	long long freed = a->current + (long long)plen - b->current;

	ADD(ps->reclaim_splits, splits);   /* progress() reads it meanwhile */
	ps->rounds_with_reclaim_split += splits > 0;
	ps->high_events += b->high_events - a->high_events;
	if (memcg_on && freed > 0)
		ps->freed_kb += freed >> 10;
	if (a->queue > b->queue && b->queue >= 0)
		ps->queue_drop += a->queue - b->queue;
	if (b->queue > ps->queue_after_max)
		ps->queue_after_max = b->queue;
}

static void pressure_round(uint64_t *rng, long n)
{
	size_t tlen = (size_t)pressure_thps() * THP, plen = (size_t)pressure_mb << 20;
	int partial[MAX_PTHP] = { 0 }, npartial;
	uint32_t g = n % GEN_MAX + 1;
	long long garbage = 0;
	struct memcg_snap before, after;
	struct round_plan rp;
	unsigned long long splits;
	char *t, *p;

	pressure_decide(rng, n, &rp);
	for (int i = 0; i < pressure_thps(); i++)
		garbage += (long long)rp.hole_len[i] * PAGE;
	if (memcg_on)
		set_limits(n, garbage, tlen, plen);
	t = map_trimmed(tlen, THP);
	npartial = make_partial_thps(t, tlen, &rp, g, partial);
	ps->thps_partial += npartial;
	before = memcg_snap();
	if (before.queue > ps->queue_max)
		ps->queue_max = before.queue;

	cur_op = "pressure: allocate past memory.high";
	p = map_trimmed(plen, PAGE);
	if (madvise(p, plen, MADV_NOHUGEPAGE))
		fail_sys("madvise(MADV_NOHUGEPAGE)", errno);
	for (size_t q = 0; q < plen / PAGE; q++)
		fill_page(p + q * PAGE, PRESSURE_LP0 + MAX_PTHP * RPAGES + q, g);
	splits = count_split(t, &rp, partial);
	after = memcg_snap();
	if (scan_round(n))
		ps->control_splits += splits;
	else
		count_reclaim(&before, &after, plen, splits);
	if (memcg_on)
		ps->oom_kills = cg_value("memory.events", "oom_kill");

	/* Ask the shrinker directly for what is still on the queue. */
	if (memcg_on && shrinker_dir[0] && (size_t)npartial > splits) {
		cur_op = "pressure: shrinker scan";
		shrinker_scan(cg_ino, after.queue > 0 ? after.queue : MAX_PTHP);
		ps->scan_writes++;
		ps->scan_splits += count_split(t, &rp, partial);
		if (after.queue > shrinker_queue(cg_ino, NULL))
			ps->scan_queue_drop += after.queue - shrinker_queue(cg_ino, NULL);
	}
	cur_op = "pressure: verify";
	pressure_verify(t, p, &rp, g);
	if (munmap(t, tlen) || munmap(p, plen))
		fail_sys("munmap", errno);
	ADD(ps->rounds, 1);
	ps->scan_rounds += scan_round(n);
}

static struct stats pressure_stats_own;

static _Noreturn void pressure_main(void)
{
	uint64_t rng = seed_stream(seed, RNG_PRESSURE);
	char pid[32];
	long n = 0;

	child_begin();
	open_page_monitors();
	me = &pressure_stats_own;
	snprintf(who, sizeof(who), "pressure child (pid %d)", (int)getpid());
	die_with_parent();
	if (memcg_on) {
		char path[400];
		int err;

		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		cg_path(path, sizeof(path), "cgroup.procs");
		err = write_text(path, pid);
		if (err)
			die(WORKLOAD_FAILURE_EXIT, "cannot join %s: %s", cg_dir, strerror(-err));
	}
	while (!GET(ps->stop) && n < MAX_ROUNDS) {
		pressure_round(&rng, n++);
		ps->pages_verified = me->pages_verified;
		ps->pages_written = me->pages_written;
		usleep(200 * 1000);
	}
	_exit(0);
}

/* Judge the pressure child's end like a fork child's, naming it. */
static void reap_pressure(void)
{
	long long oom_kills;
	int st;

	if (!pressure_pid)
		return;
	ADD_SHARED(ps->stop, 1);
	while (waitpid(pressure_pid, &st, 0) < 0)
		if (errno != EINTR)
			fail_sys("waitpid(pressure child)", errno);
	pressure_pid = 0;
	oom_kills = memcg_on ? cg_value("memory.events", "oom_kill") : -1;
	remove_memcg();
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;
	if (WIFEXITED(st) && (WEXITSTATUS(st) == EXIT_CHILD_MISMATCH || WEXITSTATUS(st) == EXIT_CHILD_FAULT))
		die(EXIT_KERNEL, "the pressure child found data that differs from what it wrote, or "
		    "faulted on its memory (exit %d; its report is above)", WEXITSTATUS(st));
	if (WIFEXITED(st))
		die(WORKLOAD_FAILURE_EXIT, "the pressure child exited with status %d", WEXITSTATUS(st));
	if (WTERMSIG(st) == SIGKILL)
		die(WORKLOAD_FAILURE_EXIT, "the pressure child was killed by SIGKILL (its memcg's "
		    "oom_kill count: %lld)", oom_kills);
	die(EXIT_KERNEL, "the pressure child was killed by signal %d (%s)", WTERMSIG(st),
	    strsignal(WTERMSIG(st)));
}

/* What the run proves about the deferred-split shrinker. */
static const char *shrinker_proof(void)
{
	if (!memcg_on || !shrinker_dir[0] || !kpageflags_ok() || no_pressure)
		return "unavailable";
	if (anon_reclaim_off && ps->reclaim_splits && ps->high_events && ps->queue_max > 0 &&
	    ps->queue_drop)
		return "reclaim";
	if (ps->scan_splits)
		return "scan";
	return "none";
}

/* ------------------------------------------------------------------ forks */

static struct shared {
	unsigned long long children_checked, child_pages_verified, child_cow_writes,
		child_dontneed, selftest_done;
} *shared;

static struct stats main_stats;
static struct dlog fork_log;

/* Decision n of the forker: a sorted sample of distinct regions and the
 * child's seed. */
static void forker_decide(uint64_t *rng, long n, struct fork_plan *f)
{
	forker_decide_sample(&fork_log, rng, n, nregions, FORK_SAMPLE, "regions", f);
}

/* --self-test-corrupt: flip one byte of a mapped page in this child's view
 * (a COW write: the parent keeps its copy) and verify it. */
static void corrupt_one(const struct fork_plan *f)
{
	struct region *r = &regions[f->sample[0]];
	size_t p0, n = mapped_run(r, 0, 1, &p0);

	if (!n)
		return;
	ADD_SHARED(shared->selftest_done, 1);
	cur_op = "self-test: a flipped byte must be found";
	((volatile char *)pg(r, p0))[0x123] ^= 0x40;
	verify_one(r, p0);
}

/* The child: only this thread exists; the sampled regions' bookkeeping is
 * what it was at the fork, as their owners were locked out. */
static _Noreturn void child_main(const struct fork_plan *f, int corrupt)
{
	size_t picks[FORK_SAMPLE][CHILD_PICKS];
	uint64_t rng = f->child_seed;
	struct region *r;
	size_t p0, n;

	child_begin();
	open_page_monitors();
	memset(me, 0, sizeof(*me));
	snprintf(who, sizeof(who), "child of fork #%llu (pid %d)", forks, (int)getpid());
	die_with_parent();
	if (corrupt)
		corrupt_one(f);
	cur_op = "child: verify inherited pages";
	for (int i = 0; i < f->k; i++) {
		r = &regions[f->sample[i]];
		cur_region = r->id;
		for (int j = 0; j < CHILD_PICKS; j++) {
			picks[i][j] = rnd(&rng) % RPAGES;
			verify_one(r, picks[i][j]);
		}
	}
	cur_op = "child: COW writes";
	for (int i = 0; i < f->k; i++) {
		r = &regions[f->sample[i]];
		cur_region = r->id;
		for (int j = 0; j < 4; j++) {
			size_t p = picks[i][rnd(&rng) % CHILD_PICKS];

			if (r->mapped[p]) {
				write_one(r, p, next_gen(r));
				ADD_SHARED(shared->child_cow_writes, 1);
			}
		}
	}
	/* Zap part of a THP the parent still maps whole: the shared folio is
	 * partially mapped in this child only. */
	cur_op = "child: dontneed";
	r = &regions[f->sample[rnd(&rng) % f->k]];
	cur_region = r->id;
	n = mapped_run(r, rnd(&rng), 1 + rnd(&rng) % 256, &p0);
	if (n) {
		if (madvise(pg(r, p0), n * PAGE, MADV_DONTNEED))
			region_fail(r, "madvise(MADV_DONTNEED)", errno, pg(r, p0), n * PAGE);
		for (size_t p = p0; p < p0 + n; p++)
			r->gen[p] = 0;
		ADD_SHARED(shared->child_dontneed, 1);
	}
	cur_op = "child: verify again";
	for (int i = 0; i < f->k; i++) {
		r = &regions[f->sample[i]];
		cur_region = r->id;
		for (int j = 0; j < CHILD_PICKS; j++)
			verify_one(r, picks[i][j]);
	}
	ADD_SHARED(shared->child_pages_verified, me->pages_verified);
	ADD_SHARED(shared->children_checked, 1);
	_exit(0);
}

/* One fork: its sample of regions is locked (their contents settled) while
 * the child is made. */
static void fork_one(uint64_t *rng)
{
	struct fork_plan f;

	forker_decide(rng, forks, &f);
	fork_sample_locked(&f, self_test_corrupt && !GET(shared->selftest_done), region_mutex,
			   child_main);
}

/* ---------------------------------------------------------------- set up */

static void *x_map(size_t len, int flags, const char *what)
{
	void *r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | flags, -1, 0);

	if (r == MAP_FAILED)
		die(EXIT_WORKLOAD, "%s (%zu bytes) failed: %s (errno %d)", what, len, strerror(errno), errno);
	return r;
}

static void plan_streams(void)
{
	nregions = thp_mb / 2;
	if ((uint64_t)nregions * RPAGES >= PRESSURE_LP0)
		usage("--thp-mb is too large");
	for (int t = 0; t < nwriters; t++) {
		churners[t].id = t;
		churners[t].rng = seed_stream(seed, RNG_CHURNER + t);
	}
	mig.rng = seed_stream(seed, RNG_MIGRATOR);
	mig.mv.nomem_ok = 1;
	ps = x_map(sizeof(*ps) + (log_decisions + 1) * LOG_LINE, MAP_SHARED, "mmap(pressure child's counters)");
	ps->log.buf = ps->log_buf;
}

/* The regions: 2 MiB aligned, side by side, each written whole. */
static void map_regions(void)
{
	regions = calloc(nregions, sizeof(*regions));
	if (!regions)
		die(EXIT_WORKLOAD, "out of memory for the region table");
	area = map_aligned((size_t)nregions * THP, THP, 0);
	if (madvise(area, (size_t)nregions * THP, MADV_HUGEPAGE))
		fail_sys("madvise(MADV_HUGEPAGE)", errno);
	for (int i = 0; i < nregions; i++) {
		struct region *r = &regions[i];
		uint32_t g;

		check_pthread("pthread_mutex_init", pthread_mutex_init(&r->lock, NULL));
		r->id = i;
		r->addr = area + (size_t)i * THP;
		memset(r->mapped, 1, RPAGES);
		g = next_gen(r);
		for (size_t p = 0; p < RPAGES; p++)
			write_one(r, p, g);
	}
}

static void open_debugfs(void)
{
	if (no_debugfs) {
		snprintf(shrinker_note, sizeof(shrinker_note), "--no-debugfs");
		return;
	}
	split_fd = open(DEBUGFS "/split_huge_pages", O_WRONLY | O_CLOEXEC);
	find_shrinker();
}

/* ------------------------------------------------------------- arguments */

static void parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		FLAG("--no-fork", &no_fork),
		FLAG("--no-migrate", &no_migrate),
		FLAG("--no-pressure", &no_pressure),
		FLAG("--no-reclaim", &no_reclaim),
		FLAG("--no-debugfs", &no_debugfs),
		FLAG("--self-test-corrupt", &self_test_corrupt),
		RUN_OPTS(&duration, &seed),
		NUM("--writers", &nwriters, 1, MAX_WRITERS),
		NUM("--thp-mb", &thp_mb, 2, 512),
		NUM("--pressure-thp-mb", &pressure_thp_mb, 2, 2 * MAX_PTHP),
		NUM("--pressure-mb", &pressure_mb, 1, 256),
		PLAN_OPT(&plan_decisions),
		LOG_OPT,
		{ NULL },
	};

	parse_opts(argc, argv, opts);
	if (seed < 0 || (duration < 0 && !plan_decisions))
		usage("--duration and --seed are required (--plan needs only --seed)");
}

/* --plan N: the first N decisions of every stream, from the seed alone. */
static int print_plan(void)
{
	uint64_t main_rng = seed_stream(seed, RNG_MAIN), prng = seed_stream(seed, RNG_PRESSURE);
	struct round_plan rp;
	struct fork_plan f;
	uint64_t args[2];

	for (int t = 0; t < nwriters; t++)
		for (long n = 0; n < plan_decisions; n++)
			churner_decide(&churners[t], n, args);
	for (long n = 0; n < plan_decisions; n++)
		forker_decide(&main_rng, n, &f);
	for (long n = 0; n < plan_decisions; n++)
		migrator_decide(&mig, n, BATCH, NULL, migrator_pick);
	for (long n = 0; n < plan_decisions; n++)
		pressure_decide(&prng, n, &rp);
	return 0;
}

/* ------------------------------------------------------------- reporting */

static const char *const vm_keys[] = {
	"thp_fault_alloc", "thp_deferred_split_page", "thp_split_page", "thp_split_page_failed",
	"thp_underused_split_page", "thp_split_pmd", "thp_collapse_alloc", "pgmigrate_success",
	"slabs_scanned",
};
#define NVM (sizeof(vm_keys) / sizeof(vm_keys[0]))

static void read_vmstat(long long *v)
{
	static char buf[1 << 16];

	if (read_text("/proc/vmstat", buf, sizeof(buf)) < 0)
		fail_sys("read /proc/vmstat", errno);
	for (size_t i = 0; i < NVM; i++)
		v[i] = keyed_value(buf, vm_keys[i]);
}

static void read_khugepaged(long long *v)
{
	v[0] = file_value(THP_SYSFS "/khugepaged/pages_collapsed", NULL);
	v[1] = file_value(THP_SYSFS "/khugepaged/full_scans", NULL);
}

static long queue_total_max, queue_samples;

static void sample_shrinker(void)
{
	long all = 0;

	if (shrinker_queue(cg_ino, &all) < 0)
		return;
	queue_samples++;
	if (all > queue_total_max)
		queue_total_max = all;
}

static void sum_stats(struct stats *s)
{
	memset(s, 0, sizeof(*s));
	for (int t = 0; t < nwriters; t++)
		add_counters(s, &churners[t].st, sizeof(*s));
}

static void progress(double t)
{
	struct stats s;

	sum_stats(&s);
	printf("thp_split progress: t=%.0fs ops=%llu forks=%llu pages_verified=%llu pages_moved=%llu "
	       "pressure_rounds=%llu reclaim_splits=%llu\n", t, s.ops, forks, s.pages_verified,
	       GET(mig.mv.moved), GET(ps->rounds), GET(ps->reclaim_splits));
}

static void notes(int migrate)
{
	if (nnodes < 2)
		printf("thp_split note: %s; the migrator only queries where pages are\n",
		       numa_ok ? "one NUMA node with memory, nothing to migrate to"
			       : "a kernel without NUMA, no migration and no queries");
	else if (!migrate)
		printf("thp_split note: --no-migrate\n");
	if (split_fd < 0)
		printf("thp_split note: no debugfs splits: %s\n", no_debugfs ? "--no-debugfs" :
		       "cannot open " DEBUGFS "/split_huge_pages (debugfs not mounted or not in the kernel, or not root)");
	if (!shrinker_dir[0])
		printf("thp_split note: no shrinker counts: %s\n", shrinker_note);
	if (memcg_note[0])
		printf("thp_split note: memcg: %s\n", memcg_note);
	if (!kpageflags_ok())
		printf("thp_split note: /proc/kpageflags unreadable (needs root): no THP checks\n");
	if (!strcmp(shrinker_proof(), "none"))
		printf("thp_split note: shrinker: none of the %llu partially-mapped THPs the shrinker "
		       "counted (at most %ld) was split, by reclaim (%llu memory.high events) or by a "
		       "debugfs scan\n", ps->thps_partial, ps->queue_max, ps->high_events);
}

static void report(double secs, int migrate, const long long *vm0, const long long *vm1,
		   const long long *kh0, const long long *kh1)
{
	struct rusage ru = self_rusage();
	struct stats s;

	sum_stats(&s);
	notes(migrate);
	printf("thp_split summary: seed=%ld duration=%.1fs nodes=%d migration=%s churners=%ld "
	       "regions=%d region_mb=%ld errors=0\n", seed, secs, nnodes,
	       migrate && nnodes > 1 ? "on" : "off", nwriters, nregions, thp_mb);
	printf("thp_split ops: ops=%llu writes=%llu verifies=%llu dontneed=%llu munmap_part=%llu "
	       "fill_holes=%llu refresh=%llu mprotect=%llu pageout=%llu collapse_ok=%llu "
	       "collapse_eagain=%llu collapse_enomem=%llu collapse_ebusy=%llu collapse_einval=%llu\n",
	       s.ops, s.writes, s.verifies, s.dontneed, s.munmap_part, s.fill_holes, s.refresh,
	       s.mprotect, s.pageout, s.collapse_ok, s.collapse_again, s.collapse_nomem, s.collapse_busy,
	       s.collapse_inval);
	printf("thp_split debugfs: split_huge_pages=%s split_writes=%llu split_einval=%llu "
	       "split_thp_pages_before=%llu split_thp_pages_after=%llu shrinker_debugfs=%s\n",
	       split_fd >= 0 ? "on" : "off", s.split_writes, s.split_einval, s.split_thp_before,
	       s.split_thp_after, shrinker_dir[0] ? "on" : "off");
	printf("thp_split shrinker: memcg=%s anon_reclaim=%s pressure_rounds=%llu scan_rounds=%llu "
	       "thps_formed=%llu thps_partial=%llu queue_max=%ld queue_after_max=%ld queue_drop=%llu "
	       "reclaim_splits=%llu rounds_with_reclaim_split=%llu memcg_high_events=%llu "
	       "memcg_oom_kills=%llu freed_kb=%llu control_splits=%llu scan_writes=%llu "
	       "scan_splits=%llu scan_queue_drop=%llu queue_total_max=%ld queue_samples=%ld "
	       "shrinker_proof=%s\n",
	       memcg_on ? "on" : "off", !memcg_on ? "n/a" : anon_reclaim_off ? "off" : "on",
	       ps->rounds, ps->scan_rounds, ps->thps_formed, ps->thps_partial, ps->queue_max,
	       ps->queue_after_max, ps->queue_drop, ps->reclaim_splits, ps->rounds_with_reclaim_split,
	       ps->high_events, ps->oom_kills, ps->freed_kb, ps->control_splits, ps->scan_writes,
	       ps->scan_splits, ps->scan_queue_drop, queue_total_max, queue_samples, shrinker_proof());
	printf("thp_split fork: forks=%llu children_checked=%llu child_pages_verified=%llu "
	       "child_cow_writes=%llu child_dontneed=%llu\n", forks, shared->children_checked,
	       shared->child_pages_verified, shared->child_cow_writes, shared->child_dontneed);
	printf("thp_split migrate: " MOVE_PAGES_KEYS " " MOVE_STATUS_KEYS " " MIGRATE_PAGES_KEYS
	       " out_of_memory_calls=%llu query_calls=%llu pages_present=%llu\n",
	       MOVE_PAGES_VALUES(mig.mv), MOVE_STATUS_VALUES(mig.mv), MIGRATE_PAGES_VALUES(mig.mv),
	       mig.mv.nomem_calls + mig.mv.mp_nomem_calls, mig.mv.query_calls, mig.mv.pages_present);
	printf("thp_split khugepaged: khugepaged_pages_collapsed=%lld khugepaged_full_scans=%lld\n",
	       kh0[0] < 0 ? -1 : kh1[0] - kh0[0], kh0[1] < 0 ? -1 : kh1[1] - kh0[1]);
	printf("thp_split vmstat:");
	for (size_t i = 0; i < NVM; i++)   /* -1: the kernel has no such counter */
		printf(" vm_%s=%lld", vm_keys[i], vm0[i] < 0 ? -1 : vm1[i] - vm0[i]);
	printf("\n");
	printf("thp_split verify: pages_verified=%llu pages_written=%llu pressure_pages_verified=%llu "
	       "minor_faults=%ld major_faults=%ld\n", s.pages_verified, s.pages_written,
	       ps->pages_verified, ru.ru_minflt, ru.ru_majflt);
	printf("thp_split rates: ops_per_s=%.0f forks_per_s=%.1f pages_moved_per_s=%.0f\n",
	       s.ops / secs, forks / secs, mig.mv.moved / secs);
}

int main(int argc, char **argv)
{
	static char outbuf[1 << 16];
	long long vm0[NVM], vm1[NVM], kh0[2], kh1[2];
	double start, end, next_progress, next_sample;
	uint64_t main_rng;
	int migrate;

	/* stdout's buffer is static: nothing may mmap() once holes exist. */
	setvbuf(stdout, outbuf, _IOLBF, sizeof(outbuf));
	parse_args(argc, argv);
	me = &main_stats;
	plan_streams();
	if (plan_decisions)
		return print_plan();
	find_nodes();
	migrate = !no_migrate && numa_ok;
	for (int t = 0; t < nwriters; t++)
		dlog_alloc(&churners[t].log);
	dlog_alloc(&mig.log);
	dlog_alloc(&fork_log);
	shared = x_map(sizeof(*shared), MAP_SHARED, "mmap(shared counters)");
	catch_faults(on_fault);
	open_page_monitors();
	open_debugfs();
	if (!no_pressure)
		setup_memcg();
	read_vmstat(vm0);
	read_khugepaged(kh0);
	if (!no_pressure) {
		pressure_pid = fork();
		if (pressure_pid < 0)
			fail_sys("fork", errno);
		if (pressure_pid == 0)
			pressure_main();
	}
	map_regions();

	crew_init(&crew, nwriters + migrate);
	for (int t = 0; t < nwriters; t++)
		crew_add(&crew, churner_main, &churners[t]);
	if (migrate)
		crew_add(&crew, migrator_main, NULL);
	main_rng = seed_stream(seed, RNG_MAIN);
	start = now();
	next_progress = start + PROGRESS_EVERY;
	next_sample = start;
	crew_go(&crew);

	while (now() - start < duration) {
		if (progress_due(now(), &next_progress))
			progress(now() - start);
		if (now() >= next_sample) {
			sample_shrinker();
			next_sample += SAMPLE_EVERY;
		}
		if (no_fork)
			usleep(10 * 1000);
		else
			fork_one(&main_rng);
	}
	stop_and_reap();
	crew_join(&crew);
	reap_pressure();
	remove_memcg();
	end = now();
	read_vmstat(vm1);
	read_khugepaged(kh1);

	for (int t = 0; t < nwriters; t++)
		print_log(&churners[t].log);
	print_log(&fork_log);
	print_log(&mig.log);
	print_log(&ps->log);
	report(end - start, migrate, vm0, vm1, kh0, kh1);
	return 0;
}
