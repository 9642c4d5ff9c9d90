/*
 * 3rdparty/compiler-rt/builtin_fp16.h -- generic IEEE-754 binary format
 * narrowing / widening conversions (used for float <-> half).
 *
 * Written from scratch for this project because the TVM wheel ships runtime
 * sources that include this header but does not ship it.  Only the interface
 * the runtime uses is provided:
 *
 *   __truncXfYf2__<SrcT, SrcRepT, SrcSigBits, DstT, DstRepT, DstSigBits>(SrcT a)
 *       narrow a wider format to a narrower one, round-to-nearest-even;
 *       e.g. float -> half bits: <float, uint32_t, 23, uint16_t, uint16_t, 10>.
 *   __extendXfYf2__<SrcT, SrcRepT, SrcSigBits, DstT, DstRepT, DstSigBits>(SrcT a)
 *       widen a narrower format exactly;
 *       e.g. half bits -> float: <uint16_t, uint16_t, 10, float, uint32_t, 23>.
 *
 * `*RepT` is the unsigned integer type holding the format's bits and
 * `*SigBits` the number of stored significand bits; the exponent width is
 * derived from them.  NaN payloads are kept (high bits) and NaNs always come
 * out quiet; overflow gives infinity; underflow gives (signed) zero or a
 * correctly rounded subnormal.  Results are bit-identical to x86 F16C /
 * hardware casts (checked exhaustively for float<->half).  The (reserved)
 * names follow the compiler-rt convention the runtime sources expect.
 */
#ifndef TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_
#define TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace tvm_builtin_fp16_detail {

template <typename RepT, int SigBits>
struct FloatFormat {
  static_assert(std::is_unsigned<RepT>::value, "representation must be an unsigned integer");
  static constexpr int kBits = static_cast<int>(sizeof(RepT) * 8);
  static constexpr int kSigBits = SigBits;
  static constexpr int kExpBits = kBits - SigBits - 1;
  static constexpr int kExpMax = (1 << kExpBits) - 1;  // all-ones exponent: inf / NaN
  static constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  static constexpr RepT kOne = 1;
  static constexpr RepT kSignBit = kOne << (kBits - 1);
  static constexpr RepT kSigMask = (kOne << SigBits) - 1;
  static constexpr RepT kImplicitBit = kOne << SigBits;
  static constexpr RepT kQuietBit = kOne << (SigBits - 1);
};

template <typename To, typename From>
inline To BitCopy(const From& v) {
  static_assert(sizeof(To) == sizeof(From), "size mismatch");
  To out;
  std::memcpy(&out, &v, sizeof(To));
  return out;
}

}  // namespace tvm_builtin_fp16_detail

template <typename SrcT, typename SrcRepT, int SrcSigBits, typename DstT, typename DstRepT,
          int DstSigBits>
