/* The original system's cma_* API, function by function, as its programs
 * call it: the exact prototypes (declared again below: a C compiler refuses
 * a redeclaration that does not match cma.h), limits, statistics, block
 * sizes, checked frees, the thread-safety and logging switches, and backend
 * hooks with blocks of cma and of several backends live at once, set,
 * replaced and cleared, bzero through a backend.
 *
 * Usage: original_api [neither-owns]. Prints "original_api: ok" and exits
 * 0, or names every failed check and exits 1. "neither-owns" frees, with a
 * backend set, a pointer that neither cma nor the backend owns: cma must
 * report an invalid free and abort.
 *
 * Run with CMA_OPTIONS=alloc_log_fd=9 (the log test opens a file there). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cma.h"

/* The original's prototypes, word for word. */
void    *cma_malloc(size_t size);
void    *cma_realloc(void *ptr, size_t size);
void    *cma_aligned_alloc(size_t alignment, size_t size);
void     cma_free(void *ptr);
void     cma_bzero_and_free(void *ptr);
int32_t  cma_checked_free(void *ptr);
void     cma_free_double(char **content);
size_t   cma_block_size(const void *ptr);
int32_t  cma_checked_block_size(const void *ptr, size_t *block_size);
size_t   cma_alloc_size(const void *ptr);
int32_t  cma_set_alloc_limit(size_t limit);
void     cma_set_alloc_logging(bool enable);
bool     cma_get_alloc_logging(void);
int32_t  cma_set_thread_safety(bool enable);
int32_t  cma_enable_thread_safety(void);
int32_t  cma_disable_thread_safety(void);
bool     cma_is_thread_safe_enabled(void);
int32_t  cma_get_stats(size_t *allocation_count, size_t *free_count);
int32_t  cma_get_extended_stats(size_t *allocation_count, size_t *free_count,
                                size_t *current_bytes, size_t *peak_bytes);
int32_t  cma_set_backend(const cma_backend_hooks *hooks);
int32_t  cma_clear_backend(void);
bool     cma_backend_is_enabled(void);

static int failures;
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "original_api.c:%d: CHECK(%s) failed\n", __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

/* Keeps the compiler from seeing through a size. */
static size_t opaque(size_t n) {
    volatile size_t v = n;
    return v;
}

static size_t allocations(void) {
    size_t a = 0, f = 0;
    CHECK(cma_get_stats(&a, &f) == CMA_OK);
    return a;
}

static size_t frees(void) {
    size_t a = 0, f = 0;
    CHECK(cma_get_stats(&a, &f) == CMA_OK);
    return f;
}

/* ----- a test backend: blocks from a static arena, each behind a header ----- */

#define ARENA_SIZE (1 << 20)
#define MAGIC 0xB10C

struct header {
    size_t size;
    unsigned magic; /* MAGIC while live, 0 once given back */
    unsigned tag;   /* the backend's user_data tag that handed it out */
};

struct backend_state {
    unsigned tag;
    unsigned allocations, reallocations, deallocations, aligned_allocations;
    bool last_freed_was_zero; /* every byte of the last block given back was 0 */
};

static _Alignas(64) unsigned char arena[ARENA_SIZE];
static size_t arena_used;

static struct header *header_of(const void *p) {
    return (struct header *)((const unsigned char *)p - 64);
}

static bool in_arena(const void *p) {
    const unsigned char *c = p;
    return c >= arena + 64 && c < arena + ARENA_SIZE;
}

static void *arena_take(size_t size, size_t align, struct backend_state *s) {
    if (align < 64)
        align = 64;
    uintptr_t base = (uintptr_t)arena;
    size_t start = (base + arena_used + 64 + align - 1) / align * align - base;
    if (start + size > ARENA_SIZE)
        return NULL;
    arena_used = start + size;
    struct header *h = (struct header *)(arena + start - 64);
    h->size = size;
    h->magic = MAGIC;
    h->tag = s->tag;
    return arena + start;
}

static void *t_allocate(size_t size, void *user_data) {
    struct backend_state *s = user_data;
    s->allocations++;
    return arena_take(size, 64, s);
}

static void *t_aligned_allocate(size_t alignment, size_t size, void *user_data) {
    struct backend_state *s = user_data;
    s->aligned_allocations++;
    return arena_take(size, alignment, s);
}

