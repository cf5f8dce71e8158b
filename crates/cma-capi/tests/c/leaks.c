/* The leak API (cma_get_leak_summary, cma_get_leak_entries,
 * cma_report_leaks, cma_untrack_leak, cma_track_leak) with the registry off:
 * the summary (from the counters) and the entries (from a walk of the slab
 * bitmaps and page blocks) agree with each other and with the blocks this
 * program holds; untracked blocks are counted as ignored and left out; a
 * freed untracked block's address, handed out again, is tracked again;
 * another thread's free is seen; backend blocks count too; errors.
 *
 * Usage: leaks [report]. Prints "leaks: ok" and exits 0, or names every
 * failed check and exits 1. "report" allocates three known blocks, calls
 * cma_report_leaks and exits 0 (the test reads stderr). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cma.h"

static int failures;
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "leaks.c:%d: CHECK(%s) failed\n", __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* Keeps the compiler from seeing through a size. */
static volatile size_t opaque = 0;

static cma_leak_entry entries[1 << 16];

/* The live entries now; aborts the checks if they do not fit. */
static size_t take_entries(void) {
    size_t n = 0;
    CHECK(cma_get_leak_entries(NULL, 0, &n) == CMA_OK);
    size_t count = 0;
    CHECK(cma_get_leak_entries(entries, sizeof entries / sizeof entries[0], &count) == CMA_OK);
    CHECK(count < sizeof entries / sizeof entries[0]);
    return count;
}

/* How many times p is listed, and with what size. */
static int listed(void *p, size_t count, size_t *size) {
    int times = 0;
    for (size_t i = 0; i < count; i++) {
        if (entries[i].memory_pointer == p) {
            times++;
            if (size) *size = entries[i].size;
        }
    }
    return times;
}

static void *free_it(void *p) {
    free(p);
    return NULL;
}

/* ----- a test backend: blocks from a static arena, 16 bytes each header ----- */
static unsigned char arena[1 << 16];
static size_t arena_used;
static void *b_allocate(size_t size, void *u) {
    (void)u;
    size_t need = (size + 16 + 15) & ~(size_t)15;
    if (arena_used + need > sizeof arena) return NULL;
    unsigned char *p = arena + arena_used;
    arena_used += need;
    *(size_t *)p = size;
    return p + 16;
}
static void b_deallocate(void *p, void *u) { (void)p, (void)u; }
static size_t b_size(const void *p, void *u) {
    (void)u;
    return *(const size_t *)((const unsigned char *)p - 16);
}
static bool b_owns(const void *p, void *u) {
    (void)u;
    return (const unsigned char *)p >= arena && (const unsigned char *)p < arena + sizeof arena;
}

