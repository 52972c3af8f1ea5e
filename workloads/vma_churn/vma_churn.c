// SPDX-License-Identifier: Apache-2.0
/*
 * vma_churn: the anon_vma bookkeeping that fork, VMA splits/merges, mremap
 * and page migration all lean on (split_huge_page and remove_migration_ptes
 * must find every mapping of a folio through it), churned from several
 * threads of one process while every byte stays verifiable.
 *
 * The memory under test is a set of chunks, each with a seeded owner thread:
 *   - THP chunks (2 MiB, MADV_HUGEPAGE, 2 MiB aligned at home) and small
 *     chunks (256 KiB, MADV_NOHUGEPAGE) that start side by side in one "home"
 *     area (so their VMAs merge) and each own two "away" slots;
 *   - MAP_GROWSDOWN stack chunks that grow when touched below their start.
 * Every page holds 512 words that encode (logical page, generation, word):
 * the owner records the generation it last wrote, so any read can be
 * checked; a page that was zapped or is new must read as zeros.
 *
 * Churner threads, each on its own chunks under the chunk's mutex: write and
 * verify runs of pages; MADV_DONTNEED parts of THPs; mprotect sub-ranges
 * read-only or PROT_NONE (a split that persists until a later op restores
 * it, so the VMAs merge again); mremap moves (home <-> away slots, 2 MiB
 * aligned or not), grows in place and by moving, shrinks; munmap a range and
 * mmap it back with MAP_FIXED_NOREPLACE; grow stacks by touching below them
 * and munmap their low end.  A migrator thread move_pages()s random pages to
 * the other NUMA node and now and then migrate_pages()s the whole process.
 * The main thread forks: it first locks a seeded sample of chunks so their
 * contents are settled, forks, and unlocks; the child verifies the sampled
 * pages it inherited, writes some (COW), mremaps one sampled chunk in its
 * own address space, verifies again and exits.
 *
 * Moves must not clobber anything: every destination is first claimed with
 * a PROT_NONE MAP_FIXED_NOREPLACE mapping that the MREMAP_FIXED replaces.  A
 * chunk remembers "cuts", page offsets where its VMAs may not have merged
 * again (a range mmapped back at an address that does not continue the old
 * VMA's pgoff), and mremaps such a chunk one piece at a time.
 *
 * On a machine with one NUMA node the migrator only queries page placement
 * (move_pages without nodes) and the summary says migration=off.
 *
 * Exit status: 0 done; 1 data came back wrong (the first differing offset,
 * expected and found values and the page's state are printed) or memory the
 * workload has mapped faulted; 2 usage; 125 the workload failed (a syscall
 * failed unexpectedly: the call and errno are printed).  A child exits 3 on
 * a data mismatch and 4 on a fault, which make the parent exit 1.  The
 * summary on stdout is key=value text.
 */
#define PROG "vma_churn"
#define USAGE "usage: " PROG " --duration SECONDS --seed N [--writers N] [--thp-mb N]\n" \
	"       [--small-mb N] [--no-fork] [--no-migrate] [--allow-single-node]\n" \
	"       [--log N] [--plan N]\n"
#include "kstress.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define THP_PAGES (THP / PAGE)
#define SMALL_PAGES 64          /* pages in a small chunk at home */
#define STACK_INIT 16           /* pages a stack chunk never shrinks below */
#define STACK_GROW_MAX 256      /* pages it may grow by (1 MiB) */
#define STACK_WINDOW (8UL << 20)/* address space below a stack top kept empty */
#define NSTACKS 2
#define SLOT_SLACK 16           /* pages: room for misaligned offsets in a slot */
#define MAX_CUTS 24
#define CUTS_SPARE 6            /* kept free for a child's mprotect boundaries */
#define MAX_CHURNERS 16
#define BATCH 64
#define FORK_SAMPLE 4
#define CHILD_PICKS 24
#define MAGIC 0x5a17ULL          /* of its pattern words (kstress.h) */
#define LP_BITS PATTERN_LP_BITS
#define GEN_MAX PATTERN_GEN_MAX
/* ---------------------------------------------------------------- failing */

static __thread const char *cur_op = "setup";
static __thread int cur_chunk = -1;
static __thread int in_stack_grow;
static __thread char who[48] = "main thread";

/* ---------------------------------------------------------- configuration */

static long duration = -1, seed = -1, nchurners = 2;
/* Offsets of the seeded streams (seed_stream): the forker, the migrator,
 * then churner t at RNG_CHURNER + t. */
enum { RNG_MAIN = 2, RNG_MIGRATOR = 3, RNG_CHURNER = 4 };
static long thp_mb = 48, small_mb = 16;
static int no_fork, no_migrate, self_test_corrupt;

/* ------------------------------------------------------------- the chunks */

enum { K_THP, K_SMALL, K_STACK };
static const char *const kind_name[] = { "thp", "small", "stack" };
enum { P_RW, P_RO, P_NONE };

struct chunk {
	pthread_mutex_t lock;
	int id, kind;
	uint32_t lp0;           /* logical id of its page 0 */
	size_t nominal;         /* pages at home; a stack's minimum depth */
	size_t cap;             /* most pages it may have */
	char *home;             /* home start; a stack's top */
	char *slot[3];          /* [0] home, [1] and [2] away slots */
	int where;              /* index into slot[] */
	char *addr;             /* current start (a stack's lowest address) */
	size_t len;             /* current pages */
	_Atomic(uintptr_t) addr_a; /* the same two, for the migrator */
	atomic_size_t len_a;
	uint32_t genctr;
	uint32_t *gen;          /* [cap] generation of each page, 0 = zeros */
	uint8_t *prot;          /* [cap] P_* of each page */
	int split;              /* some page is not P_RW */
	int ncuts;
	uint32_t cuts[MAX_CUTS];/* sorted, in (0, len): VMAs may not have merged */
};

static struct chunk *chunks;
static int nchunks, nthp, nsmall;
static char *reservation, *home_base, *stack_base, *away_base;
static size_t reservation_len, home_used, thp_stride, small_stride;

struct stats {
	unsigned long long ops, writes, verifies, dontneed, mprot_split, mprot_restore,
		move, move_home, grow_inplace, grow_move, shrink_mremap, shrink_munmap,
		punch, punch_whole, stack_grow, stack_grow_pages, stack_shrink,
		pages_verified, pages_written;
};

static __thread struct stats *me;

/* The pattern word w of logical page lp at generation gen. */
static inline uint64_t pat(uint32_t lp, uint32_t gen, unsigned w)
{
	return pattern_word(MAGIC, lp, gen, w);
}

static inline char *pg(const struct chunk *c, size_t p)
{
	return c->kind == K_STACK ? c->home - (p + 1) * PAGE : c->addr + p * PAGE;
}

/* The lowest address of pages [p, p + n). */
static inline char *span(const struct chunk *c, size_t p, size_t n)
{
	return c->kind == K_STACK ? c->home - (p + n) * PAGE : c->addr + p * PAGE;
}

static void set_loc(struct chunk *c, char *addr, size_t len)
{
	c->len = len;
	c->addr = c->kind == K_STACK ? c->home - len * PAGE : addr;
	atomic_store_explicit(&c->addr_a, (uintptr_t)c->addr, memory_order_relaxed);
	atomic_store_explicit(&c->len_a, len, memory_order_relaxed);
}

