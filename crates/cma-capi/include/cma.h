/*
 * cma.h: the C interface of cma, a checked memory allocator.
 *
 * Link with libcma.a (or -lcma for libcma.so), or run any program on cma
 * without rebuilding it:
 *
 *     LD_PRELOAD=/path/to/libcma.so ./program
 *
 * C and C++ programs can include it (C99 or later; C++98 or later).
 *
 * libcma exports three things:
 *
 *  1. The whole malloc family with glibc's contracts (declared in <stdlib.h>
 *     and <malloc.h>, so not repeated here): malloc, free, calloc, realloc,
 *     reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc,
 *     malloc_usable_size, free_sized, free_aligned_sized, malloc_trim,
 *     mallinfo2, mallinfo, mallopt, malloc_stats, and C++ operator new and
 *     operator delete in all their forms (sized, aligned, nothrow).
 *     - Failure returns NULL with errno = ENOMEM; calloc and reallocarray
 *       catch overflow of n * size (ENOMEM). aligned_alloc fails with EINVAL
 *       for an alignment that is not a power of two; memalign rounds such an
 *       alignment up, as glibc does; posix_memalign returns EINVAL or ENOMEM
 *       and leaves errno alone.
 *     - Blocks of 16 bytes or more are 16-byte aligned (8 below). A size of 0
 *       returns a unique minimal block. realloc(p, 0) frees p and returns
 *       NULL (glibc's behaviour).
 *     - Misuse (double free, freeing an interior pointer or memory cma never
 *       handed out) prints one line starting with "cma: " on stderr and
 *       aborts.
 *     - operator new cannot throw std::bad_alloc from libcma: when memory
 *       runs out it prints "cma: operator new: out of memory (N bytes)" and
 *       aborts. The nothrow forms return NULL.
 *     - mallopt accepts and ignores every parameter (returns 1); cma's options
 *       come from the CMA_OPTIONS environment variable.
 *
 *  2. The original system's cma_* API, with its names, signatures and
 *     meaning: cma_malloc ... cma_track_leak below. Programs written
 *     against it compile and run unchanged.
 *
 *  3. cma's own functions, under names of their own: statistics with size
 *     classes (cma_stats_get, cma_stats_get_extended), both allocation
 *     limits (cma_limits_set), cma_bytes_in_use, cma_calloc, cma_strdup &
 *     co., cma_strerror, cma_guard_depth, and arenas (cma_arena_*).
 *
 * Status codes: functions that return int32_t return CMA_OK (0) for success
 * and one of the named codes of enum cma_error otherwise. Functions that
 * return a size return 0 with errno = EINVAL for NULL or a pointer that is
 * not a live block. No function here crashes on a NULL argument.
 *
 * Options (environment, read once at start-up), comma separated:
 *     CMA_OPTIONS=purge_delay_ms=100,limit_request=1M,limit_total=64M,report=FILE
 * report=FILE writes a heap report (text, one "key value" a line) to FILE when
 * the process exits; "%p" in FILE is replaced by the process id, and
 * report=stderr writes it on stderr. `cma run` uses it. alloc_log=1 turns
 * allocation logging on from the start, alloc_log_fd=N sends it to file
 * descriptor N (default 2), alloc_log_sample=N logs one event in about N.
 * profile=sample|all records allocation sites (see the leak functions and
 * `cma run --leaks`, `--profile`).
 *
 * Thread safety: every function may be called from any thread, always;
 * the cma_arena_* functions of one arena by one thread at a time (see
 * Arenas below).
 */
#ifndef CMA_H
#define CMA_H

