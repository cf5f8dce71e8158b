/*
 * cma.h: the C interface of cma, a checked memory allocator.
 *
 * Link with libcma.a (or -lcma for libcma.so), or run any program on cma
 * without rebuilding it:
 *
 *     LD_PRELOAD=/path/to/libcma.so ./program
 *
 * libcma exports two things:
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
 *  2. The cma_* API below: the same allocator, plus checked frees that return
 *     an error instead of aborting, statistics, and allocation limits for
 *     failure injection.
 *
 * Options (environment, read once at start-up), comma separated:
 *     CMA_OPTIONS=purge_delay_ms=100,limit_request=1M,limit_total=64M,report=FILE
 * report=FILE writes a heap report (text, one "key value" a line) to FILE when
 * the process exits; "%p" in FILE is replaced by the process id, and
 * report=stderr writes it on stderr. `cma run` uses it.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef CMA_H
#define CMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes returned by the checked functions. */
enum cma_error {
    CMA_OK = 0,
    CMA_ERR_DOUBLE_FREE = 1,              /* the block was freed already */
    CMA_ERR_DOUBLE_FREE_OTHER_THREAD = 2, /* ... by another thread, not yet collected */
    CMA_ERR_INTERIOR_POINTER = 3,         /* the pointer is inside a block, not at its start */
    CMA_ERR_NOT_OURS = 4,                 /* not memory from cma: stack, static, another allocator */
    CMA_ERR_REQUEST_LIMIT = 5,            /* request over the per-request allocation limit */
    CMA_ERR_TOTAL_LIMIT = 6,              /* request would exceed the total allocation limit */
    CMA_ERR_OUT_OF_MEMORY = 7,            /* the kernel refused memory */
    CMA_ERR_INVALID_ALIGNMENT = 8,        /* alignment not a power of two, or too large */
    CMA_ERR_SIZE_OVERFLOW = 9,            /* count * size overflows */
    CMA_ERR_NULL_ARGUMENT = 10,           /* a required pointer argument was NULL */
    CMA_ERR_BUFFER_OVERFLOW = 11,         /* the block's canary was overwritten */
    CMA_ERR_OTHER = 12                    /* an error this header does not name yet */
};

/* The number of size classes reported by cma_get_extended_stats. */
#define CMA_NUM_CLASSES 96

/* Passed to cma_set_alloc_limit: no limit. */
#define CMA_NO_LIMIT ((size_t)-1)

/* Process-wide counters. Bytes are usable sizes (the size class, or whole
 * pages for large blocks), not requested sizes. */
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
    struct cma_stats basic;
    uint64_t large_allocations; /* blocks served by whole pages */
    uint64_t large_frees;
    size_t heaps;            /* thread heaps created (reused after threads exit) */
    size_t mapped_bytes;     /* address space mapped for blocks */
    size_t dirty_free_bytes; /* free pages not yet given back to the kernel */
    size_t metadata_bytes;   /* memory mapped for metadata */
    size_t num_classes;      /* CMA_NUM_CLASSES */
    struct cma_class_stats classes[CMA_NUM_CLASSES];
};

/* malloc: size bytes, or NULL (errno = ENOMEM) when memory or a limit runs out. */
void *cma_malloc(size_t size);

/* calloc: n * size zeroed bytes; NULL (ENOMEM) on overflow or when memory runs out. */
void *cma_calloc(size_t n, size_t size);

/* Resizes p, keeping its contents up to the smaller size. NULL p allocates.
 * Unlike glibc's realloc, size 0 returns a minimal block (p is freed).
 * On failure returns NULL (ENOMEM) and p is intact. */
void *cma_realloc(void *p, size_t size);

/* size bytes aligned to align (any power of two); NULL with EINVAL for an
 * alignment that is not a power of two, NULL with ENOMEM when memory runs out. */
void *cma_aligned_alloc(size_t align, size_t size);

/* Frees p (NULL is accepted). Misuse aborts with a "cma: " diagnostic. */
void cma_free(void *p);

/* Frees p and returns CMA_OK, or returns why p is not a live block
 * (CMA_ERR_DOUBLE_FREE, CMA_ERR_INTERIOR_POINTER, CMA_ERR_NOT_OURS, ...)
 * without changing anything. NULL returns CMA_OK. */
int cma_checked_free(void *p);

/* Overwrites the whole usable size of p with zeros, then frees it. */
void cma_bzero_and_free(void *p);

/* Frees each string of the NULL-terminated array, then the array itself.
 * NULL is accepted. */
void cma_free_double(char **array);

/* The usable size of the live block p (at least what was requested); 0 for
 * NULL. Aborts with a diagnostic when p is not a live cma block. */
size_t cma_block_size(const void *p);

/* Stores the usable size of p in *size and returns CMA_OK, or returns why p
 * is not a live block (CMA_ERR_NULL_ARGUMENT when size is NULL). */
int cma_checked_block_size(const void *p, size_t *size);

/* The allocator guard depth of the calling thread: the number of cma calls
 * under way on it, so 0 whenever it is outside cma (every path out of cma,
 * error paths included, brings it back). For tests. */
unsigned cma_guard_depth(void);

/* Bytes in use now, all threads together (usable sizes). */
size_t cma_alloc_size(void);

/* Failure injection: allocations larger than max_request, or that would take
 * the bytes in use above max_total, fail (NULL, ENOMEM) before anything
 * changes. CMA_NO_LIMIT lifts a limit. */
void cma_set_alloc_limit(size_t max_request, size_t max_total);

/* Fill *out; return CMA_OK, or CMA_ERR_NULL_ARGUMENT for NULL. */
int cma_get_stats(struct cma_stats *out);
int cma_get_extended_stats(struct cma_extended_stats *out);

/* Copies into new cma blocks (free them with cma_free or free). NULL with
 * ENOMEM when memory runs out; NULL with EINVAL for a NULL string.
 * cma_strndup copies at most n bytes and always terminates the copy.
 * cma_memdup(p, 0) returns a minimal block. */
char *cma_strdup(const char *s);
char *cma_strndup(const char *s, size_t n);
void *cma_memdup(const void *p, size_t n);

/* A static message for a cma_error code; "unknown cma error code" otherwise. */
const char *cma_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* CMA_H */
