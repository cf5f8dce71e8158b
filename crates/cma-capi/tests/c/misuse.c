/* One misuse, chosen by argv[1]; cma must abort with a one-line diagnostic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile leaked;

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    char *p = malloc(40);
    static char not_heap[64];
    if (strcmp(what, "double-free") == 0) {
        free(p);
        free(p);
    } else if (strcmp(what, "interior") == 0) {
        free(p + 8);
    } else if (strcmp(what, "foreign") == 0) {
        free(not_heap + 16);
    } else if (strcmp(what, "realloc-freed") == 0) {
        free(p);
        p = realloc(p, 100);
    } else if (strcmp(what, "leak") == 0) {
        for (int i = 0; i < 100; i++) leaked = malloc(100); /* leaks on purpose */
        return 0;
    } else if (strcmp(what, "exit-code") == 0) {
        free(p);
        return 42;
    }
    printf("no misuse\n");
    return 0;
}
