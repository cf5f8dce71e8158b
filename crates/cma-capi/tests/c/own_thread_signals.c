/* cma's own thread must be invisible to the program's signal handling.
 *
 * The program first frees enough memory that a lazily started purge thread
 * would exist too, then lists its threads (name and blocked-signal mask, as
 * /proc shows them), then does what servers do with SIGTERM, SIGHUP and
 * SIGCHLD: blocks two signals in its only thread and waits for them with
 * sigtimedwait, raising each at the whole process ROUNDS times. A signal that
 * the kernel delivered to a thread cma made (one that does not block it)
 * would kill the process instead (their default action), or make
 * sigtimedwait time out.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 200

static int has_thread_named(const char *wanted) {
    DIR *tasks = opendir("/proc/self/task");
    int found = 0;
    struct dirent *e;
    while (tasks && !found && (e = readdir(tasks)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[128], name[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(name, sizeof name, f))
                name[strcspn(name, "\n")] = 0;
            fclose(f);
        }
        found = strcmp(name, wanted) == 0;
    }
    if (tasks)
        closedir(tasks);
    return found;
}

static void list_threads(void) {
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks) {
        perror("opendir /proc/self/task");
        exit(2);
    }
    struct dirent *e;
    while ((e = readdir(tasks)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[128], name[64] = "", line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(name, sizeof name, f))
                name[strcspn(name, "\n")] = 0;
            fclose(f);
        }
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            if (strncmp(line, "SigBlk:", 7) == 0) {
                printf("thread %s %s", name, line + 7 + strspn(line + 7, " \t"));
            }
        }
        if (f)
            fclose(f);
    }
    closedir(tasks);
}

int main(void) {
    for (int i = 0; i < 64; i++) {
        char *p = malloc(1 << 20);
        if (!p)
            return 2;
        memset(p, i, 1 << 20);
        free(p);
    }
    /* A lazily started purge thread starts when the freeing thread leaves
     * the allocator, and names itself as it starts: wait (5 s at most, on a
     * loaded machine) until a thread carries its name. */
    for (int i = 0; i < 500 && !has_thread_named("cma-purge"); i++) {
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    list_threads();
    fflush(stdout);

    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGUSR1);
    sigaddset(&waited, SIGALRM);
    if (sigprocmask(SIG_BLOCK, &waited, NULL) != 0) {
        perror("sigprocmask");
        return 2;
    }
    int received = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int sig = i % 2 ? SIGUSR1 : SIGALRM;
        if (kill(getpid(), sig) != 0) {
            perror("kill");
            return 2;
        }
        struct timespec wait = {5, 0};
        int got = sigtimedwait(&waited, NULL, &wait);
        if (got != sig) {
            fprintf(stderr, "round %d: raised %d, sigtimedwait gave %d (%s)\n", i, sig, got,
                    got < 0 ? strerror(errno) : "another signal");
            break;
        }
        received++;
    }
    printf("received %d of %d\n", received, ROUNDS);
    return received == ROUNDS ? 0 : 1;
}
