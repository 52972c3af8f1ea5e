// SPDX-License-Identifier: Apache-2.0
/*
 * ksm_migrate: KSM pages merged, migrated between NUMA nodes, COW-broken,
 * unmerged and merged again, while every page is verified.
 *
 * The memory under test is one anonymous mapping in REGIONS regions, all
 * MADV_MERGEABLE (a seeded half of them MADV_HUGEPAGE too, so ksmd splits
 * THPs to merge them).  Every page holds 512 words that say which content
 * ("key") it carries: most pages carry one of POPULAR keys, so ksmd merges
 * them into KSM pages (with more than max_page_sharing mappers each: stable
 * node chains with dups), the rest a key of their own.  The workload turns
 * ksmd on (/sys/kernel/mm/ksm: run=1, pages_to_scan and sleep_millisecs for
 * speed) and, from a supervisor process, puts every knob back however the
 * workload ends (exit, a fatal error, SIGTERM/SIGINT/SIGHUP, SIGKILL).
 *   - a migrator thread reads /proc/self/pagemap, tells which pages map a
 *     KSM page and move_pages()s them to the other node (MPOL_MF_MOVE_ALL:
 *     a KSM page is mapped many times): a KSM page is migrated through its
 *     stable node's rmap, with migration entries in every mapping.  A page
 *     is proven a KSM page by KPF_KSM of /proc/kpageflags where that flag
 *     can be trusted, else by a PFN that two of our own pages map (nothing
 *     else shares a page inside one process's private anonymous memory;
 *     Linux 6.12 sets KPF_KSM on every anonymous page).  ksm_pages_moved
 *     counts proven KSM pages that move_pages reports on the other node,
 *     ksm_moved_still_ksm those seen afterwards at a new PFN that is still
 *     a KSM page (its partner page moved along);
 *   - a writer thread rewrites pages with a new key (a popular one, which
 *     merges again, or a fresh one): a write to a KSM page breaks COW
 *     (vmstat cow_ksm); half its picks are KSM pages the migrator just saw;
 *   - a verifier thread reads pages and checks them against their key;
 *   - the main thread polls ksmd's counters and the process's own
 *     /proc/self/ksm_stat, forks children that verify what they inherited
 *     and write some of it (COW of KSM pages in the child), and now and then
 *     unmerges: MADV_UNMERGEABLE of a seeded set of regions, or run=2 (ksmd
 *     unmerges everything) with merge_across_nodes switched while nothing
 *     is merged (so KSM keeps one stable tree per node and a migrated KSM
 *     page must move to its new node's tree); it verifies every unmerged
 *     page, checks that none maps a KSM page any more (ksm_after_unmerge
 *     counts those that do; it should stay 0), and merges again
 *     (MADV_MERGEABLE, run=1).
 * Reads and writes of a page go through its chunk's seqlock (one writer);
 * fork holds writes off with a gate, so a child's copy matches key[].
 *
 * Choices follow from --seed: each thread draws from its own splitmix64
 * stream, and --plan N prints each stream's first N decisions.
 *
 * --no-ksmd leaves /sys/kernel/mm/ksm alone (for hosts whose ksmd is not
 * ours to start): pages merge only if ksmd already runs.  --ksm-dir DIR
 * reads and writes the knobs in DIR instead (tests of the put-back).
 *
 * Exit status: 0 done; 1 data came back wrong (the kernel's fault: the first
 * differing offset, expected and found words and the page's state, PFN,
 * kpageflags and node included, are on stderr) or a fork child or the
 * workload process died of a signal other than SIGKILL; 2 usage; 125 the
 * workload failed (a syscall failed unexpectedly, or the knobs could not be
 * put back).  The summary on stdout is key=value text; what could not
 * happen (one NUMA node, ksmd off) is 0 and a "note:" line says why.
 */
#define PROG "ksm_migrate"
#define USAGE "usage: " PROG " --duration SECONDS --seed N [--mb MIB] [--no-ksmd]\n" \
	"       [--pages-to-scan N] [--sleep-millisecs N] [--ksm-dir DIR]\n" \
	"       " PROG " --plan N --seed N [--mb MIB]\n"
#include "kstress.h"

#define REGIONS 4
#define CHUNK_PAGES 16            /* pages under one seqlock */
#define POPULAR 16                /* keys that many pages share */
#define POPULAR_PCT 80            /* of the pages at the start */
#define UNIQUE_BASE 0x100000u     /* keys from here on: one page's own */
#define CHILD_KEY_BASE 0x80000000u
#define WORD_TAG 0x4b530000u      /* "KS": no word is ever 0 */
#define MIG_BATCH 64
#define RING 256
#define STATS_EVERY 0.25          /* seconds between polls of the KSM counters */
#define FORK_EVERY 0.1
#define MAN_WAIT 3.0              /* seconds to wait for pages_shared 0 after run=2 */

/* -- configuration and seeded choices ------------------------------------ */

enum { RNG_LAYOUT, RNG_VERIFIER, RNG_WRITER, RNG_MIGRATOR, RNG_FORK, RNG_CYCLE, RNG_SELFTEST };

static long duration = -1, seed = -1, mb = 32, plan_n = -1, scan_pages = 1000, sleep_ms = 10;
static int no_ksmd, self_test_corrupt;
static const char *ksm_dir = "/sys/kernel/mm/ksm", *ksm_dir_opt;

static uint64_t stream(int k)
{
	return seed_stream(seed, 0x6b736d31ULL * (uint64_t)(k + 1));
}

static char *mem;
static size_t npages, nchunks, region_pages;
static uint32_t *key;              /* per page: the key its words carry */
static uint32_t *seq;              /* per chunk: seqlock, odd while written */
static unsigned char region_thp[REGIONS];
static pthread_rwlock_t fork_gate;  /* the writer shares it, fork takes it alone */

static int layout_popular(uint64_t *rng, uint32_t *k)
{
	uint64_t r = rnd(rng);

	*k = 1 + (r >> 32) % POPULAR;
	return r % 100 < POPULAR_PCT;
}

struct write_op {
	int from_ring, popular;
	unsigned back;
	size_t page;
	uint32_t key;
};

static struct write_op write_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	struct write_op op;

	op.from_ring = r % 2;
	op.back = (r >> 8) % 64;
	op.page = (r >> 16) % npages;
	op.popular = (r >> 40) % 10 < 6;
	op.key = 1 + (r >> 48) % POPULAR;
	return op;
}

