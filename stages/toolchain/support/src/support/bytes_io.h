/*
 * src/support/bytes_io.h -- in-memory support::Stream implementations.
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  Provides:
 *   - BytesInStream: reads from a byte buffer (std::string, ffi::Bytes,
 *     ffi::String, or pointer + size).  Buffers passed as lvalues are NOT
 *     copied and must outlive the stream; rvalue std::string / ffi::Bytes /
 *     ffi::String arguments are kept alive by the stream itself.
 *   - BytesOutStream: appends everything written to a caller-owned std::string.
 */
#ifndef TVM_SUPPORT_BYTES_IO_H_
#define TVM_SUPPORT_BYTES_IO_H_

#include <tvm/ffi/error.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace tvm {
namespace support {

/*! \brief Read-only stream over a contiguous byte buffer. */
class BytesInStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  BytesInStream(const void* data, size_t size)
      : data_(static_cast<const char*>(data)), size_(size) {}
  explicit BytesInStream(const std::string& data) : BytesInStream(data.data(), data.size()) {}
  explicit BytesInStream(std::string&& data) : owned_str_(std::move(data)) {
    data_ = owned_str_.data();
    size_ = owned_str_.size();
  }
  explicit BytesInStream(const ffi::Bytes& data) : owned_bytes_(data) {
    // ffi::Bytes is reference counted: holding a reference is cheap and safe.
    data_ = owned_bytes_.data();
    size_ = owned_bytes_.size();
  }
  explicit BytesInStream(const ffi::String& data) : owned_string_(data) {
    data_ = owned_string_.data();
    size_ = owned_string_.size();
  }
  // data_ may point into the owned members (small-string storage): not copyable.
  BytesInStream(const BytesInStream&) = delete;
  BytesInStream& operator=(const BytesInStream&) = delete;

  size_t Read(void* ptr, size_t size) override {
    size_t n = std::min(size, size_ - pos_);
    if (n != 0) std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return n;
  }
  size_t Write(const void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "BytesInStream is read-only";
    TVM_FFI_UNREACHABLE();
  }

  /*! \brief Current read offset. */
  size_t Tell() const { return pos_; }
  /*! \brief Move the read offset (clamped to the buffer size). */
  void Seek(size_t pos) { pos_ = std::min(pos, size_); }
  /*! \brief Number of bytes not yet read. */
  size_t BytesRemaining() const { return size_ - pos_; }

 private:
  std::string owned_str_;
  ffi::Bytes owned_bytes_;
  ffi::String owned_string_;
  const char* data_ = nullptr;
  size_t size_ = 0;
  size_t pos_ = 0;
};

/*! \brief Write-only stream appending to a std::string owned by the caller. */
class BytesOutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit BytesOutStream(std::string* out) : out_(out) {}

  size_t Write(const void* ptr, size_t size) override {
    if (size != 0) out_->append(static_cast<const char*>(ptr), size);
    return size;
  }
  size_t Read(void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "BytesOutStream is write-only";
    TVM_FFI_UNREACHABLE();
  }

 private:
  std::string* out_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_BYTES_IO_H_
