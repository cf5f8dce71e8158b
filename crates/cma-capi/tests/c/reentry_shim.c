/* Preloaded before libcma: counts the calls of the malloc family made while
 * cma is inside one of its own calls on the same thread (its guard depth is
 * not zero), which would be cma allocating through itself (the unwinder
 * that takes a sampled block's stacks, for one). Forwards to libcma's
 * cma_aligned_alloc, cma_realloc (of a block) and cma_free, which reach
 * the engine without going through the malloc, calloc and realloc this
 * shim interposes (cma_malloc and cma_calloc call them), and prints the
 * count at exit. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void *cma_aligned_alloc(size_t, size_t);
void *cma_realloc(void *, size_t);
void cma_free(void *);
unsigned cma_guard_depth(void);

static unsigned long reentered, calls;

static void check(void) {
    __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
    if (cma_guard_depth() != 0)
        __atomic_fetch_add(&reentered, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n) { check(); return cma_aligned_alloc(16, n); }
void *calloc(size_t c, size_t n) {
    check();
    if (n && c > (size_t)-1 / n)
        return NULL;
    void *p = cma_aligned_alloc(16, c * n);
    if (p)
        memset(p, 0, c * n);
    return p;
}
void *realloc(void *p, size_t n) {
    check();
    return p ? cma_realloc(p, n) : cma_aligned_alloc(16, n);
}
void free(void *p) { check(); cma_free(p); }

__attribute__((destructor)) static void report(void) {
    char line[96];
    int n = snprintf(line, sizeof line, "CALLS=%lu REENTERED=%lu\n", calls, reentered);
    write(2, line, n);
}
