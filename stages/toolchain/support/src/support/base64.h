/*
 * src/support/base64.h -- streaming base64 (RFC 4648, "+/" alphabet, '=' padding).
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  tensor.cc uses it
 * for the "__data_to_json__" / "__data_from_json__" tensor hooks:
 *   - Base64OutStream(Stream* out): bytes written to it are base64-encoded
 *     into `out`; Finish() must be called to emit the final group + padding.
 *   - Base64InStream(Stream* in): call InitPosition() (skips leading
 *     whitespace), then Read() decodes.  Whitespace inside the text is
 *     ignored; decoding stops at '=' padding, end of input, or at the first
 *     character outside the base64 alphabet (that character is consumed).
 */
#ifndef TVM_SUPPORT_BASE64_H_
#define TVM_SUPPORT_BASE64_H_

#include <tvm/ffi/error.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <string>

namespace tvm {
namespace support {

namespace base64 {
inline const char* EncodeTable() {
  return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}
/*! \brief 6-bit value of a base64 digit, or -1 for anything else. */
inline int DecodeChar(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
inline bool IsSpace(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
}  // namespace base64

/*! \brief Decoding stream: reads base64 text from another stream. */
class Base64InStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64InStream(Stream* in) : in_(in) {}

  /*! \brief Skip leading whitespace so that decoding starts at the first digit. */
  void InitPosition() {
    int c;
    do {
      c = NextRawChar();
    } while (c != kEOF && base64::IsSpace(c));
    pending_char_ = c;
  }

  size_t Read(void* ptr, size_t size) override {
    uint8_t* out = static_cast<uint8_t*>(ptr);
    size_t n = 0;
    while (n < size) {
      if (buf_pos_ == buf_len_ && !DecodeGroup()) break;
      out[n++] = buf_[buf_pos_++];
    }
    return n;
  }
  size_t Write(const void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "Base64InStream is read-only";
    TVM_FFI_UNREACHABLE();
  }

 private:
  static constexpr int kEOF = -1;

  int NextRawChar() {
    if (pending_char_ != kNone) {
      int c = pending_char_;
      pending_char_ = kNone;
      return c;
    }
    char ch;
    if (in_->Read(&ch, 1) != 1) return kEOF;
    return static_cast<unsigned char>(ch);
  }
  int NextNonSpace() {
    int c;
    do {
      c = NextRawChar();
    } while (c != kEOF && base64::IsSpace(c));
    return c;
  }
  /*! \brief Decode the next group of up to 4 digits into buf_; false at end of data. */
  bool DecodeGroup() {
    if (finished_) return false;
    uint32_t acc = 0;
    int ndigits = 0;
    while (ndigits < 4) {
      int c = NextNonSpace();
      int v = (c == kEOF) ? -1 : base64::DecodeChar(c);
      if (v < 0) {
        // '=' padding, end of input or a terminator: this is the last group.
        finished_ = true;
        break;
      }
      acc = (acc << 6) | static_cast<uint32_t>(v);
      ++ndigits;
    }
    // A group of k digits carries floor(6k/8) bytes; a single digit is invalid.
    TVM_FFI_ICHECK(ndigits != 1) << "Invalid base64 input";
    if (ndigits == 0) return false;
    acc <<= 6 * (4 - ndigits);
    buf_[0] = static_cast<uint8_t>(acc >> 16);
    buf_[1] = static_cast<uint8_t>(acc >> 8);
    buf_[2] = static_cast<uint8_t>(acc);
    buf_len_ = ndigits - 1;
    buf_pos_ = 0;
    return true;
  }

  static constexpr int kNone = -2;
  Stream* in_;
  int pending_char_ = kNone;
  bool finished_ = false;
  uint8_t buf_[3] = {0, 0, 0};
  int buf_len_ = 0;
  int buf_pos_ = 0;
};

/*! \brief Encoding stream: writes base64 text to another stream. */
class Base64OutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64OutStream(Stream* out) : out_(out) {}

  size_t Write(const void* ptr, size_t size) override {
    const uint8_t* in = static_cast<const uint8_t*>(ptr);
    for (size_t i = 0; i < size; ++i) {
      group_[group_len_++] = in[i];
      if (group_len_ == 3) EmitGroup();
    }
    if (text_.size() >= kFlushThreshold) FlushText();
    return size;
  }
  size_t Read(void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "Base64OutStream is write-only";
    TVM_FFI_UNREACHABLE();
  }

  /*! \brief Emit the trailing partial group with '=' padding and flush. */
  void Finish() {
    if (group_len_ != 0) EmitGroup();
    FlushText();
  }

 private:
  static constexpr size_t kFlushThreshold = 4096;

  void EmitGroup() {
    const char* table = base64::EncodeTable();
    uint32_t acc = (static_cast<uint32_t>(group_[0]) << 16) |
                   (group_len_ > 1 ? static_cast<uint32_t>(group_[1]) << 8 : 0u) |
                   (group_len_ > 2 ? static_cast<uint32_t>(group_[2]) : 0u);
    text_.push_back(table[(acc >> 18) & 0x3F]);
    text_.push_back(table[(acc >> 12) & 0x3F]);
    text_.push_back(group_len_ > 1 ? table[(acc >> 6) & 0x3F] : '=');
    text_.push_back(group_len_ > 2 ? table[acc & 0x3F] : '=');
    group_len_ = 0;
  }
  void FlushText() {
    if (!text_.empty()) out_->Write(static_cast<const void*>(text_.data()), text_.size());
    text_.clear();
  }

  Stream* out_;
  uint8_t group_[3] = {0, 0, 0};
  int group_len_ = 0;
  std::string text_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_BASE64_H_