static void t_deallocate(void *p, void *user_data) {
    struct backend_state *s = user_data;
    struct header *h = header_of(p);
    bool zero = true;
    for (size_t i = 0; i < h->size; i++)
        zero = zero && ((unsigned char *)p)[i] == 0;
    s->last_freed_was_zero = zero;
    h->magic = 0;
    s->deallocations++;
}

static void *t_reallocate(void *p, size_t size, void *user_data) {
    struct backend_state *s = user_data;
    s->reallocations++;
    void *q = arena_take(size, 64, s);
    if (!q)
        return NULL;
    size_t old = header_of(p)->size;
    memcpy(q, p, old < size ? old : size);
    header_of(p)->magic = 0;
    return q;
}

static size_t t_size(const void *p, void *user_data) {
    (void)user_data;
    return header_of(p)->size;
}

static bool t_owns(const void *p, void *user_data) {
    struct backend_state *s = user_data;
    return in_arena(p) && header_of(p)->magic == MAGIC && header_of(p)->tag == s->tag;
}

static cma_backend_hooks hooks_for(struct backend_state *s) {
    cma_backend_hooks h;
    memset(&h, 0, sizeof h);
    h.allocate = t_allocate;
    h.reallocate = t_reallocate;
    h.deallocate = t_deallocate;
    h.aligned_allocate = t_aligned_allocate;
    h.get_allocation_size = t_size;
    h.owns_allocation = t_owns;
    h.user_data = s;
    return h;
}

/* ----- the tests ----- */

static void test_limits(void) {
    CHECK(cma_set_alloc_limit(1000) == CMA_OK);
    errno = 0;
    CHECK(cma_malloc(opaque(2000)) == NULL && errno == ENOMEM);
    void *p = cma_malloc(500);
    CHECK(p != NULL);
    errno = 0;
    CHECK(cma_realloc(p, opaque(5000)) == NULL && errno == ENOMEM);
    CHECK(cma_block_size(p) >= 500); /* intact */
    CHECK(cma_set_alloc_limit(0) == CMA_OK); /* 0: no limit */
    void *q = cma_realloc(p, 5000);
    CHECK(q != NULL);
    cma_free(q);
}

static void test_stats(void) {
    size_t a0 = 0, f0 = 0, cur0 = 0, peak0 = 0;
    CHECK(cma_get_extended_stats(&a0, &f0, &cur0, &peak0) == CMA_OK);
    CHECK(peak0 >= cur0);
    void *p = cma_malloc(100), *q = cma_malloc(3000), *r = cma_malloc(50000);
    cma_free(q);
    size_t a1 = 0, f1 = 0, cur1 = 0, peak1 = 0;
    CHECK(cma_get_extended_stats(&a1, &f1, &cur1, &peak1) == CMA_OK);
    CHECK(a1 == a0 + 3);
    CHECK(f1 == f0 + 1);
    CHECK(cur1 >= cur0 + 100 + 50000);
    CHECK(peak1 >= cur1 && peak1 >= cur0 + 100 + 3000 + 50000);
    /* NULL skips a figure, as in the original; all NULL is an error. */
    size_t only_frees = 0;
    CHECK(cma_get_stats(NULL, &only_frees) == CMA_OK && only_frees == f1);
    size_t only_current = 0;
    CHECK(cma_get_extended_stats(NULL, NULL, &only_current, NULL) == CMA_OK && only_current == cur1);
    CHECK(cma_get_stats(NULL, NULL) == CMA_ERR_NULL_ARGUMENT);
    CHECK(cma_get_extended_stats(NULL, NULL, NULL, NULL) == CMA_ERR_NULL_ARGUMENT);
    cma_free(p);
    cma_free(r);
    CHECK(allocations() - frees() == a0 - f0);
}