static void test_cma_blocks(void) {
    cma_leak_summary s0, s;
    CHECK(cma_get_leak_summary(&s0) == CMA_OK);
    size_t n0 = take_entries();
    /* The walk and the counters see the same heap. */
    CHECK(n0 == s0.live_block_count);
    CHECK(s0.ignored_block_count == 0 && s0.ignored_bytes == 0);

    enum { N = 10 };
    void *small[N];
    for (int i = 0; i < N; i++) small[i] = malloc(100 + opaque);
    void *large = malloc(300000 + opaque);
    void *huge = malloc((5 << 20) + opaque);
    void *empty = malloc(0 + opaque); /* a zero-byte block: live too */
    CHECK(cma_get_leak_summary(&s) == CMA_OK);
    CHECK(s.live_block_count == s0.live_block_count + N + 3);
    CHECK(s.live_bytes >= s0.live_bytes + N * 100 + 300000 + (5 << 20));
    size_t n = take_entries();
    CHECK(n == s.live_block_count);
    for (int i = 0; i < N; i++) {
        size_t size = 0;
        CHECK(listed(small[i], n, &size) == 1);
        CHECK(size == cma_block_size(small[i]));
    }
    size_t size = 0;
    CHECK(listed(large, n, &size) == 1 && size == cma_block_size(large));
    CHECK(listed(huge, n, &size) == 1 && size == cma_block_size(huge));
    CHECK(listed(empty, n, &size) == 1 && size == cma_block_size(empty));

    /* A buffer too small still gets the full count, and the first entries. */
    cma_leak_entry two[2];
    size_t count = 0;
    CHECK(cma_get_leak_entries(two, 2, &count) == CMA_OK);
    CHECK(count == n);
    CHECK(two[0].memory_pointer == entries[0].memory_pointer);

    /* Untracked: ignored in the summary, left out of the entries. */
    CHECK(cma_untrack_leak(small[0]) == CMA_OK);
    CHECK(cma_untrack_leak(small[1]) == CMA_OK);
    CHECK(cma_untrack_leak(small[1]) == CMA_OK); /* twice is once */
    CHECK(cma_untrack_leak(large) == CMA_OK);
    cma_leak_summary u;
    CHECK(cma_get_leak_summary(&u) == CMA_OK);
    CHECK(u.ignored_block_count == 3);
    CHECK(u.live_block_count == s.live_block_count - 3);
    CHECK(u.ignored_bytes >= 2 * 100 + 300000);
    CHECK(u.live_bytes + u.ignored_bytes == s.live_bytes);
    n = take_entries();
    CHECK(n == u.live_block_count);
    CHECK(listed(small[0], n, NULL) == 0 && listed(small[1], n, NULL) == 0);
    CHECK(listed(large, n, NULL) == 0 && listed(small[2], n, NULL) == 1);

    /* Tracked again. */
    CHECK(cma_track_leak(small[1]) == CMA_OK);
    CHECK(cma_track_leak(small[2]) == CMA_OK); /* never untracked: fine */
    CHECK(cma_get_leak_summary(&u) == CMA_OK);
    CHECK(u.ignored_block_count == 2);
    n = take_entries();
    CHECK(listed(small[1], n, NULL) == 1);

    /* An untracked block freed (the free fast path never looks at the
     * set): no longer counted as ignored, nor live. */
    free(small[0]);
    CHECK(cma_get_leak_summary(&u) == CMA_OK);
    CHECK(u.ignored_block_count == 1);
    CHECK(u.live_block_count == s.live_block_count - 2);
    /* An untracked block freed, its address handed out again before
     * anything looked at the set: the new block is an ordinary, tracked one
     * (the refill that hands the slot out drops the address). */
    CHECK(cma_untrack_leak(small[3]) == CMA_OK);
    void *gone = small[3];
    free(small[3]);
    void *again = NULL;
    for (int i = 0; i < 200000 && again == NULL; i++) {
        void *q = malloc(100 + opaque);
        if (q == gone)
            again = q;
        else
            free(q);
    }
    CHECK(again != NULL);
    if (again) {
        CHECK(cma_get_leak_summary(&u) == CMA_OK);
        CHECK(u.ignored_block_count == 1);
        n = take_entries();
        CHECK(listed(again, n, NULL) == 1);
        free(again);
    }

    /* Another thread's free of a block is seen before the owner collects
     * it. */
    pthread_t t;
    pthread_create(&t, NULL, free_it, small[4]);
    pthread_join(t, NULL);
    n = take_entries();
    CHECK(listed(small[4], n, NULL) == 0);
    CHECK(cma_get_leak_summary(&u) == CMA_OK);
    CHECK(n == u.live_block_count);

    /* Errors. */
    int on_stack = 0;
    CHECK(cma_untrack_leak(NULL) == CMA_ERR_NULL_ARGUMENT);
    CHECK(cma_track_leak(NULL) == CMA_ERR_NULL_ARGUMENT);
    CHECK(cma_untrack_leak(&on_stack) == CMA_ERR_NOT_OURS);
    CHECK(cma_untrack_leak((char *)small[5] + 8) == CMA_ERR_INTERIOR_POINTER);
    int freed = cma_untrack_leak(small[4]);
    CHECK(freed == CMA_ERR_DOUBLE_FREE || freed == CMA_ERR_DOUBLE_FREE_OTHER_THREAD);
    CHECK(cma_track_leak(small[4]) == freed);
    CHECK(cma_untrack_leak(small[6] = malloc(7 + opaque)) == CMA_OK);
    free(small[6]);
    CHECK(cma_untrack_leak(small[6]) == CMA_ERR_DOUBLE_FREE);
    CHECK(cma_get_leak_summary(NULL) == CMA_ERR_NULL_ARGUMENT);
    CHECK(cma_get_leak_entries(NULL, 4, &count) == CMA_ERR_NULL_ARGUMENT);
    CHECK(cma_get_leak_entries(entries, 4, NULL) == CMA_ERR_NULL_ARGUMENT);
    CHECK(cma_guard_depth() == 0);

    CHECK(cma_track_leak(large) == CMA_OK);
    free(large);
    free(huge);
    free(empty);
    for (int i = 1; i < N; i++)
        if (i != 3 && i != 4 && i != 6) free(small[i]);
    CHECK(cma_get_leak_summary(&u) == CMA_OK);
    CHECK(u.ignored_block_count == 0);
}

static void test_backend_blocks(void) {
    cma_backend_hooks h;
    memset(&h, 0, sizeof h);
    h.allocate = b_allocate;
    h.deallocate = b_deallocate;
    h.get_allocation_size = b_size;
    h.owns_allocation = b_owns;
    cma_leak_summary s0, s;
    CHECK(cma_get_leak_summary(&s0) == CMA_OK);
    CHECK(cma_set_backend(&h) == CMA_OK);
    char *a = cma_malloc(40), *b = cma_malloc(24);
    CHECK(b_owns(a, NULL) && b_owns(b, NULL));
    CHECK(cma_clear_backend() == CMA_OK);
    CHECK(cma_get_leak_summary(&s) == CMA_OK);
    CHECK(s.live_block_count == s0.live_block_count + 2);
    CHECK(s.live_bytes == s0.live_bytes + 64);
    size_t n = take_entries();
    CHECK(n == s.live_block_count);
    size_t size = 0;
    CHECK(listed(a, n, &size) == 1 && size == 40);
    CHECK(cma_untrack_leak(b) == CMA_OK);
    CHECK(cma_get_leak_summary(&s) == CMA_OK);
    CHECK(s.ignored_block_count == 1 && s.ignored_bytes == 24);
    n = take_entries();
    CHECK(listed(b, n, NULL) == 0);
    cma_free(a);
    cma_free(b);
    CHECK(cma_get_leak_summary(&s) == CMA_OK);
    CHECK(s.live_block_count == s0.live_block_count && s.ignored_block_count == 0);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "report") == 0) {
        void *a = malloc(1000 + opaque), *b = malloc(2000 + opaque), *c = malloc(3000 + opaque);
        CHECK(cma_untrack_leak(c) == CMA_OK);
        printf("blocks %p %p %p\n", a, b, c);
        fflush(stdout);
        CHECK(cma_report_leaks() == CMA_OK);
        return failures != 0;
    }
    test_cma_blocks();
    test_backend_blocks();
    if (failures) {
        fprintf(stderr, "leaks: %d checks failed\n", failures);
        return 1;
    }
    printf("leaks: ok\n");
    return 0;
}
