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
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define THP (2UL << 20)
#define PAGES_PER_THP (THP / PAGE)
#define MAX_WRITERS 16
#define MAX_NODES 64
#define BATCH 64
#define MAX_CHILDREN 4
#define MPOL_MF_MOVE (1 << 1)
#define MPOL_MF_MOVE_ALL (1 << 2)
#define MPOL_F_MEMS_ALLOWED (1 << 2)
#define STATUS_UNSET INT_MIN

static const char *prog = "migrate_fork";

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void fail_sys(const char *call, int err)
{
	fail("%s refused: %s (errno %d)", call, strerror(err), err);
}

static void usage(const char *msg)
{
	fprintf(stderr, "%s: %s\n"
		"usage: %s --duration SECONDS --seed N [--writers N] [--thp-mb N]\n"
		"       [--small-mb N] [--allow-single-node] [--no-compact] [--no-fork]\n",
		prog, msg, prog);
	exit(2);
}

/* splitmix64: a tiny PRNG so every thread's choices follow from --seed. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		fail_sys("clock_gettime", errno);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Configuration and the memory under test. */
static long duration = -1;
static long long seed = -1;
static int nwriters = 2;
static long thp_mb = 16, small_mb = 8;
static int allow_single_node, no_compact, no_fork;
static char *thp_mem, *small_mem;
static size_t nthp, nsmall;
static int nodes[MAX_NODES], nnodes;
static atomic_int stop;

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
		fail("data mismatch in %s page %zu: read %u, expected %u",
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

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
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
	unsigned long long move_calls, move_requested, move_moved, move_not_moved;
	unsigned long long move_enoent_calls, st_busy, st_again, st_access,
		st_absent, st_nomem, st_unset;
	unsigned long long mp_calls, mp_not_moved;
} mig;

/* A random address in the THP region or the small-page region, rounded
 * down to thp_align within the THP region. */
static char *pick_addr(uint64_t r, size_t thp_align)
{
	if (nthp && ((r & 1) || !nsmall))
		return thp_mem + ((r >> 8) % (nthp * THP)) / thp_align * thp_align;
	return small_mem + (r >> 8) % (nsmall * PAGE);
}

static long sys_move_pages(int count, void **pages, const int *to, int *status, int flags)
{
	return syscall(SYS_move_pages, 0, (unsigned long)count, pages, to, status, flags);
}

static void migrate_batch(int flags)
{
	void *pages[BATCH];
	int status[BATCH], to[BATCH], from[BATCH], n = 0;

	for (int i = 0; i < BATCH; i++) {
		uint64_t r = rnd(&mig.rng);

		/* One address per THP: more would only meet it already isolated. */
		pages[i] = pick_addr(r, THP);
	}
	/* Ask where each page is, then send each present page elsewhere. */
	if (sys_move_pages(BATCH, pages, NULL, status, 0) < 0)
		fail_sys("move_pages(query)", errno);
	for (int i = 0; i < BATCH; i++) {
		int j;

		if (status[i] < 0)
			continue;   /* not present (DONTNEEDed) or zero page */
		for (j = 0; j < nnodes && nodes[j] != status[i]; j++)
			;
		pages[n] = pages[i];
		from[n] = status[i];
		to[n] = nodes[(j + 1) % nnodes];
		status[n] = STATUS_UNSET;
		n++;
	}
	if (!n)
		return;
	mig.move_calls++;
	mig.move_requested += n;
	long ret = sys_move_pages(n, pages, to, status, flags);
	if (ret < 0) {
		/* Documented: nothing needed moving (all raced away or shared). */
		if (errno == ENOENT) {
			mig.move_enoent_calls++;
			return;
		}
		fail_sys("move_pages", errno);
	}
	mig.move_not_moved += ret;
	for (int i = 0; i < n; i++) {
		switch (status[i]) {
		case STATUS_UNSET: mig.st_unset++; break; /* its move failed, or was not tried */
		case -EBUSY: mig.st_busy++; break;        /* isolated by someone else */
		case -EAGAIN: mig.st_again++; break;
		case -EACCES: mig.st_access++; break;     /* shared with a child */
		case -ENOENT: case -EFAULT: mig.st_absent++; break; /* zapped meanwhile */
		case -ENOMEM: mig.st_nomem++; break;
		default:
			if (status[i] < 0)
				fail_sys("move_pages(status)", -status[i]);
			if (status[i] == to[i] && to[i] != from[i])
				mig.move_moved++;
		}
	}
}

