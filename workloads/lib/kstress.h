/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kstress.h: what the C workloads share.  Header-only (static inline
 * functions, macros and a few file-scope variables), so each workload stays
 * one translation unit and one static binary.  A workload's manifest lists
 * it under `headers:` (../lib/kstress.h), which puts it in the build's cache
 * key and its directory on the include path (-I).
 *
 * Before including it, a workload defines
 *   PROG   its name, the prefix of every message;
 *   USAGE  the usage text that follows a usage error's message;
 * and may define
 *   WORKLOAD_FAILURE_EXIT  the exit status for its own trouble (an
 *          unexpected syscall failure), EXIT_WORKLOAD (125) by default.
 * It includes kstress.h before any system header (for _GNU_SOURCE).
 *
 * In it: exit statuses, constants, pagemap and kpageflags bits; counters
 * (GET, ADD); failing (die, fail_sys) with one report per process, written
 * with write(2); the command line (an option table, parse_num, usage); the
 * seeded splitmix64 streams; the clock and progress pacing; NUMA nodes and
 * the move_pages/migrate_pages/get_mempolicy calls with their counters and
 * summary keys; decision logs (--plan, --log) and seeded samples; the
 * pattern words of verified pages; pages under a per-chunk seqlock;
 * pagemap and kpageflags reads; fork children: their slots, the fork gate,
 * reaping and exit statuses; small sysfs/procfs files; a supervisor process
 * that puts global settings (sysfs knobs, memory blocks) back however the
 * workload ends.  And what several workloads run alike: pages of
 * offset-and-generation words; a crew of threads that start together;
 * churners over locked items; a migrator of seeded picks; forks of a locked
 * sample of items; fork children that check the pages they inherited; the
 * --self-test-corrupt flip.
 */
#ifndef KSTRESS_H
#define KSTRESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PROG
#error "define PROG (the workload's name) before including kstress.h"
#endif
#ifndef USAGE
#error "define USAGE (the usage text) before including kstress.h"
#endif

/* -- exit statuses and constants ---------------------------------------- */

#define EXIT_KERNEL 1      /* the kernel's fault: data came back wrong, ... */
#define EXIT_USAGE 2
#define EXIT_WORKLOAD 125  /* the workload failed: not the kernel's fault */
#ifndef WORKLOAD_FAILURE_EXIT
#define WORKLOAD_FAILURE_EXIT EXIT_WORKLOAD
#endif
/* A fork child's own statuses, which its parent turns into EXIT_KERNEL. */
#define EXIT_CHILD_MISMATCH 3   /* it found data that differs from what it inherited */
#define EXIT_CHILD_FAULT 4      /* it faulted on memory it inherited */

#define PAGE 4096UL
#define THP (2UL << 20)
#define WORDS (PAGE / 8)
#define MAX_NODES 64
#define MAX_CHILDREN 4
#define PROGRESS_EVERY 5.0      /* seconds between progress lines */
#define MPOL_MF_MOVE (1 << 1)
#define MPOL_MF_MOVE_ALL (1 << 2)
#define MPOL_F_MEMS_ALLOWED (1 << 2)
#define STATUS_UNSET INT_MIN    /* a move_pages status the kernel did not set */

/* /proc/PID/pagemap entries (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PFN_MASK ((1ULL << 55) - 1)   /* the PFN; 0 unless CAP_SYS_ADMIN */
#define PM_SOFT_DIRTY (1ULL << 55)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)
/* /proc/kpageflags bits, include/uapi/linux/kernel-page-flags.h */
#define KPF_LOCKED 0
#define KPF_LRU 5
#define KPF_ANON 12
#define KPF_SWAPCACHE 13
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define KPF_KSM 21
#define KPF_THP 22
#define KPF_ZERO_PAGE 24
#define KPF(f, bit) (((f) >> (bit)) & 1)

static const char prog[] = PROG;

/* Counters that other threads read while one writes: GET reads one; ADD
 * adds to one that a single thread writes (a relaxed load and store, no
 * locked instruction); ADD_SHARED adds to one that several threads or
 * processes (MAP_SHARED memory) write. */
#define GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ADD(x, n) __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define ADD_SHARED(x, n) __atomic_fetch_add(&(x), (n), __ATOMIC_RELAXED)

/* Adds the counters of src to those of dst, each a struct of size bytes
 * that holds unsigned long long counters only; src's are read with GET, as
 * their thread may be adding to them. */
static inline void add_counters(void *dst, const void *src, size_t size)
{
	unsigned long long *d = dst;
	const unsigned long long *s = src;

	for (size_t i = 0; i < size / sizeof(*d); i++)
		d[i] += GET(s[i]);
}

/* Set once the run is over; every thread's loop tests it. */
static atomic_int stop;

static inline int stopping(void)
{
	return atomic_load_explicit(&stop, memory_order_relaxed);
}

/* -- failing ------------------------------------------------------------ */

static atomic_int dying;
static int is_child;   /* set in a fork child by child_begin() */

/* Only the first thread to fail reports; the others wait to be killed. */
static inline void claim_failure(void)
{
	if (atomic_exchange(&dying, 1))
		for (;;)
			pause();
}

/* A fork child has one thread and reports its own failures, whatever its
 * parent's threads were doing at the fork. */
static inline void child_begin(void)
{
	is_child = 1;
	atomic_store(&dying, 0);
}

/* One message to stderr with write(2): no stdio locks (a child may inherit
 * them held) and no allocation, so also from a signal handler. */
static inline void vsay(const char *fmt, va_list ap)
{
	char buf[8192];
	int n = snprintf(buf, sizeof(buf), "%s: ", prog);

	n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	for (char *p = buf; n > 0;) {
		ssize_t w = write(2, p, n);

		if (w <= 0)
			break;
		p += w;
		n -= w;
	}
}

/* Report and exit, for a caller that has claimed the failure already. */
static inline _Noreturn void __attribute__((format(printf, 2, 3)))
finish(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	_exit(code);
}

static inline _Noreturn void __attribute__((format(printf, 2, 3)))
die(int code, const char *fmt, ...)
{
	va_list ap;

	claim_failure();
	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	_exit(code);
}

/* An unexpected failure of call with error number err (errno, or what a
 * pthread function returned): the workload's trouble, not the kernel's. */
static inline _Noreturn void fail_sys(const char *call, int err)
{
	die(WORKLOAD_FAILURE_EXIT, "%s failed: %s (errno %d)", call, strerror(err), err);
}