struct mig_op {
	size_t first;
	unsigned n, stride;
};

static struct mig_op mig_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	struct mig_op op;

	op.first = r % npages;
	op.n = 8 + (r >> 32) % (MIG_BATCH - 7);
	op.stride = 1u << ((r >> 48) % 3);   /* every page, 2nd or 4th */
	return op;
}

struct verify_op {
	size_t first;
	unsigned n;
};

static struct verify_op verify_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	struct verify_op op;

	op.first = r % npages;
	op.n = 1 + (r >> 32) % 32;
	if (op.first + op.n > npages)
		op.n = npages - op.first;
	return op;
}

enum { CY_MADVISE, CY_RUN2 };
static const char *const cycle_name[] = { "madvise", "run2" };

struct cycle_op {
	int kind, switch_man;
	unsigned mask;     /* regions MADV_UNMERGEABLE'd (CY_MADVISE) */
	double gap;        /* seconds before this cycle */
};

static struct cycle_op cycle_next(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	struct cycle_op op;

	op.kind = r % 3 == 0 ? CY_RUN2 : CY_MADVISE;
	op.mask = 1 + (r >> 8) % ((1u << REGIONS) - 1);
	op.switch_man = (r >> 16) % 2;
	/* Long enough that ksmd merges again and merged pages get moved. */
	op.gap = 4.0 + (double)((r >> 24) % 4000) / 1000;
	return op;
}

static size_t selftest_offset(void)
{
	uint64_t r = stream(RNG_SELFTEST);

	return rnd(&r) % (npages * PAGE);
}

/* -- the pattern -------------------------------------------------------- */

static inline uint64_t word_of(uint32_t k, unsigned i)
{
	return (uint64_t)k << 32 | WORD_TAG | i;
}

static inline uint64_t *page_words(size_t pg)
{
	return (uint64_t *)(mem + pg * PAGE);
}

/* Relaxed atomic word accesses: a racing reader retries on the seqlock. */
static void fill_words(uint64_t *w, uint32_t k, unsigned from)
{
	for (unsigned i = from; i < WORDS; i++)
		__atomic_store_n(&w[i], word_of(k, i), __ATOMIC_RELAXED);
}

struct mismatch {
	unsigned word;
	uint64_t want, got;
};

/* Word 0 should carry key k0, the rest key k. */
static int compare_page(const uint64_t *buf, uint32_t k0, uint32_t k, struct mismatch *m)
{
	for (unsigned i = 0; i < WORDS; i++) {
		uint64_t want = word_of(i ? k : k0, i);

		if (buf[i] != want) {
			m->word = i;
			m->want = want;
			m->got = buf[i];
			return 1;
		}
	}
	return 0;
}

/* -- pagemap, kpageflags, and how a KSM page is recognised --------------- */

static int pagemap_fd = -1, kpageflags_fd = -1;
static int pfns_visible;
/* KPF_KSM of /proc/kpageflags: trusted only when a plain anonymous page
 * lacks it.  Linux 6.12's stable_page_flags() tests mapping &
 * PAGE_MAPPING_KSM, which is true for every anonymous page (fixed upstream
 * by "fs/proc: fix KPF_KSM reported for all anonymous pages"). */
static int kpf_ksm_ok;
static char kpf_state[32] = "unreadable";     /* ok, broken, hidden_pfns, unreadable */
static char kpf_note[320];

static uint64_t pagemap_entry(int fd, size_t pg)
{
	uint64_t e;

	if (!pagemap_read(fd, mem + pg * PAGE, 1, &e))
		die(EXIT_WORKLOAD, "workload failed: /proc/self/pagemap ends before page %zu", pg);
	return e;
}

/* The PFN page pg maps now, 0 if none (or hidden). */
static uint64_t present_pfn(size_t pg)
{
	uint64_t e = pagemap_entry(pagemap_fd, pg);

	return e & PM_PRESENT ? e & PM_PFN_MASK : 0;
}

/* A pagemap snapshot of the whole region and, per PFN in it, how many of
 * our pages map it and two of them. */
struct pfn_table {
	size_t mask;
	uint64_t *snap, *pfn;
	uint32_t *count, *page[2];
};

static void table_init(struct pfn_table *t)
{
	size_t slots = 1;

	while (slots < 2 * npages)
		slots <<= 1;
	t->mask = slots - 1;
	t->snap = calloc(npages, sizeof(*t->snap));
	t->pfn = calloc(slots, sizeof(*t->pfn));
	t->count = calloc(slots, sizeof(*t->count));
	t->page[0] = calloc(slots, sizeof(*t->page[0]));
	t->page[1] = calloc(slots, sizeof(*t->page[1]));
	if (!t->snap || !t->pfn || !t->count || !t->page[0] || !t->page[1])
		die(EXIT_WORKLOAD, "workload failed: out of memory for a PFN table");
}

static size_t table_slot(const struct pfn_table *t, uint64_t pfn)
{
	size_t i = (size_t)(pfn * 0x9e3779b97f4a7c15ULL >> 20) & t->mask;

	while (t->pfn[i] && t->pfn[i] != pfn)
		i = (i + 1) & t->mask;
	return i;
}

static void table_build(struct pfn_table *t)
{
	if (!pagemap_read(pagemap_fd, mem, npages, t->snap))
		die(EXIT_WORKLOAD, "workload failed: /proc/self/pagemap ends inside our region");
	memset(t->pfn, 0, (t->mask + 1) * sizeof(*t->pfn));
	memset(t->count, 0, (t->mask + 1) * sizeof(*t->count));
	for (size_t pg = 0; pg < npages; pg++) {
		uint64_t pfn = t->snap[pg] & PM_PRESENT ? t->snap[pg] & PM_PFN_MASK : 0;
		size_t i;

		if (!pfn)
			continue;
		i = table_slot(t, pfn);
		t->pfn[i] = pfn;
		if (t->count[i] < 2)
			t->page[t->count[i]][i] = pg;
		t->count[i]++;
	}
}

/* Why page pg is known to map a KSM page: its PFN and, unless KPF_KSM said
 * so, another of our pages that maps it too. */
struct ksm_proof {
	uint64_t pfn;
	size_t partner;   /* SIZE_MAX: KPF_KSM */
};

