// A C++ program of the original system: it includes cma.h, declares the
// original's prototypes again (a C++ compiler refuses two extern "C"
// declarations of one name that differ), and uses the API the way the
// original's C++ code did, a backend made of class statics included.
// Built as C++98 and as C++17 with -pedantic -Werror.
//
// Prints "original_api_cxx: ok" and exits 0, or names each failed check.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cma.h"

extern "C" {
void    *cma_malloc(size_t size);
void    *cma_realloc(void *ptr, size_t size);
void    *cma_aligned_alloc(size_t alignment, size_t size);
void     cma_free(void *ptr);
void     cma_bzero_and_free(void *ptr);
int32_t  cma_checked_free(void *ptr);
void     cma_free_double(char **content);
size_t   cma_block_size(const void *ptr);
int32_t  cma_checked_block_size(const void *ptr, size_t *block_size);
size_t   cma_alloc_size(const void *ptr);
int32_t  cma_set_alloc_limit(size_t limit);
void     cma_set_alloc_logging(bool enable);
bool     cma_get_alloc_logging(void);
int32_t  cma_set_thread_safety(bool enable);
int32_t  cma_enable_thread_safety(void);
int32_t  cma_disable_thread_safety(void);
bool     cma_is_thread_safe_enabled(void);
int32_t  cma_get_stats(size_t *allocation_count, size_t *free_count);
int32_t  cma_get_extended_stats(size_t *allocation_count, size_t *free_count,
                                size_t *current_bytes, size_t *peak_bytes);
int32_t  cma_set_backend(const cma_backend_hooks *hooks);
int32_t  cma_clear_backend(void);
bool     cma_backend_is_enabled(void);
}

static int failures = 0;
#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "original_api.cpp:%d: CHECK(%s) failed\n", __LINE__, \
                         #cond);                                                      \
            failures++;                                                               \
        }                                                                             \
    } while (0)

// A backend over a small static pool: one block per 256-byte cell.
class PoolBackend {
  public:
    static const size_t cells = 64;
    static const size_t cell_size = 256;

    static void *allocate(size_t size, void *user_data) {
        PoolBackend *self = static_cast<PoolBackend *>(user_data);
        if (size > cell_size)
            return 0;
        for (size_t i = 0; i < cells; i++)
            if (self->sizes[i] == 0) {
                self->sizes[i] = size;
                self->allocations++;
                return self->pool + i * cell_size;
            }
        return 0;
    }
    static void deallocate(void *ptr, void *user_data) {
        PoolBackend *self = static_cast<PoolBackend *>(user_data);
        size_t i = self->cell_of(ptr);
        self->wiped = true;
        for (size_t k = 0; k < self->sizes[i]; k++)
            self->wiped = self->wiped && self->pool[i * cell_size + k] == 0;
        self->sizes[i] = 0;
        self->deallocations++;
    }
    static size_t size_of(const void *ptr, void *user_data) {
        PoolBackend *self = static_cast<PoolBackend *>(user_data);
        return self->sizes[self->cell_of(ptr)];
    }
    static bool owns(const void *ptr, void *user_data) {
        PoolBackend *self = static_cast<PoolBackend *>(user_data);
        const unsigned char *p = static_cast<const unsigned char *>(ptr);
        if (p < self->pool || p >= self->pool + sizeof self->pool)
            return false;
        size_t offset = static_cast<size_t>(p - self->pool);
        return offset % cell_size == 0 && self->sizes[offset / cell_size] != 0;
    }

    cma_backend_hooks hooks() {
        cma_backend_hooks h;
        std::memset(&h, 0, sizeof h);
        h.allocate = &PoolBackend::allocate;
        h.deallocate = &PoolBackend::deallocate;
        h.get_allocation_size = &PoolBackend::size_of;
        h.owns_allocation = &PoolBackend::owns;
        h.user_data = this;
        return h;
    }

    bool holds(const void *ptr) { return owns(ptr, this); }

    unsigned allocations, deallocations;
    bool wiped;

  private:
    size_t cell_of(const void *ptr) const {
        return static_cast<size_t>(static_cast<const unsigned char *>(ptr) - pool) / cell_size;
    }
    unsigned char pool[cells * cell_size];
    size_t sizes[cells];
};

static PoolBackend backend; // zero-initialised: a static

int main() {
    size_t a0 = 0, f0 = 0;
    CHECK(cma_get_stats(&a0, &f0) == CMA_OK);

    char *own = static_cast<char *>(cma_malloc(40));
    CHECK(own != 0 && cma_block_size(own) >= 40 && cma_alloc_size(own) >= 40);
    cma_backend_hooks hooks = backend.hooks();
    CHECK(cma_set_backend(&hooks) == CMA_OK && cma_backend_is_enabled());

    char *b = static_cast<char *>(cma_malloc(100));
    CHECK(backend.holds(b) && backend.allocations == 1);
    std::memset(b, 'x', 100);
    // No reallocate hook: cma allocates from the backend, copies, gives back.
    char *b2 = static_cast<char *>(cma_realloc(b, 200));
    CHECK(backend.holds(b2) && b2[99] == 'x' && backend.deallocations == 1);
    CHECK(cma_block_size(b2) == 200);
    size_t size = 0;
    CHECK(cma_checked_block_size(b2, &size) == CMA_OK && size == 200);
    // Too big for the pool: the backend refuses, and cma says so.
    errno = 0;
    CHECK(cma_malloc(1000) == 0 && errno == ENOMEM);
    // The cma block from before is still cma's.
    char *own2 = static_cast<char *>(cma_realloc(own, 4000));
    CHECK(own2 != 0 && !backend.holds(own2));

    CHECK(cma_clear_backend() == CMA_OK && !cma_backend_is_enabled());
    std::memset(b2, 'y', 200);
    cma_bzero_and_free(b2);
    CHECK(backend.deallocations == 2 && backend.wiped);
    CHECK(cma_checked_free(own2) == CMA_OK);

    size_t a1 = 0, f1 = 0, current = 0, peak = 0;
    CHECK(cma_get_extended_stats(&a1, &f1, &current, &peak) == CMA_OK);
    CHECK(a1 - a0 == 4 && f1 - f0 == 4); // own, b, b2, own2 (a moved realloc counts)
    CHECK(peak >= current);

    CHECK(cma_set_alloc_limit(64) == CMA_OK);
    CHECK(cma_malloc(65) == 0);
    CHECK(cma_set_alloc_limit(0) == CMA_OK);

    CHECK(cma_disable_thread_safety() == CMA_OK && cma_is_thread_safe_enabled());
    CHECK(cma_set_thread_safety(true) == CMA_OK && cma_enable_thread_safety() == CMA_OK);
    CHECK(!cma_get_alloc_logging());
    cma_set_alloc_logging(false);

    char **strings = static_cast<char **>(cma_malloc(2 * sizeof(char *)));
    strings[0] = static_cast<char *>(cma_malloc(8));
    strings[1] = 0;
    cma_free_double(strings);
    void *aligned = cma_aligned_alloc(64, 64);
    CHECK(aligned != 0 && reinterpret_cast<size_t>(aligned) % 64 == 0);
    cma_free(aligned);

    if (failures) {
        std::fprintf(stderr, "original_api_cxx: %d failures\n", failures);
        return 1;
    }
    std::printf("original_api_cxx: ok\n");
    return 0;
}