static uint32_t next_gen(struct chunk *c)
{
	c->genctr = c->genctr % GEN_MAX + 1;
	return c->genctr;
}

/* ------------------------------------------------------------ diagnostics */

static char iobuf[1 << 16];

/* Calls fn on each line of path until it returns nonzero; -errno if the
 * file cannot be read.  Only on failure paths (after claim_failure). */
static int each_line(const char *path, int (*fn)(char *line, void *arg), void *arg)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t have = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, iobuf + have, sizeof(iobuf) - 1 - have);
		char *s = iobuf, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += n;
		while ((nl = memchr(s, '\n', iobuf + have - s))) {
			*nl = 0;
			if (fn(s, arg)) {
				close(fd);
				return 0;
			}
			s = nl + 1;
		}
		have = iobuf + have - s;
		memmove(iobuf, s, have);
		if (have == sizeof(iobuf) - 1)
			have = 0;   /* an overlong line: drop it */
	}
	close(fd);
	return 0;
}

struct maps_scan {
	uintptr_t lo, hi;
	char *out;
	size_t size, used;
	int lines, in_vma, done;
};

static void append(struct maps_scan *m, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (m->used >= m->size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(m->out + m->used, m->size - m->used, fmt, ap);
	va_end(ap);
	if (n > 0)
		m->used += (size_t)n < m->size - m->used ? (size_t)n : m->size - m->used - 1;
}

static int is_vma_header(const char *line, uintptr_t *s, uintptr_t *e)
{
	unsigned long a, b;
	char perms[8];

	if (!((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')))
		return 0;
	if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) != 3)
		return 0;
	*s = a;
	*e = b;
	return 1;
}

static int maps_line(char *line, void *arg)
{
	struct maps_scan *m = arg;
	uintptr_t s, e;

	if (!is_vma_header(line, &s, &e) || e <= m->lo || s >= m->hi)
		return 0;
	append(m, "%s[%s]", m->lines ? " " : "", line);
	return ++m->lines >= 8;
}

/* /proc/self/maps lines that overlap [lo, hi). */
static const char *maps_excerpt(const void *lo, const void *hi, char *out, size_t size)
{
	struct maps_scan m = { (uintptr_t)lo, (uintptr_t)hi, out, size, 0, 0, 0, 0 };

	out[0] = 0;
	if (each_line("/proc/self/maps", maps_line, &m) < 0)
		append(&m, "(/proc/self/maps unreadable)");
	else if (!m.lines)
		append(&m, "(nothing mapped there)");
	return out;
}

static int smaps_line(char *line, void *arg)
{
	struct maps_scan *m = arg;
	uintptr_t s, e;

	if (is_vma_header(line, &s, &e)) {
		if (m->in_vma)
			return 1;
		if (s <= m->lo && m->lo < e) {
			m->in_vma = 1;
			append(m, " vma=[%s]", line);
		}
		return 0;
	}
	if (m->in_vma && (!strncmp(line, "AnonHugePages:", 14) || !strncmp(line, "THPeligible:", 12) ||
			  !strncmp(line, "Rss:", 4))) {
		char name[32];
		long v;

		if (sscanf(line, "%31[^:]: %ld", name, &v) == 2)
			append(m, " %s=%ld", name, v);
	}
	return 0;
}

/* What the kernel says about the page at addr: pagemap, kpageflags (needs
 * root for the pfn), its node and its VMA from smaps. */
static const char *describe_page(const void *addr, char *out, size_t size)
{
	struct maps_scan m = { (uintptr_t)addr, 0, out, size, 0, 0, 0, 0 };
	uint64_t ent = 0, flags = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	out[0] = 0;
	if (fd < 0 || pread(fd, &ent, 8, (uintptr_t)addr / PAGE * 8) != 8) {
		append(&m, "pagemap unreadable (%s)", strerror(errno));
	} else {
		uint64_t pfn = ent & PM_PFN_MASK;
		int present = !!(ent & PM_PRESENT);

		append(&m, "pagemap: present=%d swapped=%d exclusive=%d soft_dirty=%d pfn=0x%llx",
		       present, !!(ent & PM_SWAP), !!(ent & PM_EXCLUSIVE), !!(ent & PM_SOFT_DIRTY),
		       (unsigned long long)pfn);
		if (present && pfn) {
			int kfd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);

			if (kfd >= 0 && pread(kfd, &flags, 8, pfn * 8) == 8)
				append(&m, " thp=%s compound_head=%d compound_tail=%d zero_page=%d anon=%d ksm=%d",
				       KPF(flags, KPF_THP) ? "yes" : "no", (int)KPF(flags, KPF_COMPOUND_HEAD),
				       (int)KPF(flags, KPF_COMPOUND_TAIL), (int)KPF(flags, KPF_ZERO_PAGE),
				       (int)KPF(flags, KPF_ANON), (int)KPF(flags, KPF_KSM));
			else
				append(&m, " thp=unknown (kpageflags unreadable)");
			if (kfd >= 0)
				close(kfd);
		} else if (present) {
			append(&m, " thp=unknown (no pfn without CAP_SYS_ADMIN)");
		}
	}
	if (fd >= 0)
		close(fd);
	if (numa_ok) {
		void *p = (void *)addr;
		int st = STATUS_UNSET;

		if (sys_move_pages(1, &p, NULL, &st, 0) == 0)
			append(&m, " node=%d", st);
	}
	if (each_line("/proc/self/smaps", smaps_line, &m) < 0)
		append(&m, " (smaps unreadable)");
	else if (!m.in_vma)
		append(&m, " vma=(none)");
	return out;
}

static const char *where_name(const struct chunk *c, char *buf, size_t size)
{
	if (c->kind == K_STACK)
		snprintf(buf, size, "stack top %p", (void *)c->home);
	else if (c->where == 0)
		snprintf(buf, size, "home");
	else
		snprintf(buf, size, "away slot %d + %zu pages", c->where,
			 (size_t)(c->addr - c->slot[c->where]) / PAGE);
	return buf;
}

static const char *chunk_desc(const struct chunk *c, char *buf, size_t size)
{
	char w[64];

	snprintf(buf, size, "chunk %d (%s, %s, %p, %zu pages, %d cuts%s)", c->id,
		 kind_name[c->kind], where_name(c, w, sizeof(w)), (void *)c->addr,
		 c->len, c->ncuts, c->split ? ", mprotect-split" : "");
	return buf;
}

/* A syscall on the chunk's memory failed: the workload failed (125). */
static _Noreturn void vma_fail(const struct chunk *c, const char *call, int err, const void *lo, size_t len)
{
	char d[256], mx[1024], cuts[256] = "";
	size_t n = 0;

	claim_failure();
	for (int i = 0; i < c->ncuts && n < sizeof(cuts) - 12; i++)
		n += snprintf(cuts + n, sizeof(cuts) - n, "%s%u", i ? "," : "", c->cuts[i]);
	finish(EXIT_WORKLOAD, "%s failed: %s (errno %d) in %s during %s on %s, cuts at [%s]; maps "
	       "there: %s", call, strerror(err), err, who, cur_op, chunk_desc(c, d, sizeof(d)), cuts,
	       maps_excerpt(lo, (const char *)lo + len, mx, sizeof(mx)));
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	char d[2048];
	int code;

	(void)uc;
	claim_failure();
	describe_page(si->si_addr, d, sizeof(d));
	if (in_stack_grow)
		finish(EXIT_WORKLOAD,
		       "signal %d at %p while growing a MAP_GROWSDOWN stack in %s (chunk %d): the "
		       "kernel refused to expand it (stack_guard_gap, RLIMIT_STACK or memory?); %s",
		       sig, si->si_addr, who, cur_chunk, d);
	code = is_child ? EXIT_CHILD_FAULT : EXIT_KERNEL;
	finish(code, "memory access fault: signal %d (code %d) at %p in %s during %s on chunk %d, "
	       "memory the workload has mapped; %s", sig, si->si_code, si->si_addr, who, cur_op,
	       cur_chunk, d);
}

/* ----------------------------------------------------------- verification */

static void mismatch(struct chunk *c, size_t p, size_t word, uint64_t exp, uint64_t got)
{
	volatile uint64_t *w = (volatile uint64_t *)pg(c, p);
	uint64_t x = exp ^ got, again;
	size_t byte = word * 8 + (x ? __builtin_ctzll(x) / 8 : 0);
	char d[256], s[4096], dec[96];

	claim_failure();
	again = w[word];
	decode_word(MAGIC, got, dec, sizeof(dec));
	describe_page((const void *)w, s, sizeof(s));
	finish(is_child ? EXIT_CHILD_MISMATCH : EXIT_KERNEL,
	       "data mismatch in %s during %s: %s page %zu (logical page %u, generation %u) "
	       "at %p: first differing offset 0x%zx in the page (logical offset 0x%llx, "
	       "address %p): expected 0x%016llx, found 0x%016llx (%s), reread 0x%016llx; "
	       "page state: %s",
	       who, cur_op, chunk_desc(c, d, sizeof(d)), p, c->lp0 + (uint32_t)p, c->gen[p],
	       (void *)w, byte, (unsigned long long)(c->lp0 + p) * PAGE + byte,
	       (char *)w + byte, (unsigned long long)exp, (unsigned long long)got, dec,
	       (unsigned long long)again, s);
}

static void verify_one(struct chunk *c, size_t p)
{
	const volatile uint64_t *w = (const volatile uint64_t *)pg(c, p);
	uint32_t g = c->gen[p];

	if (g == 0) {
		for (size_t i = 0; i < WORDS; i++)
			if (w[i] != 0)
				mismatch(c, p, i, 0, w[i]);
	} else {
		uint64_t base = pat(c->lp0 + p, g, 0);

		for (size_t i = 0; i < WORDS; i++) {
			uint64_t v = w[i];

			if (v != (base | i))
				mismatch(c, p, i, base | i, v);
		}
	}
	ADD(me->pages_verified, 1);
}

static void write_one(struct chunk *c, size_t p, uint32_t g)
{
	uint64_t *w = (uint64_t *)pg(c, p);
	uint64_t base = pat(c->lp0 + p, g, 0);

	for (size_t i = 0; i < WORDS; i++)
		w[i] = base | i;
	c->gen[p] = g;
	ADD(me->pages_written, 1);
}

static void verify_range(struct chunk *c, size_t p0, size_t n)
{
	for (size_t p = p0; p < p0 + n && p < c->len; p++)
		if (c->prot[p] != P_NONE)
			verify_one(c, p);
}

/* Verify then rewrite the writable pages of [p0, p0 + n). */
static void write_range(struct chunk *c, size_t p0, size_t n)
{
	uint32_t g = next_gen(c);

	for (size_t p = p0; p < p0 + n && p < c->len; p++) {
		if (c->prot[p] == P_NONE)
			continue;
		verify_one(c, p);
		if (c->prot[p] == P_RW)
			write_one(c, p, g);
	}
}

/* The first touch of fresh memory [p, p + n) writes before it reads: a
 * read fault would map the huge zero page, and a write to that falls back
 * to small pages, so no THP would ever be allocated.  The page after it,
 * which should be zeros, is verified instead. */
static void first_touch(struct chunk *c, size_t p, size_t n)
{
	write_one(c, p, next_gen(c));
	if (n > 1)
		verify_range(c, p + 1, 1);
}

/* First, last and n seeded pages. */
static void verify_sample(struct chunk *c, uint64_t r, int n)
{
	verify_range(c, 0, 1);
	verify_range(c, c->len - 1, 1);
	for (int i = 0; i < n; i++) {
		verify_range(c, r % c->len, 1);
		r = r >> 7 | r << 57;
	}
}

/* -------------------------------------------------------- VMA operations */

static void x_mprotect(struct chunk *c, void *a, size_t len, int prot)
{
	if (mprotect(a, len, prot))
		vma_fail(c, "mprotect", errno, a, len);
}

static void x_madvise(struct chunk *c, void *a, size_t len, int advice, const char *name)
{
	if (madvise(a, len, advice))
		vma_fail(c, name, errno, a, len);
}

static void x_munmap(struct chunk *c, void *a, size_t len)
{
	if (munmap(a, len))
		vma_fail(c, "munmap", errno, a, len);
}

/* mmap exactly at a, never over anything: EEXIST means a mapping this
 * workload did not make sits where its bookkeeping says nothing is. */
static void x_mmap_at(struct chunk *c, void *a, size_t len, int prot, int flags, const char *what)
{
	void *r = mmap(a, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | flags, -1, 0);

	if (r == MAP_FAILED)
		vma_fail(c, what, errno, a, len);
	if (r != a) {
		char d[256];

		claim_failure();
		finish(EXIT_WORKLOAD, "%s: asked for %p, got %p (a kernel without "
		       "MAP_FIXED_NOREPLACE?) in %s on %s", what, a, r, who,
		       chunk_desc(c, d, sizeof(d)));
	}
}

static void x_mremap(struct chunk *c, void *old, size_t old_len, size_t new_len, int flags, void *dest)
{
	void *want = flags & MREMAP_FIXED ? dest : old;
	void *r = mremap(old, old_len, new_len, flags, dest);

	if (r == MAP_FAILED) {
		char call[160];

		snprintf(call, sizeof(call), "mremap(%p, %zu pages, %zu pages, %s, %p)", old,
			 old_len / PAGE, new_len / PAGE, flags & MREMAP_FIXED ? "MAYMOVE|FIXED" : "0", dest);
		vma_fail(c, call, errno, old, old_len > new_len ? old_len : new_len);
	}
	if (r != want) {
		char d[256];

		claim_failure();
		finish(EXIT_WORKLOAD, "mremap(%p) returned %p, expected %p, in %s on %s",
		       old, r, want, who, chunk_desc(c, d, sizeof(d)));
	}
}

static void kind_advice(struct chunk *c, void *a, size_t len)
{
	if (c->kind == K_THP)
		x_madvise(c, a, len, MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE)");
	else if (c->kind == K_SMALL)
		x_madvise(c, a, len, MADV_NOHUGEPAGE, "madvise(MADV_NOHUGEPAGE)");
}

static size_t seg_lo(const struct chunk *c, int s)
{
	return s == 0 ? 0 : c->cuts[s - 1];
}

static size_t seg_hi(const struct chunk *c, int s)
{
	return s == c->ncuts ? c->len : c->cuts[s];
}

/* Records a place where the chunk's VMAs may not merge; 0 if full. */
static int add_cut(struct chunk *c, size_t p)
{
	int i;

	if (p == 0 || p >= c->len)
		return 1;
	for (i = 0; i < c->ncuts && c->cuts[i] < p; i++)
		;
	if (i < c->ncuts && c->cuts[i] == p)
		return 1;
	if (c->ncuts == MAX_CUTS)
		return 0;
	memmove(&c->cuts[i + 1], &c->cuts[i], (c->ncuts - i) * sizeof(c->cuts[0]));
	c->cuts[i] = p;
	c->ncuts++;
	return 1;
}

/* Forget what lies beyond len: generations, protections, cuts. */
static void truncate_to(struct chunk *c, size_t len)
{
	for (size_t p = len; p < c->len; p++) {
		c->gen[p] = 0;
		c->prot[p] = P_RW;
	}
	while (c->ncuts && c->cuts[c->ncuts - 1] >= len)
		c->ncuts--;
}

/* Undo an mprotect split: one call over the whole chunk; the VMAs merge. */
static void restore(struct chunk *c)
{
	if (!c->split)
		return;
	x_mprotect(c, span(c, 0, c->len), c->len * PAGE, PROT_READ | PROT_WRITE);
	memset(c->prot, P_RW, c->len);
	c->split = 0;
	ADD(me->mprot_restore, 1);
}

/* Grows the last segment (a whole VMA's tail) in place by k pages. */
static void grow_in_place(struct chunk *c, size_t k)
{
	size_t lo = seg_lo(c, c->ncuts);

	x_mremap(c, c->addr + lo * PAGE, (c->len - lo) * PAGE, (c->len - lo + k) * PAGE, 0, NULL);
	set_loc(c, c->addr, c->len + k);
}

/* Moves the (unsplit) chunk to dest, growing it to newlen pages. The
 * destination is claimed first so the MREMAP_FIXED cannot unmap anything
 * but that claim; a chunk with cuts moves one segment at a time. */
static void chunk_move(struct chunk *c, char *dest, size_t newlen)
{
	size_t len = c->len;

	if (c->ncuts == 0) {
		x_mmap_at(c, dest, newlen * PAGE, PROT_NONE, MAP_NORESERVE, "mmap(claim the destination)");
		x_mremap(c, c->addr, len * PAGE, newlen * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
		set_loc(c, dest, newlen);
		return;
	}
	x_mmap_at(c, dest, len * PAGE, PROT_NONE, MAP_NORESERVE, "mmap(claim the destination)");
	for (int s = 0; s <= c->ncuts; s++) {
		size_t lo = seg_lo(c, s), hi = seg_hi(c, s);

		x_mremap(c, c->addr + lo * PAGE, (hi - lo) * PAGE, (hi - lo) * PAGE,
			 MREMAP_MAYMOVE | MREMAP_FIXED, dest + lo * PAGE);
	}
	set_loc(c, dest, len);
	if (newlen > len)
		grow_in_place(c, newlen - len);
}

/* The other slot a move of the chunk goes to, and its offset there; half
 * the moves from away go home (after a shrink to fit, if it has grown). */
static char *move_target(struct chunk *c, uint64_t r, int *to)
{
	size_t off;

	if (c->where == 0)
		*to = 1 + (r & 1);
	else if (r >> 1 & 1)
		*to = 0;
	else
		*to = 3 - c->where;
	/* Half the moves keep 2 MiB alignment (PMDs move whole), half not. */
	off = (*to == 0 || (r >> 2 & 1)) ? 0 : 1 + (r >> 3) % (SLOT_SLACK - 1);
	return c->slot[*to] + off * PAGE;
}

/* Shrinks the chunk to len pages from its end: mremap within the last
 * segment, a whole segment goes with munmap. */
static void shrink_to(struct chunk *c, size_t len)
{
	while (c->len > len) {
		size_t lo = seg_lo(c, c->ncuts), seglen = c->len - lo;

		if (lo >= len) {
			x_munmap(c, c->addr + lo * PAGE, seglen * PAGE);
			ADD(me->shrink_munmap, 1);
			truncate_to(c, lo);
			set_loc(c, c->addr, lo);
		} else {
			x_mremap(c, c->addr + lo * PAGE, seglen * PAGE, (len - lo) * PAGE, 0, NULL);
			ADD(me->shrink_mremap, 1);
			truncate_to(c, len);
			set_loc(c, c->addr, len);
		}
	}
}

/* ------------------------------------------------------------ operations */

enum {
	OP_WRITE, OP_VERIFY, OP_DONTNEED, OP_MPROTECT, OP_MOVE, OP_GROW, OP_SHRINK,
	OP_PUNCH, OP_STACK_GROW, OP_STACK_SHRINK, NOPS
};
static const char *const op_name[NOPS] = {
	"write", "verify", "dontneed", "mprotect", "mremap_move", "mremap_grow",
	"mremap_shrink", "munmap_mmap", "stack_grow", "stack_shrink",
};

/* Which op a decision means: fixed by the chunk's kind and r0 only. */
static int pick_op(int kind, uint64_t r0)
{
	unsigned x = (r0 >> 32) % 100;

	if (x < 28)
		return OP_WRITE;
	if (x < 38)
		return OP_VERIFY;
	if (x < 46)
		return OP_DONTNEED;
	if (x < 58)
		return OP_MPROTECT;
	if (kind == K_STACK)
		return x < 82 ? OP_STACK_GROW : OP_STACK_SHRINK;
	if (x < 70)
		return OP_MOVE;
	if (x < 77)
		return OP_GROW;
	if (x < 84)
		return OP_SHRINK;
	return OP_PUNCH;
}

static void clamp(struct chunk *c, size_t *p0, size_t *n)
{
	*p0 %= c->len;
	if (*n > c->len - *p0)
		*n = c->len - *p0;
	if (*n == 0)
		*n = 1;
}

static void op_write(struct chunk *c, uint64_t r1)
{
	size_t n = 1 + r1 % 16, p0 = r1 >> 8;

	clamp(c, &p0, &n);
	write_range(c, p0, n);
	ADD(me->writes, 1);
}

static void op_verify(struct chunk *c, uint64_t r1)
{
	size_t n = 1 + r1 % 64, p0 = r1 >> 8;

	clamp(c, &p0, &n);
	verify_range(c, p0, n);
	ADD(me->verifies, 1);
}

/* Zap a run of pages: inside a THP that splits its PMD and queues the
 * folio for a deferred split; the pages must then read as zeros. */
static void op_dontneed(struct chunk *c, uint64_t r1)
{
	size_t n = 1 + r1 % 32, p0 = r1 >> 8;

	clamp(c, &p0, &n);
	x_madvise(c, span(c, p0, n), n * PAGE, MADV_DONTNEED, "madvise(MADV_DONTNEED)");
	for (size_t p = p0; p < p0 + n; p++)
		c->gen[p] = 0;
	verify_range(c, p0, 1);
	if (c->prot[p0] == P_RW && (r1 >> 40 & 1))
		write_range(c, p0, 1);
	ADD(me->dontneed, 1);
}

static void protect(struct chunk *c, size_t p0, size_t n, int ptype)
{
	x_mprotect(c, span(c, p0, n), n * PAGE, ptype == P_RO ? PROT_READ : PROT_NONE);
	memset(c->prot + p0, ptype, n);
	c->split = 1;
}

/* Split the chunk's VMA with mprotect (left split for later ops, migration
 * and forks to meet), or restore a split so the pieces merge again. */
static void op_mprotect(struct chunk *c, uint64_t r1, uint64_t r2)
{
	size_t n, p0;

	if (c->split) {
		restore(c);
		verify_sample(c, r2, 4);
		return;
	}
	n = 1 + r1 % (c->len / 2 + 1);
	p0 = r1 >> 20;
	clamp(c, &p0, &n);
	protect(c, p0, n, r1 >> 40 & 1 ? P_RO : P_NONE);
	if (r2 & 1) {
		size_t n2 = 1 + (r2 >> 1) % (c->len / 4 + 1), q0 = r2 >> 20;

		clamp(c, &q0, &n2);
		protect(c, q0, n2, P_RO);
	}
	verify_range(c, p0, n < 8 ? n : 8);
	ADD(me->mprot_split, 1);
}

/* A move: home to an away slot, away to home or the other slot. */
static int relocate(struct chunk *c, uint64_t r)
{
	int to;
	char *dest;

	restore(c);
	dest = move_target(c, r, &to);
	if (to == 0 && c->len > c->nominal)
		shrink_to(c, c->nominal);
	chunk_move(c, dest, c->len);
	c->where = to;
	return to;
}

static void op_move(struct chunk *c, uint64_t r1, uint64_t r2)
{
	if (relocate(c, r1) == 0)
		ADD(me->move_home, 1);
	ADD(me->move, 1);
	verify_sample(c, r2, 6);
}

static void op_grow(struct chunk *c, uint64_t r1, uint64_t r2)
{
	size_t k = 1 + r1 % c->nominal, old = c->len;
	size_t room = (c->where == 0 ? c->nominal : c->cap) - c->len;

	restore(c);
	if (room && !(c->where != 0 && (r1 >> 21 & 1))) {
		grow_in_place(c, k < room ? k : room);
		ADD(me->grow_inplace, 1);
	} else {
		int to = c->where == 0 ? 1 + (int)(r1 >> 20 & 1) : 3 - c->where;
		size_t newlen = c->len + k < c->cap ? c->len + k : c->cap;

		chunk_move(c, c->slot[to], newlen);
		c->where = to;
		ADD(me->grow_move, 1);
	}
	/* The new pages are zeros until written: write the first and last. */
	if (c->len > old) {
		first_touch(c, old, c->len - old);
		write_range(c, c->len - 1, 1);
	}
	verify_sample(c, r2, 4);
}

static void op_shrink(struct chunk *c, uint64_t r1)
{
	size_t lo, seglen, k;

	restore(c);
	if (c->len <= 1)
		return;
	lo = seg_lo(c, c->ncuts);
	seglen = c->len - lo;
	if (seglen >= 2) {
		k = 1 + r1 % (seglen - 1);
		x_mremap(c, c->addr + lo * PAGE, seglen * PAGE, (seglen - k) * PAGE, 0, NULL);
		ADD(me->shrink_mremap, 1);
	} else {
		/* A one-page last segment: unmap it whole. */
		k = 1;
		x_munmap(c, c->addr + lo * PAGE, PAGE);
		ADD(me->shrink_munmap, 1);
	}
	truncate_to(c, c->len - k);
	set_loc(c, c->addr, c->len - k);
	verify_range(c, c->len - 1, 1);
}

/* munmap a range and mmap it back (MAP_FIXED_NOREPLACE): a whole chunk at
 * home gets fresh THPs; a part is a new VMA that merges back with its
 * neighbours only where its pgoff continues theirs, so it becomes cuts. */
static void op_punch(struct chunk *c, uint64_t r1, uint64_t r2)
{
	size_t n = 1 + (r1 >> 8) % (c->len / 4 + 1), p0 = r1 >> 24;
	int whole = r1 % 4 == 0;

	restore(c);
	clamp(c, &p0, &n);
	if (!whole && c->ncuts + 2 > MAX_CUTS - CUTS_SPARE)
		whole = 1;
	if (whole) {
		p0 = 0;
		n = c->len;
	}
	x_munmap(c, span(c, p0, n), n * PAGE);
	x_mmap_at(c, span(c, p0, n), n * PAGE, PROT_READ | PROT_WRITE, 0, "mmap(map back)");
	kind_advice(c, span(c, p0, n), n * PAGE);
	for (size_t p = p0; p < p0 + n; p++)
		c->gen[p] = 0;
	if (whole) {
		c->ncuts = 0;
		ADD(me->punch_whole, 1);
	} else {
		add_cut(c, p0);
		add_cut(c, p0 + n);
	}
	first_touch(c, p0, n);
	if (n > 1)
		write_range(c, p0 + n - 1, 1);
	if (r2 & 1)
		write_range(c, p0 + (r2 >> 1) % n, 1);
	ADD(me->punch, 1);
}

/* Grow a MAP_GROWSDOWN chunk by touching below it: page by page like a
 * stack, or the lowest new page first (one expansion over the gap). */
static void stack_grow(struct chunk *c, size_t k, int jump)
{
	size_t d = c->len;
	uint32_t g = next_gen(c);

	set_loc(c, NULL, d + k);
	in_stack_grow = 1;
	if (jump) {
		verify_one(c, d + k - 1);
		write_one(c, d + k - 1, g);
	}
	for (size_t p = d; p < d + k; p++) {
		verify_one(c, p);
		if (p == d || !jump)
			write_one(c, p, g);
	}
	in_stack_grow = 0;
	ADD(me->stack_grow, 1);
	ADD(me->stack_grow_pages, k);
}

static void stack_shrink(struct chunk *c, size_t k)
{
	x_munmap(c, span(c, c->len - k, k), k * PAGE);
	truncate_to(c, c->len - k);
	set_loc(c, NULL, c->len - k);
	ADD(me->stack_shrink, 1);
}

static void op_stack_grow(struct chunk *c, uint64_t r1)
{
	size_t room;

	restore(c);
	if (c->len == c->cap && c->cap > c->nominal)
		stack_shrink(c, c->len - c->nominal);
	room = c->cap - c->len;
	if (room)
		stack_grow(c, 1 + r1 % (room < 32 ? room : 32), r1 >> 8 & 1);
	verify_range(c, c->len - 1, 1);
}

static void op_stack_shrink(struct chunk *c, uint64_t r1)
{
	restore(c);
	if (c->len > c->nominal)
		stack_shrink(c, 1 + r1 % (c->len - c->nominal));
	verify_range(c, c->len - 1, 1);
}

/* Decision op on chunk ci, with its mutex held (churn()). */
static void run_op(int ci, int op, const uint64_t args[2])
{
	struct chunk *c = &chunks[ci];
	uint64_t r1 = args[0], r2 = args[1];

	cur_chunk = ci;
	cur_op = op_name[op];
	switch (op) {
	case OP_WRITE: op_write(c, r1); break;
	case OP_VERIFY: op_verify(c, r1); break;
	case OP_DONTNEED: op_dontneed(c, r1); break;
	case OP_MPROTECT: op_mprotect(c, r1, r2); break;
	case OP_MOVE: op_move(c, r1, r2); break;
	case OP_GROW: op_grow(c, r1, r2); break;
	case OP_SHRINK: op_shrink(c, r1); break;
	case OP_PUNCH: op_punch(c, r1, r2); break;
	case OP_STACK_GROW: op_stack_grow(c, r1); break;
	case OP_STACK_SHRINK: op_stack_shrink(c, r1); break;
	}
	cur_op = "idle";
}

/* --------------------------------------------------------------- churners */

struct churner {
	int id;
	uint64_t rng;
	int *owned;
	int nowned;
	struct stats st;
	struct dlog log;
};

static struct churner churners[MAX_CHURNERS];
static struct crew crew;   /* the churners and the migrator */

static pthread_mutex_t *chunk_mutex(int ci)
{
	return &chunks[ci].lock;
}

/* Decision n of churner t: three draws, whatever the chunk's state. */
static int churner_decide(void *t_, long n, uint64_t args[2])
{
	struct churner *t = t_;
	uint64_t r0 = rnd(&t->rng);
	int ci = t->owned[r0 % t->nowned];
	int op = pick_op(chunks[ci].kind, r0);

	args[0] = rnd(&t->rng);
	args[1] = rnd(&t->rng);
	log_line(&t->log, "decision churner%d n=%ld chunk=%d kind=%s op=%s args=%016llx,%016llx",
		 t->id, n, ci, kind_name[chunks[ci].kind], op_name[op],
		 (unsigned long long)args[0], (unsigned long long)args[1]);
	return ci << 8 | op;
}

static void *churner_main(void *arg)
{
	struct churner *t = arg;

	me = &t->st;
	snprintf(who, sizeof(who), "churner %d", t->id);
	churn(t, &crew.gate, churner_decide, chunk_mutex, run_op, &me->ops);
	return NULL;
}

/* --------------------------------------------------------------- migrator */

static struct migrator mig;   /* ENOMEM (no memory on the target node) is counted */

/* The address of page p of a chunk as of now, read without its lock: it
 * may be stale, which move_pages reports per page (-EFAULT, -ENOENT). */
static void *racy_page(struct chunk *c, size_t p)
{
	size_t len = atomic_load_explicit(&c->len_a, memory_order_relaxed);
	uintptr_t a = atomic_load_explicit(&c->addr_a, memory_order_relaxed);

	p %= len ? len : 1;
	if (c->kind == K_STACK)
		return c->home - (p + 1) * PAGE;
	return (char *)a + p * PAGE;
}

/* A migrator's draw: a chunk, and a page of it. */
static void *migrator_pick(uint64_t r)
{
	struct chunk *c = &chunks[r % nchunks];

	return racy_page(c, (r >> 32) % c->cap);
}

static void *migrator_main(void *arg)
{
	(void)arg;
	snprintf(who, sizeof(who), "migrator");
	migrator_loop(&mig, &crew.gate, BATCH, migrator_pick);
	return NULL;
}

/* ------------------------------------------------------------------ forks */

static struct shared {
	unsigned long long children_checked, child_pages_verified, child_cow_writes,
		child_mremaps, child_stack_grows, selftest_done;
} *shared;

static struct stats main_stats;
static struct dlog fork_log;

/* Decision n of the forker: a sorted sample of distinct chunks and the
 * child's seed. */
static void forker_decide(uint64_t *rng, long n, struct fork_plan *f)
{
	forker_decide_sample(&fork_log, rng, n, nchunks, FORK_SAMPLE, "chunks", f);
}

/* --self-test-corrupt: flip one byte of a writable page in this child's
 * view (a COW write: the parent keeps its copy) and verify it. */
static void corrupt_one(const struct fork_plan *f)
{
	for (int i = 0; i < f->k; i++) {
		struct chunk *c = &chunks[f->sample[i]];

		for (size_t p = 0; p < c->len; p++) {
			if (c->prot[p] != P_RW)
				continue;
			ADD_SHARED(shared->selftest_done, 1);
			cur_op = "self-test: a flipped byte must be found";
			((volatile char *)pg(c, p))[0x123] ^= 0x40;
			verify_one(c, p);
			return;
		}
	}
}

/* The child: only this thread exists; the sampled chunks' bookkeeping is
 * what it was at the fork, as their owners were locked out. */
static _Noreturn void child_main(const struct fork_plan *f, int corrupt)
{
	size_t picks[FORK_SAMPLE][CHILD_PICKS];
	uint64_t rng = f->child_seed;
	struct chunk *c;
	int i;

	child_begin();
	memset(me, 0, sizeof(*me));
	snprintf(who, sizeof(who), "child of fork #%llu (pid %d)", forks, (int)getpid());
	die_with_parent();
	if (corrupt)
		corrupt_one(f);
	cur_op = "child: verify inherited pages";
	for (i = 0; i < f->k; i++) {
		c = &chunks[f->sample[i]];
		cur_chunk = c->id;
		picks[i][0] = 0;
		picks[i][1] = c->len - 1;
		for (int j = 2; j < CHILD_PICKS; j++)
			picks[i][j] = rnd(&rng) % c->len;
		for (int j = 0; j < CHILD_PICKS; j++)
			verify_range(c, picks[i][j], 1);
	}
	cur_op = "child: COW writes";
	for (i = 0; i < f->k; i++) {
		c = &chunks[f->sample[i]];
		cur_chunk = c->id;
		for (int j = 0; j < 4; j++) {
			size_t p = picks[i][rnd(&rng) % CHILD_PICKS];

			if (c->prot[p] == P_RW) {
				write_range(c, p, 1);
				ADD_SHARED(shared->child_cow_writes, 1);
			}
		}
	}
	/* Rearrange one sampled chunk in the child's own address space. */
	i = rnd(&rng) % f->k;
	c = &chunks[f->sample[i]];
	cur_chunk = c->id;
	if (c->kind == K_STACK) {
		restore(c);
		cur_op = "child: stack_grow";
		if (c->len < c->cap) {
			stack_grow(c, 1 + rnd(&rng) % (c->cap - c->len < 8 ? c->cap - c->len : 8), 0);
			ADD_SHARED(shared->child_stack_grows, 1);
		}
	} else {
		/* fork gave each of the chunk's VMAs its own anon_vma in the child, so
		 * pieces an mprotect split apart no longer merge when restored. */
		int fits = 1;

		for (size_t p = 1; p < c->len; p++)
			if (c->prot[p] != c->prot[p - 1])
				fits &= add_cut(c, p);
		cur_op = "child: mremap_move";
		if (fits) {
			relocate(c, rnd(&rng));
			ADD_SHARED(shared->child_mremaps, 1);
		}
	}
	cur_op = "child: verify again";
	for (i = 0; i < f->k; i++) {
		c = &chunks[f->sample[i]];
		cur_chunk = c->id;
		for (int j = 0; j < CHILD_PICKS; j++)
			verify_range(c, picks[i][j], 1);
	}
	ADD_SHARED(shared->child_pages_verified, me->pages_verified);
	ADD_SHARED(shared->children_checked, 1);
	_exit(0);
}

/* One fork: its sample of chunks is locked (their contents settled) while
 * the child is made. */
static void fork_one(uint64_t *rng)
{
	struct fork_plan f;

	forker_decide(rng, forks, &f);
	fork_sample_locked(&f, self_test_corrupt && !GET(shared->selftest_done), chunk_mutex,
			   child_main);
}

/* --------------------------------------------------------------- set up */

static size_t round_up(size_t x, size_t a)
{
	return (x + a - 1) / a * a;
}

/* The chunk table: kinds, sizes, owners and logical page ids.  No memory
 * yet, so --plan can use it. */
static void plan_chunks(void)
{
	size_t stack_cap = STACK_INIT + STACK_GROW_MAX;
	struct rlimit rl;
	uint32_t lp = 0;

	/* A stack may not outgrow RLIMIT_STACK (keep a margin). */
	if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / PAGE < stack_cap + 16)
		stack_cap = rl.rlim_cur / PAGE > STACK_INIT + 16 ? rl.rlim_cur / PAGE - 16 : STACK_INIT;
	nthp = thp_mb / 2;
	nsmall = small_mb * (1UL << 20) / (SMALL_PAGES * PAGE);
	nchunks = nthp + nsmall + NSTACKS;
	if (nchurners > nchunks)
		usage("--writers is larger than the number of chunks");
	chunks = calloc(nchunks, sizeof(*chunks));
	if (!chunks)
		die(EXIT_WORKLOAD, "out of memory for the chunk table");
	for (int i = 0; i < nchunks; i++) {
		struct chunk *c = &chunks[i];

		c->id = i;
		c->kind = i < nthp ? K_THP : i < nthp + nsmall ? K_SMALL : K_STACK;
		c->nominal = c->kind == K_THP ? THP_PAGES : c->kind == K_SMALL ? SMALL_PAGES : STACK_INIT;
		c->cap = c->kind == K_STACK ? stack_cap : 2 * c->nominal;
		c->lp0 = lp;
		lp += c->cap;
		check_pthread("pthread_mutex_init", pthread_mutex_init(&c->lock, NULL));
	}
	if (lp >= 1U << LP_BITS)
		usage("too much memory: --thp-mb plus --small-mb must stay below 1 GiB");
	for (int t = 0; t < nchurners; t++) {
		struct churner *ch = &churners[t];

		ch->id = t;
		ch->rng = seed_stream(seed, RNG_CHURNER + t);
		ch->owned = calloc(nchunks, sizeof(int));
		if (!ch->owned)
			die(EXIT_WORKLOAD, "out of memory for the chunk table");
		for (int i = t; i < nchunks; i += nchurners)
			ch->owned[ch->nowned++] = i;
	}
	mig.rng = seed_stream(seed, RNG_MIGRATOR);
	mig.mv.nomem_ok = 1;
}

static void *x_map(void *a, size_t len, int prot, int flags, const char *what)
{
	void *r = mmap(a, len, prot, MAP_ANONYMOUS | (flags & MAP_SHARED ? 0 : MAP_PRIVATE) | flags, -1, 0);

	if (r == MAP_FAILED)
		die(EXIT_WORKLOAD, "%s (%zu bytes) failed: %s (errno %d)", what, len, strerror(errno), errno);
	if (a && r != a)
		die(EXIT_WORKLOAD, "%s: asked for %p, got %p", what, a, r);
	return r;
}

static void x_unmap_setup(void *a, size_t len)
{
	if (len && munmap(a, len))
		die(EXIT_WORKLOAD, "munmap(%p, %zu) failed: %s (errno %d)", a, len, strerror(errno), errno);
}

/*
 * Address space, all inside one reservation made before any thread exists:
 *   [2 MiB pad][NSTACKS x 8 MiB stack windows, stack at the top of each]
 *   [home: THP chunks, then small chunks]
 *   [away: two slots per THP chunk (2 MiB aligned), then per small chunk]
 * Home and the stacks are mapped now; release_holes() unmaps the rest once
 * the threads (whose stacks mmap() places) exist, so nothing else lands in
 * the holes the chunks move through.
 */
static void map_chunks(void)
{
	size_t home_len, away_len;
	char *base, *a;

	thp_stride = round_up((2 * THP_PAGES + 2 * SLOT_SLACK) * PAGE, THP);
	small_stride = (2 * SMALL_PAGES + 2 * SLOT_SLACK) * PAGE;
	home_used = nthp * THP + nsmall * SMALL_PAGES * PAGE;
	home_len = round_up(home_used, THP);
	away_len = nthp * 2 * thp_stride + round_up(nsmall * 2 * small_stride, THP);
	reservation_len = THP + THP + NSTACKS * STACK_WINDOW + home_len + away_len + THP;
	reservation = x_map(NULL, reservation_len, PROT_NONE, MAP_NORESERVE, "mmap(reserve address space)");
	base = (char *)round_up((uintptr_t)reservation, THP);
	stack_base = base + THP;
	home_base = stack_base + NSTACKS * STACK_WINDOW;
	away_base = home_base + home_len;

	if (home_used) {
		x_map(home_base, home_used, PROT_READ | PROT_WRITE, MAP_FIXED, "mmap(home)");
		if (nthp && madvise(home_base, nthp * THP, MADV_HUGEPAGE))
			fail_sys("madvise(MADV_HUGEPAGE)", errno);
		if (nsmall && madvise(home_base + nthp * THP, nsmall * SMALL_PAGES * PAGE, MADV_NOHUGEPAGE))
			fail_sys("madvise(MADV_NOHUGEPAGE)", errno);
	}
	a = away_base;
	for (int i = 0; i < nchunks; i++) {
		struct chunk *c = &chunks[i];
		uint32_t g;

		c->gen = calloc(c->cap, sizeof(*c->gen));
		c->prot = calloc(c->cap, 1);
		if (!c->gen || !c->prot)
			die(EXIT_WORKLOAD, "out of memory for the chunk table");
		if (c->kind == K_STACK) {
			int s = i - nthp - nsmall;

			c->home = stack_base + (s + 1) * STACK_WINDOW;
			x_map(c->home - c->nominal * PAGE, c->nominal * PAGE, PROT_READ | PROT_WRITE,
			      MAP_FIXED | MAP_GROWSDOWN, "mmap(MAP_GROWSDOWN)");
		} else {
			size_t stride = c->kind == K_THP ? thp_stride : small_stride;

			c->home = c->kind == K_THP ? home_base + i * THP
				: home_base + nthp * THP + (size_t)(i - nthp) * SMALL_PAGES * PAGE;
			if (c->kind == K_SMALL && i == nthp)
				a = away_base + nthp * 2 * thp_stride;
			c->slot[0] = c->home;
			c->slot[1] = a;
			c->slot[2] = a + stride;
			a += 2 * stride;
		}
		c->where = 0;
		set_loc(c, c->home, c->nominal);
		g = next_gen(c);
		for (size_t p = 0; p < c->len; p++)
			write_one(c, p, g);
	}
}

static void release_holes(void)
{
	char *lo = reservation, *end = reservation + reservation_len;

	for (int s = 0; s < NSTACKS; s++) {
		char *top = stack_base + (s + 1) * STACK_WINDOW;

		x_unmap_setup(lo, top - STACK_INIT * PAGE - lo);
		lo = top;
	}
	x_unmap_setup(lo, home_base - lo);
	x_unmap_setup(home_base + home_used, end - (home_base + home_used));
}

/* ------------------------------------------------------------ arguments */

static void parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		FLAG("--no-fork", &no_fork),
		FLAG("--no-migrate", &no_migrate),
		FLAG("--allow-single-node", NULL),   /* accepted like migrate_fork's; one node always runs */
		FLAG("--self-test-corrupt", &self_test_corrupt),
		RUN_OPTS(&duration, &seed),
		NUM("--writers", &nchurners, 1, MAX_CHURNERS),
		NUM("--thp-mb", &thp_mb, 0, 512),
		NUM("--small-mb", &small_mb, 0, 512),
		PLAN_OPT(&plan_decisions),
		LOG_OPT,
		{ NULL },
	};

	parse_opts(argc, argv, opts);
	if (seed < 0 || (duration < 0 && !plan_decisions))
		usage("--duration and --seed are required (--plan needs only --seed)");
	if (thp_mb < 2 && small_mb < 1)
		usage("no memory to test: give --thp-mb >= 2 or --small-mb >= 1");
}