/* A pthread function's result: 0 or an error number. */
static inline void check_pthread(const char *call, int err)
{
	if (err)
		fail_sys(call, err);
}

static inline void start_thread(pthread_t *tid, void *(*fn)(void *), void *arg)
{
	check_pthread("pthread_create", pthread_create(tid, NULL, fn, arg));
}

static inline void lock_mutex(pthread_mutex_t *m)
{
	check_pthread("pthread_mutex_lock", pthread_mutex_lock(m));
}

static inline void unlock_mutex(pthread_mutex_t *m)
{
	check_pthread("pthread_mutex_unlock", pthread_mutex_unlock(m));
}

/* SIGSEGV and SIGBUS go to handler (an SA_SIGINFO handler): a fault on
 * memory the workload has mapped is the kernel's, reported with the page's
 * state. */
static inline void catch_faults(void (*handler)(int sig, siginfo_t *si, void *uc))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGBUS, &sa, NULL))
		fail_sys("sigaction", errno);
}

/* -- the command line --------------------------------------------------- */

static inline _Noreturn void usage(const char *msg)
{
	fprintf(stderr, "%s: %s\n%s", prog, msg, USAGE);
	exit(EXIT_USAGE);
}

static inline long parse_num(const char *opt, const char *s, long min, long max)
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

/* One option: a flag (sets *flag to 1; with no flag it is only accepted),
 * or, when num is set, one that takes an integer in [min, max], or, when
 * str is set, one that takes a non-empty string (a path). */
struct opt {
	const char *name;
	int *flag;
	long *num;
	long min, max;
	const char **str;
};

#define FLAG(name, var) { (name), (var), NULL, 0, 0, NULL }
#define NUM(name, var, min, max) { (name), NULL, (var), (min), (max), NULL }
#define STR(name, var) { (name), NULL, NULL, 0, 0, (var) }
/* The options every workload takes, alike everywhere: its length and its
 * seed; and --plan N, the first N decisions of every seeded stream. */
#define RUN_OPTS(duration, seed) \
	NUM("--duration", (duration), 1, 86400), NUM("--seed", (seed), 0, LONG_MAX)
#define PLAN_OPT(plan) NUM("--plan", (plan), 1, 1000000)
/* --log N: a run keeps the first N decisions of every stream (log_decisions). */
#define LOG_OPT NUM("--log", &log_decisions, 0, 100000)

/* Parses argv by opts, a table ending with { NULL }; the workload checks
 * what is required and how options combine afterwards. */
static inline void parse_opts(int argc, char **argv, const struct opt *opts)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const struct opt *o = opts;
		char msg[160];

		while (o->name && strcmp(o->name, a))
			o++;
		if (o->name && !o->num && !o->str) {
			if (o->flag)
				*o->flag = 1;
			continue;
		}
		if (i + 1 >= argc) {
			snprintf(msg, sizeof(msg), "unknown option or missing value: '%s'", a);
			usage(msg);
		}
		i++;
		if (!o->name) {
			snprintf(msg, sizeof(msg), "unknown option '%s'", a);
			usage(msg);
		}
		if (o->str && !argv[i][0]) {
			snprintf(msg, sizeof(msg), "%s wants a non-empty value", a);
			usage(msg);
		}
		if (o->str)
			*o->str = argv[i];
		else
			*o->num = parse_num(a, argv[i], o->min, o->max);
	}
}

/* --plan N (plan > 0) prints the first N decisions of every stream with
 * print_plan, from the seed alone, and ends the run before anything is set
 * up. */
static inline void plan_only(long plan, void (*print_plan)(void))
{
	if (plan > 0) {
		print_plan();
		exit(0);
	}
}

/* --seed always; --duration unless --plan N (plan > 0) asks only for the
 * decisions. */
static inline void require_seed_and_duration(long seed, long duration, long plan)
{
	if (seed < 0)
		usage("--seed is required");
	if (duration < 0 && plan < 0)
		usage("--duration is required (or --plan N)");
}

/* -- the summary -------------------------------------------------------- */

/* A "<prog> note: ..." line, for what could not happen and why; none when
 * text is empty. */
static inline void print_note(const char *text)
{
	if (text[0])
		printf("%s note: %s\n", prog, text);
}

/* -- seeded choices ----------------------------------------------------- */

/* splitmix64: a tiny PRNG, so every thread's choices follow from --seed. */
static inline uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The start of a thread's own stream: the seed times the 64-bit FNV prime,
 * plus an offset that differs per stream (each workload keeps its own). */
static inline uint64_t seed_stream(long seed, uint64_t offset)
{
	return (uint64_t)seed * 0x100000001b3ULL + offset;
}

/* -- time --------------------------------------------------------------- */

static inline double now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		fail_sys("clock_gettime", errno);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Whether a progress line is due at time t; if so the next one is due
 * PROGRESS_EVERY later. */
static inline int progress_due(double t, double *next)
{
	if (t < *next)
		return 0;
	*next += PROGRESS_EVERY;
	return 1;
}

static inline struct rusage self_rusage(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		fail_sys("getrusage", errno);
	return ru;
}

/* -- memory ------------------------------------------------------------- */

/* 2 MiB blocks in each of parts parts (regions) of an mb MiB memory under
 * test, rounded up: every part is a whole number of THPs. */
static inline size_t blocks_per_part(long mb, int parts)
{
	return ((size_t)mb + 2 * parts - 1) / (2 * parts);
}

/* The memory under test of --mb MiB: parts regions of region_pages pages
 * each (blocks_per_part), npages in all, in nchunks chunks of chunk_pages. */
static inline void size_regions(long mb, int parts, unsigned chunk_pages, size_t *region_pages,
				size_t *npages, size_t *nchunks)
{
	*region_pages = blocks_per_part(mb, parts) * (THP / PAGE);
	*npages = *region_pages * parts;
	*nchunks = *npages / chunk_pages;
}

/* Chunk number r (any draw) of those that thread id of nthreads owns,
 * chunks id, id + nthreads, ... of nchunks: one writer per chunk, so its
 * seqlock needs no writer lock. */
static inline size_t owned_chunk(uint64_t r, int id, int nthreads, size_t nchunks)
{
	size_t owned = (nchunks - id + nthreads - 1) / nthreads;

	return (r % owned) * nthreads + id;
}

