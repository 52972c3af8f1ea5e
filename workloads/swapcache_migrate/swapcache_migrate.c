// SPDX-License-Identifier: Apache-2.0
/*
 * swapcache_migrate: swap-cache pages meeting migration entries.
 *
 * Anonymous memory is pushed to swap while threads fault it back in, a
 * migrator moves it between NUMA nodes and fork children read it.  A page
 * faulted back in from a swap device stays in the swap cache, mapped and
 * present; migrating such a folio replaces its PTEs with migration entries,
 * which fork() may copy and faults may wait on.  If either happens while the
 * folio is not locked, the kernel hits BUG_ON(!folio_test_locked(folio)) in
 * include/linux/swapops.h.  Everything runs in one process, because fork()
 * copies only the forking mm's entries and a fault waits only in its own mm:
 *   - a pager thread MADV_PAGEOUTs (and MADV_COLDs) random chunks, so their
 *     pages go to swap;
 *   - faulter threads read random pages back (swap-ins) and sometimes write
 *     one, bumping its generation under the chunk's seqlock;
 *   - a migrator thread move_pages()s the pages of chunks just paged out or
 *     being faulted to the other node, after sampling /proc/self/pagemap and
 *     /proc/kpageflags for them: swapcache_pages_migrated counts pages that
 *     were present and in the swap cache when move_pages was asked to move
 *     them and that it reports on the target node (the vmstat counters
 *     pswpout, pswpin and pgmigrate_success can all move without that);
 *   - the main thread forks children that verify a sample of the pages they
 *     inherited against the pattern as of the fork (writers are held off
 *     during fork by a gate) and exit 3 on a mismatch;
 *   - a cycler thread takes one 64 KiB chunk of its own 2 MiB at a time
 *     through the life that a lost swap-cache flag would betray: paged out,
 *     read back (a swap-in: it stays in the swap cache, mapped clean),
 *     written (dirty in the page table only), moved to the other node,
 *     paged out again and read back.  A kernel that migrated the chunk's
 *     swap-cache pages without their dirty state drops them instead of
 *     writing them, and the read brings back the older generation.
 * Every page holds 512 words, word = generation << 40 | its byte offset in
 * the region, so data that comes back wrong names where it came from.
 *
 * Choices follow from --seed: each thread draws from its own splitmix64
 * stream, and --plan N prints each stream's first N decisions.  (Which chunk
 * a "recently paged out" ring slot holds depends on timing; the decision to
 * look there does not.)
 *
 * Exit status: 0 done; 1 data came back wrong (the kernel's fault: the first
 * differing offset, expected and found values and the page's pagemap state
 * are on stderr) or a fork child died of a signal other than SIGKILL; 2 usage;
 * 125 the workload failed (a syscall failed unexpectedly, e.g. MADV_PAGEOUT
 * on a kernel without it).  The summary on stdout is key=value text; runs on
 * one NUMA node or without swap report 0s for what could not happen and say
 * why in "note:" lines.
 */
#define PROG "swapcache_migrate"
#define USAGE "usage: " PROG " --duration SECONDS --seed N [--mb MIB] [--faulters N]\n" \
	"       " PROG " --plan N --seed N [--mb MIB] [--faulters N]\n"
#include "kstress.h"

#include <sched.h>

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define BLOCK THP                         /* a THP range or a run of small pages */
#define CHUNK_PAGES 16
#define CHUNK (CHUNK_PAGES * PAGE)        /* unit of pageout, locking, migration */
#define CHUNKS_PER_BLOCK (BLOCK / CHUNK)
#define MAX_FAULTERS 16
#define RING 64
#define MIG_CHUNKS 4
#define MIG_BATCH (MIG_CHUNKS * CHUNK_PAGES)
#define CYCLE_CHUNKS CHUNKS_PER_BLOCK    /* the cycler's own block, after the shared ones */

/* Swap entries in /proc/PID/pagemap. */
#define PM_SWAP_TYPE(e) ((unsigned)((e) & 0x1f))  /* MAX_SWAPFILES_SHIFT bits */
#define PM_SWAP_OFFSET(e) (((e) & PM_PFN_MASK) >> 5)
/* Swap devices have types below MAX_SWAPFILES, which is at least 23 (32 less
 * the device, migration, hwpoison and marker types); the types above are
 * those special entries, here nearly always migration entries. */
#define SWAP_DEVICE_TYPES 23

/* -- seeded choices ----------------------------------------------------- */

enum { RNG_LAYOUT, RNG_PAGER, RNG_MIGRATOR, RNG_FORK, RNG_SELFTEST, RNG_FAULTER,
       RNG_CYCLER = RNG_FAULTER + MAX_FAULTERS };

static long seed = -1;

static uint64_t stream(int k)
{
	return seed_stream(seed, 0x51ed2701ULL * (uint64_t)(k + 1));
}

/* Configuration and the memory under test. */
static long duration = -1, mb = 128, plan_n = -1, nfaulters = 2;
static int self_test_corrupt;
static char *mem;
static size_t npages, nchunks, nblocks;
static unsigned char *block_thp;   /* per 2 MiB block: 1 = MADV_HUGEPAGE */
static uint32_t *gen;              /* per page: the generation it holds */
static uint32_t *seq;              /* per chunk: seqlock, odd while written */
static int swap_devices;           /* active ones; -1: no /proc/swaps */
static pthread_rwlock_t fork_gate;  /* writers share it, fork takes it alone */

