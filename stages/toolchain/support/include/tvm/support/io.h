/*
 * tvm/support/io.h -- binary stream interface used by the TVM runtime.
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  It provides
 * `tvm::support::Stream`: an abstract byte stream (Read/Write of raw bytes)
 * plus typed helpers Read<T>/Write<T>/ReadArray<T>/WriteArray<T> that forward
 * to `tvm::support::Serializer<T>` (see serializer.h) for the byte layout.
 *
 * Contract relied on by the runtime sources:
 *   - Read(void*, n) / Write(const void*, n) return the number of bytes moved;
 *     subclasses override them (often as `final`) and re-expose the typed
 *     helpers with `using Stream::Read; using Stream::Write;`.
 *   - Read<T>(T*) / ReadArray<T>(T*, n) return true only if everything was read.
 */
#ifndef TVM_SUPPORT_IO_H_
#define TVM_SUPPORT_IO_H_

#include <cstddef>
#include <cstdint>

namespace tvm {
namespace support {

class Stream;

/*! \brief Per-type binary (de)serialization rule, defined in serializer.h. */
template <typename T>
struct Serializer;

namespace serializer_detail {
// Array helpers (defined in serializer.h): bulk copy for raw POD types,
// element-wise Serializer<T> calls otherwise.
template <typename T>
void WriteArrayImpl(Stream* strm, const T* data, size_t num);
template <typename T>
bool ReadArrayImpl(Stream* strm, T* data, size_t num);
}  // namespace serializer_detail

/*! \brief Abstract binary stream. */
class Stream {
 public:
  virtual ~Stream() = default;

  /*! \brief Read up to `size` bytes into `ptr`; returns the number of bytes read. */
  virtual size_t Read(void* ptr, size_t size) = 0;
  /*! \brief Write `size` bytes from `ptr`; returns the number of bytes written. */
  virtual size_t Write(const void* ptr, size_t size) = 0;

  /*! \brief Serialize one value with Serializer<T>. */
  template <typename T>
  void Write(const T& data) {
    Serializer<T>::Write(this, data);
  }
  /*! \brief Deserialize one value with Serializer<T>; false on short/invalid input. */
  template <typename T>
  bool Read(T* out) {
    return Serializer<T>::Read(this, out);
  }
  /*! \brief Serialize `num` consecutive values (no length prefix). */
  template <typename T>
  void WriteArray(const T* data, size_t num) {
    serializer_detail::WriteArrayImpl<T>(this, data, num);
  }
  /*! \brief Deserialize `num` consecutive values (no length prefix). */
  template <typename T>
  bool ReadArray(T* data, size_t num) {
    return serializer_detail::ReadArrayImpl<T>(this, data, num);
  }
};

}  // namespace support
}  // namespace tvm

// The typed helpers above need the Serializer definitions; pull them in so
// that including io.h alone is enough for the common types.
#include <tvm/support/serializer.h>

#endif  // TVM_SUPPORT_IO_H_
