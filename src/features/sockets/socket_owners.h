// Which processes hold each socket: every process's fd table, socket files
// only (f_op == socket_file_ops), keyed by the socket's inode number — the
// "socket:[INODE]" that /proc/PID/fd shows. Deliberately small: a general
// open-files feature can replace it with its own rows.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "features/processes/processes.h"
#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

struct SocketOwner {
  int32_t pid = 0;  // process (thread group) id
  std::string comm;
  int32_t fd = -1;
};

struct SocketOwners {
  // socket inode number -> holders, by pid then fd.
  std::unordered_map<uint64_t, std::vector<SocketOwner>> by_inode;
  uint64_t processes = 0;  // processes whose fd table was read
  uint64_t errors = 0;     // processes or files that could not be read
  // The holder netstat -p shows: the lowest pid (its lowest fd). nullptr if none.
  const SocketOwner* first(uint64_t inode) const;
};

struct SocketOwnerOptions {
  size_t max_fds = 1 << 20;  // per fd table (the kernel's default nr_open)
};

// `tasks`: this crawl's process list when the caller has it, else the tasks are walked here.
Result<SocketOwners> find_socket_owners(Kernel& kernel, const SocketOwnerOptions& options = {},
                                        const ProcessList* tasks = nullptr);

}  // namespace nfm
