/*
 * src/support/utils.h -- small string helpers used by the TVM runtime.
 *
 * Written for this project because the TVM wheel ships runtime sources that
 * include this header but does not ship the header itself.  The web runtime
 * only needs StartsWith (rpc_endpoint.cc checks error-message prefixes);
 * EndsWith and Split are the obvious companions and are kept tiny.
 * Any string-like argument is accepted: std::string, ffi::String (anything
 * with data()/size()), std::string_view and C strings / literals.
 */
#ifndef TVM_SUPPORT_UTILS_H_
#define TVM_SUPPORT_UTILS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tvm {
namespace support {

namespace utils_detail {
/*! \brief View any string-like value (std::string, ffi::String, literal, ...) as a string_view. */
inline std::string_view View(std::string_view s) { return s; }
template <typename S, typename = decltype(std::declval<const S&>().data()),
          typename = decltype(std::declval<const S&>().size())>
inline std::string_view View(const S& s) {
  return std::string_view(s.data(), s.size());
}
}  // namespace utils_detail

/*! \brief Whether `str` begins with `prefix`. */
template <typename S>
inline bool StartsWith(const S& str, std::string_view prefix) {
  std::string_view v = utils_detail::View(str);
  return v.size() >= prefix.size() && v.compare(0, prefix.size(), prefix) == 0;
}

/*! \brief Whether `str` ends with `suffix`. */
template <typename S>
inline bool EndsWith(const S& str, std::string_view suffix) {
  std::string_view v = utils_detail::View(str);
  return v.size() >= suffix.size() &&
         v.compare(v.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/*! \brief Split `str` at every `delim`; keeps empty pieces ("a,,b" -> {"a", "", "b"}). */
template <typename S>
inline std::vector<std::string> Split(const S& s, char delim) {
  std::string_view str = utils_detail::View(s);
  std::vector<std::string> ret;
  size_t start = 0;
  while (true) {
    size_t pos = str.find(delim, start);
    if (pos == std::string_view::npos) {
      ret.emplace_back(str.substr(start));
      return ret;
    }
    ret.emplace_back(str.substr(start, pos - start));
    start = pos + 1;
  }
}

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_UTILS_H_
