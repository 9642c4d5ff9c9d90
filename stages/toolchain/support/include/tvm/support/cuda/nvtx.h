/*
 * tvm/support/cuda/nvtx.h -- NVTX profiling ranges, compiled out.
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  The VM and KV
 * cache mark regions with `support::NVTXScopedRange range(name);`.  NVTX only
 * exists for CUDA builds; for the web (wasm) runtime the range is a no-op
 * that accepts any name type (const char*, std::string, ffi::String).
 */
#ifndef TVM_SUPPORT_CUDA_NVTX_H_
#define TVM_SUPPORT_CUDA_NVTX_H_

namespace tvm {
namespace support {

/*! \brief RAII profiling range; does nothing in this build. */
class NVTXScopedRange {
 public:
  template <typename Name>
  explicit NVTXScopedRange(const Name&) {}
  NVTXScopedRange(const NVTXScopedRange&) = delete;
  NVTXScopedRange& operator=(const NVTXScopedRange&) = delete;
};

}  // namespace support
}  // namespace tvm

/*! \brief Function-scope range helper; no-op in this build. */
#define TVM_NVTX_FUNC_SCOPE()

#endif  // TVM_SUPPORT_CUDA_NVTX_H_