/* len bytes of private anonymous memory at an address aligned to align (a
 * power of two), with extra mmap flags. */
static inline char *map_aligned(size_t len, size_t align, int flags)
{
	char *p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	if (p == MAP_FAILED)
		fail_sys("mmap", errno);
	return (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
}

/* One page of MAP_SHARED memory, for counters fork children add to. */
static inline void *map_shared_page(void)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		fail_sys("mmap(MAP_SHARED)", errno);
	return p;
}

/* Relaxed atomic loads of a page's words: a racing reader retries on the
 * seqlock (below), so a torn copy is never judged. */
static inline void copy_words(const uint64_t *page, uint64_t *buf)
{
	for (unsigned i = 0; i < WORDS; i++)
		buf[i] = __atomic_load_n(&page[i], __ATOMIC_RELAXED);
}

/* -- pages under a per-chunk seqlock ------------------------------------ */

/* A chunk of pages has one writer, which makes its sequence odd, changes
 * the pages and the state word that says what they hold (a generation, a
 * key), and makes it even again; a reader copies a page and its state word
 * between two reads of the same even sequence. */
static inline void seq_write_begin(uint32_t *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
	atomic_thread_fence(memory_order_release);
}

static inline void seq_write_end(uint32_t *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);
}

/* Copies page into buf as one consistent version; returns *state as of
 * that version.  *retries counts the copies a writer spoilt. */
static inline uint32_t seq_copy_page(const uint32_t *seq, const uint32_t *state,
				     const uint64_t *page, uint64_t *buf,
				     unsigned long long *retries)
{
	for (;;) {
		uint32_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE), v, s2;

		if (s1 & 1) {
			ADD(*retries, 1);
			sched_yield();
			continue;
		}
		v = __atomic_load_n(state, __ATOMIC_RELAXED);
		copy_words(page, buf);
		atomic_thread_fence(memory_order_acquire);
		s2 = __atomic_load_n(seq, __ATOMIC_RELAXED);
		if (s1 == s2)
			return v;
		ADD(*retries, 1);
	}
}

/* -- pagemap and kpageflags --------------------------------------------- */

/* The pagemap entries of the n pages from addr on: 1, or 0 when the file
 * ends first. */
static inline int pagemap_read(int fd, const void *addr, size_t n, uint64_t *out)
{
	off_t at = (uintptr_t)addr / PAGE * 8;
	size_t done = 0;

	while (done < n * 8) {
		ssize_t got = pread(fd, (char *)out + done, n * 8 - done, at + done);

		if (got < 0)
			fail_sys("pread(/proc/self/pagemap)", errno);
		if (!got)
			return 0;
		done += got;
	}
	return 1;
}

/* The pagemap entry of page, which the workload has just written: it must
 * be present (and a PFN, unless pagemap hides them, is not 0). */
static inline uint64_t written_page_entry(int fd, const void *page)
{
	uint64_t e = 0;

	if (!pagemap_read(fd, page, 1, &e) || !(e & PM_PRESENT))
		die(EXIT_WORKLOAD, "workload failed: /proc/self/pagemap says a page just written "
		    "is not present (entry 0x%llx)", (unsigned long long)e);
	return e;
}

/* The /proc/kpageflags flags of pfn: 1, or 0 when they cannot be known. */
static inline int kpageflags_read(int fd, uint64_t pfn, uint64_t *flags)
{
	ssize_t got;

	if (fd < 0 || !pfn)
		return 0;
	got = pread(fd, flags, 8, (off_t)(pfn * 8));
	if (got < 0)
		fail_sys("pread(/proc/kpageflags)", errno);
	return got == 8;
}

/* -- NUMA nodes and page migration -------------------------------------- */

/* The nodes this process may allocate on; numa_ok is 0 on a kernel without
 * CONFIG_NUMA (get_mempolicy is ENOSYS), which has one node, node 0. */
static int nodes[MAX_NODES], nnodes, numa_ok;

static inline void find_nodes(void)
{
	unsigned long mask = 0;
	int mode;

	numa_ok = 1;
	if (syscall(SYS_get_mempolicy, &mode, &mask, MAX_NODES + 1, NULL,
		    MPOL_F_MEMS_ALLOWED) < 0) {
		if (errno != ENOSYS)
			fail_sys("get_mempolicy(MPOL_F_MEMS_ALLOWED)", errno);
		numa_ok = 0;
		mask = 1;
	}
	for (int n = 0; n < MAX_NODES; n++)
		if (mask & (1UL << n))
			nodes[nnodes++] = n;
}

/* The node after node from (the first one if from is not one of them). */
static inline int next_node(int from)
{
	int j;

	for (j = 0; j < nnodes && nodes[j] != from; j++)
		;
	return nodes[(j + 1) % nnodes];
}

/* move_pages(2) of this process; to == NULL only asks where pages are. */
static inline long sys_move_pages(unsigned long count, void **pages, const int *to,
				  int *status, int flags)
{
	return syscall(SYS_move_pages, 0, count, pages, to, status, flags);
}

/* The flags a migrator moves pages with: MPOL_MF_MOVE_ALL needs root. */
static inline int move_flags(void)
{
	return geteuid() == 0 ? MPOL_MF_MOVE_ALL : MPOL_MF_MOVE;
}

/* What a migrator did; one thread writes it (ADD), others may GET it. */
struct move_stats {
	int nomem_ok;   /* ENOMEM (no memory on the target node) is counted, not fatal */
	unsigned long long query_calls, pages_queried, pages_present;
	unsigned long long calls, requested, moved, not_moved, nothing_to_move, nomem_calls;
	unsigned long long busy, again, access, absent, nomem, unset;
	unsigned long long mp_calls, mp_not_moved, mp_nomem_calls;
};

/* The summary keys of a struct move_stats, and their values. */
#define MOVE_PAGES_KEYS "move_pages_calls=%llu pages_requested=%llu pages_moved=%llu " \
	"pages_not_moved=%llu nothing_to_move=%llu"
#define MOVE_PAGES_VALUES(s) (s).calls, (s).requested, (s).moved, (s).not_moved, (s).nothing_to_move
#define MOVE_STATUS_KEYS "busy=%llu again=%llu shared=%llu absent=%llu nomem=%llu unattempted=%llu"
#define MOVE_STATUS_VALUES(s) (s).busy, (s).again, (s).access, (s).absent, (s).nomem, (s).unset
#define MIGRATE_PAGES_KEYS "migrate_pages_calls=%llu migrate_pages_not_moved=%llu"
#define MIGRATE_PAGES_VALUES(s) (s).mp_calls, (s).mp_not_moved

