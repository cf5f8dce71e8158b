/* libcma's own thread-local state is reached through __tls_get_addr (a
 * cdylib uses the general-dynamic TLS model). dlopen 40 modules with TLS of
 * their own (more than the DTV's spare slots, so glibc must grow every
 * thread's DTV, with malloc, that is, with us, from inside __tls_get_addr),
 * and allocate from threads made before and after. argv[1] is the directory
 * of libtlsN.so. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*touch_fn)(int);
static touch_fn fns[40];
static int n;

static void *worker(void *a) {
    (void)a;
    for (int i = 0; i < n; i++) {
        void *p = malloc(100 + (size_t)i);
        fns[i](i);
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t early;
    pthread_create(&early, NULL, worker, NULL);
    pthread_join(early, NULL);
    char name[4096];
    for (int i = 1; i <= 40; i++) {
        snprintf(name, sizeof name, "%s/libtls%d.so", argv[1], i);
        void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "%s\n", dlerror());
            return 1;
        }
        fns[n++] = (touch_fn)dlsym(h, "touch");
        pthread_t t;
        pthread_create(&t, NULL, worker, NULL);
        pthread_join(t, NULL);
    }
    worker(NULL); /* the main thread, its DTV stale since the first dlopen */
    printf("tls_dlopen: ok (%d modules)\n", n);
    return 0;
}
