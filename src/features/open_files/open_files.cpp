#include "features/open_files/open_files.h"

#include <algorithm>
#include <bit>

namespace nfm {

namespace {

// include/uapi/asm-generic/fcntl.h (x86-64): fdinfo adds it from the fd table's
// close_on_exec bitmap (fs/proc/fd.c seq_show()).
constexpr uint32_t kOCloexec = 02000000;
// S_IFMT types (include/uapi/linux/stat.h).
constexpr uint32_t kIfmt = 0170000, kIfsock = 0140000, kIflnk = 0120000, kIfreg = 0100000,
                   kIfblk = 0060000, kIfdir = 0040000, kIfchr = 0020000, kIfifo = 0010000;
constexpr uint64_t kBitsPerWord = 64;

}  // namespace

struct OpenFileReader::Layout {
  uint64_t task_files = 0, files_fdt = 0;
  uint64_t fdt_max_fds = 0, fdt_fd = 0, fdt_open_fds = 0, fdt_close_on_exec = 0;
  uint64_t file_flags = 0, file_pos = 0, file_private = 0;
  uint64_t socket_file = 0, socket_sk = 0;
};

std::string file_type_name(uint32_t mode, const std::string& fs_type) {
  if (fs_type == "anon_inodefs" || fs_type == "pidfs") return "anon";
  switch (mode & kIfmt) {
    case kIfreg:
      return "file";
    case kIfdir:
      return "dir";
    case kIfsock:
      return "socket";
    case kIfifo:
      return fs_type == "pipefs" ? "pipe" : "fifo";
    case kIfchr:
      return "char";
    case kIfblk:
      return "block";
    case kIflnk:
      return "link";
    case 0:
      return "anon";  // anonymous inodes carry no type bits
    default:
      return "unknown";
  }
}

Result<OpenFileReader> OpenFileReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto offset = [&](const char* type, const char* path) -> Result<uint64_t> {
    NFM_ASSIGN(Field f, t.member(type, path));
    return f.offset;
  };
  NFM_ASSIGN(l.task_files, offset("task_struct", "files"));
  NFM_ASSIGN(l.files_fdt, offset("files_struct", "fdt"));
  NFM_ASSIGN(l.fdt_max_fds, offset("fdtable", "max_fds"));
  NFM_ASSIGN(l.fdt_fd, offset("fdtable", "fd"));
  NFM_ASSIGN(l.fdt_open_fds, offset("fdtable", "open_fds"));
  NFM_ASSIGN(l.fdt_close_on_exec, offset("fdtable", "close_on_exec"));
  NFM_ASSIGN(l.file_flags, offset("file", "f_flags"));
  NFM_ASSIGN(l.file_pos, offset("file", "f_pos"));
  NFM_ASSIGN(l.file_private, offset("file", "private_data"));
  NFM_ASSIGN(l.socket_file, offset("socket", "file"));
  NFM_ASSIGN(l.socket_sk, offset("socket", "sk"));
  NFM_ASSIGN(PathResolver paths, PathResolver::create(kernel));
  NFM_ASSIGN(ProcessReader processes, ProcessReader::create(kernel));
  return OpenFileReader(kernel, std::move(paths), std::move(processes), std::move(layout));
}