#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus
#include <stdbool.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
enum cma_error {
    CMA_OK = 0,
    CMA_ERR_DOUBLE_FREE = 1,              /* the block was freed already */
    CMA_ERR_DOUBLE_FREE_OTHER_THREAD = 2, /* ... by another thread, not yet collected */
    CMA_ERR_INTERIOR_POINTER = 3,         /* the pointer is inside a block, not at its start */
    CMA_ERR_NOT_OURS = 4,                 /* not a live block of cma or of a backend */
    CMA_ERR_REQUEST_LIMIT = 5,            /* request over the per-request allocation limit */
    CMA_ERR_TOTAL_LIMIT = 6,              /* request would exceed the total allocation limit */
    CMA_ERR_OUT_OF_MEMORY = 7,            /* the kernel refused memory */
    CMA_ERR_INVALID_ALIGNMENT = 8,        /* alignment not a power of two, or too large */
    CMA_ERR_SIZE_OVERFLOW = 9,            /* count * size overflows */
    CMA_ERR_NULL_ARGUMENT = 10,           /* a required pointer argument was NULL */
    CMA_ERR_BUFFER_OVERFLOW = 11,         /* the block's canary was overwritten */
    CMA_ERR_OTHER = 12,                   /* an error this header does not name yet */
    CMA_ERR_INVALID_ARGUMENT = 13,        /* an argument cma cannot use (a backend without a required hook) */
    CMA_ERR_TOO_MANY_BACKENDS = 14,       /* 16 other backends still hold live blocks */
    CMA_ERR_TOO_MANY_ARENAS = 15          /* 16384 arenas are live already */
};

/* ------------------------------------------------------------------------
 * The original system's API
 * ------------------------------------------------------------------------ */

/* Backend hooks: while a backend is set (cma_set_backend), new blocks of
 * cma_malloc, cma_calloc, cma_realloc(NULL, n), cma_aligned_alloc and
 * cma_strdup & co. come from it. cma_free, cma_checked_free,
 * cma_bzero_and_free, cma_free_double, cma_realloc, cma_block_size,
 * cma_checked_block_size and cma_alloc_size give a block to whoever handed it
 * out: a backend's block (owns_allocation says yes) to that backend, a cma
 * block to cma. So a backend can be set, replaced and cleared while blocks of
 * every kind are live; a block of a cleared backend still goes back to it.
 * A pointer that no one owns is an invalid free, reported as always.
 *
 * allocate, deallocate, get_allocation_size and owns_allocation are
 * required. Without reallocate, cma allocates from the same backend, copies
 * and deallocates; without aligned_allocate, it uses allocate and fails
 * (NULL, ENOMEM) when that block is not aligned (an alignment of 1 always
 * uses allocate). Requests of 0 bytes reach the backend as 1. owns_allocation must answer for any pointer (and false
 * for cma's blocks); every hook may be called from any thread. A hook must
 * not call the cma_* functions that allocate or free (they would come back
 * to it); it may use malloc and free, which never go to a backend.
 *
 * The hooks' blocks count in the statistics (by get_allocation_size), in the
 * allocation limits and in cma_bytes_in_use. The malloc family (malloc,
 * free...) never uses a backend. */
typedef struct cma_backend_hooks {
    void *(*allocate)(size_t size, void *user_data);
    void *(*reallocate)(void *ptr, size_t size, void *user_data);
    void (*deallocate)(void *ptr, void *user_data);
    void *(*aligned_allocate)(size_t alignment, size_t size, void *user_data);
    size_t (*get_allocation_size)(const void *ptr, void *user_data);
    bool (*owns_allocation)(const void *ptr, void *user_data);
    void *user_data;
} cma_backend_hooks;

/* size bytes, or NULL (errno = ENOMEM) when memory or a limit runs out. */
void *cma_malloc(size_t size);

/* Resizes ptr, keeping its contents up to the smaller size; a backend's
 * block is resized by its backend. NULL ptr allocates. Unlike glibc's
 * realloc, size 0 returns a minimal block (ptr is freed). On failure returns
 * NULL (ENOMEM) and ptr is intact. */
void *cma_realloc(void *ptr, size_t size);

/* size bytes aligned to alignment (any power of two); NULL with EINVAL for
 * an alignment that is not a power of two, NULL with ENOMEM when memory runs
 * out. */
void *cma_aligned_alloc(size_t alignment, size_t size);

/* Frees ptr (NULL is accepted). Misuse aborts with a "cma: " diagnostic. */
void cma_free(void *ptr);

/* Overwrites the block's whole size with zeros (a backend's block: the
 * size its get_allocation_size reports), then frees it. NULL is accepted. */
void cma_bzero_and_free(void *ptr);

/* Frees ptr and returns CMA_OK, or returns why ptr is not a live block
 * (CMA_ERR_DOUBLE_FREE, CMA_ERR_INTERIOR_POINTER, CMA_ERR_NOT_OURS, ...)
 * without changing anything. NULL returns CMA_OK. */
