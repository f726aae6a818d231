#include "engine/cli/log_history.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <istream>
#include <streambuf>

#include <fmt/format.h>

#include "engine/base/parse_number.h"
#include "mxward/file_follower.h"

namespace mxward::cli {

namespace {

// A read-only streambuf over a gzFile (zlib reads a plain file through as it is).
class GzipStreamBuf final : public std::streambuf {
 public:
  explicit GzipStreamBuf(gzFile file) : file_(file) {}
  bool failed() const { return failed_; }
  std::string error() const {
    int code = 0;
    const char* msg = gzerror(file_, &code);
    return msg ? msg : "read error";
  }

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    const int n = gzread(file_, buffer_.data(), static_cast<unsigned>(buffer_.size()));
    if (n < 0) failed_ = true;
    if (n <= 0) return traits_type::eof();
    setg(buffer_.data(), buffer_.data(), buffer_.data() + n);
    return traits_type::to_int_type(*gptr());
  }

 private:
  gzFile file_;
  bool failed_ = false;
  std::array<char, 1 << 16> buffer_{};
};

}  // namespace

int RotationNumber(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  if (name.ends_with(".gz")) name.resize(name.size() - 3);
  const std::size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot + 1 == name.size()) return 0;
  return ParseNumber<int>(std::string_view(name).substr(dot + 1)).value_or(0);
}

std::vector<std::string> OldestFirst(std::vector<std::string> files) {
  std::stable_sort(files.begin(), files.end(), [](const std::string& a, const std::string& b) {
    return RotationNumber(a) > RotationNumber(b);
  });
  return files;
}

Status ReadLogHistoryFile(const std::string& path, LineSink* sink) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return Status::IoError(fmt::format("cannot open {}", path));
  gzbuffer(file, 1 << 17);
  GzipStreamBuf buf(file);
  std::istream in(&buf);
  Status st = ReadLines(in, sink);
  if (st.ok() && buf.failed()) {
    st = Status::IoError(fmt::format("{}: {}", path, buf.error()));
  }
  gzclose(file);
  return st;
}

}  // namespace mxward::cli