/* Where each of pages[0..n) is: status[i] its node, or a negative errno
 * (-ENOENT: not present). */
static inline void query_nodes(struct move_stats *s, unsigned long n, void **pages, int *status)
{
	for (unsigned long i = 0; i < n; i++)
		status[i] = STATUS_UNSET;
	if (sys_move_pages(n, pages, NULL, status, 0) < 0)
		fail_sys("move_pages(query)", errno);
	ADD(s->query_calls, 1);
	ADD(s->pages_queried, n);
}

/* Queries pages[0..n) and keeps at the front of pages[] those present on
 * a node (not unmapped, zapped, PROT_NONE or the zero page), each with
 * from[] its node and to[] the next node; returns how many. */
static inline int present_pages(struct move_stats *s, int n, void **pages, int *from, int *to)
{
	int status[n], k = 0;

	query_nodes(s, n, pages, status);
	for (int i = 0; i < n; i++) {
		if (status[i] < 0)
			continue;
		pages[k] = pages[i];
		from[k] = status[i];
		to[k] = next_node(status[i]);
		k++;
	}
	ADD(s->pages_present, k);
	return k;
}

/* Asks move_pages(2) to move pages[0..n) to to[]; status[] gets each
 * page's outcome (STATUS_UNSET where the kernel set none).  Returns how
 * many pages were not moved, or -1 when the call moved none: ENOENT
 * (documented: nothing needed moving) or, with nomem_ok, ENOMEM. */
static inline long move_call(struct move_stats *s, unsigned long n, void **pages, const int *to,
			     int *status, int flags)
{
	long ret;

	for (unsigned long i = 0; i < n; i++)
		status[i] = STATUS_UNSET;
	ADD(s->calls, 1);
	ADD(s->requested, n);
	ret = sys_move_pages(n, pages, to, status, flags);
	if (ret < 0) {
		if (errno == ENOENT) {
			ADD(s->nothing_to_move, 1);
			return -1;
		}
		if (errno == ENOMEM && s->nomem_ok) {
			ADD(s->nomem_calls, 1);
			return -1;
		}
		fail_sys("move_pages", errno);
	}
	ADD(s->not_moved, ret);
	return ret;
}

/* Counts one page's outcome of move_call; 1 if it moved: it is on to now,
 * and from, where a query found it before, was another node. */
static inline int move_status(struct move_stats *s, void *page, int status, int from, int to)
{
	switch (status) {
	case STATUS_UNSET: ADD(s->unset, 1); return 0;   /* its move failed or was not tried */
	case -EBUSY: ADD(s->busy, 1); return 0;          /* isolated by someone else */
	case -EAGAIN: ADD(s->again, 1); return 0;
	case -EACCES: ADD(s->access, 1); return 0;       /* shared with a child (not root) */
	case -ENOENT: case -EFAULT: ADD(s->absent, 1); return 0;   /* gone meanwhile */
	case -ENOMEM: ADD(s->nomem, 1); return 0;
	}
	if (status < 0)
		die(WORKLOAD_FAILURE_EXIT, "move_pages(%p) status %d: %s", page, status,
		    strerror(-status));
	if (status == to && from >= 0 && from != to) {
		ADD(s->moved, 1);
		return 1;
	}
	return 0;
}

/* move_call and move_status for each page. */
static inline void move_pages_to(struct move_stats *s, int n, void **pages, const int *from,
				 const int *to, int flags)
{
	int status[n];

	if (move_call(s, n, pages, to, status, flags) < 0)
		return;
	for (int i = 0; i < n; i++)
		move_status(s, pages[i], status[i], from[i], to[i]);
}

/* migrate_pages(2) of the whole process from nodes[k % nnodes] to the
 * node after it. */
static inline void migrate_whole(struct move_stats *s, unsigned long k)
{
	unsigned long from = 1UL << nodes[k % nnodes];
	unsigned long to = 1UL << nodes[(k + 1) % nnodes];
	long ret = syscall(SYS_migrate_pages, 0, MAX_NODES + 1, &from, &to);

	if (ret < 0 && errno == ENOMEM && s->nomem_ok)
		ADD(s->mp_nomem_calls, 1);
	else if (ret < 0)
		fail_sys("migrate_pages", errno);
	else
		ADD(s->mp_not_moved, ret);
	ADD(s->mp_calls, 1);
}

/* Whether pages can be moved here; if not, why in reason (len bytes, else
 * left as it is): move_pages(2) is ENOSYS (a kernel without
 * CONFIG_MIGRATION or CONFIG_NUMA: returns 0, no page can even be queried)
 * or one NUMA node has memory.  no_syscall and one_node end those
 * sentences: what the workload does instead. */
static inline int migration_off_reason(char *reason, size_t len, void *page,
				       const char *no_syscall, const char *one_node)
{
	int st;

	if (sys_move_pages(1, &page, NULL, &st, 0) < 0) {
		if (errno != ENOSYS)
			fail_sys("move_pages(query)", errno);
		snprintf(reason, len, "move_pages is ENOSYS (a kernel without CONFIG_MIGRATION or "
			 "CONFIG_NUMA): %s", no_syscall);
		return 0;
	}
	if (nnodes < 2)
		snprintf(reason, len, "only %d NUMA node with memory: there is nowhere to migrate "
			 "to, %s", nnodes, one_node);
	return 1;
}

/* -- decision logs and the plan ----------------------------------------- */

/* --plan N (plan_decisions) prints the first N decisions of every seeded
 * stream, from the seed alone; --log N (log_decisions) keeps the first N
 * decisions each stream took, for the workload to print at its end
 * (print_log).  A test compares the two. */
static long plan_decisions, log_decisions;

#define LOG_LINE 160

struct dlog {
	char *buf;   /* log_decisions + 1 lines of LOG_LINE bytes (dlog_alloc) */
	long n;
};

static inline void dlog_alloc(struct dlog *l)
{
	l->buf = calloc(log_decisions + 1, LOG_LINE);
	if (!l->buf)
		die(EXIT_WORKLOAD, "out of memory for the decision log");
}

