/* The cma_arena_* API, function by function: create (with and without a
 * limit), malloc, calloc, aligned_alloc, realloc (in the arena, and a block
 * moved into it), statistics, the limit, cma_free / free / cma_block_size /
 * malloc_usable_size of arena blocks (also from another thread), reset,
 * destroy, and NULL or stale handles, which give error codes.
 *
 * With an argument it does one misuse and should die:
 *   free-after-destroy, free-after-reset, realloc-after-destroy. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cma.h"

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "arena.c:%d: check failed: %s\n", __LINE__, #cond); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

static struct cma_arena_stats stats_of(cma_arena *a) {
    struct cma_arena_stats s;
    CHECK(cma_arena_get_stats(a, &s) == CMA_OK);
    return s;
}

static int64_t blocks_in_use(void) {
    struct cma_stats s;
    CHECK(cma_stats_get(&s) == CMA_OK);
    return (int64_t)s.allocations - (int64_t)s.frees;
}

static int filled(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

struct batch {
    void **blocks;
    size_t n;
};

static void *free_batch(void *arg) {
    struct batch *b = arg;
    for (size_t i = 0; i < b->n; i++) free(b->blocks[i]);
    return NULL;
}

static int misuse(const char *what) {
    cma_arena *a;
    CHECK(cma_arena_create(&a, CMA_NO_LIMIT) == CMA_OK);
    char *p = cma_arena_malloc(a, 40);
    CHECK(p != NULL);
    strcpy(p, "request data");
    if (strcmp(what, "free-after-reset") == 0) {
        CHECK(cma_arena_reset(a) == CMA_OK);
    } else {
        CHECK(cma_arena_destroy(a) == CMA_OK);
    }
    fprintf(stderr, "MISUSE-ADDR=%p\n", (void *)p);
    if (strcmp(what, "realloc-after-destroy") == 0) {
        p = realloc(p, 100);
    } else {
        cma_free(p);
    }
    fprintf(stderr, "MISUSE-SURVIVED\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1) return misuse(argv[1]);
    int64_t before = blocks_in_use();

    /* NULL and invalid arguments: error codes, never a crash. */
    CHECK(cma_arena_create(NULL, CMA_NO_LIMIT) == CMA_ERR_NULL_ARGUMENT);
    errno = 0;
    CHECK(cma_arena_malloc(NULL, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(cma_arena_calloc(NULL, 1, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(cma_arena_realloc(NULL, NULL, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(cma_arena_aligned_alloc(NULL, 64, 10) == NULL && errno == EINVAL);
    CHECK(cma_arena_reset(NULL) == CMA_ERR_NULL_ARGUMENT);
    CHECK(cma_arena_destroy(NULL) == CMA_ERR_NULL_ARGUMENT);
    struct cma_arena_stats st;
    CHECK(cma_arena_get_stats(NULL, &st) == CMA_ERR_NULL_ARGUMENT);
    cma_arena *bogus = (cma_arena *)(uintptr_t)0x12345678;
    errno = 0;
    CHECK(cma_arena_malloc(bogus, 10) == NULL && errno == EINVAL);
    CHECK(cma_arena_reset(bogus) == CMA_ERR_INVALID_ARGUMENT);
    CHECK(cma_arena_get_stats(bogus, &st) == CMA_ERR_INVALID_ARGUMENT);
    CHECK(cma_arena_destroy(bogus) == CMA_ERR_INVALID_ARGUMENT);

    cma_arena *a;
    CHECK(cma_arena_create(&a, CMA_NO_LIMIT) == CMA_OK && a != NULL);
    CHECK(cma_arena_get_stats(a, NULL) == CMA_ERR_NULL_ARGUMENT);
    st = stats_of(a);
    CHECK(st.allocations == 0 && st.bytes_in_use == 0 && st.byte_limit == CMA_NO_LIMIT);

    /* malloc, calloc, aligned_alloc. */
    unsigned char *m = cma_arena_malloc(a, 100);
    CHECK(m != NULL && ((uintptr_t)m & 15) == 0);
    memset(m, 0xab, 100);
    unsigned char *c = cma_arena_calloc(a, 50, 20);
    CHECK(c != NULL && filled(c, 1000, 0));
    errno = 0;
    CHECK(cma_arena_calloc(a, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    unsigned char *al = cma_arena_aligned_alloc(a, 4096, 300);
    CHECK(al != NULL && ((uintptr_t)al & 4095) == 0);
    errno = 0;
    CHECK(cma_arena_aligned_alloc(a, 24, 300) == NULL && errno == EINVAL);
    unsigned char *big = cma_arena_malloc(a, 3 << 20);
    CHECK(big != NULL);
    memset(big, 0x5c, 3 << 20);
    CHECK(cma_block_size(m) >= 100 && malloc_usable_size(m) >= 100);
    st = stats_of(a);
    CHECK(st.allocations == 4 && st.frees == 0 && st.blocks_in_use == 4);
    CHECK(st.bytes_in_use >= 100 + 1000 + 300 + (3 << 20) && st.peak_bytes_in_use == st.bytes_in_use);
    CHECK(blocks_in_use() == before + 4);

    /* realloc in the arena keeps the contents and stays in it. */
    m = cma_arena_realloc(a, m, 5000);
    CHECK(m != NULL && filled(m, 100, 0xab));
    m = cma_arena_realloc(a, m, 300000);
    CHECK(m != NULL && filled(m, 100, 0xab));
    st = stats_of(a);
    CHECK(st.blocks_in_use == 4);
    unsigned char *fresh = cma_arena_realloc(a, NULL, 64);
    CHECK(fresh != NULL);
    /* A block of the thread's heap moves into the arena. */
    unsigned char *outside = malloc(30);
    memset(outside, 7, 30);
    unsigned char *moved = cma_arena_realloc(a, outside, 60);
    CHECK(moved != NULL && filled(moved, 30, 7));
    st = stats_of(a);
    CHECK(st.blocks_in_use == 6);

    /* Blocks freed one by one through cma_free and free. */
    cma_free(fresh);
    free(moved);
    cma_free(c);
    free(big);
    st = stats_of(a);
    CHECK(st.blocks_in_use == 2 && st.frees == st.allocations - 2);
    CHECK(cma_checked_free(c) == CMA_ERR_DOUBLE_FREE);

    /* Blocks freed by another thread reach the arena's figures. */
    enum { N = 3000 };
    static void *blocks[N];
    for (size_t i = 0; i < N; i++) {
        blocks[i] = cma_arena_malloc(a, 16 + i % 200);
        CHECK(blocks[i] != NULL);
    }
    struct batch b = {blocks, N};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_batch, &b) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    st = stats_of(a);
    CHECK(st.blocks_in_use == 2);
    /* glibc keeps blocks of its own for the thread it made (TLS): count
     * from here. */
    before = blocks_in_use() - 2;

    /* reset: everything at once; the arena stays usable. */
    uint64_t peak = st.peak_bytes_in_use;
    for (size_t i = 0; i < N; i++) CHECK(cma_arena_malloc(a, 8 + i % 500) != NULL);
    CHECK(cma_arena_malloc(a, 1 << 20) != NULL);
    CHECK(blocks_in_use() == before + 2 + N + 1);
    CHECK(cma_arena_reset(a) == CMA_OK);
    st = stats_of(a);
    CHECK(st.blocks_in_use == 0 && st.bytes_in_use == 0 && st.frees == st.allocations);
    CHECK(st.peak_bytes_in_use >= peak);
    CHECK(blocks_in_use() == before);
    CHECK(cma_arena_malloc(a, 10) != NULL);

    /* The limit: a request past it fails, and nothing changes. */
    cma_arena *lim;
    CHECK(cma_arena_create(&lim, 10000) == CMA_OK);
    CHECK(stats_of(lim).byte_limit == 10000);
    char *kept = cma_arena_malloc(lim, 4000);
    CHECK(kept != NULL);
    memset(kept, 1, 4000);
    errno = 0;
    CHECK(cma_arena_malloc(lim, 8000) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(cma_arena_realloc(lim, kept, 20000) == NULL && errno == ENOMEM);
    CHECK(filled((unsigned char *)kept, 4000, 1));
    CHECK(stats_of(lim).blocks_in_use == 1);
    CHECK(cma_arena_malloc(lim, 4000) != NULL);

    /* destroy: everything at once; the handles are dead. */
    CHECK(cma_arena_destroy(lim) == CMA_OK);
    CHECK(cma_arena_destroy(a) == CMA_OK);
    CHECK(blocks_in_use() == before);
    CHECK(cma_arena_destroy(a) == CMA_ERR_INVALID_ARGUMENT);
    CHECK(cma_arena_reset(a) == CMA_ERR_INVALID_ARGUMENT);
    CHECK(cma_arena_get_stats(a, &st) == CMA_ERR_INVALID_ARGUMENT);
    errno = 0;
    CHECK(cma_arena_malloc(a, 10) == NULL && errno == EINVAL);
    /* A new arena may take the same entry: the old handle stays dead. */
    cma_arena *again;
    CHECK(cma_arena_create(&again, CMA_NO_LIMIT) == CMA_OK);
    CHECK(cma_arena_malloc(a, 10) == NULL);
    CHECK(cma_arena_destroy(again) == CMA_OK);
    CHECK(cma_guard_depth() == 0);
    CHECK(strcmp(cma_strerror(CMA_ERR_TOO_MANY_ARENAS), "too many arenas are live at once") == 0);

    printf("arena: ok\n");
    return 0;
}