static void test_block_sizes(void) {
    char *p = cma_malloc(100);
    CHECK(p != NULL);
    CHECK(cma_block_size(p) >= 100);
    CHECK(cma_alloc_size(p) == cma_block_size(p));
    size_t bs = 1;
    CHECK(cma_checked_block_size(p, &bs) == CMA_OK && bs == cma_block_size(p));
    /* NULL and invalid inputs: an error code, or 0 with EINVAL; no crash. */
    errno = 0;
    CHECK(cma_block_size(NULL) == 0 && errno == EINVAL);
    errno = 0;
    CHECK(cma_alloc_size(NULL) == 0 && errno == EINVAL);
    int local;
    errno = 0;
    CHECK(cma_block_size(&local) == 0 && errno == EINVAL);
    errno = 0;
    CHECK(cma_alloc_size(p + 8) == 0 && errno == EINVAL);
    CHECK(cma_checked_block_size(p, NULL) == CMA_ERR_NULL_ARGUMENT);
    bs = 1;
    CHECK(cma_checked_block_size(NULL, &bs) == CMA_ERR_NULL_ARGUMENT && bs == 0);
    bs = 1;
    CHECK(cma_checked_block_size(p + 1, &bs) == CMA_ERR_INTERIOR_POINTER && bs == 0);
    CHECK(cma_checked_block_size(&local, &bs) == CMA_ERR_NOT_OURS);
    cma_free(p);
    CHECK(cma_checked_block_size(p, &bs) == CMA_ERR_DOUBLE_FREE);
    errno = 0;
    CHECK(cma_block_size(p) == 0 && errno == EINVAL);
}

static void test_checked_frees(void) {
    char *p = cma_malloc(64);
    int local;
    CHECK(cma_checked_free(p + 8) == CMA_ERR_INTERIOR_POINTER);
    CHECK(cma_checked_free(&local) == CMA_ERR_NOT_OURS);
    CHECK(cma_checked_free(p) == CMA_OK);
    CHECK(cma_checked_free(p) == CMA_ERR_DOUBLE_FREE);
    CHECK(cma_checked_free(NULL) == CMA_OK);
    char **list = cma_malloc(3 * sizeof(char *));
    list[0] = cma_malloc(10);
    list[1] = cma_malloc(20);
    list[2] = NULL;
    size_t f = frees();
    cma_free_double(list);
    CHECK(frees() == f + 3);
    cma_free_double(NULL);
    void *a = cma_aligned_alloc(256, 100);
    CHECK(a != NULL && (uintptr_t)a % 256 == 0);
    errno = 0;
    CHECK(cma_aligned_alloc(48, 100) == NULL && errno == EINVAL);
    cma_bzero_and_free(a);
    cma_bzero_and_free(NULL);
}

static void test_switches(void) {
    CHECK(cma_is_thread_safe_enabled());
    CHECK(cma_disable_thread_safety() == CMA_OK);
    CHECK(cma_is_thread_safe_enabled()); /* nothing to turn off */
    CHECK(cma_set_thread_safety(false) == CMA_OK);
    CHECK(cma_is_thread_safe_enabled());
    CHECK(cma_enable_thread_safety() == CMA_OK);
    CHECK(cma_set_thread_safety(true) == CMA_OK);
    CHECK(cma_is_thread_safe_enabled());
}

static void test_logging(void) {
    char path[] = "/tmp/cma-original-api-log.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && dup2(fd, 9) == 9);
    CHECK(!cma_get_alloc_logging());
    void *quiet = cma_malloc(11); /* not logged */
    cma_set_alloc_logging(true);
    CHECK(cma_get_alloc_logging());
    void *p = cma_malloc(123);
    void *q = cma_realloc(p, 4567);
    cma_free(q);
    cma_set_alloc_logging(false);
    CHECK(!cma_get_alloc_logging());
    cma_free(quiet); /* not logged */
    char log[4096] = {0};
    CHECK(pread(fd, log, sizeof log - 1, 0) > 0);
    char want[128];
    snprintf(want, sizeof want, "cma-log: cma_malloc ptr=%p size=123 tid=%ld\n", p, (long)gettid());
    CHECK(strstr(log, want) != NULL);
    snprintf(want, sizeof want, "cma-log: cma_realloc ptr=%p size=4567 old=%p tid=", q, p);
    CHECK(strstr(log, want) != NULL);
    snprintf(want, sizeof want, "cma-log: cma_free ptr=%p size=", q);
    CHECK(strstr(log, want) != NULL);
    CHECK(strstr(log, "size=11 ") == NULL);
    int lines = 0;
    for (char *c = log; *c; c++)
        lines += *c == '\n';
    CHECK(lines == 3);
    if (failures)
        fprintf(stderr, "the log:\n%s", log);
    close(9);
    close(fd);
    unlink(path);
}

