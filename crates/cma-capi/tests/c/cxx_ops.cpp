// operator new / delete in all their forms go through cma.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "cma.h"

struct alignas(64) Line {
    char bytes[64];
};
struct alignas(4096) Page {
    char bytes[100];
};

static int failures;
#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            std::fprintf(stderr, "cxx_ops.cpp:%d: check failed: %s\n", __LINE__, #c); \
            failures++;                                                       \
        }                                                                     \
    } while (0)

static bool ours(const void *p) {
    size_t n;
    return cma_checked_block_size(p, &n) == CMA_OK;
}

int main(int argc, char **argv) {
    if (argc > 1 && std::strcmp(argv[1], "oom") == 0) {
        volatile size_t huge = SIZE_MAX / 2;
        char *p = new char[huge];
        std::printf("%p\n", (void *)p);
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "oom-kernel") == 0) {
        /* 64 TiB: a size the kernel refuses (unless overcommit is on). */
        volatile size_t impossible = (size_t)1 << 46;
        char *p = new char[impossible];
        p[0] = 1;
        std::printf("allocated %p\n", (void *)p);
        return 0;
    }
    int *i = new int(7);
    CHECK(ours(i));
    delete i;
    int *a = new int[100]();
    CHECK(ours(a) && a[99] == 0);
    delete[] a;
    Line *l = new Line;
    CHECK(ours(l) && (reinterpret_cast<uintptr_t>(l) & 63) == 0);
    delete l;
    Line *la = new Line[5];
    CHECK((reinterpret_cast<uintptr_t>(la) & 63) == 0);
    delete[] la;
    Page *pg = new Page;
    CHECK(ours(pg) && (reinterpret_cast<uintptr_t>(pg) & 4095) == 0);
    delete pg;
    void *nt = ::operator new(SIZE_MAX / 2, std::nothrow);
    CHECK(nt == nullptr);
    void *nta = ::operator new[](SIZE_MAX / 2, std::align_val_t(64), std::nothrow);
    CHECK(nta == nullptr);
    void *ok = ::operator new(100, std::nothrow);
    CHECK(ours(ok));
    ::operator delete(ok, std::nothrow);
    void *al = ::operator new(100, std::align_val_t(256));
    CHECK(ours(al) && (reinterpret_cast<uintptr_t>(al) & 255) == 0);
    ::operator delete(al, 100, std::align_val_t(256));
    void *s = ::operator new(48);
    ::operator delete(s, 48);
    void *z = ::operator new(0);
    CHECK(z != nullptr);
    ::operator delete(z);
    std::vector<std::vector<int>> vv;
    for (int k = 0; k < 1000; k++) vv.emplace_back(k, k);
    CHECK(ours(vv.data()));
    // Exceptions unwind through the program's libgcc_s while libcma carries
    // its own, static unwinder: the two must not meet.
    int caught = 0;
    for (int k = 0; k < 200; k++) {
        try {
            std::vector<std::string> strings(8, std::string(40, 'x'));
            throw std::runtime_error("round " + std::to_string(k));
        } catch (const std::runtime_error &e) {
            caught += std::strcmp(e.what(), ("round " + std::to_string(k)).c_str()) == 0;
        }
    }
    CHECK(caught == 200);
    if (failures) return 1;
    std::printf("cxx_ops: ok\n");
    return 0;
}
