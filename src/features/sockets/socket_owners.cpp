#include "features/sockets/socket_owners.h"

#include <algorithm>
#include <map>

#include "features/processes/processes.h"

namespace nfm {

namespace {

constexpr uint32_t kModeTypeMask = 0170000, kModeSocket = 0140000;  // S_IFMT, S_IFSOCK
constexpr size_t kFdChunk = 512;                                    // fd pointers per read

struct FdLayout {
  uint64_t task_files = 0, files_fdt = 0, fdt_max_fds = 0, fdt_fd = 0;
  uint64_t file_op = 0, file_inode = 0, inode_ino = 0, inode_mode = 0;
  uint64_t socket_file_ops = 0;  // 0: recognise sockets by S_IFSOCK instead
};

Result<FdLayout> resolve(Kernel& kernel) {
  const Types& t = kernel.types();
  FdLayout l;
  auto offset = [&](const char* type, const char* path, uint64_t& out) -> Result<void> {
    NFM_ASSIGN(Field f, t.member(type, path));
    out = f.offset;
    return {};
  };
  NFM_TRY(offset("task_struct", "files", l.task_files));
  NFM_TRY(offset("files_struct", "fdt", l.files_fdt));
  NFM_TRY(offset("fdtable", "max_fds", l.fdt_max_fds));
  NFM_TRY(offset("fdtable", "fd", l.fdt_fd));
  NFM_TRY(offset("file", "f_op", l.file_op));
  NFM_TRY(offset("file", "f_inode", l.file_inode));
  NFM_TRY(offset("inode", "i_ino", l.inode_ino));
  NFM_TRY(offset("inode", "i_mode", l.inode_mode));
  if (auto ops = kernel.symbol("socket_file_ops")) l.socket_file_ops = *ops;
  return l;
}

}  // namespace

const SocketOwner* SocketOwners::first(uint64_t inode) const {
  auto it = by_inode.find(inode);
  return it == by_inode.end() || it->second.empty() ? nullptr : &it->second.front();
}

Result<SocketOwners> find_socket_owners(Kernel& kernel, const SocketOwnerOptions& options,
                                        const ProcessList* tasks) {
  NFM_ASSIGN(FdLayout l, resolve(kernel));
  std::optional<ProcessList> own;
  if (!tasks) {
    NFM_ASSIGN(ProcessReader processes, ProcessReader::create(kernel));
    NFM_ASSIGN(own, processes.list({.cmdline = false}));
    tasks = &*own;
  }
  const ProcessList& list = *tasks;
  SocketOwners out;
  out.errors = list.row_errors + (list.walk.ok() ? 0 : 1);

  // Processes sharing one files_struct (CLONE_FILES) are read once.
  std::map<uint64_t, std::vector<std::pair<int32_t, uint64_t>>> sockets_of_files;
  std::vector<uint64_t> fds;
  for (const ProcessRow& p : list.rows) {
    auto files = kernel.read_pointer(p.task + l.task_files);
    if (!files) {
      ++out.errors;
      continue;
    }
    if (*files == 0) continue;  // exiting, or a kernel thread without files
    auto cached = sockets_of_files.find(*files);
    if (cached == sockets_of_files.end()) {
      std::vector<std::pair<int32_t, uint64_t>> found;  // fd, inode number
      auto fdt = kernel.read_pointer(*files + l.files_fdt);
      auto max_fds = fdt ? kernel.read_value<uint32_t>(*fdt + l.fdt_max_fds) : Result<uint32_t>(0u);
      auto fd_array = fdt ? kernel.read_pointer(*fdt + l.fdt_fd) : Result<uint64_t>(uint64_t{0});
      if (!fdt || !max_fds || !fd_array || !plausible_kernel_pointer(*fd_array)) {
        ++out.errors;
        continue;
      }
      const uint64_t count = std::min<uint64_t>(*max_fds, options.max_fds);
      for (uint64_t first = 0; first < count; first += kFdChunk) {
        const uint64_t n = std::min<uint64_t>(kFdChunk, count - first);
        fds.resize(n);
        if (!kernel.read(*fd_array + first * 8, fds.data(), n * 8)) {
          ++out.errors;
          break;
        }
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t file = fds[i];
          if (file == 0) continue;
          if (!plausible_kernel_pointer(file)) {
            ++out.errors;
            continue;
          }
          auto inode = kernel.read_pointer(file + l.file_inode);
          if (!inode || *inode == 0) continue;
          bool is_socket;
          if (l.socket_file_ops) {
            auto op = kernel.read_pointer(file + l.file_op);
            is_socket = op && *op == l.socket_file_ops;
          } else {
            auto mode = kernel.read_value<uint16_t>(*inode + l.inode_mode);
            is_socket = mode && (*mode & kModeTypeMask) == kModeSocket;
          }
          if (!is_socket) continue;
          auto ino = kernel.read_value<uint64_t>(*inode + l.inode_ino);
          if (!ino) {
            ++out.errors;
            continue;
          }
          found.emplace_back(static_cast<int32_t>(first + i), *ino);
        }
      }
      cached = sockets_of_files.emplace(*files, std::move(found)).first;
    }
    ++out.processes;
    for (const auto& [fd, ino] : cached->second)
      out.by_inode[ino].push_back(SocketOwner{p.tgid, p.comm, fd});
  }
  return out;
}

}  // namespace nfm