static int thp_layout(uint64_t *rng)
{
	return rnd(rng) % 4 == 0;   /* a quarter of the blocks are THP ranges */
}

enum { PG_OUT_RUN, PG_OUT_BLOCK, PG_COLD_RUN };
static const char *const pager_kind_name[] = { "pageout", "pageout-block", "cold" };

struct pager_op {
	int kind;
	size_t chunk, nch;
};

static struct pager_op pager_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	unsigned k = r % 100;
	struct pager_op op;

	op.kind = k < 65 ? PG_OUT_RUN : k < 80 ? PG_OUT_BLOCK : PG_COLD_RUN;
	if (op.kind == PG_OUT_BLOCK) {
		op.chunk = ((r >> 8) % nblocks) * CHUNKS_PER_BLOCK;
		op.nch = CHUNKS_PER_BLOCK;
	} else {
		op.chunk = (r >> 8) % nchunks;
		op.nch = 1 + (r >> 48) % 4;
	}
	if (op.chunk + op.nch > nchunks)
		op.nch = nchunks - op.chunk;
	return op;
}

struct fault_op {
	int write;
	size_t chunk;
	unsigned page, npages;
};

/* Reads go anywhere; faulter i writes only chunks i, i + nfaulters, ..., so
 * each chunk has one writer and its seqlock needs no writer lock. */
static struct fault_op fault_next(uint64_t *rng, int id)
{
	uint64_t r = rnd(rng);
	struct fault_op op;

	op.write = r % 8 == 0;
	op.page = (r >> 40) % CHUNK_PAGES;
	if (op.write) {
		op.chunk = owned_chunk(r >> 8, id, nfaulters, nchunks);
		op.npages = 1;
	} else {
		op.chunk = (r >> 8) % nchunks;
		op.npages = 1 + (r >> 48) % CHUNK_PAGES;
		if (op.page + op.npages > CHUNK_PAGES)
			op.npages = CHUNK_PAGES - op.page;
	}
	return op;
}

enum { SRC_PAGEOUT, SRC_FAULT, SRC_RANDOM };
static const char *const src_name[] = { "pageout-ring", "fault-ring", "random" };

struct mig_op {
	int source;
	unsigned back, nch, stride, first;
	size_t rchunk[MIG_CHUNKS];   /* used for SRC_RANDOM, or an empty ring */
};

static struct mig_op mig_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	unsigned k = r % 10;
	struct mig_op op;

	op.source = k < 4 ? SRC_PAGEOUT : k < 8 ? SRC_FAULT : SRC_RANDOM;
	op.back = (r >> 8) % 8;
	op.nch = 1 + (r >> 16) % MIG_CHUNKS;
	op.stride = 1u << ((r >> 24) % 3);        /* every page, 2nd or 4th */
	op.first = (r >> 32) % op.stride;
	for (int j = 0; j < MIG_CHUNKS; j++)
		op.rchunk[j] = rnd(rng) % nchunks;
	return op;
}

/* The cycler's next chunk, 0..CYCLE_CHUNKS-1 of its block. */
static size_t cycle_next(uint64_t *rng)
{
	return rnd(rng) % CYCLE_CHUNKS;
}

static size_t selftest_offset(void)
{
	uint64_t r = stream(RNG_SELFTEST);

	return rnd(&r) % (npages * PAGE);
}

/* -- the pattern -------------------------------------------------------- */

/* Offset-and-generation words (kstress.h); describe_page (below) says what
 * pagemap knows of a page that came back wrong. */
static void describe_page(int fd, size_t pg, char *buf, size_t len);
static struct offgen_mem pattern = { .describe = describe_page, .state_name = "pagemap" };

static inline uint64_t *page_words(size_t pg)
{
	return (uint64_t *)(mem + pg * PAGE);
}

/* -- pagemap and kpageflags --------------------------------------------- */

static int pagemap_fd = -1, kpageflags_fd = -1;
static int pfns_visible;
static char kpf_state[32] = "unreadable";
static char kpf_note[256];
static char pagemap_note[160];

/* pagemap entries of pages [first_pg, first_pg + n). */
static int read_pagemap(int fd, size_t first_pg, size_t n, uint64_t *out)
{
	return pagemap_read(fd, mem + first_pg * PAGE, n, out);
}

/* The flags of a PFN, or 0 when they cannot be known. */
static int read_kpageflags(uint64_t pfn, uint64_t *flags)
{
	return kpageflags_read(kpageflags_fd, pfn, flags);
}

