/* fork from a multi-threaded parent: eight threads keep allocating and
 * freeing (so the allocator's lock is often held by another thread at the
 * moment of fork) while the main thread forks 200 times; every child must be
 * able to allocate, run threads of its own, and exit cleanly. A child that
 * hangs is killed by alarm() and fails the test. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    void *slots[256] = {0};
    while (!stop) {
        seed = seed * 1103515245 + 12345;
        unsigned i = (seed >> 8) % 256;
        free(slots[i]);
        size_t n = (seed >> 16) % 3 == 0 ? 70000 + (seed % 100000) : 1 + (seed >> 4) % 900;
        slots[i] = malloc(n);
        if (slots[i]) memset(slots[i], (int)i, n < 64 ? n : 64);
    }
    for (int i = 0; i < 256; i++) free(slots[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) free(malloc(16 + i));
    return NULL;
}

int main(void) {
    pthread_t t[8];
    for (long i = 0; i < 8; i++) pthread_create(&t[i], NULL, churn, (void *)(i + 1));
    int bad = 0;
    for (int k = 0; k < 200; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(20);
            char *p = malloc(1000);
            for (int i = 0; i < 5000; i++) {
                void *q = malloc((size_t)(i % 3000) + 1);
                free(q);
            }
            void *big = malloc(1 << 20);
            free(big);
            pthread_t c;
            if (pthread_create(&c, NULL, child_thread, NULL) != 0) _exit(3);
            pthread_join(c, NULL);
            free(p);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork %d: child status %#x\n", k, status);
            bad++;
        }
    }
    stop = 1;
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    if (bad) return 1;
    printf("fork_threads: ok\n");
    return 0;
}
