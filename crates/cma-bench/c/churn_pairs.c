/* The instruction-count workload (issue 14): a working set of 256 blocks of
 * 8-512 bytes, churned one free and one malloc at a time, with a burst of
 * 64 mallocs then 64 frees after every 256 pairs. Run it through
 * LD_PRELOAD under callgrind (scripts/instructions.py) and read the
 * inclusive cost of malloc and free: the program's own loop is not in it.
 *
 *   churn_pairs [PAIRS]     default 1000000 churn pairs
 *
 * Prints the number of malloc and free calls it made, so the counts can be
 * divided without trusting the script's arithmetic. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKING_SET 256
#define BURST 64

static uint64_t state = 0x9E3779B97F4A7C15ull;

static inline uint64_t next_random(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static inline size_t random_size(void) { return 8 + (size_t)(next_random() % 505); }

int main(int argc, char **argv) {
    long pairs = argc > 1 ? atol(argv[1]) : 1000000;
    static unsigned char *set[WORKING_SET];
    unsigned char *burst[BURST];
    unsigned long mallocs = 0, frees = 0, check = 0;
    for (int i = 0; i < WORKING_SET; i++) {
        set[i] = malloc(random_size());
        set[i][0] = (unsigned char)i;
        mallocs++;
    }
    for (long n = 0; n < pairs; n++) {
        size_t i = next_random() % WORKING_SET;
        check += set[i][0];
        free(set[i]);
        frees++;
        set[i] = malloc(random_size());
        if (!set[i]) {
            fprintf(stderr, "churn_pairs: malloc failed\n");
            return 1;
        }
        set[i][0] = (unsigned char)n;
        mallocs++;
        if (n % WORKING_SET == WORKING_SET - 1) {
            for (int b = 0; b < BURST; b++) {
                burst[b] = malloc(random_size());
                burst[b][0] = (unsigned char)b;
                mallocs++;
            }
            for (int b = 0; b < BURST; b++) {
                check += burst[b][0];
                free(burst[b]);
                frees++;
            }
        }
    }
    for (int i = 0; i < WORKING_SET; i++) {
        free(set[i]);
        frees++;
    }
    printf("mallocs %lu frees %lu check %lu\n", mallocs, frees, check);
    return 0;
}
