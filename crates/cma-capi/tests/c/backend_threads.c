/* Backend hooks under threads: four workers allocate, reallocate and free
 * through the cma_* API while a fifth thread keeps setting backend A,
 * backend B and no backend. Every block must go back to whoever handed it
 * out (a backend's deallocate is never called with another's block, nor
 * cma's free with a backend's block: that would abort), and at the end the
 * counters balance: cma's and each backend's.
 *
 * Prints "backend_threads: ok" and exits 0, or names what failed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cma.h"

#define ARENA_SIZE (48u << 20)
#define WORKERS 4
#define ITERATIONS 20000
#define MAGIC 0xBAC0u

struct header {
    size_t size;
    unsigned magic;
    unsigned backend;
    char pad[48];
};

struct backend {
    unsigned id;
    unsigned char *arena;
    atomic_size_t used;
    atomic_long live;
    atomic_long allocations, deallocations;
    atomic_int wrong_owner; /* deallocate called with another's block */
};

static _Alignas(64) unsigned char arena_a[ARENA_SIZE], arena_b[ARENA_SIZE];
static struct backend a = {.id = 1, .arena = arena_a}, b = {.id = 2, .arena = arena_b};
static atomic_bool stop;
/* Workers start together, after the counters were read: a thread's start
 * allocates memory of its own (glibc's per-thread state), which is not the
 * test's. */
static pthread_barrier_t ready, go;

static struct header *header_of(const void *p) { return (struct header *)((unsigned char *)p - 64); }

static void *take(struct backend *s, size_t size) {
    size_t need = 64 + (size + 63) / 64 * 64;
    size_t at = atomic_fetch_add(&s->used, need);
    if (at + need > ARENA_SIZE)
        return NULL;
    struct header *h = (struct header *)(s->arena + at);
    h->size = size;
    h->backend = s->id;
    atomic_thread_fence(memory_order_release);
    h->magic = MAGIC;
    atomic_fetch_add(&s->live, 1);
    atomic_fetch_add(&s->allocations, 1);
    return s->arena + at + 64;
}

static void *h_allocate(size_t size, void *user) { return take(user, size); }

static void h_deallocate(void *p, void *user) {
    struct backend *s = user;
    struct header *h = header_of(p);
    if (h->backend != s->id || h->magic != MAGIC)
        atomic_fetch_add(&s->wrong_owner, 1);
    h->magic = 0;
    atomic_fetch_sub(&s->live, 1);
    atomic_fetch_add(&s->deallocations, 1);
}

static size_t h_size(const void *p, void *user) {
    (void)user;
    return header_of(p)->size;
}

static bool h_owns(const void *p, void *user) {
    struct backend *s = user;
    const unsigned char *c = p;
    return c >= s->arena + 64 && c < s->arena + ARENA_SIZE && header_of(p)->magic == MAGIC;
}

static cma_backend_hooks hooks(struct backend *s) {
    cma_backend_hooks h;
    memset(&h, 0, sizeof h);
    h.allocate = h_allocate;
    h.deallocate = h_deallocate;
    h.get_allocation_size = h_size;
    h.owns_allocation = h_owns;
    h.user_data = s;
    return h;
}

static void *switcher(void *arg) {
    (void)arg;
    cma_backend_hooks ha = hooks(&a), hb = hooks(&b);
    unsigned long rounds = 0;
    while (!atomic_load(&stop)) {
        switch (rounds++ % 3) {
        case 0:
            if (cma_set_backend(&ha) != CMA_OK)
                abort();
            break;
        case 1:
            if (cma_set_backend(&hb) != CMA_OK)
                abort();
            break;
        default:
            cma_clear_backend();
            break;
        }
        sched_yield();
    }
    return NULL;
}

