/* A seeded stream of hostile calls through libcma's C API, between ordinary
 * allocations and frees: checked frees and block sizes of stack, static,
 * read-only, code, unmapped, interior and double-freed addresses and of
 * other allocators' blocks (glibc's own malloc, a region from mmap); sizes
 * near SIZE_MAX; alignments that are not powers of two; allocation limits
 * of 0; NULL arguments. After every call: the checked function returned
 * the code its contract names, the counters are exact (blocks and bytes in
 * use are what the live blocks account for), every live block's bytes and
 * size are intact, the foreign memory is untouched, and the guard depth is
 * 0.
 *
 * Usage: hostile SEED CASES [STEPS]. Prints "hostile: ok (N cases, M
 * calls)" on stdout and exits 0, or names the seed, case, step and call that
 * failed on stderr and exits 1. Nothing that may allocate runs between a call and its check
 * (output is formatted on the stack and written with write(2)).
 *
 * Linked with libcma.so (and run under LD_PRELOAD), so malloc is cma's too:
 * glibc's own allocator is reached through __libc_malloc. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cma.h"

/* glibc's allocator under its own names (exported by libc.so.6). */
void *__libc_malloc(size_t size);
void __libc_free(void *p);

static uint64_t seed, rng;
static unsigned long case_no, step_no, calls;
static const char *call_name = "start";

/* xorshift64*: the same stream for the same seed, on every machine. */
static uint64_t next(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}
static uint64_t below(uint64_t n) { return n ? next() % n : 0; }

static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1)
        n = sizeof line - 1;
    if (n > 0 && write(2, line, (size_t)n) < 0)
        _exit(2);
}

#define FAIL(...)                                                                       \
    do {                                                                                \
        say("hostile.c:%d: seed %llu case %lu step %lu (%s): ", __LINE__,               \
            (unsigned long long)seed, case_no, step_no, call_name);                    \
        say(__VA_ARGS__);                                                               \
        say("\n");                                                                      \
        _exit(1);                                                                       \
    } while (0)

#define EXPECT_CODE(got, want)                                                          \
    do {                                                                                \
        int got_ = (got), want_ = (want);                                               \
        if (got_ != want_)                                                              \
            FAIL("returned %d (%s), want %d (%s)", got_, cma_strerror(got_), want_,     \
                 cma_strerror(want_));                                                  \
    } while (0)

/* The blocks the stream holds: what each must still contain. */
struct block {
    unsigned char *p;
    size_t size;     /* requested */
    size_t usable;   /* cma_checked_block_size at allocation */
    size_t accounted; /* what bytes_in_use grew by when it was allocated */
    unsigned char fill;
};
#define MAX_LIVE 256
static struct block live[MAX_LIVE];
static size_t nlive;

/* What the counters held before the case, and the bytes the live blocks
 * account for. */
static uint64_t base_live, base_bytes, live_accounted;

/* Memory that is not cma's and must never be written by it. */
static unsigned char static_bytes[256];
static const char read_only[] = "read-only data: never a cma block";
#define REGION_SIZE (64 * 1024)
static unsigned char *region;     /* another allocator's arena, from mmap */
static unsigned char *reserved;   /* PROT_NONE: mapped, not accessible */
#define REGION_FILL 0xA5
#define STATIC_FILL 0x5A

static struct cma_stats stats_now(void) {
    struct cma_stats s;
    EXPECT_CODE(cma_stats_get(&s), CMA_OK);
    return s;
}

/* Everything the stream relies on still holds. */
static void check_state(void) {
    if (cma_guard_depth() != 0)
        FAIL("guard depth %u after the call", cma_guard_depth());
    struct cma_stats s = stats_now();
    uint64_t in_use = s.allocations - s.frees;
    if (in_use != base_live + nlive)
        FAIL("%llu blocks in use, want %llu", (unsigned long long)in_use,
             (unsigned long long)(base_live + nlive));
    if (s.bytes_in_use != base_bytes + live_accounted)
        FAIL("%llu bytes in use, want %llu", (unsigned long long)s.bytes_in_use,
             (unsigned long long)(base_bytes + live_accounted));
    for (size_t i = 0; i < nlive; i++) {
        struct block *b = &live[i];
        for (size_t k = 0; k < b->size; k++)
            if (b->p[k] != b->fill)
                FAIL("live block %p (%zu bytes): byte %zu is 0x%02x, want 0x%02x", (void *)b->p,
                     b->size, k, b->p[k], b->fill);
        size_t usable = 0;
        EXPECT_CODE(cma_checked_block_size(b->p, &usable), CMA_OK);
        if (usable != b->usable)
            FAIL("live block %p: block size %zu, was %zu", (void *)b->p, usable, b->usable);
    }
    for (size_t k = 0; k < REGION_SIZE; k += 61)
        if (region[k] != REGION_FILL)
            FAIL("the foreign region changed at %zu", k);
    for (size_t k = 0; k < sizeof static_bytes; k++)
        if (static_bytes[k] != STATIC_FILL)
            FAIL("static data changed at %zu", k);
    calls++;
}