/* Whether page pg maps a KSM page by snapshot t: 1 proven, 0 not (or not
 * present, or PFNs hidden).  With a trustworthy KPF_KSM the flag decides.
 * Otherwise a PFN that two of our pages map is a KSM page: nothing else
 * shares a page between two addresses of one process's private anonymous
 * memory.  Both entries are read again (ours, the partner's, ours) so that
 * a PFN freed and reused while the snapshot was read is not taken for one. */
static int page_ksm(const struct pfn_table *t, size_t pg, struct ksm_proof *kp)
{
	uint64_t pfn = t->snap[pg] & PM_PRESENT ? t->snap[pg] & PM_PFN_MASK : 0, fl;
	size_t i;

	kp->pfn = pfn;
	kp->partner = SIZE_MAX;
	if (!pfn)
		return 0;
	if (kpf_ksm_ok)
		return kpageflags_read(kpageflags_fd, pfn, &fl) && KPF(fl, KPF_KSM) && present_pfn(pg) == pfn;
	i = table_slot(t, pfn);
	if (t->count[i] < 2)
		return 0;
	kp->partner = t->page[0][i] == pg ? t->page[1][i] : t->page[0][i];
	return present_pfn(pg) == pfn && present_pfn(kp->partner) == pfn && present_pfn(pg) == pfn;
}

/* After page pg was migrated: it maps a new PFN that is still a KSM page
 * (KPF_KSM, or its partner moved along to the same PFN). */
static int still_ksm(size_t pg, const struct ksm_proof *kp)
{
	uint64_t pfn = present_pfn(pg), fl;

	if (!pfn || pfn == kp->pfn)
		return 0;
	if (kp->partner == SIZE_MAX)
		return kpageflags_read(kpageflags_fd, pfn, &fl) && KPF(fl, KPF_KSM);
	return present_pfn(kp->partner) == pfn && present_pfn(pg) == pfn;
}

/* One page's state in words, for mismatch reports. */
static void describe_page(int fd, size_t pg, char *buf, size_t len)
{
	uint64_t e, f;
	void *addr = mem + pg * PAGE;
	int node = STATUS_UNSET;
	char where[48] = "";

	if (sys_move_pages(1, &addr, NULL, &node, 0) == 0)
		snprintf(where, sizeof(where), ", move_pages says node %d", node);
	if (fd < 0 || !pagemap_read(fd, mem + pg * PAGE, 1, &e)) {
		snprintf(buf, len, "pagemap unreadable%s", where);
		return;
	}
	if (!(e & PM_PRESENT)) {
		snprintf(buf, len, "not present (pagemap 0x%llx)%s", (unsigned long long)e, where);
	} else if (!(e & PM_PFN_MASK)) {
		snprintf(buf, len, "present, pfn hidden (not CAP_SYS_ADMIN)%s", where);
	} else if (kpageflags_read(kpageflags_fd, e & PM_PFN_MASK, &f)) {
		snprintf(buf, len, "present pfn 0x%llx%s, exclusive %d, kpageflags 0x%llx (ksm %d%s, "
			 "anon %d, thp %d, lru %d, locked %d)", (unsigned long long)(e & PM_PFN_MASK),
			 where, !!(e & PM_EXCLUSIVE), (unsigned long long)f, (int)KPF(f, KPF_KSM),
			 kpf_ksm_ok ? "" : " but this kernel sets it on any anonymous page",
			 (int)KPF(f, KPF_ANON), (int)KPF(f, KPF_THP), (int)KPF(f, KPF_LRU),
			 (int)KPF(f, KPF_LOCKED));
	} else {
		snprintf(buf, len, "present pfn 0x%llx%s, kpageflags unreadable",
			 (unsigned long long)(e & PM_PFN_MASK), where);
	}
}

static void __attribute__((noreturn)) report_mismatch(const char *who, size_t pg,
						      const struct mismatch *m, int pm_fd, int code)
{
	char state[320];
	size_t word_off = pg * PAGE + m->word * 8;
	unsigned byte = __builtin_ctzll(m->want ^ m->got) / 8;
	uint64_t now_reads = __atomic_load_n(&page_words(pg)[m->word], __ATOMIC_RELAXED);

	describe_page(pm_fd, pg, state, sizeof(state));
	die(code, "%s: data mismatch at offset 0x%zx (page %zu, word %u): expected byte 0x%02x, "
	    "found 0x%02x; the word should be 0x%016llx (key %u word %u), was 0x%016llx "
	    "(key %u word %u%s), reads 0x%016llx now; page state: %s", who, word_off + byte, pg,
	    m->word, (unsigned)(m->want >> (8 * byte)) & 0xff,
	    (unsigned)(m->got >> (8 * byte)) & 0xff, (unsigned long long)m->want,
	    (unsigned)(m->want >> 32), m->word, (unsigned long long)m->got,
	    (unsigned)(m->got >> 32), (unsigned)(m->got & 0xffff),
	    (uint32_t)m->got >> 16 == WORD_TAG >> 16 ? "" : ", not our pattern",
	    (unsigned long long)now_reads, state);
}

static void verify_page(const char *who, size_t pg, uint64_t *buf, unsigned long long *retries)
{
	uint32_t k = seq_copy_page(&seq[pg / CHUNK_PAGES], &key[pg], page_words(pg), buf, retries);
	struct mismatch m;

	if (compare_page(buf, k, k, &m))
		report_mismatch(who, pg, &m, pagemap_fd, EXIT_KERNEL);
}

/* -- KSM knobs and counters ---------------------------------------------- */

enum { KNOB_RUN, KNOB_SCAN, KNOB_SLEEP, KNOB_MAN, NKNOBS };
static const char *const knob_name[] = { "run", "pages_to_scan", "sleep_millisecs",
					 "merge_across_nodes" };
static long knob_saved[NKNOBS];
static int knob_have[NKNOBS];
static int ksm_sysfs;      /* ksm_dir has a run knob: CONFIG_KSM */
static int ksm_madvise = 1;  /* MADV_MERGEABLE works */
static char ksm_note[256];

static void knob_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", ksm_dir, name);
}

static int knob_read(const char *name, long *v)
{
	char path[PATH_MAX];

	knob_path(path, sizeof(path), name);
	return read_long(path, v);
}

static int knob_write(const char *name, long v)
{
	char path[PATH_MAX], val[32];

	knob_path(path, sizeof(path), name);
	snprintf(val, sizeof(val), "%ld", v);
	return write_str(path, val);
}