void OpenFileReader::read_task(uint64_t task, int32_t pid, const std::string& comm,
                               OpenFileList& out, const OpenFileOptions& options) {
  const Layout& l = *layout_;
  auto files = kernel_->read_pointer(task + l.task_files);
  if (!files) {
    ++out.task_errors;
    return;
  }
  if (*files == 0) return;  // exiting: no fd table any more
  auto fdt = kernel_->read_pointer(*files + l.files_fdt);
  if (!fdt || !plausible_kernel_pointer(*fdt)) {
    ++out.task_errors;
    return;
  }
  auto max_fds = kernel_->read_value<uint32_t>(*fdt + l.fdt_max_fds);
  auto fd_array = kernel_->read_pointer(*fdt + l.fdt_fd);
  auto open_fds = kernel_->read_pointer(*fdt + l.fdt_open_fds);
  auto cloexec = kernel_->read_pointer(*fdt + l.fdt_close_on_exec);
  if (!max_fds || !fd_array || !open_fds || !cloexec) {
    ++out.task_errors;
    return;
  }
  uint32_t count = *max_fds;
  if (count > options.max_fds) {
    ++out.truncated_tables;
    count = options.max_fds;
  }
  auto root = paths_.task_root(task);
  if (!root) {
    ++out.task_errors;
    return;
  }
  const size_t words = (count + kBitsPerWord - 1) / kBitsPerWord;
  std::vector<uint64_t> open(words), close(words);
  if (!kernel_->read(*open_fds, open.data(), words * 8) ||
      !kernel_->read(*cloexec, close.data(), words * 8)) {
    ++out.task_errors;
    return;
  }
  // Set bits only: a table of 2^20 slots is 16 Ki words, most of them zero.
  if (count % kBitsPerWord) open[words - 1] &= (uint64_t{1} << (count % kBitsPerWord)) - 1;
  for (size_t word = 0; word < words; ++word)
    for (uint64_t bits = open[word]; bits != 0; bits &= bits - 1) {
      if (kernel_->budget().spent()) return;
      const uint32_t fd = static_cast<uint32_t>(word * kBitsPerWord) +
                          static_cast<uint32_t>(std::countr_zero(bits));
      const uint64_t bit = uint64_t{1} << (fd % kBitsPerWord);
    // /proc lists installed files only: a reserved fd has no file yet.
    auto file = kernel_->read_pointer(*fd_array + uint64_t{fd} * 8);
    if (!file) {
      ++out.row_errors;
      continue;
    }
    if (*file == 0) continue;
    auto facts = paths_.file_facts(*file, *root);
    auto flags = kernel_->read_value<uint32_t>(*file + l.file_flags);
    auto pos = kernel_->read_value<int64_t>(*file + l.file_pos);
    if (!facts || !flags || !pos) {
      ++out.row_errors;
      continue;
    }
    OpenFileRow row;
    row.pid = pid;
    row.comm = comm;
    row.fd = static_cast<int32_t>(fd);
    row.type = file_type_name(facts->mode, facts->fs_type);
    row.path = std::move(facts->path);
    row.inode = facts->ino;
    row.dev = facts->dev;
    row.fs_type = std::move(facts->fs_type);
    row.pos = static_cast<uint64_t>(*pos);
    row.flags = *flags | ((close[fd / kBitsPerWord] & bit) ? kOCloexec : 0);
    row.file = *file;
    if (row.fs_type == "sockfs") {
      // sock_from_file(): a socket file's private_data is its struct socket,
      // whose ->file points back.
      auto sock = kernel_->read_pointer(*file + l.file_private);
      if (sock && plausible_kernel_pointer(*sock)) {
        auto back = kernel_->read_pointer(*sock + l.socket_file);
        if (back && *back == *file) {
          row.socket = *sock;
          row.sock = kernel_->read_pointer(*sock + l.socket_sk).value_or(0);
        }
      }
    }
    out.rows.push_back(std::move(row));
    }
}

Result<OpenFileList> OpenFileReader::list(const OpenFileOptions& options,
                                          const ProcessList* shared) {
  paths_.begin_crawl();
  NFM_ASSIGN(ProcessSet set, ProcessSet::of(processes_, shared, options.max_tasks));
  OpenFileList out;
  out.walk = set.list().walk;
  out.task_errors = set.list().row_errors;
  for (const ProcessRow* p : set.in_proc(options.pid)) {
    if (kernel_->budget().spent()) break;
    read_task(p->task, p->pid, p->comm, out, options);
  }
  return out;
}

}  // namespace nfm