/* One page's pagemap state in words, for mismatch reports. */
static void describe_page(int fd, size_t pg, char *buf, size_t len)
{
	uint64_t e, f;

	if (fd < 0) {
		snprintf(buf, len, "pagemap unavailable");
		return;
	}
	if (pread(fd, &e, 8, ((uintptr_t)mem / PAGE + pg) * 8) != 8) {
		snprintf(buf, len, "pagemap unreadable (%s)", strerror(errno));
		return;
	}
	if (e & PM_PRESENT) {
		uint64_t pfn = e & PM_PFN_MASK;

		if (pfn && kpageflags_fd >= 0 && pread(kpageflags_fd, &f, 8, (off_t)(pfn * 8)) == 8)
			snprintf(buf, len, "present pfn 0x%llx, kpageflags 0x%llx (swapcache %d, "
				 "locked %d, thp %d, anon %d, lru %d)", (unsigned long long)pfn,
				 (unsigned long long)f, (int)KPF(f, KPF_SWAPCACHE),
				 (int)KPF(f, KPF_LOCKED), (int)KPF(f, KPF_THP),
				 (int)KPF(f, KPF_ANON), (int)KPF(f, KPF_LRU));
		else if (pfn)
			snprintf(buf, len, "present pfn 0x%llx, kpageflags unreadable",
				 (unsigned long long)pfn);
		else
			snprintf(buf, len, "present, pfn hidden (not CAP_SYS_ADMIN)");
	} else if (e & PM_SWAP) {
		if (!(e & PM_PFN_MASK))
			snprintf(buf, len, "swap entry (type and offset hidden)");
		else
			snprintf(buf, len, "swap entry type %u offset 0x%llx%s", PM_SWAP_TYPE(e),
				 (unsigned long long)PM_SWAP_OFFSET(e),
				 PM_SWAP_TYPE(e) >= SWAP_DEVICE_TYPES
				 ? " (not a swap device: a migration or other special entry)" : "");
	} else {
		snprintf(buf, len, "not present and no swap entry");
	}
}

/* -- counters ----------------------------------------------------------- */

/* Each counter has one writing thread (ADD); main reads them for progress
 * lines (GET). */

/* Chunks the pager just paged out and the faulters are faulting. */
struct ring {
	unsigned long long head;
	uint32_t slot[RING];
};

static struct ring pageout_ring, fault_ring;

static void ring_push(struct ring *r, size_t chunk)
{
	unsigned long long h = __atomic_fetch_add(&r->head, 1, __ATOMIC_RELAXED);

	__atomic_store_n(&r->slot[h % RING], (uint32_t)chunk, __ATOMIC_RELAXED);
}

/* The chunk pushed back+1 pushes ago, or -1 if there is none yet. */
static long ring_get(struct ring *r, unsigned back)
{
	unsigned long long h = __atomic_load_n(&r->head, __ATOMIC_RELAXED);

	if (h <= back || back >= RING)
		return -1;
	return __atomic_load_n(&r->slot[(h - 1 - back) % RING], __ATOMIC_RELAXED);
}

/* Counters the fork children add to: memory shared across fork. */
static struct shared {
	unsigned long long child_pages_verified;
} *shared;

/* -- pager -------------------------------------------------------------- */

static struct {
	pthread_t tid;
	uint64_t rng;
	unsigned long long pageout_calls, pageout_block_calls, pageout_pages, cold_calls;
} pager;

static void *pager_main(void *arg)
{
	(void)arg;
	while (!stopping()) {
		struct pager_op op = pager_next(&pager.rng);
		int advice = op.kind == PG_COLD_RUN ? MADV_COLD : MADV_PAGEOUT;
		const char *name = advice == MADV_COLD ? "MADV_COLD" : "MADV_PAGEOUT";

		if (madvise(mem + op.chunk * CHUNK, op.nch * CHUNK, advice)) {
			if (errno == EINVAL)
				die(EXIT_WORKLOAD, "workload failed: madvise(%s) refused with EINVAL: "
				    "this kernel lacks %s (Linux 5.4+ with CONFIG_ADVISE_SYSCALLS)",
				    name, name);
			fail_sys(advice == MADV_COLD ? "madvise(MADV_COLD)" : "madvise(MADV_PAGEOUT)",
				 errno);
		}
		if (op.kind == PG_COLD_RUN) {
			ADD(pager.cold_calls, 1);
			continue;
		}
		ADD(pager.pageout_calls, 1);
		ADD(pager.pageout_pages, op.nch * CHUNK_PAGES);
		if (op.kind == PG_OUT_BLOCK)
			ADD(pager.pageout_block_calls, 1);
		/* At most four chunks each, spread over the range. */
		for (size_t j = 0; j < 4 && j < op.nch; j++)
			ring_push(&pageout_ring, op.chunk + j * op.nch / 4);
		/* Most calls find their range already out: pacing leaves the CPU
		 * to the faulters (2000 calls/s still page out far more than they
		 * fault back). */
		usleep(500);
	}
	return NULL;
}

/* -- faulters ----------------------------------------------------------- */

struct faulter {
	pthread_t tid;
	int id;
	uint64_t rng;
	unsigned long long ops, pages_read, pages_written, pages_verified, seq_retries;
	uint64_t buf[WORDS];
};

static struct faulter faulters[MAX_FAULTERS];

/* Read one page through its chunk's seqlock and check it. */
static void read_page(struct faulter *f, size_t c, size_t pg)
{
	/* The copy is the read fault: maybe a swap-in. */
	uint32_t g = seq_copy_page(&seq[c], &gen[pg], page_words(pg), f->buf, &f->seq_retries);
	struct offgen_mismatch m;

	if (offgen_compare(&pattern, pg, f->buf, g, g, &m)) {
		char who[32];

		snprintf(who, sizeof(who), "faulter %d", f->id);
		offgen_report(&pattern, who, pg, &m, pagemap_fd, EXIT_KERNEL);
	}
	ADD(f->pages_verified, 1);
}