static void knob_set(int k, long v)
{
	if (knob_write(knob_name[k], v))
		die(EXIT_WORKLOAD, "workload failed: cannot write %ld to %s/%s: %s (it needs root; "
		    "--no-ksmd leaves ksmd alone)", v, ksm_dir, knob_name[k], strerror(errno));
}

static void save_knobs(void)
{
	for (int k = 0; k < NKNOBS; k++)
		knob_have[k] = knob_read(knob_name[k], &knob_saved[k]) == 0;
	ksm_sysfs = knob_have[KNOB_RUN];
}

/* The supervisor's restore(): merge_across_nodes first (it can change only
 * while nothing is merged: run=2 unmerges everything), then the rest, run
 * last; then it reads them back. */
static int restore_knobs(void)
{
	long now[NKNOBS];
	int ok = 1;
	char line[256];
	size_t n = 0;

	if (knob_have[KNOB_MAN] && knob_read("merge_across_nodes", &now[KNOB_MAN]) == 0 &&
	    now[KNOB_MAN] != knob_saved[KNOB_MAN]) {
		knob_write("run", 2);
		knob_write("merge_across_nodes", knob_saved[KNOB_MAN]);
	}
	for (int k = NKNOBS - 1; k >= 0; k--)
		if (knob_have[k] && k != KNOB_MAN)
			knob_write(knob_name[k], knob_saved[k]);
	for (int k = 0; k < NKNOBS; k++) {
		if (!knob_have[k])
			continue;
		if (knob_read(knob_name[k], &now[k])) {
			ok = 0;
			fprintf(stderr, "%s: cannot read %s/%s back: %s\n", prog, ksm_dir,
				knob_name[k], strerror(errno));
		} else if (now[k] != knob_saved[k]) {
			ok = 0;
			fprintf(stderr, "%s: %s/%s is %ld, not %ld as before the run\n", prog,
				ksm_dir, knob_name[k], now[k], knob_saved[k]);
		}
		n += snprintf(line + n, sizeof(line) - n, " %s=%ld", knob_name[k], knob_saved[k]);
	}
	printf("%s knobs: knobs_restored=%s%s\n", prog, ok ? "yes" : "no", line);
	return ok ? 0 : -1;
}

static struct {
	long merging, max_merging, max_sharing, max_shared, max_dups, full_scans0, full_scans;
	int self_stat;   /* 2: /proc/self/ksm_stat, 1: /proc/self/ksm_merging_pages, 0: none */
} ks;

static int self_merging_pages(long *v)
{
	char line[128];
	FILE *f;

	if (ks.self_stat == 1)
		return read_long("/proc/self/ksm_merging_pages", v) == 0;
	if (!(f = fopen("/proc/self/ksm_stat", "re")))
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "ksm_merging_pages %ld", v) == 1) {
			fclose(f);
			return 1;
		}
	fclose(f);
	return 0;
}

static void poll_ksm(void)
{
	long v;

	if (ks.self_stat && self_merging_pages(&v)) {
		ks.merging = v;
		if (v > ks.max_merging)
			ks.max_merging = v;
	}
	if (!ksm_sysfs)
		return;
	if (knob_read("pages_sharing", &v) == 0 && v > ks.max_sharing)
		ks.max_sharing = v;
	if (knob_read("pages_shared", &v) == 0 && v > ks.max_shared)
		ks.max_shared = v;
	if (knob_read("stable_node_dups", &v) == 0 && v > ks.max_dups)
		ks.max_dups = v;
	if (knob_read("full_scans", &v) == 0)
		ks.full_scans = v;
}

/* -- counters ----------------------------------------------------------- */

/* KSM pages the migrator proved lately, for the writer's COW breaks: each
 * slot holds pfn << 24 | page. */
#define RING_PAGE_BITS 24
static struct {
	unsigned long long head;
	uint64_t slot[RING];
} ksm_ring;

static void ring_push(size_t pg, uint64_t pfn)
{
	unsigned long long h = __atomic_fetch_add(&ksm_ring.head, 1, __ATOMIC_RELAXED);

	__atomic_store_n(&ksm_ring.slot[h % RING], pfn << RING_PAGE_BITS | pg, __ATOMIC_RELAXED);
}

/* The entry pushed back+1 pushes ago: 1, or 0 if there is none yet. */
static int ring_get(unsigned back, size_t *pg, uint64_t *pfn)
{
	unsigned long long h = __atomic_load_n(&ksm_ring.head, __ATOMIC_RELAXED);
	uint64_t v;

	if (h <= back || back >= RING)
		return 0;
	v = __atomic_load_n(&ksm_ring.slot[(h - 1 - back) % RING], __ATOMIC_RELAXED);
	*pg = v & ((1ULL << RING_PAGE_BITS) - 1);
	*pfn = v >> RING_PAGE_BITS;
	return 1;
}

/* What fork children add to: memory shared across fork. */
static struct shared {
	unsigned long long child_pages_verified, child_cow_writes;
} *shared;

/* -- verifier ----------------------------------------------------------- */

static struct {
	pthread_t tid;
	uint64_t rng;
	unsigned long long ops, pages_verified, seq_retries;
	uint64_t buf[WORDS];
} ver;

static void *verifier_main(void *arg)
{
	(void)arg;
	while (!stopping()) {
		struct verify_op op = verify_next(&ver.rng);

		for (unsigned i = 0; i < op.n; i++)
			verify_page("verifier", op.first + i, ver.buf, &ver.seq_retries);
		ADD(ver.pages_verified, op.n);
		ADD(ver.ops, 1);
		usleep(500);   /* leaves CPU to ksmd and the others on a 2-vCPU guest */
	}
	return NULL;
}

/* -- writer ------------------------------------------------------------- */

static struct {
	pthread_t tid;
	uint64_t rng;
	uint32_t next_unique;
	unsigned long long pages_written, ksm_writes, ring_picks, seq_retries;
	uint64_t buf[WORDS];
} wr;

/* Rewrite page pg with key nk.  Word 0 is stored first, so the first touch
 * is the write fault (the COW break of a KSM page); the other words are
 * checked against the old key before being rewritten. */