/* A size for an ordinary block: mostly small, some up to a page or two,
 * now and then a large block (whole pages). */
static size_t ordinary_size(void) {
    uint64_t r = below(100);
    if (r < 70)
        return 1 + below(256);
    if (r < 95)
        return 1 + below(6000);
    return 128 * 1024 + below(200 * 1024);
}

/* Records a block the stream just allocated (bytes_before: bytes_in_use
 * before the call) and fills it. */
static void hold(unsigned char *p, size_t size, uint64_t bytes_before) {
    if (!p)
        FAIL("allocation of %zu bytes failed", size);
    struct block *b = &live[nlive++];
    b->p = p;
    b->size = size;
    b->fill = (unsigned char)(1 + below(255));
    EXPECT_CODE(cma_checked_block_size(p, &b->usable), CMA_OK);
    if (b->usable < size)
        FAIL("block size %zu below the %zu bytes asked for", b->usable, size);
    b->accounted = stats_now().bytes_in_use - bytes_before;
    live_accounted += b->accounted;
    memset(p, b->fill, size);
}

static void allocate(void) {
    size_t size = ordinary_size();
    uint64_t before = stats_now().bytes_in_use;
    unsigned char *p;
    switch (below(4)) {
    case 0:
        call_name = "cma_malloc";
        p = cma_malloc(size);
        break;
    case 1: {
        call_name = "cma_calloc";
        p = cma_calloc(1, size);
        if (p)
            for (size_t k = 0; k < size; k++)
                if (p[k])
                    FAIL("cma_calloc gave a non-zero byte at %zu", k);
        break;
    }
    case 2: {
        call_name = "cma_aligned_alloc";
        size_t align = (size_t)1 << below(13);
        p = cma_aligned_alloc(align, size);
        if (p && ((uintptr_t)p & (align - 1)))
            FAIL("%p is not aligned to %zu", (void *)p, align);
        break;
    }
    default:
        call_name = "malloc";
        p = malloc(size);
        break;
    }
    hold(p, size, before);
}

/* Takes live block i out of the stream's list (the caller frees it). */
static struct block release(size_t i) {
    struct block b = live[i];
    live[i] = live[--nlive];
    live_accounted -= b.accounted;
    return b;
}

static void free_one(int twice) {
    if (!nlive)
        return;
    struct block b = release(below(nlive));
    call_name = "cma_checked_free";
    EXPECT_CODE(cma_checked_free(b.p), CMA_OK);
    if (twice) {
        check_state();
        call_name = "cma_checked_free (again)";
        EXPECT_CODE(cma_checked_free(b.p), CMA_ERR_DOUBLE_FREE);
        check_state();
        call_name = "cma_checked_block_size (freed)";
        size_t size = 12345;
        int code = cma_checked_block_size(b.p, &size);
        if (code != CMA_ERR_DOUBLE_FREE)
            FAIL("returned %d (%s) for a freed block", code, cma_strerror(code));
        if (size != 0) /* the original's contract: 0 on an error */
            FAIL("*size is %zu after an error, want 0", size);
    }
}

static void interior(void) {
    if (!nlive)
        return;
    struct block *b = &live[below(nlive)];
    if (b->size < 2)
        return;
    unsigned char *p = b->p + 1 + below(b->size - 1);
    call_name = "cma_checked_free (interior)";
    EXPECT_CODE(cma_checked_free(p), CMA_ERR_INTERIOR_POINTER);
    check_state();
    call_name = "cma_checked_block_size (interior)";
    size_t size = 0;
    EXPECT_CODE(cma_checked_block_size(p, &size), CMA_ERR_INTERIOR_POINTER);
}

static void dummy_function(void) {}

