/* Large realloc growth (issue 14): one block grown by realloc from 256 KiB
 * by half again at each step (size += size / 2) while the next size stays
 * within LIMIT bytes, written in full after every step. Before writing, it
 * checks that the old contents survived the realloc: one byte per 4 KiB
 * page and the last byte, which catches a page lost or misplaced by a move
 * without adding a second pass over the whole block (a full compare would
 * cost as much as the writes and hide the allocator's share of the time).
 *
 *   realloc_growth [LIMIT]     default 600000000 (the last size is
 *                              581130733 bytes, 554 MiB, after 19 steps)
 *
 * Run it with each allocator through LD_PRELOAD (glibc: none) and compare
 * wall time and peak RSS: scripts/realloc_growth.py does, side by side.
 * Prints the number of reallocs, the final size and a checksum; exits 1 on
 * a realloc failure or a lost byte. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define START (256 * 1024)
#define PAGE 4096

/* The byte that step `step` writes at `offset`: differs from page to page
 * and from step to step, so a page that moved to the wrong place, or a
 * stale copy, reads wrong. */
static inline unsigned char pattern(size_t step, size_t offset) {
    return (unsigned char)(step * 29 + (offset / PAGE) * 7 + 1);
}

static void fill(unsigned char *p, size_t size, size_t step) {
    for (size_t page = 0; page < size; page += PAGE) {
        size_t len = size - page < PAGE ? size - page : PAGE;
        memset(p + page, pattern(step, page), len);
    }
}

static int check(const unsigned char *p, size_t size, size_t step) {
    for (size_t offset = 0; offset < size; offset += PAGE) {
        if (p[offset] != pattern(step, offset)) {
            fprintf(stderr, "realloc_growth: step %zu: byte %zu of %zu lost\n", step, offset, size);
            return 0;
        }
    }
    if (p[size - 1] != pattern(step, size - 1)) {
        fprintf(stderr, "realloc_growth: step %zu: last byte of %zu lost\n", step, size);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    size_t limit = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 600000000u;
    size_t size = START;
    unsigned char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "realloc_growth: malloc(%zu) failed\n", size);
        return 1;
    }
    size_t step = 0;
    fill(p, size, step);
    unsigned long reallocs = 0;
    while (size + size / 2 <= limit) {
        size_t new_size = size + size / 2;
        unsigned char *q = realloc(p, new_size);
        if (q == NULL) {
            fprintf(stderr, "realloc_growth: realloc(%zu) failed\n", new_size);
            return 1;
        }
        reallocs++;
        if (!check(q, size, step)) {
            return 1;
        }
        p = q;
        size = new_size;
        step++;
        fill(p, size, step);
    }
    unsigned long sum = 0;
    for (size_t offset = 0; offset < size; offset += PAGE) {
        sum += p[offset];
    }
    free(p);
    printf("reallocs %lu final_size %zu checksum %lu\n", reallocs, size, sum);
    return 0;
}
