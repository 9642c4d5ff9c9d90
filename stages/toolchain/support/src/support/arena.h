/*
 * src/support/arena.h -- bump-pointer arena for short-lived trivial objects.
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  The RPC endpoint
 * (and minrpc) allocate per-message scratch with
 *   arena.allocate_<T>(count)   // uninitialized, suitably aligned T[count]
 * and release everything at once with arena.RecycleAll().  Pages are kept
 * for reuse after RecycleAll(); oversized requests get their own block,
 * which is freed on RecycleAll().  Alloc(size, align) is the untyped form.
 */
#ifndef TVM_SUPPORT_ARENA_H_
#define TVM_SUPPORT_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace tvm {
namespace support {

class Arena {
 public:
  static constexpr size_t kPageSize = 16 * 1024;

  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  /*! \brief Storage for `count` objects of trivial type T (not constructed). */
  template <typename T>
  T* allocate_(int count = 1) {
    static_assert(std::is_trivially_destructible<T>::value,
                  "Arena never runs destructors; T must be trivially destructible");
    size_t n = count > 0 ? static_cast<size_t>(count) : 0;
    return static_cast<T*>(Alloc(sizeof(T) * n, alignof(T)));
  }

  /*! \brief `size` bytes aligned to `align` (a power of two); valid until RecycleAll(). */
  void* Alloc(size_t size, size_t align = alignof(std::max_align_t)) {
    if (size == 0) size = 1;  // always hand out a distinct, valid pointer
    if (size + align > kPageSize) {
      // Oversized request: dedicated block, released by RecycleAll().
      large_.emplace_back(new char[size + align]);
      return AlignUp(large_.back().get(), align);
    }
    while (true) {
      if (page_index_ < pages_.size()) {
        char* base = pages_[page_index_].get();
        char* p = AlignUp(base + offset_, align);
        if (p + size <= base + kPageSize) {
          offset_ = static_cast<size_t>(p + size - base);
          return p;
        }
        ++page_index_;
        offset_ = 0;
      } else {
        pages_.emplace_back(new char[kPageSize]);
        // loop again: the fresh page is now pages_[page_index_]
      }
    }
  }

  /*! \brief Invalidate every allocation; keeps regular pages for reuse. */
  void RecycleAll() {
    page_index_ = 0;
    offset_ = 0;
    large_.clear();
  }

 private:
  static char* AlignUp(char* p, size_t align) {
    uintptr_t v = reinterpret_cast<uintptr_t>(p);
    v = (v + align - 1) & ~(static_cast<uintptr_t>(align) - 1);
    return reinterpret_cast<char*>(v);
  }

  std::vector<std::unique_ptr<char[]>> pages_;
  std::vector<std::unique_ptr<char[]>> large_;
  size_t page_index_ = 0;
  size_t offset_ = 0;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_ARENA_H_