/* A free and a block size of memory cma never handed out. */
static void foreign(void) {
    unsigned char on_stack[64];
    memset(on_stack, 0x3C, sizeof on_stack);
    void *glibc_block = NULL;
    void *p;
    switch (below(7)) {
    case 0:
        call_name = "foreign: the stack";
        p = on_stack + below(sizeof on_stack);
        break;
    case 1:
        call_name = "foreign: static data";
        p = static_bytes + below(sizeof static_bytes);
        break;
    case 2:
        call_name = "foreign: read-only data";
        p = (void *)(read_only + below(sizeof read_only));
        break;
    case 3:
        call_name = "foreign: code";
        p = (void *)(uintptr_t)&dummy_function;
        break;
    case 4:
        /* Another allocator's block: a header, then the block. */
        call_name = "foreign: an mmap'd arena";
        p = region + 16 + 64 * below(REGION_SIZE / 64 - 1);
        break;
    case 5:
        call_name = "foreign: glibc's malloc";
        glibc_block = __libc_malloc(16 + below(4000));
        if (!glibc_block)
            return;
        memset(glibc_block, 0x77, 16);
        p = glibc_block;
        break;
    default:
        call_name = "foreign: mapped, not accessible";
        p = reserved + below(4096);
        break;
    }
    EXPECT_CODE(cma_checked_free(p), CMA_ERR_NOT_OURS);
    check_state();
    size_t size = 777;
    EXPECT_CODE(cma_checked_block_size(p, &size), CMA_ERR_NOT_OURS);
    if (size != 0) /* the original's contract: 0 on an error */
        FAIL("*size is %zu after an error, want 0", size);
    for (size_t k = 0; k < sizeof on_stack; k++)
        if (on_stack[k] != 0x3C)
            FAIL("the stack buffer changed at %zu", k);
    if (glibc_block) {
        for (int k = 0; k < 16; k++)
            if (((unsigned char *)glibc_block)[k] != 0x77)
                FAIL("glibc's block changed at %d", k);
        __libc_free(glibc_block);
    }
}

/* Addresses where nothing is mapped: the first 64 KiB, and at or above
 * 2^47 (the kernel's half, and non-canonical addresses). */
static void unmapped(void) {
    uintptr_t addr = below(2) ? 1 + below(0xFFFF) : ((uintptr_t)1 << 47) + next() % (UINTPTR_MAX - ((uintptr_t)1 << 47));
    call_name = "unmapped: cma_checked_free";
    EXPECT_CODE(cma_checked_free((void *)addr), CMA_ERR_NOT_OURS);
    check_state();
    call_name = "unmapped: cma_checked_block_size";
    size_t size = 0;
    EXPECT_CODE(cma_checked_block_size((void *)addr, &size), CMA_ERR_NOT_OURS);
}

static void expect_null(void *p, int want_errno, const char *what) {
    int e = errno;
    call_name = what;
    if (p)
        FAIL("returned %p, want NULL", p);
    if (e != want_errno)
        FAIL("errno %d, want %d", e, want_errno);
}

/* Sizes within 1 MiB of SIZE_MAX, and products that overflow. */
static void impossible_size(void) {
    size_t size = SIZE_MAX - below(1 << 20);
    errno = 0;
    expect_null(cma_malloc(size), ENOMEM, "cma_malloc (near SIZE_MAX)");
    check_state();
    errno = 0;
    expect_null(malloc(size), ENOMEM, "malloc (near SIZE_MAX)");
    check_state();
    errno = 0;
    expect_null(cma_calloc(1, size), ENOMEM, "cma_calloc (near SIZE_MAX)");
    check_state();
    errno = 0;
    expect_null(cma_calloc(2 + below(1000), SIZE_MAX / 2 + 1 + below(1000)), ENOMEM,
                "cma_calloc (overflowing product)");
    check_state();
    errno = 0;
    expect_null(cma_aligned_alloc((size_t)1 << below(13), size), ENOMEM,
                "cma_aligned_alloc (near SIZE_MAX)");
    check_state();
    if (nlive) {
        struct block *b = &live[below(nlive)];
        errno = 0;
        expect_null(cma_realloc(b->p, size), ENOMEM, "cma_realloc (near SIZE_MAX)");
        check_state(); /* the block is intact */
    }
}

/* Alignments that are not powers of two: refused with EINVAL, nothing
 * allocated. */
static void bad_alignment(void) {
    size_t align;
    switch (below(4)) {
    case 0:
        align = 0;
        break;
    case 1:
        align = SIZE_MAX - below(1000);
        break;
    case 2: /* just above a power of two */
        align = ((size_t)1 << (2 + below(61))) + 1 + below(3);
        break;
    default:
        do
            align = 3 + below(1 << 20);
        while ((align & (align - 1)) == 0);
        break;
    }
    char what[64];
    snprintf(what, sizeof what, "cma_aligned_alloc (alignment %zu)", align);
    errno = 0;
    expect_null(cma_aligned_alloc(align, 1 + below(5000)), EINVAL, what);
}

