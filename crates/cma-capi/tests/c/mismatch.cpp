// One release by the wrong family, chosen by argv[1]; at the default check
// level cma must abort with a one-line diagnostic naming both families. The
// operators are called directly, so the compiler cannot see (and warn about
// or fold away) the mismatch.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include <dlfcn.h>

// C23's sized frees: found at run time (libcma has them; an older C library
// may not, nor its headers).
static void free_sized(void *p, size_t size) {
    auto f = reinterpret_cast<void (*)(void *, size_t)>(dlsym(RTLD_DEFAULT, "free_sized"));
    if (!f) {
        std::fprintf(stderr, "no free_sized\n");
        std::exit(3);
    }
    f(p, size);
}

static void free_aligned_sized(void *p, size_t align, size_t size) {
    auto f = reinterpret_cast<void (*)(void *, size_t, size_t)>(
        dlsym(RTLD_DEFAULT, "free_aligned_sized"));
    if (!f) {
        std::fprintf(stderr, "no free_aligned_sized\n");
        std::exit(3);
    }
    f(p, align, size);
}

// Through a volatile: the compiler cannot follow the pointer from the
// allocation to the mismatched release (and would rightly warn about it).
static void *launder(void *p) {
    static void *volatile held;
    held = p;
    return held;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (std::strcmp(what, "free-of-new-array") == 0) {
        void *p = launder(::operator new[](40));
        std::fprintf(stderr, "ADDR=%p\n", p);
        std::free(p);
    } else if (std::strcmp(what, "delete-of-malloc") == 0) {
        void *p = launder(std::malloc(40));
        std::fprintf(stderr, "ADDR=%p\n", p);
        ::operator delete(p);
    } else if (std::strcmp(what, "delete-of-new-array") == 0) {
        void *p = launder(::operator new[](40));
        std::fprintf(stderr, "ADDR=%p\n", p);
        ::operator delete(p);
    } else if (std::strcmp(what, "delete-array-of-new") == 0) {
        void *p = launder(::operator new(40));
        std::fprintf(stderr, "ADDR=%p\n", p);
        ::operator delete[](p);
    } else if (std::strcmp(what, "delete-of-large-malloc") == 0) {
        void *p = launder(std::malloc(300 * 1024));
        std::fprintf(stderr, "ADDR=%p\n", p);
        ::operator delete(p);
    } else if (std::strcmp(what, "realloc-of-new") == 0) {
        void *p = launder(::operator new(40));
        std::fprintf(stderr, "ADDR=%p\n", p);
        p = std::realloc(p, 100);
    } else if (std::strcmp(what, "sized-delete-wrong-size") == 0) {
        void *p = launder(::operator new(40));
        std::fprintf(stderr, "ADDR=%p\n", p);
        ::operator delete(p, static_cast<std::size_t>(48));
    } else if (std::strcmp(what, "free-sized-wrong-size") == 0) {
        void *p = launder(std::malloc(40));
        std::fprintf(stderr, "ADDR=%p\n", p);
        free_sized(p, 41);
    } else if (std::strcmp(what, "free-aligned-sized-wrong-alignment") == 0) {
        void *p = launder(std::malloc(48));
        if ((reinterpret_cast<std::uintptr_t>(p) & 4095) == 0) {
            p = launder(std::malloc(48)); // a slab's first slot is page aligned
        }
        std::fprintf(stderr, "ADDR=%p\n", p);
        free_aligned_sized(p, 4096, 48);
    } else if (std::strcmp(what, "matched") == 0) {
        // Every family released by its own: no report.
        void *a = ::operator new(40);
        ::operator delete(a);
        void *b = ::operator new[](40);
        ::operator delete[](b);
        void *c = std::malloc(40);
        std::free(c);
        void *d = ::operator new(40);
        ::operator delete(d, static_cast<std::size_t>(40));
        void *e = std::malloc(300 * 1024);
        free_sized(e, 300 * 1024);
        void *f = ::operator new(100, std::align_val_t(64));
        ::operator delete(f, std::align_val_t(64));
        for (int i = 0; i < 1000; i++) {
            int *v = new int[i + 1];
            delete[] v;
            std::string *s = new std::string("x");
            delete s;
        }
        std::printf("matched: ok\n");
        return 0;
    }
    std::printf("no misuse\n");
    return 0;
}