static void *worker(void *arg) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (1 + (uintptr_t)arg);
    unsigned char *held[64] = {0};
    size_t sizes[64] = {0};
    cma_free(cma_malloc(1)); /* the thread's own set-up, before the count */
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&go);
    for (int i = 0; i < ITERATIONS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned k = x % 64;
        if (!held[k]) {
            sizes[k] = 1 + (x >> 8) % 300;
            held[k] = cma_malloc(sizes[k]);
            if (!held[k])
                abort();
            memset(held[k], (int)k, sizes[k]);
        } else {
            for (size_t j = 0; j < sizes[k]; j++)
                if (held[k][j] != (unsigned char)k) {
                    fprintf(stderr, "backend_threads: a block's contents changed\n");
                    abort();
                }
            if ((x >> 20) % 3 == 0) {
                size_t n = 1 + (x >> 24) % 600;
                unsigned char *q = cma_realloc(held[k], n);
                if (!q)
                    abort();
                if (n > sizes[k])
                    memset(q + sizes[k], (int)k, n - sizes[k]);
                held[k] = q, sizes[k] = n;
            } else {
                if (cma_checked_free(held[k]) != CMA_OK) {
                    fprintf(stderr, "backend_threads: cma_checked_free refused a live block\n");
                    abort();
                }
                held[k] = NULL;
            }
        }
    }
    for (unsigned k = 0; k < 64; k++)
        cma_free(held[k]);
    return NULL;
}

int main(void) {
    pthread_barrier_init(&ready, NULL, WORKERS + 1);
    pthread_barrier_init(&go, NULL, WORKERS + 1);
    pthread_t w[WORKERS], s;
    for (uintptr_t i = 0; i < WORKERS; i++)
        pthread_create(&w[i], NULL, worker, (void *)i);
    pthread_barrier_wait(&ready);
    size_t a0 = 0, f0 = 0;
    cma_get_stats(&a0, &f0);
    pthread_create(&s, NULL, switcher, NULL);
    pthread_barrier_wait(&go);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    atomic_store(&stop, true);
    pthread_join(s, NULL);
    cma_clear_backend();

    int failures = 0;
    size_t a1 = 0, f1 = 0;
    cma_get_stats(&a1, &f1);
    struct cma_extended_stats ext;
    cma_stats_get_extended(&ext);
    if (a1 - a0 != f1 - f0) {
        fprintf(stderr, "backend_threads: %zu allocations but %zu frees\n", a1 - a0, f1 - f0);
        failures++;
    }
    long backend_allocations = atomic_load(&a.allocations) + atomic_load(&b.allocations);
    if (atomic_load(&a.live) != 0 || atomic_load(&b.live) != 0 || atomic_load(&a.wrong_owner) ||
        atomic_load(&b.wrong_owner) || ext.backend.bytes_in_use != 0 ||
        ext.backend.allocations != ext.backend.frees ||
        (long)ext.backend.allocations != backend_allocations) {
        fprintf(stderr,
                "backend_threads: backend A: %ld live, %ld wrong owner; B: %ld live, %ld wrong "
                "owner; counted %llu allocations, %llu frees, %llu bytes (the backends made %ld)\n",
                (long)atomic_load(&a.live), (long)atomic_load(&a.wrong_owner),
                (long)atomic_load(&b.live), (long)atomic_load(&b.wrong_owner),
                (unsigned long long)ext.backend.allocations, (unsigned long long)ext.backend.frees,
                (unsigned long long)ext.backend.bytes_in_use, backend_allocations);
        failures++;
    }
    if (atomic_load(&a.allocations) == 0 || atomic_load(&b.allocations) == 0 ||
        (a1 - a0) == (size_t)backend_allocations) {
        fprintf(stderr, "backend_threads: the run did not mix the backends and cma\n");
        failures++;
    }
    if (failures)
        return 1;
    printf("backend_threads: ok (%ld blocks from backend A, %ld from B, %zu in all)\n",
           (long)atomic_load(&a.allocations), (long)atomic_load(&b.allocations), a1 - a0);
    return 0;
}