/* Bump a page's generation.  Word 0 is stored first, so the first touch is a
 * write fault (on a swap entry, a migration entry or a swap-cache page); the
 * other words are checked against the old generation before being rewritten. */
static void write_page(struct faulter *f, size_t c, size_t pg)
{
	uint64_t *w = page_words(pg);
	uint32_t g = gen[pg];
	struct offgen_mismatch m;

	check_pthread("pthread_rwlock_rdlock", pthread_rwlock_rdlock(&fork_gate));
	seq_write_begin(&seq[c]);
	__atomic_store_n(&w[0], offgen_word(&pattern, pg * PAGE, g + 1), __ATOMIC_RELAXED);
	copy_words(w, f->buf);
	if (offgen_compare(&pattern, pg, f->buf, g + 1, g, &m)) {
		char who[32];

		snprintf(who, sizeof(who), "faulter %d (writing)", f->id);
		offgen_report(&pattern, who, pg, &m, pagemap_fd, EXIT_KERNEL);
	}
	ADD(f->pages_verified, 1);
	__atomic_store_n(&gen[pg], g + 1, __ATOMIC_RELAXED);
	offgen_fill(&pattern, pg, g + 1, 1);
	seq_write_end(&seq[c]);
	check_pthread("pthread_rwlock_unlock", pthread_rwlock_unlock(&fork_gate));
	ADD(f->pages_written, 1);
}

static void *faulter_main(void *arg)
{
	struct faulter *f = arg;

	while (!stopping()) {
		struct fault_op op = fault_next(&f->rng, f->id);
		size_t pg = op.chunk * CHUNK_PAGES + op.page;

		ring_push(&fault_ring, op.chunk);   /* for the migrator, before touching */
		if (op.write) {
			write_page(f, op.chunk, pg);
		} else {
			for (unsigned i = 0; i < op.npages; i++)
				read_page(f, op.chunk, pg + i);
			ADD(f->pages_read, op.npages);
		}
		ADD(f->ops, 1);
	}
	return NULL;
}

/* -- migrator ----------------------------------------------------------- */

static struct {
	pthread_t tid;
	uint64_t rng;
	int query_ok;           /* move_pages works at all (not ENOSYS) */
	int flags;
	char off_reason[160];   /* why nothing is moved, or "" */
	struct move_stats mv;   /* ENOMEM (memory is short) is not our trouble */
	unsigned long long batches;
	unsigned long long sampled, present, swapped, special, swapcache, thp, pfn_hidden;
	unsigned long long sc_requested, sc_migrated, sc_new_pfn, sc_still_swapcache;
} mig;