int32_t cma_checked_free(void *ptr);

/* Verifies the whole heap at once: every live block's trailer (an overflow
 * of a block that was never freed) and every block held in the quarantine
 * (a write after free). Returns CMA_OK, or the code of the first damage
 * found (CMA_ERR_BUFFER_OVERFLOW, ...), whose one-line description goes to
 * stderr. The same check runs at exit at the default and strict levels
 * (exit_check=0 in CMA_OPTIONS turns that off). At check=fast there is
 * nothing to verify. */
int32_t cma_check_heap(void);

/* Frees each string of the NULL-terminated array, then the array itself.
 * NULL is accepted. */
void cma_free_double(char **content);

/* The usable size of the live block ptr (at least what was requested). 0
 * with errno = EINVAL for NULL or a pointer that is not a live block
 * (cma_checked_block_size says why). */
size_t cma_block_size(const void *ptr);

/* Stores the usable size of ptr in *block_size and returns CMA_OK, or returns
 * why it cannot: CMA_ERR_NULL_ARGUMENT for a NULL argument, or why ptr is not
 * a live block (then *block_size is 0). */
int32_t cma_checked_block_size(const void *ptr, size_t *block_size);

/* The original's other name for the usable size, all of which the program
 * may use: at check=fast, the request rounded up to its size class; at
 * check=default (the default) and check=strict, where the bytes after the
 * request hold a canary, the request itself. 0 with errno = EINVAL as for cma_block_size. */
size_t cma_alloc_size(const void *ptr);

/* The largest single request, in bytes; 0 lifts the limit. Larger requests
 * (to cma or to a backend) fail with NULL / ENOMEM. Returns CMA_OK. The total
 * limit (cma_limits_set) is left as it is. */
int32_t cma_set_alloc_limit(size_t limit);

/* Allocation logging: every allocation, reallocation and free writes one
 * line, "cma-log: OPERATION ptr=0x... size=N [old=0x...] tid=T", with one
 * write(2) and no allocation, to file descriptor 2 or the one
 * alloc_log_fd=N in CMA_OPTIONS names (or goes to the callback below).
 * OPERATION is the cma_* function's name for the cma_* API, and "alloc",
 * "alloc_zeroed", "realloc" or "free" for the malloc family and C++'s new
 * and delete; size is the request, or the freed block's size. Off by
 * default (alloc_log=1 in CMA_OPTIONS turns it on from the start); off, it
 * costs the fast paths nothing. At the fast check level, logging turned on
 * while the program runs misses the frees of blocks from memory cma had
 * taken before (alloc_log=1 from the start logs every one). A call made
 * from inside the callback is not logged. */
void cma_set_alloc_logging(bool enable);
bool cma_get_alloc_logging(void);

/* One logged event, for a callback: operation as in the log line (a
 * NUL-terminated string, valid during the call), the block returned or
 * given (NULL for a failed allocation), the size, the block a realloc was
 * given (NULL when none or the same), the thread's kernel id. */
typedef struct cma_alloc_event {
    const char *operation;
    void *pointer;
    size_t size;
    void *old_pointer;
    uint64_t thread;
} cma_alloc_event;

/* Sends logged events to callback(event, user_data) instead of the log's
 * descriptor; NULL goes back to the descriptor. The callback runs inside
 * the allocator, on the event's thread: it may allocate and free (those
 * calls are not logged), must not longjmp or throw, and should be quick.
 * Set it while logging is off. Returns CMA_OK. */
int32_t cma_set_alloc_log_callback(void (*callback)(const cma_alloc_event *event, void *user_data),
                                   void *user_data);

/* Logs about one event in n (0 and 1: every one); alloc_log_sample=N in
 * CMA_OPTIONS sets it from the start. Returns CMA_OK. */
int32_t cma_set_alloc_log_sample(size_t n);

/* Thread safety: cma is always thread safe and takes no global lock on its
 * fast paths (thread-local heaps), so there is nothing to switch on or off.
 * These accept every request and return CMA_OK; the disabling ones change
 * nothing (what disabling bought in the original, no lock on each call, cma
 * always gives). cma_is_thread_safe_enabled() is always true. */
int32_t cma_set_thread_safety(bool enable);
int32_t cma_enable_thread_safety(void);
int32_t cma_disable_thread_safety(void);
bool cma_is_thread_safe_enabled(void);

