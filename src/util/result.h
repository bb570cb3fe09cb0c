// One error type and one Result<T> for the whole library (a small std::expected
// stand-in until the project moves to C++23). Errors say *why* and, where it helps,
// *where* (the guest address that faulted).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace nfm {

enum class Errc {
  io,                // a host system call failed
  permission,        // the host refused access (ptrace, file mode)
  not_found,         // no such process, file, symbol, type or member
  invalid_argument,  // the caller asked for something malformed
  bad_format,        // input bytes are not what they claim to be
  fault,             // a guest address is unmapped or outside guest RAM
  mismatch,          // data from two sources disagrees (profile vs guest)
  limit,             // a safety bound was hit (walk length, string length)
  unsupported,       // understood, but not handled
};

const char* errc_name(Errc code);

struct Error {
  Errc code = Errc::io;
  std::string message;
  std::optional<uint64_t> address;  // faulting guest address, when there is one

  std::string to_string() const;
};

inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message), {}};
}
inline Error fault_at(uint64_t address, std::string message) {
  return Error{Errc::fault, std::move(message), address};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T value_or(T fallback) const { return ok() ? value() : std::move(fallback); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : e_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *e_; }

 private:
  std::optional<Error> e_;
};

}  // namespace nfm

// Propagate an error from an expression returning Result<...>.
#define NFM_TRY(expr)                                     \
  do {                                                    \
    auto nfm_try_result_ = (expr);                        \
    if (!nfm_try_result_) return nfm_try_result_.error(); \
  } while (0)

#define NFM_CONCAT_INNER_(a, b) a##b
#define NFM_CONCAT_(a, b) NFM_CONCAT_INNER_(a, b)
// Bind the value of a Result-returning expression or propagate its error.
#define NFM_ASSIGN(lhs, expr) NFM_ASSIGN_IMPL_(NFM_CONCAT_(nfm_assign_, __LINE__), lhs, expr)
#define NFM_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                     \
  if (!tmp) return tmp.error();          \
  lhs = std::move(tmp).value()
