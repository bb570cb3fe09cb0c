// The engine of `nfm shell`: snapshots of one guest (frames with their time), a
// cursor into them, and the commands that answer from the snapshot under the
// cursor (frame commands) or from the live guest's caches (ls, cat, stat).
// Input and output live in cmd_shell.cpp; this only turns a line into text.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/format.h"
#include "features/file_cache/file_cache.h"
#include "frame/frame.h"
#include "util/time_text.h"

namespace nfm::app {

struct Snapshot {
  uint64_t number = 0;  // 1, 2, ... in the order taken (kept when older ones are dropped)
  Frame frame;
  uint64_t time_ns() const { return frame.meta.host_time_ns; }
};

struct ConsoleOptions {
  size_t keep = 100;  // snapshots kept (the oldest is dropped)
  std::string label;  // for the prompt: the target or the VM's name
};

class Console {
 public:
  // Snapshots come from `take` (a crawl of the live guest, or the next frames of a
  // store); `kernel` is the live guest for file commands (nullptr: none).
  using Source = std::function<Result<std::vector<Frame>>()>;
  Console(Kernel* kernel, Source take, ConsoleOptions options);

  // Takes snapshots from the source (what `sync` does); an error when none came.
  Result<void> sync(Output& o);
  // Runs one command line (commands separated by ';'). Returns false when one failed.
  bool run(const std::string& line, Output& o);
  bool quit() const { return quit_; }
  std::string prompt() const;
  const std::deque<Snapshot>& snapshots() const { return snapshots_; }

 private:
  bool run_one(const std::vector<std::string>& words, Output& o);
  const Snapshot* current() const;
  const Snapshot* find(uint64_t number) const;
  bool frame_command(const std::string& name, const std::vector<std::string>& args, Output& o);
  bool file_command(const std::string& name, const std::vector<std::string>& args, Output& o);
  void history(Output& o) const;
  bool diff(const std::vector<std::string>& args, Output& o);
  bool seed(const std::vector<std::string>& args, Output& o);
  bool at(const std::vector<std::string>& args, Output& o);

  Kernel* kernel_;
  Source take_;
  ConsoleOptions options_;
  std::deque<Snapshot> snapshots_;
  uint64_t next_number_ = 1;
  std::optional<uint64_t> seeded_;  // the snapshot chosen by seed/at; none = the newest
  std::optional<Result<FileCacheReader>> files_;
  bool quit_ = false;
};

}  // namespace nfm::app