/* Blocks allocated and freed so far, cma's and the backends' together. As in
 * the original, a NULL pointer skips its figure; CMA_ERR_NULL_ARGUMENT when
 * every pointer is NULL. */
int32_t cma_get_stats(size_t *allocation_count, size_t *free_count);

/* The same, plus bytes in use now and the peak of bytes in use (cma's
 * usable sizes plus the backends' block sizes; the peak is cma's peak plus
 * the backends' peak, an upper bound of the two together). */
int32_t cma_get_extended_stats(size_t *allocation_count, size_t *free_count,
                               size_t *current_bytes, size_t *peak_bytes);

/* Sets the backend (the table is copied), or returns CMA_ERR_NULL_ARGUMENT,
 * CMA_ERR_INVALID_ARGUMENT (a required hook is NULL) or
 * CMA_ERR_TOO_MANY_BACKENDS. Setting hooks equal to an earlier backend's
 * (the same functions and user_data) makes that backend current again. */
int32_t cma_set_backend(const cma_backend_hooks *hooks);

/* No backend: new blocks come from cma again. Returns CMA_OK. */
int32_t cma_clear_backend(void);

/* Whether a backend is set. */
bool cma_backend_is_enabled(void);

/* Leak inspection, in every build (the original had it in test builds
 * only). A "live" block is one allocated and not freed yet, cma's or a
 * backend's. None of these needs the live-allocation registry (profile= in
 * CMA_OPTIONS): the summary comes from the counters, the entries from a walk
 * over cma's out-of-line slab bitmaps and page blocks.
 *
 * An untracked block (cma_untrack_leak) counts as ignored in the summary and
 * is left out of the entries and the report, until cma_track_leak or its
 * free (an address handed out again is tracked again).
 *
 * Sizes: an entry's size is what cma_block_size answers (the size asked
 * for, at the default check level; a backend's get_allocation_size); the
 * summary's bytes are cma's statistics' (usable sizes: the size class's
 * block size, whole pages for large blocks) plus the backends' sizes, so
 * that live and ignored bytes add up to cma_bytes_in_use. */
typedef struct cma_leak_entry {
    void *memory_pointer;
    size_t size;
} cma_leak_entry;

typedef struct cma_leak_summary {
    size_t live_block_count;    /* live blocks, not counting ignored ones */
    size_t live_bytes;
    size_t ignored_block_count; /* live blocks left out (cma_untrack_leak) */
    size_t ignored_bytes;
} cma_leak_summary;

/* Fills *summary. CMA_ERR_NULL_ARGUMENT for NULL. */
int32_t cma_get_leak_summary(cma_leak_summary *summary);

/* Copies the first `capacity` live blocks that are not ignored into
 * `entries` (cma's first: its pages' blocks in address order, then its
 * sampled blocks; the backends' last), sets *count to how
 * many there are in all, and returns CMA_OK: call it with NULL and 0 to size
 * a buffer. Nothing is allocated. CMA_ERR_NULL_ARGUMENT for a NULL count, or
 * NULL entries with a non-zero capacity. */
int32_t cma_get_leak_entries(cma_leak_entry *entries, size_t capacity, size_t *count);

/* Writes the leak report to stderr: a "cma: leak report: ..." line with the
 * summary, then the first 64 blocks, one a line. Returns CMA_OK. */
int32_t cma_report_leaks(void);

/* Leaves the live block ptr out of leak reports (untrack), or counts it
 * again (track; CMA_OK too for a block that was not untracked).
 * CMA_ERR_NULL_ARGUMENT for NULL; why ptr is not a live block otherwise
 * (CMA_ERR_NOT_OURS, CMA_ERR_DOUBLE_FREE, CMA_ERR_INTERIOR_POINTER...). */
int32_t cma_untrack_leak(void *ptr);
int32_t cma_track_leak(void *ptr);

/* ------------------------------------------------------------------------
 * cma's own functions
 * ------------------------------------------------------------------------ */

/* The number of size classes reported by cma_stats_get_extended. */
#define CMA_NUM_CLASSES 96

/* Passed to cma_limits_set: no limit. */
#define CMA_NO_LIMIT ((size_t)-1)

