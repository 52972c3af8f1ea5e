// SPDX-License-Identifier: Apache-2.0
/*
 * migrate_fork: migrate a process's own private anonymous memory between NUMA
 * nodes while its threads fault on that memory and its main thread forks.
 *
 * Why this shape: fork() copies migration entries only from private anonymous
 * memory of the forking mm, and a fault only waits on a migration entry in the
 * faulting mm.  So everything runs in one process:
 *   - writer threads write (and verify) their own pages, map whole THPs
 *     afresh and MADV_DONTNEED parts of THPs and runs of small pages so that
 *     they refault;
 *   - a migrator thread move_pages(pid=0)s random pages (THP heads and small
 *     pages) to the other node, and now and then migrate_pages(pid=0)s the
 *     whole process from one node to another;
 *   - a compactor thread writes /proc/sys/vm/compact_memory;
 *   - the main thread forks children that write random pages (COW) and exit
 *     (unless --no-fork: then only faults meet migration entries).
 *
 * Exit status: 0 done, 1 a syscall failed unexpectedly / data mismatch / a
 * child died, 2 usage (including fewer than two NUMA nodes without
 * --allow-single-node).  The summary on stdout is key=value text.
 */
#define PROG "migrate_fork"
#define USAGE "usage: " PROG " --duration SECONDS --seed N [--writers N] [--thp-mb N]\n" \
	"       [--small-mb N] [--allow-single-node] [--no-compact] [--no-fork]\n"
/* Every failure, the workload's own included, has always exited 1 here. */
#define WORKLOAD_FAILURE_EXIT EXIT_KERNEL
#include "kstress.h"

#define PAGES_PER_THP (THP / PAGE)
#define MAX_WRITERS 16
#define BATCH 64

/* Configuration and the memory under test. */
static long duration = -1, seed = -1, nwriters = 2;
static long thp_mb = 16, small_mb = 8;
static int allow_single_node, no_compact, no_fork;
static char *thp_mem, *small_mem;
static size_t nthp, nsmall;

struct writer {
	pthread_t tid;
	int id;
	uint64_t rng;
	uint32_t *shadow_thp;   /* expected counter per page of owned THPs */
	uint32_t *shadow_small; /* expected counter per owned small page */
	size_t small_first, small_count;
	unsigned long long writes, thp_remaps, dontneed_partial, dontneed_small;
};

static struct writer writers[MAX_WRITERS];

/* Each page holds a counter in one word; only its owner writes it, so a
 * different value than the owner last wrote means the kernel lost data. */
static void write_page(char *page, uint32_t *expect, const char *what, size_t idx)
{
	volatile uint32_t *w = (volatile uint32_t *)(page + ((idx * 64) % PAGE));
	uint32_t got = *w;

	if (got != *expect)
		die(EXIT_KERNEL, "data mismatch in %s page %zu: read %u, expected %u",
		     what, idx, got, *expect);
	*w = ++*expect;
}

/* write_page reads before it writes, and a read fault on an empty THP range
 * maps the huge zero page, whose write fault falls back to small pages: so
 * first write the last byte of the first page, which no counter uses (they
 * sit at multiples of 64 bytes). */
static void thp_prefault(char *base)
{
	*(volatile char *)(base + PAGE - 1) = 1;
}

