// `open_files`' section of a frame: every process's open files as /proc/PID/fd
// and fdinfo show them. Row types and columns only: no kernel model here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/walk_result.h"
#include "schema/fields.h"

namespace nfm {

struct OpenFileRow {
  int32_t pid = 0;
  std::string comm;
  int32_t fd = 0;
  std::string type;     // file, dir, socket, pipe, fifo, anon, char, block, link, unknown
  std::string path;     // as readlink(/proc/PID/fd/N) gives it
  uint64_t inode = 0;   // i_ino
  uint64_t pos = 0;     // f_pos (fdinfo "pos:")
  uint32_t flags = 0;   // f_flags, plus O_CLOEXEC from the fd table (fdinfo "flags:", octal there)
  uint32_t dev = 0;     // i_sb->s_dev (kernel encoding: major << 20 | minor)
  std::string fs_type;  // "ext4", "pipefs", "sockfs", ...
  uint64_t file = 0;    // struct file address
  uint64_t socket = 0;  // sockets: struct socket address (for joining with connections)
  uint64_t sock = 0;    // sockets: struct sock address
};

struct OpenFileOptions {
  std::optional<int32_t> pid;  // only this process
  size_t max_tasks = 1 << 16;
  uint32_t max_fds = 1 << 20;  // per process (the kernel's NR_OPEN)
};

struct OpenFileList {
  static constexpr std::string_view kFeature = "open_files";
  std::vector<OpenFileRow> rows;  // by pid, then fd
  WalkResult walk;                // the process list walk
  uint64_t task_errors = 0;       // processes whose fd table could not be read
  uint64_t row_errors = 0;        // fds skipped because a read failed
  uint64_t truncated_tables = 0;  // fd tables larger than max_fds
};

// The fdinfo-style type of an inode mode on a filesystem ("pipe" is a FIFO on pipefs).
std::string file_type_name(uint32_t mode, const std::string& fs_type);

const schema::Fields<OpenFileRow>& open_file_fields();

}  // namespace nfm