/* Process-wide counters. Bytes are usable sizes (the size class, or whole
 * pages for large blocks; a backend's get_allocation_size), not requested
 * sizes. */
struct cma_stats {
    uint64_t allocations;       /* blocks allocated so far */
    uint64_t frees;             /* blocks freed so far */
    uint64_t bytes_in_use;      /* bytes of blocks allocated and not freed */
    uint64_t peak_bytes_in_use; /* highest bytes_in_use seen (sampled with several threads) */
};

/* Counters of one size class. */
struct cma_class_stats {
    size_t block_size; /* the size of every block of the class */
    uint64_t allocations;
    uint64_t frees;
    uint64_t blocks_in_use;
    uint64_t bytes_in_use;
    uint64_t peak_blocks_in_use;
    uint64_t peak_bytes_in_use;
};

struct cma_extended_stats {
    struct cma_stats basic;     /* everything: cma's blocks and the backends' */
    struct cma_stats backend;   /* the backends' share of basic (a realloc
                                   that moves a block counts one allocation
                                   and one free, one in place none) */
    uint64_t large_allocations; /* blocks served by whole pages */
    uint64_t large_frees;
    size_t heaps;            /* thread heaps created (reused after threads exit) */
    size_t mapped_bytes;     /* address space mapped for blocks */
    size_t dirty_free_bytes; /* free pages not yet given back to the kernel */
    size_t metadata_bytes;   /* memory mapped for metadata */
    size_t num_classes;      /* CMA_NUM_CLASSES */
    struct cma_class_stats classes[CMA_NUM_CLASSES];
};

/* Fill *out; return CMA_OK, or CMA_ERR_NULL_ARGUMENT for NULL. */
int32_t cma_stats_get(struct cma_stats *out);
int32_t cma_stats_get_extended(struct cma_extended_stats *out);

/* Bytes in use now, all threads together (usable sizes; backends' blocks
 * included). */
size_t cma_bytes_in_use(void);

/* Failure injection: allocations larger than max_request, or that would take
 * the bytes in use (backends' blocks included) above max_total, fail (NULL,
 * ENOMEM) before anything changes. CMA_NO_LIMIT lifts a limit. Returns
 * CMA_OK. */
int32_t cma_limits_set(size_t max_request, size_t max_total);

/* calloc: n * size zeroed bytes; NULL (ENOMEM) on overflow or when memory
 * runs out. From the backend when one is set. */
void *cma_calloc(size_t n, size_t size);

/* Copies into new blocks (from the backend when one is set; free them with
 * cma_free). NULL with ENOMEM when memory runs out; NULL with EINVAL for a
 * NULL string (or a NULL p with n > 0). cma_strndup copies at most n bytes
 * and always terminates the copy. cma_memdup(p, 0) returns a minimal
 * block. */
char *cma_strdup(const char *s);
char *cma_strndup(const char *s, size_t n);
void *cma_memdup(const void *p, size_t n);

/* The allocator guard depth of the calling thread: the number of cma calls
 * under way on it, so 0 whenever it is outside cma (every path out of cma,
 * error paths included, brings it back). For tests. */
unsigned cma_guard_depth(void);

/* A static message for a cma_error code; "unknown cma error code" otherwise. */
const char *cma_strerror(int32_t code);

/* ------------------------------------------------------------------------
 * Arenas
 * ------------------------------------------------------------------------
 *
 * An arena is a heap of its own that is released all at once: its blocks
 * can be freed one by one (with cma_free or free, from any thread), and
 * cma_arena_reset or cma_arena_destroy releases whatever is left in one go,
 * giving its memory back to cma's page allocator without freeing the blocks
 * one at a time. Each arena has its own statistics and an optional byte
 * limit.
 *
 *     cma_arena *a;
 *     if (cma_arena_create(&a, CMA_NO_LIMIT) != CMA_OK) ...;
 *     for (each request) {
 *         char *s = cma_arena_malloc(a, n);   ... build the request's data
 *         cma_arena_reset(a);                 ... and drop it all at once
 *     }
 *     cma_arena_destroy(a);
 *
 * Blocks of an arena are cma blocks: cma_free, free, cma_block_size,
 * malloc_usable_size and cma_checked_free take them (routed to the arena),
 * and the check level's checks hold for them (at check=default, a trailer
 * after each block, freed blocks wiped and quarantined). realloc and
 * cma_realloc of an arena block resize it in place when they can; when it
 * must move, the new block comes from the calling thread's heap, as for any
 * block, and no longer belongs to the arena (cma_arena_realloc keeps it in
 * the arena). An arena block after its arena was reset or destroyed is
 * freed memory: cma_free of it aborts with "cma: double free of 0x... (in
 * freed pages)" while its pages are not handed out again.
 *
 * Thread rules: one thread at a time calls the cma_arena_* functions of one
 * arena (they are not synchronised with each other for the same arena);
 * any thread may free an arena's blocks with cma_free or free at any time
 * before the reset or destroy that releases them. Different arenas are
 * independent. The blocks count in cma's process-wide statistics too
 * (cma_get_stats, cma_stats_get...), and in its total limit.
 *
 * A cma_arena * is an opaque handle, never dereferenced: a handle of a
 * destroyed arena, or any other value, gives CMA_ERR_INVALID_ARGUMENT (or
 * NULL with errno = EINVAL), never a crash. */