static void test_backend(void) {
    struct backend_state s1 = {.tag = 1}, s2 = {.tag = 2};
    cma_backend_hooks h1 = hooks_for(&s1), h2 = hooks_for(&s2);
    size_t a0 = allocations(), f0 = frees();

    CHECK(!cma_backend_is_enabled());
    char *c1 = cma_malloc(100); /* cma's, before any backend */
    memset(c1, 'c', 100);
    CHECK(!in_arena(c1));

    CHECK(cma_set_backend(&h1) == CMA_OK);
    CHECK(cma_backend_is_enabled());
    char *b1 = cma_malloc(200);
    CHECK(in_arena(b1) && s1.allocations == 1);
    memset(b1, 'b', 200);
    int *z = cma_calloc(10, sizeof(int));
    CHECK(in_arena(z) && z[0] == 0 && z[9] == 0);
    char *dup = cma_strdup("from the backend");
    CHECK(in_arena(dup) && strcmp(dup, "from the backend") == 0);
    void *al = cma_aligned_alloc(1024, 10);
    CHECK(in_arena(al) && (uintptr_t)al % 1024 == 0 && s1.aligned_allocations == 1);
    CHECK(cma_block_size(b1) == 200 && cma_alloc_size(b1) == 200);
    size_t bs = 0;
    CHECK(cma_checked_block_size(b1, &bs) == CMA_OK && bs == 200);
    CHECK(cma_block_size(c1) >= 100); /* cma still answers for its block */

    /* Counters cover backend blocks. */
    size_t cur = 0;
    CHECK(cma_get_extended_stats(NULL, NULL, &cur, NULL) == CMA_OK);
    CHECK(allocations() == a0 + 5);
    struct cma_extended_stats ext;
    CHECK(cma_stats_get_extended(&ext) == CMA_OK);
    CHECK(ext.backend.allocations == s1.allocations + s1.aligned_allocations);
    CHECK(ext.backend.bytes_in_use == 200 + 40 + 17 + 10);
    CHECK(cur == ext.basic.bytes_in_use && cur >= ext.backend.bytes_in_use + 100);
    CHECK(cma_bytes_in_use() == cur);

    /* realloc: a cma block stays with cma, a backend block with its backend. */
    char *c1b = cma_realloc(c1, 5000);
    CHECK(c1b != NULL && !in_arena(c1b) && c1b[99] == 'c');
    CHECK(s1.reallocations == 0);
    char *b1b = cma_realloc(b1, 300);
    CHECK(in_arena(b1b) && b1b[199] == 'b' && s1.reallocations == 1);
    CHECK(cma_block_size(b1b) == 300);
    unsigned dealloc0 = s1.deallocations;
    cma_free(c1b); /* cma's */
    CHECK(s1.deallocations == dealloc0);

    /* Limits cover backend requests and backend bytes. */
    CHECK(cma_set_alloc_limit(1000) == CMA_OK);
    unsigned calls = s1.allocations;
    errno = 0;
    CHECK(cma_malloc(opaque(2000)) == NULL && errno == ENOMEM && s1.allocations == calls);
    CHECK(cma_set_alloc_limit(0) == CMA_OK);
    CHECK(cma_stats_get_extended(&ext) == CMA_OK);
    uint64_t cma_only = ext.basic.bytes_in_use - ext.backend.bytes_in_use;
    /* Room for 250 more bytes than cma's own: the backend's 367 take it. */
    CHECK(cma_limits_set(CMA_NO_LIMIT, cma_only + 250) == CMA_OK);
    CHECK(cma_clear_backend() == CMA_OK);
    errno = 0;
    CHECK(cma_malloc(opaque(64)) == NULL && errno == ENOMEM);
    CHECK(cma_limits_set(CMA_NO_LIMIT, CMA_NO_LIMIT) == CMA_OK);

    /* Cleared: new blocks are cma's; the backend's still go back to it. */
    CHECK(!cma_backend_is_enabled());
    char *c2 = cma_malloc(50);
    CHECK(c2 != NULL && !in_arena(c2));
    cma_free(b1b);
    CHECK(s1.deallocations == dealloc0 + 1);

    /* A second backend while the first still holds blocks. */
    CHECK(cma_set_backend(&h2) == CMA_OK);
    char *x = cma_malloc(77);
    CHECK(in_arena(x) && s2.allocations == 1 && header_of(x)->tag == 2);
    memset(x, 0xAB, 77);
    cma_bzero_and_free(x); /* wiped whole, then handed back */
    CHECK(s2.deallocations == 1 && s2.last_freed_was_zero);
    memset(dup, 0xCD, 17);
    cma_bzero_and_free(dup); /* backend 1's, backend 2 current */
    CHECK(s1.deallocations == dealloc0 + 2 && s1.last_freed_was_zero);
    CHECK(cma_checked_free(z) == CMA_OK);
    CHECK(s1.deallocations == dealloc0 + 3);
    CHECK(cma_checked_free(z) == CMA_ERR_NOT_OURS); /* no one owns it now */
    int local;
    CHECK(cma_checked_free(&local) == CMA_ERR_NOT_OURS);
    bs = 1;
    CHECK(cma_checked_block_size(&local, &bs) == CMA_ERR_NOT_OURS && bs == 0);
    cma_free(al);
    cma_free(c2);

    /* Setting the same hooks again makes that backend current again. */
    CHECK(cma_set_backend(&h1) == CMA_OK);
    char *again = cma_malloc(8);
    CHECK(in_arena(again) && header_of(again)->tag == 1);
    cma_free(again);
    CHECK(cma_clear_backend() == CMA_OK);

    /* Everything allocated was freed, cma's and the backends' alike. */
    CHECK(allocations() - a0 == frees() - f0);
    CHECK(cma_stats_get_extended(&ext) == CMA_OK);
    CHECK(ext.backend.bytes_in_use == 0 && ext.backend.allocations == ext.backend.frees);

    /* Bad tables. */
    CHECK(cma_set_backend(NULL) == CMA_ERR_NULL_ARGUMENT);
    cma_backend_hooks bad = h1;
    bad.owns_allocation = NULL;
    CHECK(cma_set_backend(&bad) == CMA_ERR_INVALID_ARGUMENT);
    CHECK(!cma_backend_is_enabled());
}