inline DstT __truncXfYf2__(SrcT a) {
  using S = tvm_builtin_fp16_detail::FloatFormat<SrcRepT, SrcSigBits>;
  using D = tvm_builtin_fp16_detail::FloatFormat<DstRepT, DstSigBits>;
  static_assert(SrcSigBits > DstSigBits && S::kExpBits >= D::kExpBits,
                "__truncXfYf2__ narrows to a format with fewer significand and exponent bits");
  constexpr int kShift = SrcSigBits - DstSigBits;  // significand bits dropped for normals

  const SrcRepT bits = tvm_builtin_fp16_detail::BitCopy<SrcRepT>(a);
  const DstRepT sign = (bits & S::kSignBit) ? D::kSignBit : DstRepT(0);
  const SrcRepT abs = bits & ~S::kSignBit;
  const int exp = static_cast<int>(abs >> SrcSigBits);
  const SrcRepT frac = abs & S::kSigMask;

  DstRepT out;
  if (exp == S::kExpMax) {
    // Infinity or NaN.  Keep the top payload bits; force quiet so a NaN never
    // turns into infinity.
    out = static_cast<DstRepT>(DstRepT(D::kExpMax) << DstSigBits);
    if (frac != 0) out |= static_cast<DstRepT>(D::kQuietBit | (frac >> kShift));
  } else if (abs == 0) {
    out = 0;
  } else {
    // value = sig * 2^(e - SrcSigBits)
    int e;
    SrcRepT sig;
    if (exp == 0) {
      e = 1 - S::kBias;  // subnormal source
      sig = frac;
    } else {
      e = exp - S::kBias;
      sig = frac | S::kImplicitBit;
    }
    const int dexp = e + D::kBias;  // biased destination exponent if normal
    if (dexp >= D::kExpMax) {
      out = static_cast<DstRepT>(DstRepT(D::kExpMax) << DstSigBits);  // overflow -> inf
    } else {
      // Number of low bits of `sig` to drop.  For normal results this is kShift;
      // subnormal results (dexp <= 0) lose (1 - dexp) more bits.
      const int drop = kShift + (dexp >= 1 ? 0 : 1 - dexp);
      SrcRepT kept = 0, rem = 0, half = 0;
      // sig < 2^(SrcSigBits + 1), so when drop >= SrcSigBits + 2 the value is
      // below half of the smallest subnormal and rounds to zero (kept = 0, no
      // rounding increment).
      if (drop <= SrcSigBits + 1) {
        kept = sig >> drop;
        rem = sig & ((SrcRepT(1) << drop) - 1);
        half = SrcRepT(1) << (drop - 1);
      }
      DstRepT mag;
      if (dexp >= 1) {
        // Normal: exponent field plus significand without the implicit bit.
        mag = static_cast<DstRepT>((DstRepT(dexp) << DstSigBits) |
                                   static_cast<DstRepT>(kept & SrcRepT(D::kSigMask)));
      } else {
        mag = static_cast<DstRepT>(kept);  // subnormal: exponent field 0
      }
      // Round to nearest, ties to even.  A carry out of the significand bumps
      // the exponent (subnormal -> smallest normal, max finite -> infinity),
      // which is exactly right for IEEE encodings.
      if (half != 0 && (rem > half || (rem == half && (mag & 1)))) ++mag;
      out = mag;
    }
  }
  return tvm_builtin_fp16_detail::BitCopy<DstT>(static_cast<DstRepT>(out | sign));
}

template <typename SrcT, typename SrcRepT, int SrcSigBits, typename DstT, typename DstRepT,
          int DstSigBits>
inline DstT __extendXfYf2__(SrcT a) {
  using S = tvm_builtin_fp16_detail::FloatFormat<SrcRepT, SrcSigBits>;
  using D = tvm_builtin_fp16_detail::FloatFormat<DstRepT, DstSigBits>;
  static_assert(DstSigBits > SrcSigBits && D::kExpBits >= S::kExpBits,
                "__extendXfYf2__ widens to a format with more significand and exponent bits");
  constexpr int kShift = DstSigBits - SrcSigBits;

  const SrcRepT bits = tvm_builtin_fp16_detail::BitCopy<SrcRepT>(a);
  const DstRepT sign = (bits & S::kSignBit) ? D::kSignBit : DstRepT(0);
  const SrcRepT abs = bits & ~S::kSignBit;
  const int exp = static_cast<int>(abs >> SrcSigBits);
  const DstRepT frac = static_cast<DstRepT>(abs & S::kSigMask);

  DstRepT out;
  if (exp == S::kExpMax) {
    // Infinity / NaN: the payload moves up; NaNs come out quiet (as hardware
    // conversions do).
    out = static_cast<DstRepT>((DstRepT(D::kExpMax) << DstSigBits) | (frac << kShift));
    if (frac != 0) out |= D::kQuietBit;
  } else if (exp != 0) {
    out = static_cast<DstRepT>((DstRepT(exp - S::kBias + D::kBias) << DstSigBits) |
                               (frac << kShift));
  } else if (frac == 0) {
    out = 0;
  } else {
    // Subnormal source: normalize so the leading 1 becomes the implicit bit.
    int lead = SrcSigBits - 1;  // position of the leading 1 in frac
    while (!((frac >> lead) & 1)) --lead;
    const int norm_shift = SrcSigBits - lead;  // shift that moves it to bit SrcSigBits
    const int e = 1 - S::kBias - norm_shift;   // unbiased exponent of the value
    const DstRepT sig = static_cast<DstRepT>((frac << norm_shift) & DstRepT(S::kSigMask));
    out = static_cast<DstRepT>((DstRepT(e + D::kBias) << DstSigBits) | (sig << kShift));
  }
  return tvm_builtin_fp16_detail::BitCopy<DstT>(static_cast<DstRepT>(out | sign));
}

#endif  // TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_