static void migrate_batch(void)
{
	struct mig_op op = mig_next(&mig.rng);
	size_t chunks[MIG_CHUNKS], nch = 0, n = 0;
	void *addrs[MIG_BATCH];
	size_t pgs[MIG_BATCH];
	int query[MIG_BATCH], status[MIG_BATCH], to[MIG_BATCH];
	uint64_t pm[CHUNK_PAGES], pre_pfn[MIG_BATCH];
	unsigned char in_swapcache[MIG_BATCH];

	for (unsigned j = 0; j < op.nch; j++) {
		long c = -1;
		size_t k;

		if (op.source == SRC_PAGEOUT)
			c = ring_get(&pageout_ring, op.back + j);
		else if (op.source == SRC_FAULT)
			c = ring_get(&fault_ring, op.back + j);
		if (c < 0)
			c = op.rchunk[j];
		for (k = 0; k < nch && chunks[k] != (size_t)c; k++)
			;
		if (k == nch)
			chunks[nch++] = c;
	}
	for (size_t j = 0; j < nch; j++)
		for (unsigned p = op.first; p < CHUNK_PAGES; p += op.stride) {
			pgs[n] = chunks[j] * CHUNK_PAGES + p;
			addrs[n] = mem + pgs[n] * PAGE;
			n++;
		}
	ADD(mig.batches, 1);

	/* Where is each page now (a node, or -ENOENT when not present)? */
	for (size_t i = 0; i < n; i++)
		query[i] = STATUS_UNSET;
	if (mig.query_ok)
		query_nodes(&mig.mv, n, addrs, query);

	/* Then, just before asking, what pagemap and kpageflags say of them. */
	memset(in_swapcache, 0, sizeof(in_swapcache));
	if (pagemap_fd >= 0) {
		size_t i = 0;

		for (size_t j = 0; j < nch; j++) {
			if (!read_pagemap(pagemap_fd, chunks[j] * CHUNK_PAGES, CHUNK_PAGES, pm)) {
				i += (CHUNK_PAGES - op.first + op.stride - 1) / op.stride;
				continue;
			}
			for (unsigned p = op.first; p < CHUNK_PAGES; p += op.stride, i++) {
				uint64_t e = pm[p], fl;

				pre_pfn[i] = 0;
				ADD(mig.sampled, 1);
				if (e & PM_PRESENT) {
					ADD(mig.present, 1);
					pre_pfn[i] = e & PM_PFN_MASK;
					if (!pre_pfn[i])
						ADD(mig.pfn_hidden, 1);
					if (read_kpageflags(pre_pfn[i], &fl)) {
						in_swapcache[i] = KPF(fl, KPF_SWAPCACHE);
						ADD(mig.swapcache, in_swapcache[i]);
						ADD(mig.thp, KPF(fl, KPF_THP));
					}
				} else if (e & PM_SWAP) {
					/* Without CAP_SYS_ADMIN the type is hidden too:
					 * then only the absence of swap decides. */
					if ((e & PM_PFN_MASK) ? PM_SWAP_TYPE(e) >= SWAP_DEVICE_TYPES
					    : swap_devices <= 0)
						ADD(mig.special, 1);
					else
						ADD(mig.swapped, 1);
				}
			}
		}
	}
	if (mig.off_reason[0])
		return;

	/* Send each page to the node after the one it is on (pages not present
	 * at the query too: they may have been faulted back in since). */
	for (size_t i = 0; i < n; i++)
		to[i] = query[i] >= 0 ? next_node(query[i]) : nodes[GET(mig.batches) % nnodes];
	if (move_call(&mig.mv, n, addrs, to, status, mig.flags) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		/* Moved, and present and in the swap cache when asked? */
		if (!move_status(&mig.mv, addrs[i], status[i], query[i], to[i]) || !in_swapcache[i])
			continue;
		ADD(mig.sc_migrated, 1);
		uint64_t e, fl;

		if (read_pagemap(pagemap_fd, pgs[i], 1, &e) && (e & PM_PRESENT) &&
		    (e & PM_PFN_MASK) != pre_pfn[i]) {
			ADD(mig.sc_new_pfn, 1);
			if (read_kpageflags(e & PM_PFN_MASK, &fl) && KPF(fl, KPF_SWAPCACHE))
				ADD(mig.sc_still_swapcache, 1);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (in_swapcache[i] && query[i] >= 0 && query[i] != to[i])
			ADD(mig.sc_requested, 1);
}

static void *migrator_main(void *arg)
{
	(void)arg;
	while (!stopping())
		migrate_batch();
	return NULL;
}

/* -- cycler ------------------------------------------------------------- */

static struct {
	pthread_t tid;
	uint64_t rng;
	char off_reason[160];   /* why it does not run, or "" */
	struct move_stats mv;
	unsigned long long cycles, pages_verified, swapcache_written, swapcache_moved, not_paged_out;
	uint64_t buf[WORDS];
} cyc;

/* Page i of the cycler's chunk k: its pages follow the npages shared ones. */
static size_t cycle_page(size_t k, unsigned i)
{
	return npages + k * CHUNK_PAGES + i;
}

static void cycle_pageout(size_t k)
{
	if (madvise(mem + cycle_page(k, 0) * PAGE, CHUNK, MADV_PAGEOUT))
		fail_sys("madvise(MADV_PAGEOUT)", errno);
}

/* Read chunk k back and check every page: after a pageout, swap-ins. */
static void cycle_verify(size_t k, const char *after)
{
	struct offgen_mismatch m;

	for (unsigned i = 0; i < CHUNK_PAGES; i++) {
		size_t pg = cycle_page(k, i);

		copy_words(page_words(pg), cyc.buf);
		if (offgen_compare(&pattern, pg, cyc.buf, gen[pg], gen[pg], &m)) {
			char who[96];

			snprintf(who, sizeof(who), "cycler (chunk %zu %s)", k, after);
			offgen_report(&pattern, who, pg, &m, pagemap_fd, EXIT_KERNEL);
		}
	}
	ADD(cyc.pages_verified, CHUNK_PAGES);
}

/* Pages of chunk k present and in the swap cache now (0 without kpageflags),
 * and whether pagemap finds all of them present (else: not all paged out). */
static unsigned cycle_swapcache(size_t k, int *all_present)
{
	uint64_t pm[CHUNK_PAGES], fl;
	unsigned n = 0;

	*all_present = 1;
	if (pagemap_fd < 0 || !read_pagemap(pagemap_fd, cycle_page(k, 0), CHUNK_PAGES, pm))
		return 0;
	for (unsigned i = 0; i < CHUNK_PAGES; i++) {
		if (!(pm[i] & PM_PRESENT))
			*all_present = 0;
		else if (read_kpageflags(pm[i] & PM_PFN_MASK, &fl) && KPF(fl, KPF_SWAPCACHE))
			n++;
	}
	return n;
}

static void cycle_chunk(size_t k)
{
	void *addrs[CHUNK_PAGES];
	int from[CHUNK_PAGES], to[CHUNK_PAGES], all_present, n;
	unsigned in_swapcache;

	cycle_pageout(k);
	cycle_verify(k, "read back from swap");
	in_swapcache = cycle_swapcache(k, &all_present);
	for (unsigned i = 0; i < CHUNK_PAGES; i++) {
		size_t pg = cycle_page(k, i);

		gen[pg]++;
		offgen_fill(&pattern, pg, gen[pg], 0);
		addrs[i] = mem + pg * PAGE;
	}
	ADD(cyc.swapcache_written, in_swapcache);
	n = present_pages(&cyc.mv, CHUNK_PAGES, addrs, from, to);
	move_pages_to(&cyc.mv, n, addrs, from, to, move_flags());
	if (n == CHUNK_PAGES)
		ADD(cyc.swapcache_moved, in_swapcache);
	cycle_pageout(k);
	cycle_swapcache(k, &all_present);
	ADD(cyc.not_paged_out, all_present);
	cycle_verify(k, "written, moved, paged out and read back");
	ADD(cyc.cycles, 1);
}

static void *cycler_main(void *arg)
{
	(void)arg;
	while (!stopping())
		cycle_chunk(cycle_next(&cyc.rng));
	return NULL;
}

/* -- fork children ------------------------------------------------------ */

/* A child checks pages against the generations as of the fork: no writer
 * was inside the fork gate then. */
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

/* Active swap devices (the lines of /proc/swaps after its header), or -1
 * when there is no /proc/swaps (a kernel without CONFIG_SWAP). */
static int count_swap_devices(void)
{
	FILE *f = fopen("/proc/swaps", "re");
	char line[512];
	int lines = 0;

	if (!f) {
		if (errno == ENOENT)
			return -1;
		fail_sys("fopen(/proc/swaps)", errno);
	}
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	return lines > 0 ? lines - 1 : 0;
}

static void open_page_monitors(void)
{
	uint64_t e, fl;

	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0) {
		snprintf(pagemap_note, sizeof(pagemap_note), "/proc/self/pagemap cannot be "
			 "opened (%s; CONFIG_PROC_PAGE_MONITOR off?): no page is sampled",
			 strerror(errno));
		snprintf(kpf_state, sizeof(kpf_state), "no_pagemap");
		return;
	}
	e = written_page_entry(pagemap_fd, mem);
	pfns_visible = (e & PM_PFN_MASK) != 0;
	kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (kpageflags_fd < 0) {
		snprintf(kpf_note, sizeof(kpf_note), "/proc/kpageflags cannot be opened (%s): "
			 "it needs root and CONFIG_PROC_PAGE_MONITOR; swap-cache pages cannot be "
			 "recognised, so swapcache_seen and swapcache_pages_migrated are 0 for "
			 "want of a way to see them", strerror(errno));
		return;
	}
	if (!pfns_visible) {
		snprintf(kpf_state, sizeof(kpf_state), "hidden_pfns");
		snprintf(kpf_note, sizeof(kpf_note), "/proc/self/pagemap hides PFNs (it shows "
			 "them to CAP_SYS_ADMIN only), so /proc/kpageflags cannot be looked up and "
			 "swapcache_pages_migrated is 0 for want of a way to see swap-cache pages");
		close(kpageflags_fd);
		kpageflags_fd = -1;
		return;
	}
	if (!read_kpageflags(e & PM_PFN_MASK, &fl)) {
		snprintf(kpf_note, sizeof(kpf_note), "/proc/kpageflags gave nothing for a "
			 "present PFN; swap-cache pages cannot be recognised");
		close(kpageflags_fd);
		kpageflags_fd = -1;
		return;
	}
	snprintf(kpf_state, sizeof(kpf_state), "ok");
}

static void parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		FLAG("--self-test-corrupt", &self_test_corrupt),   /* hidden: tests the checker */
		RUN_OPTS(&duration, &seed),
		NUM("--mb", &mb, 2, 4096),
		NUM("--faulters", &nfaulters, 1, MAX_FAULTERS),
		PLAN_OPT(&plan_n),
		{ NULL },
	};

	parse_opts(argc, argv, opts);
	require_seed_and_duration(seed, duration, plan_n);
}