/* Sixteen backends can hold live blocks at once; a seventeenth must wait
 * until one of them is empty. */
static void test_backend_table(void) {
    static struct backend_state states[17];
    void *blocks[17];
    for (unsigned i = 0; i < 16; i++) {
        states[i].tag = 100 + i;
        cma_backend_hooks h = hooks_for(&states[i]);
        CHECK(cma_set_backend(&h) == CMA_OK);
        blocks[i] = cma_malloc(16);
        CHECK(in_arena(blocks[i]));
    }
    states[16].tag = 200;
    cma_backend_hooks h17 = hooks_for(&states[16]);
    CHECK(cma_set_backend(&h17) == CMA_ERR_TOO_MANY_BACKENDS);
    cma_free(blocks[3]);
    CHECK(states[3].deallocations == 1);
    CHECK(cma_set_backend(&h17) == CMA_OK);
    blocks[16] = cma_malloc(16);
    CHECK(in_arena(blocks[16]) && header_of(blocks[16])->tag == 200);
    CHECK(cma_clear_backend() == CMA_OK);
    for (unsigned i = 0; i < 17; i++)
        if (i != 3) {
            cma_free(blocks[i]);
            CHECK(states[i].deallocations == 1);
        }
}

static void neither_owns(void) {
    struct backend_state s = {.tag = 7};
    cma_backend_hooks h = hooks_for(&s);
    CHECK(cma_set_backend(&h) == CMA_OK);
    void *b = cma_malloc(10);
    CHECK(in_arena(b));
    static char not_a_block[64];
    fprintf(stderr, "freeing a pointer no one owns\n");
    cma_free(not_a_block + 16);
    fprintf(stderr, "original_api: the invalid free was not reported\n");
    exit(1);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "neither-owns") == 0)
        neither_owns();
    test_limits();
    test_stats();
    test_block_sizes();
    test_checked_frees();
    test_switches();
    test_logging();
    test_backend();
    test_backend_table();
    if (failures) {
        fprintf(stderr, "original_api: %d failures\n", failures);
        return 1;
    }
    printf("original_api: ok\n");
    return 0;
}
