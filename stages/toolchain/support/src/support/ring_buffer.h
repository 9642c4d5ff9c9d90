/*
 * src/support/ring_buffer.h -- growable FIFO byte ring buffer.
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  The RPC endpoint
 * (rpc_endpoint.{h,cc}) uses it for its read/write queues:
 *   bytes_available(), Reserve(n), Read(ptr, n), Write(ptr, n),
 *   ReadWithCallback(f(const void*, size_t) -> size_t, max_nbytes),
 *   WriteWithCallback(f(void*, size_t) -> size_t, max_nbytes).
 * The callback variants hand out one contiguous region at a time and consume /
 * commit exactly the number of bytes the callback reports.
 */
#ifndef TVM_SUPPORT_RING_BUFFER_H_
#define TVM_SUPPORT_RING_BUFFER_H_

#include <tvm/ffi/error.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace tvm {
namespace support {

class RingBuffer {
 public:
  RingBuffer() : ring_(kInitCapacity) {}

  /*! \brief Number of bytes queued and not yet read. */
  size_t bytes_available() const { return size_; }
  /*! \brief Current storage capacity. */
  size_t capacity() const { return ring_.size(); }

  /*! \brief Make sure at least n bytes fit without further reallocation. */
  void Reserve(size_t n) {
    if (n <= ring_.size()) return;
    size_t new_cap = std::max(n, ring_.size() * 2);
    std::vector<char> next(new_cap);
    // Linearize existing content at the start of the new storage.
    CopyOut(next.data(), size_);
    ring_.swap(next);
    head_ = 0;
  }

  /*! \brief Pop exactly `size` bytes (must be available) into `data`. */
  void Read(void* data, size_t size) {
    TVM_FFI_ICHECK_LE(size, size_) << "RingBuffer: reading more bytes than available";
    CopyOut(static_cast<char*>(data), size);
    Consume(size);
  }

  /*! \brief Append `size` bytes, growing the storage if needed. */
  void Write(const void* data, size_t size) {
    Reserve(size_ + size);
    const char* src = static_cast<const char*>(data);
    size_t tail = (head_ + size_) % ring_.size();
    size_t first = std::min(size, ring_.size() - tail);
    if (first != 0) std::memcpy(ring_.data() + tail, src, first);
    if (size > first) std::memcpy(ring_.data(), src + first, size - first);
    size_ += size;
  }

  /*!
   * \brief Pass up to max_nbytes queued bytes (one contiguous chunk) to
   *        frecv(const void* data, size_t size) -> size_t and drop as many
   *        bytes as it reports consumed.
   * \return the number of bytes consumed.
   */
  template <typename FRecv>
  size_t ReadWithCallback(FRecv frecv, size_t max_nbytes) {
    size_t chunk = std::min({max_nbytes, size_, ring_.size() - head_});
    if (chunk == 0) return 0;
    size_t n = frecv(static_cast<const void*>(ring_.data() + head_), chunk);
    TVM_FFI_ICHECK_LE(n, chunk);
    Consume(n);
    return n;
  }

  /*!
   * \brief Let fsend(void* data, size_t size) -> size_t fill up to max_nbytes
   *        of free space (one contiguous chunk) and keep as many bytes as it
   *        reports written.
   * \return the number of bytes appended.
   */
  template <typename FSend>
  size_t WriteWithCallback(FSend fsend, size_t max_nbytes) {
    if (max_nbytes == 0) return 0;
    Reserve(size_ + max_nbytes);
    size_t tail = (head_ + size_) % ring_.size();
    // Free space after tail up to the end of storage (or up to head when wrapped).
    size_t contiguous = tail >= head_ ? ring_.size() - tail : head_ - tail;
    size_t chunk = std::min(max_nbytes, contiguous);
    size_t n = fsend(static_cast<void*>(ring_.data() + tail), chunk);
    TVM_FFI_ICHECK_LE(n, chunk);
    size_ += n;
    return n;
  }

  /*! \brief Drop all queued bytes. */
  void Clear() {
    head_ = 0;
    size_ = 0;
  }

 private:
  static constexpr size_t kInitCapacity = 1024;

  void CopyOut(char* dst, size_t size) const {
    size_t first = std::min(size, ring_.size() - head_);
    if (first != 0) std::memcpy(dst, ring_.data() + head_, first);
    if (size > first) std::memcpy(dst + first, ring_.data(), size - first);
  }
  void Consume(size_t size) {
    size_ -= size;
    head_ = size_ == 0 ? 0 : (head_ + size) % ring_.size();
  }

  std::vector<char> ring_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_RING_BUFFER_H_