static void write_page(size_t pg, uint32_t nk)
{
	size_t c = pg / CHUNK_PAGES;
	uint64_t *w = page_words(pg);
	uint32_t old = key[pg];
	struct mismatch m;

	check_pthread("pthread_rwlock_rdlock", pthread_rwlock_rdlock(&fork_gate));
	seq_write_begin(&seq[c]);
	__atomic_store_n(&w[0], word_of(nk, 0), __ATOMIC_RELAXED);
	copy_words(w, wr.buf);
	if (compare_page(wr.buf, nk, old, &m))
		report_mismatch("writer (its write fault just broke COW)", pg, &m, pagemap_fd,
				EXIT_KERNEL);
	__atomic_store_n(&key[pg], nk, __ATOMIC_RELAXED);
	fill_words(w, nk, 1);
	seq_write_end(&seq[c]);
	check_pthread("pthread_rwlock_unlock", pthread_rwlock_unlock(&fork_gate));
	ADD(wr.pages_written, 1);
}

static void *writer_main(void *arg)
{
	(void)arg;
	while (!stopping()) {
		struct write_op op = write_next(&wr.rng);
		uint32_t nk = op.popular ? op.key : wr.next_unique++;
		size_t pg = op.page;
		uint64_t pfn;

		/* A KSM page the migrator proved, if our page still maps it:
		 * the page stays a KSM page as long as it is mapped. */
		if (op.from_ring && ring_get(op.back, &pg, &pfn)) {
			ADD(wr.ring_picks, 1);
			if (present_pfn(pg) == pfn)
				ADD(wr.ksm_writes, 1);
		}
		write_page(pg, nk);
		/* Slow enough that most pages stay put for the scans KSM needs. */
		usleep(2000);
	}
	return NULL;
}

/* -- migrator ----------------------------------------------------------- */

static struct {
	pthread_t tid;
	uint64_t rng;
	int flags;
	char off_reason[160];   /* why nothing is moved, or "" */
	struct move_stats mv;
	struct pfn_table tab;
	unsigned long long batches, sampled, ksm_seen, ksm_requested, ksm_mappings_moved,
		ksm_pages_moved, ksm_moved_still_ksm;
} mig;

static void migrate_batch(void)
{
	struct mig_op op = mig_next(&mig.rng);
	void *addrs[MIG_BATCH];
	size_t pgs[MIG_BATCH];
	struct ksm_proof kp[MIG_BATCH];
	uint64_t moved_pfn[MIG_BATCH];
	int is_ksm[MIG_BATCH], from[MIG_BATCH], to[MIG_BATCH], status[MIG_BATCH];
	unsigned n = 0, nmoved = 0;

	ADD(mig.batches, 1);
	if (pfns_visible)
		table_build(&mig.tab);
	for (unsigned j = 0; j < op.n; j++) {
		size_t pg = (op.first + (size_t)j * op.stride) % npages;

		is_ksm[n] = pfns_visible && page_ksm(&mig.tab, pg, &kp[n]);
		ADD(mig.sampled, 1);
		if (is_ksm[n]) {
			ADD(mig.ksm_seen, 1);
			ring_push(pg, kp[n].pfn);
		}
		pgs[n] = pg;
		addrs[n++] = mem + pg * PAGE;
	}
	if (mig.off_reason[0])
		return;
	/* Where is each page now?  Only present ones are asked to move. */
	query_nodes(&mig.mv, n, addrs, from);
	{
		unsigned k = 0;

		for (unsigned i = 0; i < n; i++) {
			if (from[i] < 0)
				continue;
			addrs[k] = addrs[i];
			pgs[k] = pgs[i];
			kp[k] = kp[i];
			is_ksm[k] = is_ksm[i];
			from[k] = from[i];
			to[k] = next_node(from[i]);
			ADD(mig.ksm_requested, is_ksm[k]);
			k++;
		}
		n = k;
	}
	if (!n || move_call(&mig.mv, n, addrs, to, status, mig.flags) < 0)
		return;
	for (unsigned i = 0; i < n; i++) {
		unsigned j;

		if (!move_status(&mig.mv, addrs[i], status[i], from[i], to[i]) || !is_ksm[i])
			continue;
		ADD(mig.ksm_mappings_moved, 1);
		/* Several of our pages map one KSM page: count it once. */
		for (j = 0; j < nmoved && moved_pfn[j] != kp[i].pfn; j++)
			;
		if (j < nmoved)
			continue;
		moved_pfn[nmoved++] = kp[i].pfn;
		ADD(mig.ksm_pages_moved, 1);
		if (still_ksm(pgs[i], &kp[i]))
			ADD(mig.ksm_moved_still_ksm, 1);
	}
}

static void *migrator_main(void *arg)
{
	(void)arg;
	while (!stopping()) {
		migrate_batch();
		usleep(2000);
	}
	return NULL;
}

/* -- fork children ------------------------------------------------------ */

/* The check of the child of the fork: the pages from child_writes_from on
 * it rewrites first (COW: of a KSM page when it is one). */
static unsigned child_writes_from;

/* A child's check of page pg against key[] as of the fork (the writer was
 * outside the fork gate) or as it wrote it, with a pagemap of its own mm
 * for the report. */
static void child_check(size_t pg, unsigned i)
{
	static uint64_t buf[WORDS];
	struct mismatch m;
	int wrote = i >= child_writes_from;

	if (wrote) {
		key[pg] = CHILD_KEY_BASE | (uint32_t)(i & 0xffff);
		page_words(pg)[0] = word_of(key[pg], 0);
		fill_words(page_words(pg), key[pg], 1);
	}
	copy_words(page_words(pg), buf);
	if (compare_page(buf, key[pg], key[pg], &m))
		report_mismatch(fork_child_name(wrote ? "memory it wrote after the fork"
						: "memory inherited at fork"), pg, &m,
				open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), EXIT_CHILD_MISMATCH);
}

/* A child checks pages it inherited, rewrites some and checks those. */
static void __attribute__((noreturn)) child_main(struct fork_op op)
{
	child_writes_from = CHUNK_PAGES + op.sample;
	ADD_SHARED(shared->child_cow_writes, op.writes);
	child_check_pages(op, op.writes, npages, CHUNK_PAGES, child_check,
			  &shared->child_pages_verified);
}

/* -- unmerge cycles ----------------------------------------------------- */

static struct {
	uint64_t rng;
	unsigned long long cycles, madvise_cycles, run2_cycles, regions_unmerged, pages_verified,
		seq_retries, ksm_after_unmerge, man_switches, man_busy, remerges;
	struct pfn_table tab;
	uint64_t buf[WORDS];
	size_t first_ksm_after_unmerge;
} cy;

