/* Misuse of sampled blocks under LD_PRELOAD (run with CMA_OPTIONS=sample=1,
 * so every small block is sampled). Prints the block's address as
 * "ADDR=0x..." on stderr, then misuses it as argv[1] says. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The allocating function that cma run must name in the stack. */
__attribute__((noinline)) char *make_block(size_t n) {
    char *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static void own_handler(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    char line[64];
    int n = snprintf(line, sizeof line, "OWN-HANDLER=%p\n", info->si_addr);
    write(2, line, n);
    _exit(42);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "own-handler")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = own_handler;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
    }
    volatile char *p = make_block(32);
    fprintf(stderr, "ADDR=%p\n", (void *)p);
    if (!strcmp(mode, "overflow")) {
        p[32] = 1;
    } else if (!strcmp(mode, "write-after-free")) {
        free((void *)p);
        p[8] = 1;
    } else if (!strcmp(mode, "read-after-free")) {
        free((void *)p);
        fprintf(stderr, "read %d\n", p[8]);
    } else if (!strcmp(mode, "underflow")) {
        p[-1] = 1;
        free((void *)p);
    } else if (!strcmp(mode, "own-handler") || !strcmp(mode, "foreign-fault")) {
        free((void *)p);
        volatile char *q = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        fprintf(stderr, "FAULT=%p\n", (void *)q);
        q[0] = 1;
    } else if (!strcmp(mode, "ok")) {
        /* Every size up to a page and a few beyond, resized and freed. */
        for (int i = 0; i < 20000; i++) {
            size_t n = (size_t)(i * 7919) % 6000;
            char *b = malloc(n);
            memset(b, i, n);
            b = realloc(b, n / 2 + 1);
            free(b);
        }
        free((void *)p);
        puts("sampled: ok");
        return 0;
    }
    fputs("SURVIVED\n", stderr);
    return 3;
}