static void size_region(void)
{
	nblocks = blocks_per_part(mb, 1);
	nchunks = nblocks * CHUNKS_PER_BLOCK;
	npages = nchunks * CHUNK_PAGES;
}

/* The first N decisions of every stream: the same functions the run uses. */
static void print_plan(void)
{
	uint64_t rng = stream(RNG_LAYOUT);
	size_t nthp = 0;

	printf("plan seed %ld: %zu blocks of 2 MiB, %zu chunks of 64 KiB, %ld faulters\n",
	       seed, nblocks, nchunks, nfaulters);
	printf("plan layout: THP blocks");
	for (size_t b = 0; b < nblocks; b++)
		if (thp_layout(&rng) && nthp++ < (size_t)plan_n)
			printf(" %zu", b);
	printf(" (%zu in all)\n", nthp);
	printf("plan self-test: byte at offset 0x%zx\n", selftest_offset());
	rng = stream(RNG_PAGER);
	for (long i = 0; i < plan_n; i++) {
		struct pager_op op = pager_next(&rng);

		printf("plan pager %ld: %s chunks %zu+%zu\n", i, pager_kind_name[op.kind],
		       op.chunk, op.nch);
	}
	for (int f = 0; f < nfaulters; f++) {
		rng = stream(RNG_FAULTER + f);
		for (long i = 0; i < plan_n; i++) {
			struct fault_op op = fault_next(&rng, f);

			printf("plan faulter%d %ld: %s chunk %zu pages %u+%u\n", f, i,
			       op.write ? "write" : "read", op.chunk, op.page, op.npages);
		}
	}
	rng = stream(RNG_MIGRATOR);
	for (long i = 0; i < plan_n; i++) {
		struct mig_op op = mig_next(&rng);

		printf("plan migrator %ld: %s back %u, %u chunks, every %u pages from %u, "
		       "else chunks %zu %zu %zu %zu\n", i, src_name[op.source], op.back, op.nch,
		       op.stride, op.first, op.rchunk[0], op.rchunk[1], op.rchunk[2], op.rchunk[3]);
	}
	rng = stream(RNG_CYCLER);
	printf("plan cycler:");
	for (long i = 0; i < plan_n; i++)
		printf(" %zu", cycle_next(&rng));
	printf("\n");
	print_fork_plan(stream(RNG_FORK), plan_n, 0);
}