static void *migrator_main(void *arg)
{
	int flags = geteuid() == 0 ? MPOL_MF_MOVE_ALL : MPOL_MF_MOVE;
	unsigned long round = 0;

	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		migrate_batch(flags);
		/* Every 32 batches move the whole process off one node. */
		if (nnodes > 1 && ++round % 32 == 0) {
			unsigned long from = 1UL << nodes[(round / 32) % nnodes];
			unsigned long to = 1UL << nodes[(round / 32 + 1) % nnodes];
			long ret = syscall(SYS_migrate_pages, 0, MAX_NODES + 1, &from, &to);

			if (ret < 0)
				fail_sys("migrate_pages", errno);
			mig.mp_calls++;
			mig.mp_not_moved += ret;
		}
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
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
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

static void reap(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		fail_sys("waitpid", errno);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (WIFSIGNALED(st))
			fail("child %d was killed by signal %d", (int)pid, WTERMSIG(st));
		fail("child %d exited with status %d", (int)pid, WEXITSTATUS(st));
	}
}

static void find_nodes(void)
{
	unsigned long mask = 0;
	int mode;

	if (syscall(SYS_get_mempolicy, &mode, &mask, MAX_NODES + 1, NULL,
		    MPOL_F_MEMS_ALLOWED) < 0) {
		if (errno != ENOSYS)
			fail_sys("get_mempolicy(MPOL_F_MEMS_ALLOWED)", errno);
		mask = 1;   /* kernel without CONFIG_NUMA: one node */
	}
	for (int n = 0; n < MAX_NODES; n++)
		if (mask & (1UL << n))
			nodes[nnodes++] = n;
}

static long parse_num(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < min || v > max) {
		char msg[160];

		snprintf(msg, sizeof(msg), "%s wants an integer in [%ld, %ld], got '%s'",
			 opt, min, max, s);
		usage(msg);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--allow-single-node")) {
			allow_single_node = 1;
			continue;
		}
		if (!strcmp(a, "--no-compact")) {
			no_compact = 1;
			continue;
		}
		if (!strcmp(a, "--no-fork")) {
			no_fork = 1;
			continue;
		}
		if (i + 1 >= argc) {
			char msg[160];

			snprintf(msg, sizeof(msg), "unknown option or missing value: '%s'", a);
			usage(msg);
		}
		const char *v = argv[++i];

		if (!strcmp(a, "--duration"))
			duration = parse_num(a, v, 1, 86400);
		else if (!strcmp(a, "--seed"))
			seed = parse_num(a, v, 0, LONG_MAX);
		else if (!strcmp(a, "--writers"))
			nwriters = parse_num(a, v, 1, MAX_WRITERS);
		else if (!strcmp(a, "--thp-mb"))
			thp_mb = parse_num(a, v, 0, 4096);
		else if (!strcmp(a, "--small-mb"))
			small_mb = parse_num(a, v, 0, 4096);
		else {
			char msg[160];

			snprintf(msg, sizeof(msg), "unknown option '%s'", a);
			usage(msg);
		}
	}
	if (duration < 0 || seed < 0)
		usage("--duration and --seed are required");
	if (thp_mb < 2 && small_mb < 1)
		usage("no memory to test: give --thp-mb >= 2 or --small-mb >= 1");
}

static void *map_anon(size_t len, size_t align, int advice, const char *advice_name)
{
	char *p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		fail_sys("mmap", errno);
	a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	do_madvise(a, len, advice, advice_name);
	return a;
}

