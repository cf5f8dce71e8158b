/* Misuse of ordinary blocks at the strict level (run with
 * CMA_OPTIONS=check=strict,sample=0, so no block is a sampled one): each
 * report must name the requested size and the stacks where the block was
 * allocated (in make_block) and, for a freed one, first freed (in
 * release_block). argv[1] chooses the misuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The allocating function the report must name. */
__attribute__((noinline)) char *make_block(size_t n) {
    char *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

/* The freeing function the report must name as the first free. */
__attribute__((noinline)) void release_block(char *p) {
    free(p);
    __asm__ volatile("" : : : "memory");
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    /* Neighbours, so the block is not alone in its slab. */
    char *keep[8];
    for (int i = 0; i < 8; i++) keep[i] = malloc(40);
    volatile char *p = make_block(40);
    fprintf(stderr, "ADDR=%p\n", (void *)p);
    if (!strcmp(mode, "double-free")) {
        release_block((char *)p);
        free((void *)p);
    } else if (!strcmp(mode, "overflow")) {
        p[40] = 1;
        free((void *)p);
    } else if (!strcmp(mode, "write-after-free")) {
        release_block((char *)p);
        p[8] = 1;
        /* Found by the heap check at exit, while the block is still in
         * the quarantine. */
        exit(0);
    } else if (!strcmp(mode, "ok")) {
        for (int i = 0; i < 100000; i++) {
            size_t n = (size_t)(i * 7919) % 3000;
            char *b = malloc(n);
            memset(b, i, n);
            b = realloc(b, n / 2 + 1);
            free(b);
        }
        free((void *)p);
    }
    for (int i = 0; i < 8; i++) free(keep[i]);
    fprintf(stderr, "DONE\n");
    return 0;
}