static void advise_region(int r, int advice, const char *name)
{
	if (madvise(mem + (size_t)r * region_pages * PAGE, region_pages * PAGE, advice))
		fail_sys(name, errno);
}

/* Every page of the regions in mask is verified, and none may map a KSM
 * page: MADV_UNMERGEABLE and run=2 break every one before they return
 * (break_ksm waits out migration entries too). */
static void check_unmerged(unsigned mask)
{
	struct ksm_proof kp;

	if (pfns_visible)
		table_build(&cy.tab);
	for (int r = 0; r < REGIONS; r++) {
		if (!(mask & (1u << r)))
			continue;
		for (size_t pg = r * region_pages; pg < (r + 1) * region_pages; pg++) {
			verify_page("main (after unmerging)", pg, cy.buf, &cy.seq_retries);
			if (pfns_visible && page_ksm(&cy.tab, pg, &kp) && !cy.ksm_after_unmerge++)
				cy.first_ksm_after_unmerge = pg;
		}
		cy.pages_verified += region_pages;
	}
}

/* Sets merge_across_nodes to v once ksmd has let go of every stable node. */
static void switch_man(long v)
{
	double until = now() + MAN_WAIT;
	long shared_now = 1;

	while (knob_read("pages_shared", &shared_now) == 0 && shared_now && now() < until)
		usleep(50000);
	if (knob_write("merge_across_nodes", v) == 0) {
		cy.man_switches++;
		return;
	}
	if (errno != EBUSY)
		die(EXIT_WORKLOAD, "workload failed: cannot write %ld to %s/merge_across_nodes: %s",
		    v, ksm_dir, strerror(errno));
	cy.man_busy++;   /* someone else's KSM pages: pages_shared stayed above 0 */
}

static void unmerge_cycle(struct cycle_op op)
{
	long man;

	/* No child may hold KSM pages of ours while we check. */
	for (int i = 0; i < MAX_CHILDREN; i++)
		reap_slot(i);
	cy.cycles++;
	if (op.kind == CY_RUN2 && !no_ksmd && ksm_sysfs) {
		cy.run2_cycles++;
		knob_set(KNOB_RUN, 2);
		check_unmerged((1u << REGIONS) - 1);
		if (op.switch_man && nnodes >= 2 && knob_have[KNOB_MAN] &&
		    knob_read("merge_across_nodes", &man) == 0)
			switch_man(!man);
		knob_set(KNOB_RUN, 1);
		cy.remerges++;
		return;
	}
	/* CY_RUN2 without the knobs: all regions by madvise instead. */
	if (op.kind == CY_RUN2)
		op.mask = (1u << REGIONS) - 1;
	cy.madvise_cycles++;
	for (int r = 0; r < REGIONS; r++)
		if (op.mask & (1u << r)) {
			advise_region(r, MADV_UNMERGEABLE, "madvise(MADV_UNMERGEABLE)");
			cy.regions_unmerged++;
		}
	check_unmerged(op.mask);
	for (int r = 0; r < REGIONS; r++)
		if (op.mask & (1u << r))
			advise_region(r, MADV_MERGEABLE, "madvise(MADV_MERGEABLE)");
	cy.remerges++;
}

/* -- setup -------------------------------------------------------------- */

static void open_page_monitors(void)
{
	uint64_t e, fl;
	char *probe;

	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0)
		die(EXIT_WORKLOAD, "workload failed: cannot open /proc/self/pagemap: %s "
		    "(CONFIG_PROC_PAGE_MONITOR off?)", strerror(errno));
	e = pagemap_entry(pagemap_fd, 0);
	if (!(e & PM_PRESENT))
		die(EXIT_WORKLOAD, "workload failed: /proc/self/pagemap says a page just written "
		    "is not present (entry 0x%llx)", (unsigned long long)e);
	pfns_visible = (e & PM_PFN_MASK) != 0;
	if (pfns_visible) {
		table_init(&mig.tab);
		table_init(&cy.tab);
	} else {
		snprintf(kpf_state, sizeof(kpf_state), "hidden_pfns");
		snprintf(kpf_note, sizeof(kpf_note), "/proc/self/pagemap hides PFNs (it shows them "
			 "to CAP_SYS_ADMIN only), so KSM pages cannot be recognised: ksm_pages_seen, "
			 "ksm_pages_moved and ksm_writes are 0");
		return;
	}
	kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (kpageflags_fd < 0) {
		snprintf(kpf_note, sizeof(kpf_note), "/proc/kpageflags cannot be opened (%s): KSM "
			 "pages are recognised by a PFN that two of our pages map", strerror(errno));
		return;
	}
	/* A page of its own mapping, which nothing can merge: KPF_KSM on it is
	 * the 6.12 bug, and then the flag proves nothing. */
	probe = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (probe == MAP_FAILED)
		fail_sys("mmap", errno);
	*(volatile char *)probe = 1;
	if (!pagemap_read(pagemap_fd, probe, 1, &e) || !(e & PM_PRESENT) ||
	    !kpageflags_read(kpageflags_fd, e & PM_PFN_MASK, &fl))
		die(EXIT_WORKLOAD, "workload failed: no pagemap entry or kpageflags for a page just "
		    "written (entry 0x%llx)", (unsigned long long)e);
	munmap(probe, PAGE);
	kpf_ksm_ok = !KPF(fl, KPF_KSM);
	snprintf(kpf_state, sizeof(kpf_state), kpf_ksm_ok ? "ok" : "broken");
	if (!kpf_ksm_ok)
		snprintf(kpf_note, sizeof(kpf_note), "/proc/kpageflags sets KPF_KSM on a plain "
			 "anonymous page (kpageflags 0x%llx; Linux 6.12 tests mapping & "
			 "PAGE_MAPPING_KSM, fixed upstream by \"fs/proc: fix KPF_KSM reported for all "
			 "anonymous pages\"): KSM pages are recognised by a PFN that two of our pages "
			 "map instead", (unsigned long long)fl);
}

static void parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		FLAG("--self-test-corrupt", &self_test_corrupt),   /* hidden: tests the checker */
		FLAG("--no-ksmd", &no_ksmd),
		RUN_OPTS(&duration, &seed),
		NUM("--mb", &mb, 8, 4096),
		NUM("--pages-to-scan", &scan_pages, 1, 1000000),
		NUM("--sleep-millisecs", &sleep_ms, 0, 10000),
		PLAN_OPT(&plan_n),
		STR("--ksm-dir", &ksm_dir_opt),
		{ NULL },
	};

	parse_opts(argc, argv, opts);
	require_seed_and_duration(seed, duration, plan_n);
	if (no_ksmd && ksm_dir_opt)
		usage("--no-ksmd and --ksm-dir do not go together");
	if (ksm_dir_opt)
		ksm_dir = ksm_dir_opt;
}