static void do_madvise(void *addr, size_t len, int advice, const char *name)
{
	if (madvise(addr, len, advice))
		fail_sys(name, errno);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t owned_thp = 0;

	for (size_t t = w->id; t < nthp; t += nwriters)
		owned_thp++;

	while (!stopping()) {
		uint64_t r = rnd(&w->rng);
		unsigned op = r % 1000;

		if (owned_thp && (op < 600 || !w->small_count)) {
			size_t k = (r >> 10) % owned_thp;
			size_t t = w->id + k * nwriters;
			char *base = thp_mem + t * THP;
			uint32_t *sh = w->shadow_thp + k * PAGES_PER_THP;

			if (op == 0) {
				/* Whole THP: map it afresh, as MADV_DONTNEED would keep
				 * the page table of a split PMD and refault small pages. */
				if (mmap(base, THP, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
					fail_sys("mmap(MAP_FIXED)", errno);
				do_madvise(base, THP, MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE)");
				memset(sh, 0, PAGES_PER_THP * sizeof(*sh));
				thp_prefault(base);
				w->thp_remaps++;
			} else if (op == 1) {
				/* Part of a THP: splits the PMD, queues a deferred split. */
				size_t first = (r >> 32) % (PAGES_PER_THP - 16);

				do_madvise(base + first * PAGE, 16 * PAGE, MADV_DONTNEED,
					   "madvise(MADV_DONTNEED)");
				memset(sh + first, 0, 16 * sizeof(*sh));
				w->dontneed_partial++;
			} else {
				size_t p = (r >> 32) % PAGES_PER_THP;

				write_page(base + p * PAGE, &sh[p], "thp", t * PAGES_PER_THP + p);
				w->writes++;
			}
		} else if (w->small_count) {
			if (op == 600) {
				size_t len = 1 + (r >> 32) % 32;
				size_t first = (r >> 16) % w->small_count;

				if (first + len > w->small_count)
					len = w->small_count - first;
				do_madvise(small_mem + (w->small_first + first) * PAGE, len * PAGE,
					   MADV_DONTNEED, "madvise(MADV_DONTNEED)");
				memset(w->shadow_small + first, 0, len * sizeof(uint32_t));
				w->dontneed_small++;
			} else {
				size_t p = (r >> 32) % w->small_count;

				write_page(small_mem + (w->small_first + p) * PAGE,
					   &w->shadow_small[p], "small", w->small_first + p);
				w->writes++;
			}
		}
	}
	return NULL;
}

static struct {
	pthread_t tid;
	uint64_t rng;
	struct move_stats mv;
} mig;

/* A random address in the THP region or the small-page region, rounded
 * down to thp_align within the THP region. */
static char *pick_addr(uint64_t r, size_t thp_align)
{
	if (nthp && ((r & 1) || !nsmall))
		return thp_mem + ((r >> 8) % (nthp * THP)) / thp_align * thp_align;
	return small_mem + (r >> 8) % (nsmall * PAGE);
}

static void migrate_batch(int flags)
{
	void *pages[BATCH];
	int to[BATCH], from[BATCH], n;

	for (int i = 0; i < BATCH; i++) {
		uint64_t r = rnd(&mig.rng);

		/* One address per THP: more would only meet it already isolated. */
		pages[i] = pick_addr(r, THP);
	}
	/* Ask where each page is, then send each present page (not DONTNEEDed,
	 * not the zero page) to the next node. */
	n = present_pages(&mig.mv, BATCH, pages, from, to);
	if (n)
		move_pages_to(&mig.mv, n, pages, from, to, flags);
}

static void *migrator_main(void *arg)
{
	int flags = move_flags();
	unsigned long round = 0;

	(void)arg;
	while (!stopping()) {
		migrate_batch(flags);
		/* Every 32 batches move the whole process off one node. */
		if (nnodes > 1 && ++round % 32 == 0)
			migrate_whole(&mig.mv, round / 32);
	}
	return NULL;
}

static struct {
	pthread_t tid;
	unsigned long long writes;
} compactor;

static void *compactor_main(void *arg)
{
	(void)arg;
	while (!stopping()) {
		int fd = open("/proc/sys/vm/compact_memory", O_WRONLY | O_CLOEXEC);

		if (fd < 0)
			fail_sys("open(/proc/sys/vm/compact_memory)", errno);
		if (write(fd, "1\n", 2) != 2)
			fail_sys("write(/proc/sys/vm/compact_memory)", errno);
		if (close(fd))
			fail_sys("close(/proc/sys/vm/compact_memory)", errno);
		compactor.writes++;
		usleep(100 * 1000);
	}
	return NULL;
}

/* A child writes a few random pages (COW faults, maybe on migration entries
 * it inherited) and exits; it must not touch anything but memory. */
static void child_main(uint64_t rng)
{
	for (int i = 0; i < 32; i++)
		*(volatile char *)pick_addr(rnd(&rng), 1) += 1;
	_exit(0);
}

static void parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		FLAG("--allow-single-node", &allow_single_node),
		FLAG("--no-compact", &no_compact),
		FLAG("--no-fork", &no_fork),
		RUN_OPTS(&duration, &seed),
		NUM("--writers", &nwriters, 1, MAX_WRITERS),
		NUM("--thp-mb", &thp_mb, 0, 4096),
		NUM("--small-mb", &small_mb, 0, 4096),
		{ NULL },
	};

	parse_opts(argc, argv, opts);
	if (duration < 0 || seed < 0)
		usage("--duration and --seed are required");
	if (thp_mb < 2 && small_mb < 1)
		usage("no memory to test: give --thp-mb >= 2 or --small-mb >= 1");
}

