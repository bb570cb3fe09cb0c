// What changed between two frames of one guest: processes started and exited,
// sockets opened and closed, modules loaded and unloaded, files opened and closed.
// Rows are matched by identity, not by position: a process is (pid, start time), so
// a reused pid is an exit plus a start; a socket is its kernel object and endpoints;
// an open file is (pid, fd, struct file).
#pragma once

#include <vector>

#include "frame/frame.h"
#include "features/modules/rows.h"
#include "features/open_files/rows.h"
#include "features/processes/rows.h"
#include "features/sockets/rows.h"

namespace nfm {

struct FrameDiff {
  std::vector<ProcessRow> started, exited;
  std::vector<SocketRow> opened, closed;
  std::vector<ModuleRow> loaded, unloaded;
  std::vector<OpenFileRow> files_opened, files_closed;
  // Features present in only one of the frames (or in neither) cannot be compared.
  std::vector<Feature> not_compared;
  bool empty() const {
    return started.empty() && exited.empty() && opened.empty() && closed.empty() &&
           loaded.empty() && unloaded.empty() && files_opened.empty() && files_closed.empty();
  }
};

// Changes from `before` to `after`.
FrameDiff diff_frames(const Frame& before, const Frame& after);

}  // namespace nfm