typedef struct cma_arena cma_arena;

/* An arena's statistics. Bytes are usable sizes, as in struct cma_stats.
 * Blocks freed by other threads count once the arena collects them (which
 * cma_arena_get_stats does). */
struct cma_arena_stats {
    uint64_t allocations;       /* blocks allocated in the arena (a moving realloc: one more) */
    uint64_t frees;             /* blocks freed one by one or released by a reset */
    uint64_t blocks_in_use;     /* allocations - frees */
    uint64_t bytes_in_use;      /* usable bytes of the blocks in use */
    uint64_t peak_bytes_in_use; /* the most bytes_in_use since the arena was created (exact) */
    size_t byte_limit;          /* the arena's limit, CMA_NO_LIMIT for none */
};

/* Creates an arena in *arena whose blocks may take at most byte_limit usable
 * bytes together (CMA_NO_LIMIT: no limit; a request past the limit fails
 * with NULL / ENOMEM and changes nothing). Returns CMA_OK, or
 * CMA_ERR_NULL_ARGUMENT, CMA_ERR_OUT_OF_MEMORY, CMA_ERR_TOO_MANY_ARENAS
 * (then *arena is NULL). */
int32_t cma_arena_create(cma_arena **arena, size_t byte_limit);

/* size bytes in the arena, aligned as malloc's; cma_arena_calloc: n * size
 * zeroed bytes; cma_arena_aligned_alloc: aligned to alignment (any power of
 * two, else NULL with EINVAL). NULL with ENOMEM when memory or a limit runs
 * out (or n * size overflows), NULL with EINVAL when arena is not a live
 * arena. */
void *cma_arena_malloc(cma_arena *arena, size_t size);
void *cma_arena_calloc(cma_arena *arena, size_t n, size_t size);
void *cma_arena_aligned_alloc(cma_arena *arena, size_t alignment, size_t size);

/* Resizes ptr as cma_realloc does (NULL ptr allocates; size 0 gives a
 * minimal block), in the arena: a block of the arena stays in it (in place
 * when its slot allows), a live block from elsewhere moves into it. NULL
 * with ENOMEM on failure (ptr intact), NULL with EINVAL for a bad arena. A
 * ptr that is not a live block aborts with a "cma: " diagnostic. */
void *cma_arena_realloc(cma_arena *arena, void *ptr, size_t size);

/* Releases every block still in the arena at once; the arena stays, empty,
 * with its statistics (the released blocks count as frees) and its limit.
 * CMA_OK, CMA_ERR_NULL_ARGUMENT or CMA_ERR_INVALID_ARGUMENT. */
int32_t cma_arena_reset(cma_arena *arena);

/* Releases every block of the arena at once, and the arena; the handle is
 * invalid from then on. CMA_OK, CMA_ERR_NULL_ARGUMENT or
 * CMA_ERR_INVALID_ARGUMENT (a destroyed arena, say). */
int32_t cma_arena_destroy(cma_arena *arena);

/* Fills *out with the arena's statistics. CMA_OK, CMA_ERR_NULL_ARGUMENT or
 * CMA_ERR_INVALID_ARGUMENT. */
int32_t cma_arena_get_stats(cma_arena *arena, struct cma_arena_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* CMA_H */
