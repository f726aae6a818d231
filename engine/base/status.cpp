#include "mxward/status.h"

namespace mxward {

std::string_view CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return "OK";
    case Status::Code::kInvalidArgument:
      return "invalid argument";
    case Status::Code::kNotFound:
      return "not found";
    case Status::Code::kAlreadyExists:
      return "already exists";
    case Status::Code::kPermissionDenied:
      return "permission denied";
    case Status::Code::kUnavailable:
      return "unavailable";
    case Status::Code::kResourceExhausted:
      return "resource exhausted";
    case Status::Code::kCorruption:
      return "corruption";
    case Status::Code::kIoError:
      return "I/O error";
    case Status::Code::kInternal:
      return "internal error";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(CodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::Annotate(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, std::move(msg));
}

}  // namespace mxward