int main(int argc, char **argv)
{
	pid_t children[MAX_CHILDREN] = {0};
	unsigned long long forks = 0;
	uint64_t main_rng;
	struct rusage ru;
	double start, end;
	int e;

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

	main_rng = (uint64_t)seed * 0x100000001b3ULL + 1;
	mig.rng = (uint64_t)seed * 0x100000001b3ULL + 2;
	for (int i = 0; i < nwriters; i++) {
		struct writer *w = &writers[i];
		size_t owned = 0;

		for (size_t t = i; t < nthp; t += nwriters)
			owned++;
		w->id = i;
		w->rng = (uint64_t)seed * 0x100000001b3ULL + 3 + i;
		w->small_first = nsmall * i / nwriters;
		w->small_count = nsmall * (i + 1) / nwriters - w->small_first;
		w->shadow_thp = calloc(owned * PAGES_PER_THP + 1, sizeof(uint32_t));
		w->shadow_small = calloc(w->small_count + 1, sizeof(uint32_t));
		if (!w->shadow_thp || !w->shadow_small)
			fail("out of memory for shadow arrays");
	}

	start = now();
	for (int i = 0; i < nwriters; i++)
		if ((e = pthread_create(&writers[i].tid, NULL, writer_main, &writers[i])))
			fail_sys("pthread_create", e);
	if ((e = pthread_create(&mig.tid, NULL, migrator_main, NULL)))
		fail_sys("pthread_create", e);
	if (!no_compact && (e = pthread_create(&compactor.tid, NULL, compactor_main, NULL)))
		fail_sys("pthread_create", e);

	while (no_fork && now() - start < duration)
		usleep(10 * 1000);
	while (!no_fork && now() - start < duration) {
		int slot = forks % MAX_CHILDREN;
		uint64_t child_rng = rnd(&main_rng);
		pid_t pid;

		if (children[slot])
			reap(children[slot]);
		pid = fork();
		if (pid < 0)
			fail_sys("fork", errno);
		if (pid == 0)
			child_main(child_rng);
		children[slot] = pid;
		forks++;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i])
			reap(children[i]);
	for (int i = 0; i < nwriters; i++)
		pthread_join(writers[i].tid, NULL);
	pthread_join(mig.tid, NULL);
	if (!no_compact)
		pthread_join(compactor.tid, NULL);
	end = now();
	if (getrusage(RUSAGE_SELF, &ru))
		fail_sys("getrusage", errno);

	unsigned long long writes = 0, remaps = 0, dn_part = 0, dn_small = 0;
	for (int i = 0; i < nwriters; i++) {
		writes += writers[i].writes;
		remaps += writers[i].thp_remaps;
		dn_part += writers[i].dontneed_partial;
		dn_small += writers[i].dontneed_small;
	}
	/* key=value words, each key once, for the harness and for humans. */
	printf("migrate_fork summary: seed=%lld duration=%.1fs nodes=%d writers=%d "
	       "thp_regions=%zu small_pages=%zu\n",
	       seed, end - start, nnodes, nwriters, nthp, nsmall);
	printf("migrate_fork move_pages: move_pages_calls=%llu pages_requested=%llu "
	       "pages_moved=%llu pages_not_moved=%llu nothing_to_move=%llu busy=%llu "
	       "again=%llu shared=%llu absent=%llu nomem=%llu unattempted=%llu\n",
	       mig.move_calls, mig.move_requested, mig.move_moved, mig.move_not_moved,
	       mig.move_enoent_calls, mig.st_busy, mig.st_again, mig.st_access,
	       mig.st_absent, mig.st_nomem, mig.st_unset);
	printf("migrate_fork migrate_pages: migrate_pages_calls=%llu "
	       "migrate_pages_not_moved=%llu compact_writes=%llu\n",
	       mig.mp_calls, mig.mp_not_moved, compactor.writes);
	printf("migrate_fork activity: forks=%llu writes=%llu minor_faults=%ld "
	       "thp_remaps=%llu dontneed_partial_thp=%llu dontneed_small=%llu\n",
	       forks, writes, ru.ru_minflt, remaps, dn_part, dn_small);
	return 0;
}
