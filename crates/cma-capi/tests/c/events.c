/* Allocation-event logging for the malloc family: a callback sees every
 * malloc, calloc, realloc and free with its pointer and size; a call made
 * inside the callback is not logged; sampling logs about one in N; off,
 * nothing is logged.
 *
 * Usage: events [fd]. Prints "events: ok" and exits 0, or names every
 * failed check and exits 1. "fd" (run with CMA_OPTIONS=alloc_log=1,
 * alloc_log_fd=9 and descriptor 9 open): allocates, grows and frees one
 * block and prints its addresses, for the test to find in the log. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cma.h"

static int failures;
#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "events.c:%d: CHECK(%s) failed\n", __LINE__, #cond); \
            failures++;                                                           \
        }                                                                         \
    } while (0)

static volatile size_t opaque = 0;

struct seen {
    char op[16];
    void *p, *old;
    size_t size;
    uint64_t thread;
};
static struct seen events[64];
static int count;
static int nested;

static void record(const cma_alloc_event *e, void *user) {
    (void)user;
    if (count < 64) {
        struct seen *s = &events[count];
        strncpy(s->op, e->operation, sizeof s->op - 1);
        s->p = e->pointer;
        s->old = e->old_pointer;
        s->size = e->size;
        s->thread = e->thread;
    }
    count++;
    if (nested) {
        /* Not logged: made inside the callback. */
        free(malloc(77 + opaque));
    }
}

static int tally;
static void count_allocs(const cma_alloc_event *e, void *user) {
    if (strcmp(e->operation, "alloc") == 0)
        (*(int *)user)++;
}

static int find(const char *op, void *p) {
    for (int i = 0; i < count && i < 64; i++)
        if (strcmp(events[i].op, op) == 0 && events[i].p == p)
            return i;
    return -1;
}

int main(int argc, char **argv) {
    const char *options = getenv("CMA_OPTIONS");
    int fast = options && strstr(options, "check=fast") != NULL;
    if (argc > 1 && strcmp(argv[1], "fd") == 0) {
        void *p = malloc(1234 + opaque);
        void *q = realloc(p, 99999 + opaque);
        printf("p=%p q=%p\n", p, q);
        fflush(stdout);
        free(q);
        return 0;
    }
    CHECK(cma_set_alloc_log_callback(record, NULL) == CMA_OK);
    void *quiet = malloc(5 + opaque); /* logging off: not seen */
    CHECK(count == 0);
    cma_set_alloc_logging(true);
    nested = 1;
    char *p = malloc(100 + opaque);
    char *z = calloc(3, 50 + opaque);
    char *q = realloc(p, 5000 + opaque);
    free(z);
    free(q);
    free(quiet);
    nested = 0;
    cma_set_alloc_logging(false);
    free(malloc(9 + opaque)); /* off again: not seen */
    /* At the fast level, logging turned on while the program runs misses
     * the local free of `quiet` (its memory was taken before): cma.h. */
    CHECK(count == 6 || (fast && count == 5));
    int i = find("alloc", p);
    CHECK(i == 0 && events[i].size == 100 && events[i].thread == (uint64_t)gettid());
    i = find("alloc_zeroed", z);
    CHECK(i == 1 && events[i].size == 150);
    i = find("realloc", q);
    CHECK(i == 2 && events[i].size == 5000 && events[i].old == p);
    i = find("free", z);
    CHECK(i == 3 && events[i].size >= 150);
    CHECK(find("free", q) == 4 && (find("free", quiet) == 5 || fast));

    /* Sampling: about one event in ten. */
    CHECK(cma_set_alloc_log_callback(count_allocs, &tally) == CMA_OK);
    CHECK(cma_set_alloc_log_sample(10) == CMA_OK);
    cma_set_alloc_logging(true);
    for (int k = 0; k < 10000; k++)
        free(malloc(16 + opaque));
    cma_set_alloc_logging(false);
    CHECK(tally > 10000 / 10 / 2 && tally < 10000 / 10 * 2);
    CHECK(cma_set_alloc_log_sample(1) == CMA_OK);
    CHECK(cma_set_alloc_log_callback(NULL, NULL) == CMA_OK);
    CHECK(cma_guard_depth() == 0);
    if (failures) {
        fprintf(stderr, "events: %d checks failed (%d events)\n", failures, count);
        for (int k = 0; k < count && k < 64; k++)
            fprintf(stderr, "  %s %p %zu old %p\n", events[k].op, events[k].p, events[k].size, events[k].old);
        return 1;
    }
    printf("events: ok\n");
    return 0;
}