static void print_plan(void)
{
	uint64_t rng = stream(RNG_LAYOUT);
	size_t popular = 0;
	uint32_t k;

	printf("plan seed %ld: %zu pages in %d regions of %zu, %d popular keys\n", seed, npages,
	       REGIONS, region_pages, POPULAR);
	printf("plan layout: THP regions");
	for (int r = 0; r < REGIONS; r++)
		if (rnd(&rng) % 2)
			printf(" %d", r);
	for (size_t pg = 0; pg < npages; pg++)
		popular += layout_popular(&rng, &k);
	printf("; %zu pages popular, %zu unique\n", popular, npages - popular);
	printf("plan self-test: byte at offset 0x%zx\n", selftest_offset());
	rng = stream(RNG_VERIFIER);
	for (long i = 0; i < plan_n; i++) {
		struct verify_op op = verify_next(&rng);

		printf("plan verifier %ld: pages %zu+%u\n", i, op.first, op.n);
	}
	rng = stream(RNG_WRITER);
	for (long i = 0; i < plan_n; i++) {
		struct write_op op = write_next(&rng);

		printf("plan writer %ld: %s back %u else page %zu, key %s %u\n", i,
		       op.from_ring ? "ksm-ring" : "random", op.back, op.page,
		       op.popular ? "popular" : "fresh", op.popular ? op.key : 0);
	}
	rng = stream(RNG_MIGRATOR);
	for (long i = 0; i < plan_n; i++) {
		struct mig_op op = mig_next(&rng);

		printf("plan migrator %ld: %u pages from %zu every %u\n", i, op.n, op.first, op.stride);
	}
	print_fork_plan(stream(RNG_FORK), plan_n, 1);
	rng = stream(RNG_CYCLE);
	for (long i = 0; i < plan_n; i++) {
		struct cycle_op op = cycle_next(&rng);

		printf("plan cycle %ld: after %.3fs %s regions 0x%x switch_man %d\n", i, op.gap,
		       cycle_name[op.kind], op.mask, op.switch_man);
	}
}

static void map_region(void)
{
	uint64_t rng = stream(RNG_LAYOUT);

	mem = map_aligned(npages * PAGE, THP, MAP_NORESERVE);
	key = calloc(npages, sizeof(*key));
	seq = calloc(nchunks, sizeof(*seq));
	if (!key || !seq)
		die(EXIT_WORKLOAD, "workload failed: out of memory for the bookkeeping arrays");
	for (int r = 0; r < REGIONS; r++)
		region_thp[r] = rnd(&rng) % 2;
	for (size_t pg = 0; pg < npages; pg++) {
		uint32_t k;

		key[pg] = layout_popular(&rng, &k) ? k : UNIQUE_BASE + (uint32_t)pg;
	}
	wr.next_unique = UNIQUE_BASE + (uint32_t)npages;
}

static int thp_available = 1;