/* Limits that refuse every request: allocations fail with ENOMEM and
 * change nothing; then the limits are lifted. */
static void limit_zero(void) {
    struct cma_stats now = stats_now();
    switch (below(3)) {
    case 0:
        cma_limits_set(0, 0);
        break;
    case 1:
        cma_limits_set(0, CMA_NO_LIMIT);
        break;
    default: /* not a byte more than what is in use */
        cma_limits_set(CMA_NO_LIMIT, now.bytes_in_use);
        break;
    }
    call_name = "cma_limits_set";
    check_state();
    size_t size = 1 + below(5000);
    errno = 0;
    expect_null(cma_malloc(size), ENOMEM, "cma_malloc (limit 0)");
    check_state();
    errno = 0;
    expect_null(cma_calloc(size, 1), ENOMEM, "cma_calloc (limit 0)");
    check_state();
    errno = 0;
    expect_null(cma_aligned_alloc(64, size), ENOMEM, "cma_aligned_alloc (limit 0)");
    check_state();
    errno = 0;
    expect_null(cma_strdup(read_only), ENOMEM, "cma_strdup (limit 0)");
    check_state();
    if (nlive) {
        /* Past what the block takes (its size class, or its pages; at the
         * default check level cma_block_size reports the size asked for,
         * and growing within the slot needs no new bytes). */
        struct block *b = &live[below(nlive)];
        errno = 0;
        expect_null(cma_realloc(b->p, b->accounted + 1 + below(300000)), ENOMEM,
                    "cma_realloc (limit 0)");
        check_state();
    }
    cma_limits_set(CMA_NO_LIMIT, CMA_NO_LIMIT);
    call_name = "cma_limits_set (lifted)";
}

static void null_arguments(void) {
    call_name = "cma_checked_free (NULL)";
    EXPECT_CODE(cma_checked_free(NULL), CMA_OK);
    check_state();
    call_name = "cma_checked_block_size (NULL size)";
    EXPECT_CODE(cma_checked_block_size(nlive ? live[0].p : static_bytes, NULL),
                CMA_ERR_NULL_ARGUMENT);
    check_state();
    call_name = "cma_stats_get (NULL)";
    EXPECT_CODE(cma_stats_get(NULL), CMA_ERR_NULL_ARGUMENT);
}

static void one_case(unsigned long steps) {
    struct cma_stats s = stats_now();
    base_live = s.allocations - s.frees;
    base_bytes = s.bytes_in_use;
    live_accounted = 0;
    nlive = 0;
    unsigned long n = 1 + below(steps);
    for (step_no = 0; step_no < n; step_no++) {
        uint64_t r = below(100);
        if (r < 35) {
            if (nlive < MAX_LIVE)
                allocate();
        } else if (r < 55)
            free_one(0);
        else if (r < 60)
            free_one(1);
        else if (r < 68)
            interior();
        else if (r < 78)
            foreign();
        else if (r < 84)
            unmapped();
        else if (r < 89)
            impossible_size();
        else if (r < 93)
            bad_alignment();
        else if (r < 97)
            limit_zero();
        else
            null_arguments();
        check_state();
    }
    call_name = "end of case";
    while (nlive) {
        struct block b = release(nlive - 1);
        EXPECT_CODE(cma_checked_free(b.p), CMA_OK);
        check_state();
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        say("usage: hostile SEED CASES [STEPS]\n");
        return 2;
    }
    seed = strtoull(argv[1], NULL, 0);
    unsigned long cases = strtoul(argv[2], NULL, 0);
    unsigned long steps = argc > 3 ? strtoul(argv[3], NULL, 0) : 200;
    region = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    reserved = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || reserved == MAP_FAILED) {
        say("hostile: mmap failed\n");
        return 2;
    }
    memset(region, REGION_FILL, REGION_SIZE);
    memset(static_bytes, STATIC_FILL, sizeof static_bytes);
    for (case_no = 0; case_no < cases; case_no++) {
        /* Each case has its own stream: a failure names the seed and case
         * to run again (hostile SEED CASES reaches it). */
        rng = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ (case_no + 1) * 0xD1B54A32D192ED03ULL;
        if (!rng)
            rng = 1;
        one_case(steps);
    }
    printf("hostile: ok (%lu cases, %lu calls)\n", cases, calls);
    return 0;
}
