/* 4000 short-lived threads, a few at a time, each allocating and freeing
 * (and freeing some blocks allocated by the previous generation): the heaps
 * of exiting threads must be reused, so the heap count and RSS stay flat. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cma.h"

static void *handed[4];

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

static void *worker(void *arg) {
    size_t slot = (size_t)arg;
    void *keep[64];
    for (int i = 0; i < 64; i++) {
        keep[i] = malloc(16 + (size_t)i * 40);
        memset(keep[i], i, 16);
    }
    void *big = malloc(256 * 1024);
    memset(big, 1, 256 * 1024);
    free(big);
    for (int i = 0; i < 64; i++) free(keep[i]);
    free(handed[slot]); /* a block from another (finished) thread */
    handed[slot] = malloc(100);
    return NULL;
}

static void generation(int n) {
    for (int g = 0; g < n; g++) {
        pthread_t t[4];
        for (size_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
}

int main(void) {
    generation(50); /* 200 threads: warm up */
    struct cma_extended_stats a, b;
    cma_stats_get_extended(&a);
    long rss_a = rss_kib();
    generation(950); /* 3800 more: 4000 in all */
    cma_stats_get_extended(&b);
    long rss_b = rss_kib();
    printf("heaps %zu -> %zu, rss %ld KiB -> %ld KiB\n", a.heaps, b.heaps, rss_a, rss_b);
    int ok = b.heaps <= 16 && rss_b - rss_a < 8 * 1024;
    for (int i = 0; i < 4; i++) free(handed[i]);
    if (!ok) {
        fprintf(stderr, "thread_churn: memory grew with the number of threads\n");
        return 1;
    }
    printf("thread_churn: ok\n");
    return 0;
}
