/* Small-object throughput (issue 14): each of N threads allocates and frees
 * small blocks in a tight loop for a fixed time and counts its iterations.
 * One iteration: malloc of 8-128 bytes (cycling through 16 sizes), a write,
 * and the free of the block allocated 8 iterations before (so the thread
 * holds 8 blocks, as a program with a few temporaries does).
 *
 *   tight_loop THREADS SECONDS     prints "iterations N per_thread N..."
 *
 * Run it under LD_PRELOAD against each allocator; scripts/throughput.py
 * alternates them and prints ratios. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_int stop;
static double seconds;

struct worker {
    pthread_t thread;
    unsigned long iterations;
};

static void *run(void *arg) {
    struct worker *w = arg;
    void *held[8] = {0};
    unsigned long n = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int k = 0; k < 1024; k++, n++) {
            size_t size = 8 + ((n * 7) & 15) * 8;
            char *p = malloc(size);
            if (!p) {
                fprintf(stderr, "tight_loop: malloc failed\n");
                exit(1);
            }
            p[0] = (char)n;
            free(held[n & 7]);
            held[n & 7] = p;
        }
    }
    for (int i = 0; i < 8; i++) free(held[i]);
    w->iterations = n;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    seconds = argc > 2 ? atof(argv[2]) : 1.0;
    if (threads < 1 || threads > 64 || seconds <= 0) {
        fprintf(stderr, "usage: tight_loop THREADS SECONDS\n");
        return 2;
    }
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    for (int i = 0; i < threads; i++) pthread_create(&ws[i].thread, NULL, run, &ws[i]);
    struct timespec t = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&t, NULL);
    atomic_store(&stop, 1);
    unsigned long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ws[i].thread, NULL);
        total += ws[i].iterations;
    }
    printf("iterations %lu per_thread", total);
    for (int i = 0; i < threads; i++) printf(" %lu", ws[i].iterations);
    printf("\n");
    free(ws);
    return 0;
}