/* --plan N: the first N decisions of every stream, from the seed alone. */
static int print_plan(void)
{
	uint64_t main_rng = seed_stream(seed, RNG_MAIN);
	struct fork_plan f;
	uint64_t args[2];

	for (int t = 0; t < nchurners; t++)
		for (long n = 0; n < plan_decisions; n++)
			churner_decide(&churners[t], n, args);
	for (long n = 0; n < plan_decisions; n++)
		forker_decide(&main_rng, n, &f);
	for (long n = 0; n < plan_decisions; n++)
		migrator_decide(&mig, n, BATCH, NULL, migrator_pick);
	return 0;
}

static void sum_stats(struct stats *s)
{
	memset(s, 0, sizeof(*s));
	for (int t = 0; t < nchurners; t++)
		add_counters(s, &churners[t].st, sizeof(*s));
}

static void progress(double t)
{
	struct stats s;

	sum_stats(&s);
	printf("vma_churn progress: t=%.0fs ops=%llu forks=%llu pages_verified=%llu pages_moved=%llu\n",
	       t, s.ops, forks, s.pages_verified, GET(mig.mv.moved));
}

int main(int argc, char **argv)
{
	static char outbuf[1 << 16];
	uint64_t main_rng;
	double start, end, next_progress;
	struct rusage ru;
	struct stats s;
	int migrate;

	/* stdout's buffer is static: nothing may mmap() once the holes exist. */
	setvbuf(stdout, outbuf, _IOLBF, sizeof(outbuf));
	parse_args(argc, argv);
	me = &main_stats;
	plan_chunks();
	if (plan_decisions)
		return print_plan();
	find_nodes();
	migrate = !no_migrate && numa_ok;

	for (int t = 0; t < nchurners; t++)
		dlog_alloc(&churners[t].log);
	dlog_alloc(&mig.log);
	dlog_alloc(&fork_log);
	shared = x_map(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED, "mmap(shared counters)");
	catch_faults(on_fault);

	map_chunks();

	crew_init(&crew, nchurners + migrate);
	for (int t = 0; t < nchurners; t++)
		crew_add(&crew, churner_main, &churners[t]);
	if (migrate)
		crew_add(&crew, migrator_main, NULL);
	release_holes();
	main_rng = seed_stream(seed, RNG_MAIN);
	start = now();
	next_progress = start + PROGRESS_EVERY;
	crew_go(&crew);

	while (now() - start < duration) {
		if (progress_due(now(), &next_progress))
			progress(now() - start);
		if (no_fork)
			usleep(10 * 1000);
		else
			fork_one(&main_rng);
	}
	stop_and_reap();
	crew_join(&crew);
	end = now();
	ru = self_rusage();

	for (int t = 0; t < nchurners; t++)
		print_log(&churners[t].log);
	print_log(&fork_log);
	print_log(&mig.log);
	sum_stats(&s);
	if (nnodes < 2)
		printf("vma_churn note: %s; the migrator only queries where pages are\n",
		       numa_ok ? "one NUMA node with memory, nothing to migrate to"
			       : "a kernel without NUMA, no migration and no queries");
	/* key=value words, each key once, for the harness and for humans. */
	printf("vma_churn summary: seed=%ld duration=%.1fs nodes=%d migration=%s churners=%ld "
	       "thp_chunks=%d small_chunks=%d stack_chunks=%d region_mb=%ld errors=0\n",
	       seed, end - start, nnodes, migrate && nnodes > 1 ? "on" : "off", nchurners,
	       nthp, nsmall, NSTACKS, thp_mb + small_mb);
	printf("vma_churn vma_ops: ops=%llu writes=%llu verifies=%llu dontneed=%llu "
	       "mprotect_split=%llu mprotect_restore=%llu mremap_move=%llu mremap_move_home=%llu "
	       "mremap_grow_inplace=%llu mremap_grow_move=%llu mremap_shrink=%llu munmap_shrink=%llu "
	       "munmap_mmap=%llu munmap_mmap_whole=%llu stack_grow=%llu stack_grow_pages=%llu "
	       "stack_shrink=%llu\n",
	       s.ops, s.writes, s.verifies, s.dontneed, s.mprot_split, s.mprot_restore, s.move,
	       s.move_home, s.grow_inplace, s.grow_move, s.shrink_mremap, s.shrink_munmap, s.punch,
	       s.punch_whole, s.stack_grow, s.stack_grow_pages, s.stack_shrink);
	printf("vma_churn fork: forks=%llu children_checked=%llu child_pages_verified=%llu "
	       "child_cow_writes=%llu child_mremaps=%llu child_stack_grows=%llu\n",
	       forks, shared->children_checked, shared->child_pages_verified,
	       shared->child_cow_writes, shared->child_mremaps, shared->child_stack_grows);
	printf("vma_churn migrate: " MOVE_PAGES_KEYS " " MOVE_STATUS_KEYS " " MIGRATE_PAGES_KEYS
	       " out_of_memory_calls=%llu query_calls=%llu pages_queried=%llu pages_present=%llu\n",
	       MOVE_PAGES_VALUES(mig.mv), MOVE_STATUS_VALUES(mig.mv), MIGRATE_PAGES_VALUES(mig.mv),
	       mig.mv.nomem_calls + mig.mv.mp_nomem_calls, mig.mv.query_calls,
	       mig.mv.pages_queried, mig.mv.pages_present);
	printf("vma_churn verify: pages_verified=%llu pages_written=%llu minor_faults=%ld "
	       "major_faults=%ld\n", s.pages_verified, s.pages_written, ru.ru_minflt, ru.ru_majflt);
	printf("vma_churn rates: ops_per_s=%.0f forks_per_s=%.1f pages_verified_per_s=%.0f "
	       "query_calls_per_s=%.0f pages_moved_per_s=%.0f\n",
	       s.ops / (end - start), forks / (end - start), s.pages_verified / (end - start),
	       mig.mv.query_calls / (end - start), mig.mv.moved / (end - start));
	return 0;
}