/* The shared blocks, then the cycler's (small pages, not inherited by
 * fork children, so that MADV_PAGEOUT never finds them shared). */
static void map_region(void)
{
	size_t len = (nblocks + 1) * BLOCK;
	uint64_t rng = stream(RNG_LAYOUT);

	mem = map_aligned(len, BLOCK, MAP_NORESERVE);
	if (madvise(mem + nblocks * BLOCK, BLOCK, MADV_DONTFORK))
		fail_sys("madvise(MADV_DONTFORK)", errno);
	if (madvise(mem + nblocks * BLOCK, BLOCK, MADV_NOHUGEPAGE) && errno != EINVAL)
		fail_sys("madvise(MADV_NOHUGEPAGE)", errno);
	block_thp = calloc(nblocks, 1);
	gen = calloc(npages + CYCLE_CHUNKS * CHUNK_PAGES, sizeof(*gen));
	seq = calloc(nchunks, sizeof(*seq));
	if (!block_thp || !gen || !seq)
		die(EXIT_WORKLOAD, "workload failed: out of memory for the bookkeeping arrays");
	pattern.base = mem;
	pattern.gen = gen;
	for (size_t b = 0; b < nblocks; b++)
		block_thp[b] = thp_layout(&rng);
}

static int thp_available = 1;