/* One decision: printed at once under --plan, kept if there is room. */
static inline void __attribute__((format(printf, 2, 3)))
log_line(struct dlog *l, const char *fmt, ...)
{
	va_list ap;

	if (plan_decisions) {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		putchar('\n');
		return;
	}
	if (l->n >= log_decisions)
		return;
	va_start(ap, fmt);
	vsnprintf(l->buf + l->n * LOG_LINE, LOG_LINE, fmt, ap);
	va_end(ap);
	l->n++;
}

static inline void print_log(const struct dlog *l)
{
	for (long i = 0; i < l->n; i++)
		printf("%s\n", l->buf + i * LOG_LINE);
}

/* want distinct numbers below n (fewer if n is smaller), sorted, into
 * out[]; how many.  For a fork's sample of chunks or regions to lock in
 * order. */
static inline int pick_sorted(uint64_t *rng, int n, int want, int *out)
{
	int k = 0;

	if (want > n)
		want = n;
	while (k < want) {
		int c = rnd(rng) % n, i;

		for (i = 0; i < k && out[i] != c; i++)
			;
		if (i < k)
			continue;
		for (i = k; i > 0 && out[i - 1] > c; i--)
			out[i] = out[i - 1];
		out[i] = c;
		k++;
	}
	return k;
}

/* -- pattern words ------------------------------------------------------ */

/* A verified page holds 512 words, each (magic, logical page, generation,
 * word index): any word says where it belongs and how new it is.  The
 * workload picks its own 16-bit magic. */
#define PATTERN_LP_BITS 20
#define PATTERN_GEN_MAX 0x7ffffU   /* 19 bits; generation 0 means "zeros expected" */

static inline uint64_t pattern_word(uint64_t magic, uint32_t lp, uint32_t gen, unsigned w)
{
	return magic << 48 | (uint64_t)(lp & ((1U << PATTERN_LP_BITS) - 1)) << 28 |
	       (uint64_t)(gen & PATTERN_GEN_MAX) << 9 | w;
}

/* What a word that came back wrong holds, for the report. */
static inline const char *decode_word(uint64_t magic, uint64_t got, char *buf, size_t size)
{
	if (got >> 48 == magic)
		snprintf(buf, size, "pattern of logical page %llu generation %llu word %llu",
			 (unsigned long long)(got >> 28 & ((1U << PATTERN_LP_BITS) - 1)),
			 (unsigned long long)(got >> 9 & PATTERN_GEN_MAX), (unsigned long long)(got & 511));
	else
		snprintf(buf, size, "%s", got ? "not a pattern word" : "zeros");
	return buf;
}

/* -- pages of offset-and-generation words ------------------------------ */

/* Memory whose pages hold 512 words each, word = generation << 40 | the
 * word's own byte offset in the memory, so data that comes back wrong
 * names where it came from and how old it is. */
#define OFFGEN_OFF_BITS 40
#define OFFGEN_OFF_MASK ((1ULL << OFFGEN_OFF_BITS) - 1)

struct offgen_mem {
	char *base;
	uint32_t *gen;          /* each page's generation as of its last write */
	int zero_gen_is_zeros;  /* generation 0: a zapped page, all zeros */
	/* The page's state for a mismatch report, read through the pagemap fd
	 * (-1: none), and what the report calls it. */
	void (*describe)(int fd, size_t pg, char *buf, size_t len);
	const char *state_name;
};

/* The word at byte offset off of a page of generation g. */
static inline uint64_t offgen_word(const struct offgen_mem *om, size_t off, uint32_t g)
{
	if (!g && om->zero_gen_is_zeros)
		return 0;
	return (uint64_t)(g & 0xffffff) << OFFGEN_OFF_BITS | ((uint64_t)off & OFFGEN_OFF_MASK);
}

static inline uint64_t *offgen_page(const struct offgen_mem *om, size_t pg)
{
	return (uint64_t *)(om->base + pg * PAGE);
}

/* Writes generation g into words from.. of page pg, with relaxed atomic
 * stores: a racing reader retries on the page's seqlock. */
static inline void offgen_fill(const struct offgen_mem *om, size_t pg, uint32_t g, unsigned from)
{
	uint64_t *w = offgen_page(om, pg);

	for (unsigned i = from; i < WORDS; i++)
		__atomic_store_n(&w[i], offgen_word(om, pg * PAGE + i * 8, g), __ATOMIC_RELAXED);
}

struct offgen_mismatch {
	size_t word_off;
	uint64_t want, got;
};

/* Whether buf, a copy of page pg, differs from generation g (g0 in word 0,
 * which a writer stores first); if so, the first differing word in *m. */
static inline int offgen_compare(const struct offgen_mem *om, size_t pg, const uint64_t *buf,
				 uint32_t g0, uint32_t g, struct offgen_mismatch *m)
{
	for (unsigned i = 0; i < WORDS; i++) {
		size_t off = pg * PAGE + i * 8;
		uint64_t want = offgen_word(om, off, i ? g : g0);

		if (buf[i] != want) {
			m->word_off = off;
			m->want = want;
			m->got = buf[i];
			return 1;
		}
	}
	return 0;
}

/* Reports the mismatch m of page pg, found by who, and exits code: the
 * first differing byte, the words decoded, the word as it reads now and
 * the page's state (through pagemap fd). */
static inline _Noreturn void offgen_report(const struct offgen_mem *om, const char *who, size_t pg,
					   const struct offgen_mismatch *m, int fd, int code)
{
	char state[256];
	uint64_t again = __atomic_load_n((uint64_t *)(om->base + m->word_off), __ATOMIC_RELAXED);
	unsigned byte = __builtin_ctzll(m->want ^ m->got) / 8;

	om->describe(fd, pg, state, sizeof(state));
	die(code, "%s: data mismatch at offset 0x%zx (page %zu): expected byte 0x%02x, found "
	    "0x%02x; the word at 0x%zx should be 0x%016llx (offset 0x%llx generation %llu), was "
	    "0x%016llx (offset 0x%llx generation %llu), reads 0x%016llx now; %s: %s",
	    who, m->word_off + byte, pg, (unsigned)(m->want >> (8 * byte)) & 0xff,
	    (unsigned)(m->got >> (8 * byte)) & 0xff, m->word_off,
	    (unsigned long long)m->want, (unsigned long long)(m->want & OFFGEN_OFF_MASK),
	    (unsigned long long)(m->want >> OFFGEN_OFF_BITS), (unsigned long long)m->got,
	    (unsigned long long)(m->got & OFFGEN_OFF_MASK),
	    (unsigned long long)(m->got >> OFFGEN_OFF_BITS), (unsigned long long)again,
	    om->state_name, state);
}

