#include "store/jsonl_sink.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "frame/frame_json.h"

namespace nfm {

namespace {

std::string frame_line(const Frame& frame) {
  std::string line = dump_json(frame_json(frame), -1);
  line += '\n';
  return line;
}

// Writes all of `data` to `fd`; false with errno on failure.
bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

class StdoutSink : public FrameSink {
 public:
  std::string describe() const override { return "stdout"; }
  void write(const Frame& frame) override {
    const std::string line = frame_line(frame);
    std::lock_guard lock(mu_);
    if (write_all(STDOUT_FILENO, line)) {
      ++stats_.frames_written;
    } else {
      ++stats_.write_errors;
      stats_.last_error = fmt::format("write to stdout: {}", std::strerror(errno));
    }
  }
  SinkStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  mutable std::mutex mu_;
  SinkStats stats_;
};

class FileSink : public FrameSink {
 public:
  FileSink(std::string path, SinkOptions options) : path_(std::move(path)), options_(options) {}
  ~FileSink() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Result<void> open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return make_error(Errc::io, fmt::format("file:{}: {}", path_, std::strerror(errno)));
    struct stat st {};
    size_ = ::fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return {};
  }

  std::string describe() const override { return "file:" + path_; }

  void write(const Frame& frame) override {
    const std::string line = frame_line(frame);
    std::lock_guard lock(mu_);
    if (options_.rotate_bytes && size_ > 0 && size_ + line.size() > options_.rotate_bytes) rotate();
    if (fd_ < 0) {
      if (auto r = open(); !r) return fail(r.error().message);
    }
    if (!write_all(fd_, line))
      return fail(fmt::format("write {}: {}", path_, std::strerror(errno)));
    size_ += line.size();
    ++stats_.frames_written;
  }

  bool flush_until(std::chrono::steady_clock::time_point /*deadline*/) override {
    std::lock_guard lock(mu_);
    if (fd_ >= 0) ::fdatasync(fd_);
    return true;
  }

  SinkStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  void fail(std::string error) {
    ++stats_.write_errors;
    ++stats_.frames_dropped;
    stats_.last_error = std::move(error);
  }

  // PATH.N-1 -> PATH.N ... PATH -> PATH.1; the oldest beyond rotate_keep is removed.
  void rotate() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    const int keep = std::max(options_.rotate_keep, 0);
    if (keep == 0) {
      ::unlink(path_.c_str());
    } else {
      ::unlink(fmt::format("{}.{}", path_, keep).c_str());
      for (int i = keep - 1; i >= 1; --i)
        ::rename(fmt::format("{}.{}", path_, i).c_str(),
                 fmt::format("{}.{}", path_, i + 1).c_str());
      ::rename(path_.c_str(), (path_ + ".1").c_str());
    }
    size_ = 0;
    if (auto r = open(); !r) fail(r.error().message);
  }

  std::string path_;
  SinkOptions options_;
  mutable std::mutex mu_;
  int fd_ = -1;
  uint64_t size_ = 0;
  SinkStats stats_;
};

}  // namespace

std::unique_ptr<FrameSink> open_stdout_sink() {
  return std::make_unique<StdoutSink>();
}

Result<std::unique_ptr<FrameSink>> open_file_sink(const std::string& path,
                                                  const SinkOptions& options) {
  if (path.empty()) return make_error(Errc::invalid_argument, "file: needs a path (file:PATH)");
  auto sink = std::make_unique<FileSink>(path, options);
  NFM_TRY(sink->open());
  return std::unique_ptr<FrameSink>(std::move(sink));
}

}  // namespace nfm
