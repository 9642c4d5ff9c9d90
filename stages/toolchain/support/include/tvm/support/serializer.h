/*
 * tvm/support/serializer.h -- byte layout of values written to support::Stream.
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  It defines
 * `tvm::support::Serializer<T>` (static Write(Stream*, const T&) and
 * Read(Stream*, T*) -> bool, plus `enabled`), which the runtime both uses and
 * specializes (e.g. for runtime::FunctionInfo and vm::VMFuncInfo).
 *
 * Byte layout (must match what libtvm writes on the Python side; checked
 * against VM executables, WebGPU modules and SaveParams blobs it produced):
 *   - arithmetic / enum / trivially copyable standard-layout structs
 *     (DLDataType, DLDevice, ...): raw sizeof(T) bytes, little-endian;
 *   - std::string, ffi::String, ffi::Bytes: uint64 length, then the bytes;
 *   - std::vector<T>, ffi::Array<T>: uint64 count, then the elements
 *     (raw bulk bytes when T is a raw POD);
 *   - std::pair<A, B>: first, then second;
 *   - std::map / std::unordered_map / ffi::Map: uint64 count, then
 *     key, value, key, value, ...
 */
#ifndef TVM_SUPPORT_SERIALIZER_H_
#define TVM_SUPPORT_SERIALIZER_H_

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/endian.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tvm {
namespace support {

namespace serializer_detail {

/*! \brief Types stored as their raw object bytes. */
template <typename T>
inline constexpr bool kIsRawPOD =
    std::is_arithmetic_v<T> || std::is_enum_v<T> ||
    (std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> && std::is_class_v<T>);

template <typename T>
inline constexpr bool kAlwaysFalse = false;

/*! \brief Convert one raw value between host order and the (little-endian) file order. */
template <typename T>
inline void SwapToFileOrder(T* v) {
  if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    ffi::ByteSwap(v, sizeof(T), 1);
  } else {
    static_assert(kAlwaysFalse<T>,
                  "big-endian serialization of this struct needs a field-wise swap");
  }
}
inline void SwapToFileOrder(DLDataType* v) { ffi::ByteSwap(&v->lanes, sizeof(v->lanes), 1); }
inline void SwapToFileOrder(DLDevice* v) {
  ffi::ByteSwap(&v->device_type, sizeof(v->device_type), 1);
  ffi::ByteSwap(&v->device_id, sizeof(v->device_id), 1);
}

/*! \brief Whether Serializer<T> is the raw-bytes rule (so arrays can be bulk copied). */
template <typename S, typename = void>
struct HasRawLayout : std::false_type {};
template <typename S>
struct HasRawLayout<S, std::void_t<decltype(S::kRawLayout)>> : std::bool_constant<S::kRawLayout> {};

inline void WriteU64(Stream* strm, uint64_t v) {
  if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(&v, sizeof(v), 1);
  strm->Write(static_cast<const void*>(&v), sizeof(v));
}
inline bool ReadU64(Stream* strm, uint64_t* v) {
  if (strm->Read(static_cast<void*>(v), sizeof(*v)) != sizeof(*v)) return false;
  if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(v, sizeof(*v), 1);
  return true;
}
/*! \brief uint64 length followed by raw bytes. */
inline void WriteBytes(Stream* strm, const char* data, size_t size) {
  WriteU64(strm, static_cast<uint64_t>(size));
  if (size != 0) strm->Write(static_cast<const void*>(data), size);
}
inline bool ReadBytes(Stream* strm, std::string* out) {
  uint64_t size;
  if (!ReadU64(strm, &size)) return false;
  out->resize(static_cast<size_t>(size));
  if (size == 0) return true;
  return strm->Read(static_cast<void*>(&(*out)[0]), out->size()) == out->size();
}

template <typename T>
void WriteArrayImpl(Stream* strm, const T* data, size_t num) {
  if constexpr (HasRawLayout<Serializer<T>>::value && TVM_FFI_IO_NO_ENDIAN_SWAP) {
    if (num != 0) strm->Write(static_cast<const void*>(data), sizeof(T) * num);
  } else {
    for (size_t i = 0; i < num; ++i) Serializer<T>::Write(strm, data[i]);
  }
}

template <typename T>
bool ReadArrayImpl(Stream* strm, T* data, size_t num) {
  if constexpr (HasRawLayout<Serializer<T>>::value && TVM_FFI_IO_NO_ENDIAN_SWAP) {
    if (num == 0) return true;
    return strm->Read(static_cast<void*>(data), sizeof(T) * num) == sizeof(T) * num;
  } else {
    for (size_t i = 0; i < num; ++i) {
      if (!Serializer<T>::Read(strm, data + i)) return false;
    }
    return true;
  }
}

}  // namespace serializer_detail

/*! \brief Default rule: raw little-endian bytes of a POD value. */
template <typename T>
struct Serializer {
  static constexpr bool enabled = serializer_detail::kIsRawPOD<T>;
  static constexpr bool kRawLayout = enabled;

  static void Write(Stream* strm, const T& value) {
    static_assert(enabled, "tvm::support::Serializer: no serialization rule for this type");
    if constexpr (TVM_FFI_IO_NO_ENDIAN_SWAP) {
      strm->Write(static_cast<const void*>(&value), sizeof(T));
    } else {
      T tmp = value;
      serializer_detail::SwapToFileOrder(&tmp);
      strm->Write(static_cast<const void*>(&tmp), sizeof(T));
    }
  }
  static bool Read(Stream* strm, T* out) {
    static_assert(enabled, "tvm::support::Serializer: no serialization rule for this type");
    if (strm->Read(static_cast<void*>(out), sizeof(T)) != sizeof(T)) return false;
    if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) serializer_detail::SwapToFileOrder(out);
    return true;
  }
};