/* A copy of page pg, checked against generation g by who: else a report,
 * exit code. */
static inline void offgen_check(const struct offgen_mem *om, const char *who, size_t pg,
				const uint64_t *buf, uint32_t g, int fd, int code)
{
	struct offgen_mismatch m;

	if (offgen_compare(om, pg, buf, g, g, &m))
		offgen_report(om, who, pg, &m, fd, code);
}

/* -- a migrator's batch ------------------------------------------------- */

/* Round number round of a migrator: moves those of pages[0..n) that are
 * present to the next node (only queries them on one node; pages[] is
 * reordered), and every 32nd round moves the whole process off one node. */
static inline void migrate_round(struct move_stats *s, long round, int n, void **pages, int flags)
{
	int to[n], from[n];
	int k = present_pages(s, n, pages, from, to);

	if (k && nnodes > 1)
		move_pages_to(s, k, pages, from, to, flags);
	if (nnodes > 1 && round % 32 == 0)
		migrate_whole(s, round / 32);
}

/* -- fork children ------------------------------------------------------ */

/* The children in flight: fork number n has slot n % MAX_CHILDREN, so a
 * fork first reaps the child MAX_CHILDREN forks older.  In a child, forks
 * is the number of its own fork (the parent counts it after the fork). */
static pid_t children[MAX_CHILDREN];
static unsigned long long children_fork[MAX_CHILDREN];
static unsigned long long forks, children_reaped;

/* Waits for the child of fork number forkno and judges its end: exit 0 is
 * fine; EXIT_CHILD_MISMATCH or EXIT_CHILD_FAULT (its report is above on
 * stderr) or death by a signal other than SIGKILL are the kernel's; any
 * other exit status, or SIGKILL (the OOM killer?), is the workload's. */
static inline void reap_child(pid_t pid, unsigned long long forkno)
{
	pid_t r;
	int st;

	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (r != pid)
		fail_sys("waitpid", errno);
	children_reaped++;
	if (WIFEXITED(st)) {
		switch (WEXITSTATUS(st)) {
		case 0:
			return;
		case EXIT_CHILD_MISMATCH:
			die(EXIT_KERNEL, "child %d of fork #%llu found data that differs from what it "
			    "inherited (exit %d; its report is above)", (int)pid, forkno,
			    EXIT_CHILD_MISMATCH);
		case EXIT_CHILD_FAULT:
			die(EXIT_KERNEL, "child %d of fork #%llu faulted on memory it inherited "
			    "(exit %d; its report is above)", (int)pid, forkno, EXIT_CHILD_FAULT);
		default:
			die(WORKLOAD_FAILURE_EXIT, "child %d of fork #%llu exited with status %d",
			    (int)pid, forkno, WEXITSTATUS(st));
		}
	}
	if (WTERMSIG(st) == SIGKILL)
		die(WORKLOAD_FAILURE_EXIT, "child %d of fork #%llu was killed by SIGKILL "
		    "(out of memory?)", (int)pid, forkno);
	die(EXIT_KERNEL, "child %d of fork #%llu was killed by signal %d (%s)", (int)pid, forkno,
	    WTERMSIG(st), strsignal(WTERMSIG(st)));
}

/* Reaps the child in the slot of fork number n, if there is one. */
static inline void reap_slot(unsigned long long n)
{
	int slot = n % MAX_CHILDREN;

	if (children[slot])
		reap_child(children[slot], children_fork[slot]);
	children[slot] = 0;
}

/* fork(2): 0 in the child; in the parent the child's pid, in its slot (which
 * reap_slot(forks) must have emptied) and counted in forks. */
static inline pid_t fork_child(void)
{
	pid_t pid = fork();
	int slot = forks % MAX_CHILDREN;

	if (pid < 0)
		fail_sys("fork", errno);
	if (pid) {
		children[slot] = pid;
		children_fork[slot] = forks++;
	}
	return pid;
}

/* A writer-preferring rwlock: writers of memory hold it shared, fork takes
 * it alone, so a child's copy of the memory and of the bookkeeping that says
 * what it holds agree (no write is half done). */
static inline void fork_gate_init(pthread_rwlock_t *gate)
{
	pthread_rwlockattr_t ga;
	int e;

	if ((e = pthread_rwlockattr_init(&ga)) ||
	    (e = pthread_rwlockattr_setkind_np(&ga, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP)) ||
	    (e = pthread_rwlock_init(gate, &ga)))
		fail_sys("pthread_rwlock_init", e);
}

/* fork_child() inside the gate, after reaping the child of its slot: 0 in
 * the child (its one thread holds the gate, which no one else needs there),
 * the child's pid in the parent. */
static inline pid_t gated_fork(pthread_rwlock_t *gate)
{
	pid_t pid;

	reap_slot(forks);
	check_pthread("pthread_rwlock_wrlock", pthread_rwlock_wrlock(gate));
	pid = fork_child();
	if (pid)
		check_pthread("pthread_rwlock_unlock", pthread_rwlock_unlock(gate));
	return pid;
}

/* This process (a fork child, a worker) gets SIGKILL when the thread that
 * forked it ends: none outlives a workload killed at its timeout. */
static inline void die_with_parent(void)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		fail_sys("prctl(PR_SET_PDEATHSIG)", errno);
}

/* -- fork children that check what they inherited ------------------------ */

/* One fork's seeded choices: the child's seed and, from its top bytes, how
 * many random pages the child checks (32..128) and, for a workload whose
 * children write, how many it rewrites first (0..8). */
struct fork_op {
	uint64_t child_seed;
	unsigned sample, writes;
};

static inline struct fork_op fork_next(uint64_t *rng)
{
	struct fork_op op;

	op.child_seed = rnd(rng);
	op.sample = 32 + (op.child_seed >> 56) % 97;
	op.writes = (op.child_seed >> 48) % 9;
	return op;
}

/* --plan: the choices of the first n forks, drawn from rng as the run
 * draws them (with writes: how many pages each child rewrites). */
static inline void print_fork_plan(uint64_t rng, long n, int writes)
{
	for (long i = 0; i < n; i++) {
		struct fork_op op = fork_next(&rng);

		printf("plan fork %ld: child seed 0x%016llx, %u random pages", i,
		       (unsigned long long)op.child_seed, op.sample);
		if (writes)
			printf(", %u writes", op.writes);
		printf("\n");
	}
}