static void advise_layout(void)
{
	/* One madvise per run of blocks of the same kind. */
	for (size_t b = 0; b < nblocks;) {
		size_t e = b;

		while (e < nblocks && block_thp[e] == block_thp[b])
			e++;
		if (madvise(mem + b * BLOCK, (e - b) * BLOCK,
			    block_thp[b] ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
			if (errno != EINVAL)
				fail_sys(block_thp[b] ? "madvise(MADV_HUGEPAGE)"
					 : "madvise(MADV_NOHUGEPAGE)", errno);
			thp_available = 0;   /* no CONFIG_TRANSPARENT_HUGEPAGE */
		}
		b = e;
	}
}

/* Hidden --self-test-corrupt's check, the way the faulters check. */
static void self_test_check(size_t pg)
{
	static uint64_t buf[WORDS];

	copy_words(page_words(pg), buf);
	offgen_check(&pattern, "main (self-test)", pg, buf, gen[pg], pagemap_fd, EXIT_KERNEL);
}

static void progress(double t)
{
	unsigned long long verified = 0, ops = 0;

	for (int i = 0; i < nfaulters; i++) {
		verified += GET(faulters[i].pages_verified);
		ops += GET(faulters[i].ops);
	}
	printf("%s progress: %.0fs: %llu pageouts, %llu fault ops, %llu pages verified "
	       "(+%llu by children), %llu move_pages calls, %llu pages moved, %llu swap-cache "
	       "pages migrated, %llu forks, %llu cycles\n", prog, t, GET(pager.pageout_calls), ops,
	       verified, GET(shared->child_pages_verified), GET(mig.mv.calls), GET(mig.mv.moved),
	       GET(mig.sc_migrated), forks, GET(cyc.cycles));
}

int main(int argc, char **argv)
{
	uint64_t fork_rng;
	struct rusage ru;
	double start, end, next_progress;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	size_region();
	plan_only(plan_n, print_plan);

	find_nodes();
	swap_devices = count_swap_devices();
	map_region();
	advise_layout();
	for (size_t pg = 0; pg < npages + CYCLE_CHUNKS * CHUNK_PAGES; pg++) {
		gen[pg] = 1;
		offgen_fill(&pattern, pg, 1, 0);
	}
	open_page_monitors();

	mig.flags = move_flags();
	mig.mv.nomem_ok = 1;
	mig.query_ok = migration_off_reason(mig.off_reason, sizeof(mig.off_reason), mem,
					    "nothing is migrated",
					    "so pages are only sampled, not moved");

	if (swap_devices <= 0)
		snprintf(cyc.off_reason, sizeof(cyc.off_reason), "the cycler does not run: without "
			 "swap there is no swap cache to take its chunks through");
	else if (mig.off_reason[0])
		snprintf(cyc.off_reason, sizeof(cyc.off_reason), "the cycler does not run: "
			 "nothing can be migrated here");
	cyc.mv.nomem_ok = 1;

	shared = map_shared_page();
	fork_gate_init(&fork_gate);

	pager.rng = stream(RNG_PAGER);
	mig.rng = stream(RNG_MIGRATOR);
	fork_rng = stream(RNG_FORK);
	start = now();
	next_progress = start + PROGRESS_EVERY;
	for (int i = 0; i < nfaulters; i++) {
		faulters[i].id = i;
		faulters[i].rng = stream(RNG_FAULTER + i);
		start_thread(&faulters[i].tid, faulter_main, &faulters[i]);
	}
	start_thread(&pager.tid, pager_main, NULL);
	start_thread(&mig.tid, migrator_main, NULL);
	cyc.rng = stream(RNG_CYCLER);
	if (!cyc.off_reason[0])
		start_thread(&cyc.tid, cycler_main, NULL);

	for (double t = 0; (t = now()) - start < duration;) {
		if (self_test_corrupt && t - start >= self_test_at(duration))
			self_test_flip(&fork_gate, mem, selftest_offset(), self_test_check);
		if (progress_due(t, &next_progress))
			progress(t - start);
		fork_checker(&fork_rng, &fork_gate, child_main);
	}
	stop_and_reap();
	for (int i = 0; i < nfaulters; i++)
		pthread_join(faulters[i].tid, NULL);
	pthread_join(pager.tid, NULL);
	pthread_join(mig.tid, NULL);
	if (!cyc.off_reason[0])
		pthread_join(cyc.tid, NULL);
	end = now();
	ru = self_rusage();

	unsigned long long ops = 0, rd = 0, wr = 0, ver = 0, retries = 0;
	size_t nthp = 0;

	for (int i = 0; i < nfaulters; i++) {
		ops += faulters[i].ops;
		rd += faulters[i].pages_read;
		wr += faulters[i].pages_written;
		ver += faulters[i].pages_verified;
		retries += faulters[i].seq_retries;
	}
	for (size_t b = 0; b < nblocks; b++)
		nthp += block_thp[b];
	/* key=value words, each key once, for the harness and for humans. */
	printf("%s summary: seed=%ld duration=%.1fs mb=%zu pages=%zu chunks=%zu "
	       "thp_blocks=%zu small_blocks=%zu faulters=%ld nodes=%d swap_devices=%d swap=%s "
	       "migration=%s kpageflags=%s thp=%s\n", prog, seed, end - start,
	       nblocks * 2, npages, nchunks, nthp, nblocks - nthp, nfaulters, nnodes,
	       swap_devices < 0 ? 0 : swap_devices, swap_devices > 0 ? "on" : "off",
	       mig.off_reason[0] ? "off" : "on", kpf_state, thp_available ? "on" : "off");
	printf("%s pager: pageout_calls=%llu pageout_block_calls=%llu pageout_pages=%llu "
	       "cold_calls=%llu\n", prog, pager.pageout_calls, pager.pageout_block_calls,
	       pager.pageout_pages, pager.cold_calls);
	printf("%s faults: fault_ops=%llu pages_read=%llu pages_written=%llu pages_verified=%llu "
	       "child_pages_verified=%llu seq_retries=%llu major_faults=%ld minor_faults=%ld\n",
	       prog, ops, rd, wr, ver, shared->child_pages_verified, retries, ru.ru_majflt,
	       ru.ru_minflt);
	/* migration_entries_seen: the migrator samples before it moves, so these
	 * are other migrators' (compaction, NUMA balancing), not its own. */
	printf("%s pagemap: pages_sampled=%llu present_seen=%llu swapped_out_seen=%llu "
	       "migration_entries_seen=%llu swapcache_seen=%llu thp_seen=%llu pfns_hidden=%llu\n",
	       prog, mig.sampled, mig.present, mig.swapped, mig.special, mig.swapcache, mig.thp,
	       mig.pfn_hidden);
	printf("%s move_pages: batches=%llu query_calls=%llu " MOVE_PAGES_KEYS " nomem_calls=%llu "
	       MOVE_STATUS_KEYS "\n", prog, mig.batches, mig.mv.query_calls, MOVE_PAGES_VALUES(mig.mv),
	       mig.mv.nomem_calls, MOVE_STATUS_VALUES(mig.mv));
	printf("%s swapcache: swapcache_requested=%llu swapcache_pages_migrated=%llu "
	       "swapcache_migrated_new_pfn=%llu swapcache_migrated_still_swapcache=%llu\n",
	       prog, mig.sc_requested, mig.sc_migrated, mig.sc_new_pfn, mig.sc_still_swapcache);
	printf("%s fork: forks=%llu children_reaped=%llu\n", prog, forks, children_reaped);
	/* cycle_swapcache_written: pages in the swap cache (a clean swap-in)
	 * when the cycler wrote them; cycle_swapcache_moved: those it then moved,
	 * its whole chunk being present; cycle_not_paged_out: pageouts that left
	 * the whole chunk present (pages not yet back on an LRU list after
	 * their migration, say). */
	printf("%s cycler: cycles=%llu cycle_pages_verified=%llu cycle_swapcache_written=%llu "
	       "cycle_swapcache_moved=%llu cycle_not_paged_out=%llu cycle_pages_moved=%llu\n", prog,
	       cyc.cycles, cyc.pages_verified, cyc.swapcache_written, cyc.swapcache_moved,
	       cyc.not_paged_out, cyc.mv.moved);
	if (swap_devices <= 0)
		printf("%s note: %s, so MADV_PAGEOUT cannot push anonymous pages out: "
		       "swapped_out_seen, swapcache_seen and swapcache_pages_migrated stay 0\n", prog,
		       swap_devices < 0 ? "no /proc/swaps (a kernel without CONFIG_SWAP)"
		       : "no swap device is active (/proc/swaps lists none)");
	print_note(mig.off_reason);
	print_note(cyc.off_reason);
	print_note(pagemap_note);
	print_note(kpf_note);
	if (!thp_available)
		printf("%s note: MADV_HUGEPAGE is EINVAL (no CONFIG_TRANSPARENT_HUGEPAGE): "
		       "small pages only\n", prog);
	return 0;
}