template <>
struct Serializer<std::string> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::string& s) {
    serializer_detail::WriteBytes(strm, s.data(), s.size());
  }
  static bool Read(Stream* strm, std::string* out) {
    return serializer_detail::ReadBytes(strm, out);
  }
};

template <>
struct Serializer<ffi::String> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::String& s) {
    serializer_detail::WriteBytes(strm, s.data(), s.size());
  }
  static bool Read(Stream* strm, ffi::String* out) {
    std::string tmp;
    if (!serializer_detail::ReadBytes(strm, &tmp)) return false;
    *out = ffi::String(std::move(tmp));
    return true;
  }
};

template <>
struct Serializer<ffi::Bytes> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Bytes& s) {
    serializer_detail::WriteBytes(strm, s.data(), s.size());
  }
  static bool Read(Stream* strm, ffi::Bytes* out) {
    std::string tmp;
    if (!serializer_detail::ReadBytes(strm, &tmp)) return false;
    *out = ffi::Bytes(std::move(tmp));
    return true;
  }
};

template <typename T, typename Alloc>
struct Serializer<std::vector<T, Alloc>> {
  static_assert(!std::is_same_v<T, bool>, "std::vector<bool> is not serializable");
  static constexpr bool enabled = Serializer<T>::enabled;
  static void Write(Stream* strm, const std::vector<T, Alloc>& vec) {
    serializer_detail::WriteU64(strm, static_cast<uint64_t>(vec.size()));
    serializer_detail::WriteArrayImpl<T>(strm, vec.data(), vec.size());
  }
  static bool Read(Stream* strm, std::vector<T, Alloc>* out) {
    uint64_t size;
    if (!serializer_detail::ReadU64(strm, &size)) return false;
    out->resize(static_cast<size_t>(size));
    return serializer_detail::ReadArrayImpl<T>(strm, out->data(), out->size());
  }
};

template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = Serializer<A>::enabled && Serializer<B>::enabled;
  static void Write(Stream* strm, const std::pair<A, B>& p) {
    Serializer<A>::Write(strm, p.first);
    Serializer<B>::Write(strm, p.second);
  }
  static bool Read(Stream* strm, std::pair<A, B>* out) {
    return Serializer<A>::Read(strm, &out->first) && Serializer<B>::Read(strm, &out->second);
  }
};

namespace serializer_detail {
/*! \brief Shared rule for std::map-like containers: count, then key/value pairs. */
template <typename MapT>
struct StdMapSerializer {
  using K = typename MapT::key_type;
  using V = typename MapT::mapped_type;
  static constexpr bool enabled = Serializer<K>::enabled && Serializer<V>::enabled;
  static void Write(Stream* strm, const MapT& m) {
    WriteU64(strm, static_cast<uint64_t>(m.size()));
    for (const auto& kv : m) {
      Serializer<K>::Write(strm, kv.first);
      Serializer<V>::Write(strm, kv.second);
    }
  }
  static bool Read(Stream* strm, MapT* out) {
    uint64_t size;
    if (!ReadU64(strm, &size)) return false;
    out->clear();
    for (uint64_t i = 0; i < size; ++i) {
      K key;
      V value;
      if (!Serializer<K>::Read(strm, &key) || !Serializer<V>::Read(strm, &value)) return false;
      (*out)[std::move(key)] = std::move(value);
    }
    return true;
  }
};
}  // namespace serializer_detail

template <typename K, typename V, typename Cmp, typename Alloc>
struct Serializer<std::map<K, V, Cmp, Alloc>>
    : serializer_detail::StdMapSerializer<std::map<K, V, Cmp, Alloc>> {};

template <typename K, typename V, typename H, typename Eq, typename Alloc>
struct Serializer<std::unordered_map<K, V, H, Eq, Alloc>>
    : serializer_detail::StdMapSerializer<std::unordered_map<K, V, H, Eq, Alloc>> {};

template <typename T>
struct Serializer<ffi::Array<T>> {
  static constexpr bool enabled = Serializer<T>::enabled;
  static void Write(Stream* strm, const ffi::Array<T>& arr) {
    serializer_detail::WriteU64(strm, static_cast<uint64_t>(arr.size()));
    for (const T& item : arr) Serializer<T>::Write(strm, item);
  }
  static bool Read(Stream* strm, ffi::Array<T>* out) {
    uint64_t size;
    if (!serializer_detail::ReadU64(strm, &size)) return false;
    ffi::Array<T> result;
    for (uint64_t i = 0; i < size; ++i) {
      T item;
      if (!Serializer<T>::Read(strm, &item)) return false;
      result.push_back(std::move(item));
    }
    *out = std::move(result);
    return true;
  }
};

template <typename K, typename V>
struct Serializer<ffi::Map<K, V>> {
  static constexpr bool enabled = Serializer<K>::enabled && Serializer<V>::enabled;
  static void Write(Stream* strm, const ffi::Map<K, V>& m) {
    serializer_detail::WriteU64(strm, static_cast<uint64_t>(m.size()));
    for (const auto& kv : m) {
      Serializer<K>::Write(strm, kv.first);
      Serializer<V>::Write(strm, kv.second);
    }
  }
  static bool Read(Stream* strm, ffi::Map<K, V>* out) {
    uint64_t size;
    if (!serializer_detail::ReadU64(strm, &size)) return false;
    ffi::Map<K, V> result;
    for (uint64_t i = 0; i < size; ++i) {
      K key;
      V value;
      if (!Serializer<K>::Read(strm, &key) || !Serializer<V>::Read(strm, &value)) return false;
      result.Set(key, value);
    }
    *out = std::move(result);
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_SERIALIZER_H_