/* The life of a fork child that checks the memory it inherited (npages
 * pages in chunks of chunk_pages): one whole chunk in order, the chunk
 * drawn first from the child's seed, then op.sample random pages, then
 * extra more (pages it rewrites first, say).  check(pg, i) checks page pg,
 * the i-th, and exits EXIT_CHILD_MISMATCH when it differs; *verified
 * (shared memory) counts the pages checked. */
static inline _Noreturn void child_check_pages(struct fork_op op, unsigned extra, size_t npages,
					       unsigned chunk_pages, void (*check)(size_t pg, unsigned i),
					       unsigned long long *verified)
{
	uint64_t rng = op.child_seed;
	size_t first = rnd(&rng) % (npages / chunk_pages) * chunk_pages;
	unsigned n = chunk_pages + op.sample + extra;

	child_begin();
	for (unsigned i = 0; i < n; i++)
		check(i < chunk_pages ? first + i : rnd(&rng) % npages, i);
	ADD_SHARED(*verified, n);
	_exit(0);
}

/* How a fork child names itself in a mismatch report. */
static inline const char *fork_child_name(const char *what)
{
	static char name[96];

	snprintf(name, sizeof(name), "fork child %d (%s)", (int)getpid(), what);
	return name;
}

/* A fork child's check of page pg of om against its generation as of the
 * fork, with a pagemap of its own mm for the report (an open pagemap reads
 * the mm it was opened in). */
static inline void offgen_child_check(const struct offgen_mem *om, size_t pg)
{
	static uint64_t buf[WORDS];
	struct offgen_mismatch m;

	copy_words(offgen_page(om, pg), buf);
	if (offgen_compare(om, pg, buf, om->gen[pg], om->gen[pg], &m))
		offgen_report(om, fork_child_name("memory inherited at fork"), pg, &m,
			      open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), EXIT_CHILD_MISMATCH);
}

/* The end of a run: every thread's loop stops, every child is reaped. */
static inline void stop_and_reap(void)
{
	atomic_store(&stop, 1);
	for (int i = 0; i < MAX_CHILDREN; i++)
		reap_slot(i);
}

/* One fork of a child that checks what it inherited: its choices drawn
 * from rng, the fork made inside the fork gate; child(op) runs in the
 * child and exits. */
static inline void fork_checker(uint64_t *rng, pthread_rwlock_t *gate, void (*child)(struct fork_op op))
{
	struct fork_op op = fork_next(rng);

	if (gated_fork(gate) == 0) {
		child(op);
		_exit(WORKLOAD_FAILURE_EXIT);   /* not reached: child() exits */
	}
}

/* -- the self-test of the checker --------------------------------------- */

/* When a --self-test-corrupt run flips its byte: once its threads are
 * busy, a second in (half a second into a 1 s run). */
static inline double self_test_at(long duration)
{
	return duration < 2 ? 0.5 : 1.0;
}

/* --self-test-corrupt: flips the byte at offset off of mem behind the
 * kernel's back, as a lost write would, with every writer held off by the
 * fork gate; check(pg) must find it and exit as for the kernel's fault. */
static inline _Noreturn void self_test_flip(pthread_rwlock_t *gate, char *mem, size_t off,
					    void (*check)(size_t pg))
{
	check_pthread("pthread_rwlock_wrlock", pthread_rwlock_wrlock(gate));
	fprintf(stderr, "%s: self-test: flipping the byte at offset 0x%zx\n", prog, off);
	*(volatile unsigned char *)(mem + off) ^= 0x5a;
	check(off / PAGE);
	die(EXIT_WORKLOAD, "workload failed: self-test: the byte flipped at 0x%zx went unnoticed", off);
}

/* -- a crew of threads that start together ------------------------------ */

#define MAX_CREW 32

/* Threads that each get ready (their own setup), wait at the gate and
 * then work until the run stops: main adds them all (crew_add), lets them
 * go at once (crew_go) and joins them after stop_and_reap() (crew_join). */
struct crew {
	pthread_barrier_t gate;
	pthread_t tid[MAX_CREW];
	int n;
};

/* A crew of n threads (at most MAX_CREW) and main. */
static inline void crew_init(struct crew *c, int n)
{
	check_pthread("pthread_barrier_init", pthread_barrier_init(&c->gate, NULL, 1 + n));
	c->n = 0;
}

static inline void crew_add(struct crew *c, void *(*fn)(void *), void *arg)
{
	start_thread(&c->tid[c->n++], fn, arg);
}

static inline void crew_go(struct crew *c)
{
	pthread_barrier_wait(&c->gate);
}

static inline void crew_join(struct crew *c)
{
	for (int i = 0; i < c->n; i++)
		pthread_join(c->tid[i], NULL);
}

/* -- churners over locked items ---------------------------------------- */

/* The loop of churner t, for workloads whose threads take seeded decisions
 * on items (regions, chunks) that each have a mutex: decide(t, n, args) is
 * decision n, item << 8 | op with up to two arguments, drawn whatever the
 * items' state (so --plan prints it from the seed alone); run(item, op,
 * args) carries it out with the item's mutex (mutex_of) held; ops counts
 * them.  It starts when every thread has reached gate. */
static inline void churn(void *t, pthread_barrier_t *gate,
			 int (*decide)(void *t, long n, uint64_t args[2]),
			 pthread_mutex_t *(*mutex_of)(int item),
			 void (*run)(int item, int op, const uint64_t args[2]),
			 unsigned long long *ops)
{
	pthread_barrier_wait(gate);
	for (long n = 0; !stopping();) {
		uint64_t args[2];
		int d = decide(t, n++, args);

		lock_mutex(mutex_of(d >> 8));
		run(d >> 8, d & 255, args);
		unlock_mutex(mutex_of(d >> 8));
		ADD(*ops, 1);
	}
}

/* -- a migrator of seeded picks ----------------------------------------- */

/* A migrator thread whose batches are pages picked by its own seeded
 * stream: the stream, its decision log, what it moved. */
struct migrator {
	uint64_t rng;
	struct dlog log;
	struct move_stats mv;
};

/* Decision n of migrator m: batch draws, each made a page by pick (pages
 * NULL: the draws only, for --plan), logged as a digest of the draws. */