static void advise_layout(void)
{
	for (int r = 0; r < REGIONS; r++) {
		char *at = mem + (size_t)r * region_pages * PAGE;

		if (madvise(at, region_pages * PAGE, region_thp[r] ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
			if (errno != EINVAL)
				fail_sys("madvise(MADV_HUGEPAGE)", errno);
			thp_available = 0;
		}
	}
	for (size_t pg = 0; pg < npages; pg++)
		fill_words(page_words(pg), key[pg], 0);
	for (int r = 0; r < REGIONS; r++) {
		if (!madvise(mem + (size_t)r * region_pages * PAGE, region_pages * PAGE, MADV_MERGEABLE))
			continue;
		if (errno != EINVAL)
			fail_sys("madvise(MADV_MERGEABLE)", errno);
		ksm_madvise = 0;   /* a kernel without CONFIG_KSM */
		snprintf(ksm_note, sizeof(ksm_note), "madvise(MADV_MERGEABLE) is EINVAL (a kernel "
			 "without CONFIG_KSM): nothing merges, pages are only verified and moved");
		break;
	}
}

/* ksmd on and fast, unless --no-ksmd or there is no ksmd. */
static void start_ksmd(void)
{
	long run = 0;

	if (!ksm_sysfs) {
		if (!ksm_note[0])
			snprintf(ksm_note, sizeof(ksm_note), "%s/run is missing (a kernel without "
				 "CONFIG_KSM?): nothing merges", ksm_dir);
		return;
	}
	if (no_ksmd) {
		if (knob_read("run", &run) == 0 && run != 1 && !ksm_note[0])
			snprintf(ksm_note, sizeof(ksm_note), "ksmd is not running (run=%ld) and "
				 "--no-ksmd leaves it so: nothing merges", run);
		return;
	}
	knob_set(KNOB_SCAN, scan_pages);
	knob_set(KNOB_SLEEP, sleep_ms);
	knob_set(KNOB_RUN, 1);
}

/* Hidden --self-test-corrupt's check, as the verifier checks. */
static void self_test_check(size_t pg)
{
	unsigned long long retries = 0;

	verify_page("main (self-test)", pg, cy.buf, &retries);
}

static void progress(double t)
{
	printf("%s progress: %.0fs: %ld pages merged (ksm_merging_pages), %llu KSM pages moved, "
	       "%llu writes (%llu to KSM pages), %llu pages verified (+%llu by children), "
	       "%llu unmerge cycles, %llu forks\n", prog, t, ks.merging, GET(mig.ksm_pages_moved),
	       GET(wr.pages_written), GET(wr.ksm_writes), GET(ver.pages_verified),
	       GET(shared->child_pages_verified), cy.cycles, forks);
}

static void print_summary(double secs)
{
	struct rusage ru = self_rusage();
	int nthp = 0;

	for (int r = 0; r < REGIONS; r++)
		nthp += region_thp[r];
	printf("%s summary: seed=%ld duration=%.1fs mb=%zu pages=%zu regions=%d thp_regions=%d "
	       "nodes=%d ksm=%s ksmd=%s migration=%s kpf_ksm=%s ksm_proof=%s thp=%s\n", prog, seed, secs,
	       npages * PAGE >> 20, npages, REGIONS, nthp, nnodes,
	       ksm_sysfs && ksm_madvise ? "on" : "off",
	       !ksm_sysfs ? "none" : no_ksmd ? "untouched" : "set", mig.off_reason[0] ? "off" : "on",
	       kpf_state, !pfns_visible ? "none" : kpf_ksm_ok ? "kpageflags" : "shared_pfn",
	       thp_available ? "on" : "off");
	printf("%s ksm: max_merging_pages=%ld merging_pages_at_end=%ld max_pages_sharing=%ld "
	       "max_pages_shared=%ld max_stable_node_dups=%ld full_scans=%ld ksm_pages_seen=%llu\n",
	       prog, ks.max_merging, ks.merging, ks.max_sharing, ks.max_shared, ks.max_dups,
	       ks.full_scans - ks.full_scans0, mig.ksm_seen);
	printf("%s move_pages: batches=%llu pages_sampled=%llu query_calls=%llu " MOVE_PAGES_KEYS
	       " nomem_calls=%llu " MOVE_STATUS_KEYS "\n", prog, mig.batches, mig.sampled,
	       mig.mv.query_calls, MOVE_PAGES_VALUES(mig.mv), mig.mv.nomem_calls,
	       MOVE_STATUS_VALUES(mig.mv));
	printf("%s ksm_moves: ksm_requested=%llu ksm_mappings_moved=%llu ksm_pages_moved=%llu "
	       "ksm_moved_still_ksm=%llu\n", prog, mig.ksm_requested, mig.ksm_mappings_moved,
	       mig.ksm_pages_moved, mig.ksm_moved_still_ksm);
	printf("%s writes: pages_written=%llu ksm_writes=%llu ring_picks=%llu\n", prog,
	       wr.pages_written, wr.ksm_writes, wr.ring_picks);
	printf("%s verify: pages_verified=%llu unmerged_pages_verified=%llu "
	       "child_pages_verified=%llu seq_retries=%llu\n", prog, ver.pages_verified,
	       cy.pages_verified, shared->child_pages_verified,
	       ver.seq_retries + wr.seq_retries + cy.seq_retries);
	printf("%s cycles: unmerge_cycles=%llu madvise_cycles=%llu run2_cycles=%llu "
	       "regions_unmerged=%llu remerges=%llu ksm_after_unmerge=%llu man_switches=%llu "
	       "man_busy=%llu\n", prog, cy.cycles, cy.madvise_cycles, cy.run2_cycles,
	       cy.regions_unmerged, cy.remerges, cy.ksm_after_unmerge, cy.man_switches, cy.man_busy);
	printf("%s fork: forks=%llu children_reaped=%llu child_cow_writes=%llu minor_faults=%ld "
	       "major_faults=%ld\n", prog, forks, children_reaped, shared->child_cow_writes,
	       ru.ru_minflt, ru.ru_majflt);
	print_note(ksm_note);
	print_note(mig.off_reason);
	print_note(kpf_note);
	if (cy.ksm_after_unmerge)
		printf("%s note: %llu pages still mapped a KSM page right after they were unmerged "
		       "(the first: page %zu); MADV_UNMERGEABLE and run=2 should break every one\n",
		       prog, cy.ksm_after_unmerge, cy.first_ksm_after_unmerge);
	if (!thp_available)
		printf("%s note: MADV_HUGEPAGE is EINVAL (no CONFIG_TRANSPARENT_HUGEPAGE): "
		       "small pages only\n", prog);
}

static void set_up_migration(void)
{
	mig.flags = move_flags();
	mig.mv.nomem_ok = 1;
	migration_off_reason(mig.off_reason, sizeof(mig.off_reason), mem,
			     "KSM pages are only sampled", "so KSM pages are only sampled");
}

int main(int argc, char **argv)
{
	uint64_t fork_rng;
	struct cycle_op next_cycle;
	double start, end, next_progress, next_stats, next_fork, cycle_at;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	size_regions(mb, REGIONS, CHUNK_PAGES, &region_pages, &npages, &nchunks);
	plan_only(plan_n, print_plan);
	save_knobs();
	if (ksm_sysfs && !no_ksmd)
		supervise(restore_knobs);   /* what follows runs in its child */

	find_nodes();
	map_region();
	advise_layout();
	open_page_monitors();
	set_up_migration();
	ks.self_stat = access("/proc/self/ksm_stat", R_OK) == 0 ? 2
		: access("/proc/self/ksm_merging_pages", R_OK) == 0 ? 1 : 0;
	if (ksm_sysfs)
		knob_read("full_scans", &ks.full_scans0);
	ks.full_scans = ks.full_scans0;
	start_ksmd();

	shared = map_shared_page();
	fork_gate_init(&fork_gate);

	ver.rng = stream(RNG_VERIFIER);
	wr.rng = stream(RNG_WRITER);
	mig.rng = stream(RNG_MIGRATOR);
	cy.rng = stream(RNG_CYCLE);
	fork_rng = stream(RNG_FORK);
	start = now();
	next_progress = start + PROGRESS_EVERY;
	next_stats = start;
	next_fork = start;
	next_cycle = cycle_next(&cy.rng);
	cycle_at = start + next_cycle.gap;
	start_thread(&ver.tid, verifier_main, NULL);
	start_thread(&wr.tid, writer_main, NULL);
	start_thread(&mig.tid, migrator_main, NULL);

	for (double t = 0; (t = now()) - start < duration;) {
		if (self_test_corrupt && t - start >= self_test_at(duration))
			self_test_flip(&fork_gate, mem, selftest_offset(), self_test_check);
		if (t >= next_stats) {
			poll_ksm();
			next_stats = t + STATS_EVERY;
		}
		if (progress_due(t, &next_progress))
			progress(t - start);
		if (t >= cycle_at && ksm_madvise) {
			unmerge_cycle(next_cycle);
			next_cycle = cycle_next(&cy.rng);
			cycle_at = now() + next_cycle.gap;
		}
		if (t >= next_fork) {
			fork_checker(&fork_rng, &fork_gate, child_main);
			next_fork = t + FORK_EVERY;
		}
		usleep(10000);
	}
	stop_and_reap();
	pthread_join(ver.tid, NULL);
	pthread_join(wr.tid, NULL);
	pthread_join(mig.tid, NULL);
	poll_ksm();
	end = now();
	print_summary(end - start);
	return 0;
}
