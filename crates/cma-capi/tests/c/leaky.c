/* Leaks at known lines, for `cma run --leaks` and `--profile` (the tests
 * find each line by its marker comment).
 *
 * Usage: leaky [clean|big]. With no argument: makes ten nodes and frees
 * every other one (five 48-byte blocks leak from make_node), leaks one
 * strdup, and allocates, grows and frees some more. "clean" frees all it
 * allocates and prints a line (stdio's buffer is the C library's). "big"
 * leaks 64 MiB from one site, in 64-byte blocks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *next;
    char name[40];
};

static volatile size_t opaque = 0;

__attribute__((noinline)) static struct node *make_node(int i) {
    struct node *n = malloc(sizeof *n + opaque); /* LEAK-NODE */
    snprintf(n->name, sizeof n->name, "node %d", i);
    n->next = NULL;
    return n;
}

__attribute__((noinline)) static char *copy_name(const char *s) {
    return strdup(s); /* LEAK-DUP */
}

__attribute__((noinline)) static void leak_big(void) {
    for (int i = 0; i < (1 << 20); i++) {
        char *p = malloc(64 + opaque); /* LEAK-BIG */
        p[0] = (char)i;
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "big") == 0) {
        leak_big();
        return 0;
    }
    int clean = strcmp(mode, "clean") == 0;
    for (int i = 0; i < 10; i++) {
        struct node *n = make_node(i);
        if (i % 2 || clean)
            free(n);
    }
    char *buf = calloc(10, 100);
    for (size_t n = 100; n < 100000; n *= 3)
        buf = realloc(buf, n);
    free(buf);
    if (clean) {
        printf("clean\n");
        return 0;
    }
    char *name = copy_name("leaked name");
    printf("%s\n", name);
    return 0;
}