static inline void migrator_decide(struct migrator *m, long n, int batch, void **pages,
				   void *(*pick)(uint64_t draw))
{
	uint64_t digest = 0;

	for (int i = 0; i < batch; i++) {
		uint64_t r = rnd(&m->rng);

		digest = (digest ^ r) * 0x100000001b3ULL;
		if (pages)
			pages[i] = pick(r);
	}
	log_line(&m->log, "decision migrator n=%ld picks=%016llx", n, (unsigned long long)digest);
}

/* The loop of migrator m once every thread has reached gate: a decision,
 * then migrate_round() of its pages, until the run stops. */
static inline void migrator_loop(struct migrator *m, pthread_barrier_t *gate, int batch,
				 void *(*pick)(uint64_t draw))
{
	int flags = move_flags();
	long round = 0;

	pthread_barrier_wait(gate);
	while (!stopping()) {
		void *pages[batch];

		migrator_decide(m, round, batch, pages, pick);
		migrate_round(&m->mv, ++round, batch, pages, flags);
	}
}

/* -- forks of a locked sample of items ---------------------------------- */

#define FORK_SAMPLE_MAX 4

/* One fork's seeded choice: a sorted sample of distinct items (regions,
 * chunks) for the child to check, and the child's own seed. */
struct fork_plan {
	int sample[FORK_SAMPLE_MAX], k;
	uint64_t child_seed;
};

/* Decision n of the forker: one draw from rng seeds a sub-stream that picks
 * want (at most FORK_SAMPLE_MAX) of nitems items and then the child's seed;
 * logged in log as "<what>=a,b,..." (-1 for each item short of want). */
static inline void forker_decide_sample(struct dlog *log, uint64_t *rng, long n, int nitems,
					int want, const char *what, struct fork_plan *f)
{
	uint64_t sub = rnd(rng);
	char items[64];
	int len = 0;

	f->k = pick_sorted(&sub, nitems, want, f->sample);
	f->child_seed = rnd(&sub);
	for (int i = 0; i < want; i++)
		len += snprintf(items + len, sizeof(items) - len, "%s%d", i ? "," : "",
				i < f->k ? f->sample[i] : -1);
	log_line(log, "decision forker n=%ld %s=%s child_seed=%016llx", n, what, items,
		 (unsigned long long)f->child_seed);
}

/* Forks (after reaping the child of its slot) while the sampled items'
 * mutexes (mutex_of) are held, so the child's copy of their memory and of
 * their bookkeeping agree; the child runs child(f, corrupt), which exits.
 * The child of a --self-test-corrupt fork (corrupt) is reaped at once, so
 * its verdict comes before the next fork. */
static inline void fork_sample_locked(const struct fork_plan *f, int corrupt,
				      pthread_mutex_t *(*mutex_of)(int item),
				      void (*child)(const struct fork_plan *f, int corrupt))
{
	reap_slot(forks);
	for (int i = 0; i < f->k; i++)
		lock_mutex(mutex_of(f->sample[i]));
	if (fork_child() == 0) {
		child(f, corrupt);
		_exit(WORKLOAD_FAILURE_EXIT);   /* not reached: child() exits */
	}
	for (int i = f->k - 1; i >= 0; i--)
		unlock_mutex(mutex_of(f->sample[i]));
	if (corrupt)
		reap_slot(forks - 1);
}

/* -- small sysfs and procfs files -------------------------------------- */

/* The first line of path, without its newline, in buf: 0, or -1 with errno. */
static inline int read_line(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), e;
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

/* The number path holds: 0, or -1 with errno (EINVAL: not a number). */
static inline int read_long(const char *path, long *v)
{
	char buf[64], *end;

	if (read_line(path, buf, sizeof(buf)))
		return -1;
	errno = 0;
	*v = strtol(buf, &end, 10);
	if (errno || end == buf) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* Writes s to path as `echo s > path` does: 0, or -1 with errno (for a
 * sysfs file, the error its store returned; EINTR when a signal came). */
static inline int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC), e;
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	return 0;
}

/* -- a supervisor that puts global settings back ----------------------- */

static volatile sig_atomic_t supervised_child, supervisor_signal;

static inline void supervisor_forward(int sig)
{
	supervisor_signal = sig;
	if (supervised_child > 0)
		kill(supervised_child, sig);
}

/* Runs the rest of the workload in a child process, for a workload that
 * changes settings of the whole machine.  It returns in the child (SIGTERM,
 * SIGINT and SIGHUP back to their default actions).  The parent forwards
 * those signals to the child, waits for it and calls restore() however it
 * ended (its exit, die(), a signal, SIGKILL), then ends as the child did:
 * the child's exit status (EXIT_WORKLOAD instead of 0 when restore() failed),
 * or the forwarded signal's default action.  A child killed by another
 * signal ends it with EXIT_WORKLOAD for SIGKILL (the OOM killer?) and
 * EXIT_KERNEL for any other (a fault on the workload's own memory). */
static inline void supervise(int (*restore)(void))
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	struct sigaction sa = { .sa_handler = supervisor_forward };
	sigset_t block, old;
	pid_t pid, r;
	int st, sig, restored;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaddset(&block, sigs[i]);
		if (sigaction(sigs[i], &sa, NULL))
			fail_sys("sigaction", errno);
	}
	/* Held across the fork: the child resets them before it can get one,
	 * the parent knows the child's pid before it forwards one. */
	if (sigprocmask(SIG_BLOCK, &block, &old))
		fail_sys("sigprocmask", errno);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		restore();
		fail_sys("fork", errno);
	}
	if (pid == 0) {
		for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		return;
	}
	supervised_child = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (r != pid) {
		restore();
		fail_sys("waitpid", errno);
	}
	restored = restore() == 0;
	fflush(stdout);
	if (WIFEXITED(st)) {
		if (WEXITSTATUS(st) == 0 && !restored)
			die(EXIT_WORKLOAD, "workload failed: the settings it changed could not all "
			    "be put back (see above)");
		_exit(WEXITSTATUS(st));
	}
	sig = WTERMSIG(st);
	if (sig == supervisor_signal) {
		signal(sig, SIG_DFL);
		raise(sig);
		_exit(128 + sig);
	}
	if (sig == SIGKILL)
		die(EXIT_WORKLOAD, "the workload process %d was killed by SIGKILL (out of memory?)",
		    (int)pid);
	die(EXIT_KERNEL, "the workload process %d was killed by signal %d (%s)", (int)pid, sig,
	    strsignal(sig));
}

#endif /* KSTRESS_H */
