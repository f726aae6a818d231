// Status and Result<T>: how the engine reports errors, as values.
//
// A Status is either OK or a code with a message a person can act on ("cannot open
// /var/lib/mxward/state.db: permission denied"). Result<T> carries a T or a non-OK Status; it is
// the std::expected of this C++20 code base. Exceptions are used only at the edges (CLI, config
// load).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace mxward {

// [[nodiscard]]: a Status or Result that nobody reads is an error nobody handles. Discarding one
// on purpose is written `(void)call();` with a comment saying why.
class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // bad input from the user or a file: do not retry
    kNotFound,
    kAlreadyExists,
    kPermissionDenied,
    kUnavailable,        // transient: a server, socket or disk that may come back; retry
    kResourceExhausted,  // a cap was hit (queue full, rate limit, memory cap)
    kCorruption,
    kIoError,
    kInternal,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) {
    return {Code::kInvalidArgument, std::move(msg)};
  }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {Code::kAlreadyExists, std::move(msg)}; }
  static Status PermissionDenied(std::string msg) {
    return {Code::kPermissionDenied, std::move(msg)};
  }
  static Status Unavailable(std::string msg) { return {Code::kUnavailable, std::move(msg)}; }
  static Status ResourceExhausted(std::string msg) {
    return {Code::kResourceExhausted, std::move(msg)};
  }
  static Status Corruption(std::string msg) { return {Code::kCorruption, std::move(msg)}; }
  static Status IoError(std::string msg) { return {Code::kIoError, std::move(msg)}; }
  static Status Internal(std::string msg) { return {Code::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // True for failures worth retrying later (server down, timeout, disk full).
  bool transient() const {
    return code_ == Code::kUnavailable || code_ == Code::kResourceExhausted ||
           code_ == Code::kIoError;
  }
  // "invalid argument: <message>", or "OK".
  std::string ToString() const;

  // Prefixes the message with context: Status::IoError("disk full").Annotate("writing incident 7")
  // reads "writing incident 7: disk full".
  Status Annotate(std::string_view context) const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

std::string_view CodeName(Status::Code code);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mxward

#define MXWARD_RETURN_IF_ERROR(expr) \
  do {                               \
    ::mxward::Status _st = (expr);   \
    if (!_st.ok()) return _st;       \
  } while (0)