static void *map_anon(size_t len, size_t align, int advice, const char *advice_name)
{
	char *a = map_aligned(len, align, 0);

	do_madvise(a, len, advice, advice_name);
	return a;
}

int main(int argc, char **argv)
{
	uint64_t main_rng;
	struct rusage ru;
	double start, end;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	find_nodes();
	if (nnodes < 2 && !allow_single_node) {
		fprintf(stderr, "%s: needs two NUMA nodes with memory to migrate between, "
			"found %d; --allow-single-node runs with compaction and same-node "
			"move_pages only\n", prog, nnodes);
		return 2;
	}

	nthp = thp_mb / 2;
	nsmall = small_mb * (1UL << 20) / PAGE;
	if (nthp) {
		thp_mem = map_anon(nthp * THP, THP, MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE)");
		for (size_t t = 0; t < nthp; t++)
			thp_prefault(thp_mem + t * THP);
	}
	if (nsmall)
		small_mem = map_anon(nsmall * PAGE, PAGE, MADV_NOHUGEPAGE,
				     "madvise(MADV_NOHUGEPAGE)");

	main_rng = seed_stream(seed, 1);
	mig.rng = seed_stream(seed, 2);
	for (int i = 0; i < nwriters; i++) {
		struct writer *w = &writers[i];
		size_t owned = 0;

		for (size_t t = i; t < nthp; t += nwriters)
			owned++;
		w->id = i;
		w->rng = seed_stream(seed, 3 + i);
		w->small_first = nsmall * i / nwriters;
		w->small_count = nsmall * (i + 1) / nwriters - w->small_first;
		w->shadow_thp = calloc(owned * PAGES_PER_THP + 1, sizeof(uint32_t));
		w->shadow_small = calloc(w->small_count + 1, sizeof(uint32_t));
		if (!w->shadow_thp || !w->shadow_small)
			die(WORKLOAD_FAILURE_EXIT, "out of memory for shadow arrays");
	}

	start = now();
	for (int i = 0; i < nwriters; i++)
		start_thread(&writers[i].tid, writer_main, &writers[i]);
	start_thread(&mig.tid, migrator_main, NULL);
	if (!no_compact)
		start_thread(&compactor.tid, compactor_main, NULL);

	while (no_fork && now() - start < duration)
		usleep(10 * 1000);
	while (!no_fork && now() - start < duration) {
		uint64_t child_rng = rnd(&main_rng);

		reap_slot(forks);
		if (fork_child() == 0)
			child_main(child_rng);
	}
	stop_and_reap();
	for (int i = 0; i < nwriters; i++)
		pthread_join(writers[i].tid, NULL);
	pthread_join(mig.tid, NULL);
	if (!no_compact)
		pthread_join(compactor.tid, NULL);
	end = now();
	ru = self_rusage();

	unsigned long long writes = 0, remaps = 0, dn_part = 0, dn_small = 0;
	for (int i = 0; i < nwriters; i++) {
		writes += writers[i].writes;
		remaps += writers[i].thp_remaps;
		dn_part += writers[i].dontneed_partial;
		dn_small += writers[i].dontneed_small;
	}
	/* key=value words, each key once, for the harness and for humans. */
	printf("migrate_fork summary: seed=%ld duration=%.1fs nodes=%d writers=%ld "
	       "thp_regions=%zu small_pages=%zu\n",
	       seed, end - start, nnodes, nwriters, nthp, nsmall);
	printf("migrate_fork move_pages: " MOVE_PAGES_KEYS " " MOVE_STATUS_KEYS "\n",
	       MOVE_PAGES_VALUES(mig.mv), MOVE_STATUS_VALUES(mig.mv));
	printf("migrate_fork migrate_pages: " MIGRATE_PAGES_KEYS " compact_writes=%llu\n",
	       MIGRATE_PAGES_VALUES(mig.mv), compactor.writes);
	printf("migrate_fork activity: forks=%llu writes=%llu minor_faults=%ld "
	       "thp_remaps=%llu dontneed_partial_thp=%llu dontneed_small=%llu\n",
	       forks, writes, ru.ru_minflt, remaps, dn_part, dn_small);
	return 0;
}
