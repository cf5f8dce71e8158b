/* Allocation before main: a constructor allocates, and so do ld.so and libc
 * while they start; main checks that cma served them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cma.h"

static char *early;

__attribute__((constructor(101))) static void early_alloc(void) {
    early = malloc(64);
    strcpy(early, "allocated before main");
}

int main(void) {
    size_t n = 0;
    if (cma_checked_block_size(early, &n) != CMA_OK || n < 64) {
        fprintf(stderr, "before_main: the constructor's block is not cma's\n");
        return 1;
    }
    printf("%s\n", early);
    free(early);
    return 0;
}
