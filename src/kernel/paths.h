// File paths as the guest's kernel names them (fs/d_path.c d_path()): what
// readlink(/proc/PID/fd/N), /proc/PID/maps and /proc/PID/exe show. Walks
// dentry->d_parent up to each mount's root and crosses mount points through
// struct mount (mnt_parent, mnt_mountpoint), relative to a task's root.
// Pseudo files get the kernel's d_dname names ("pipe:[INO]", "socket:[INO]",
// "anon_inode:[eventfd]", "/memfd:x (deleted)"); unlinked files " (deleted)".
//
// Every walk is bounded (components, mount crossings, PATH_MAX) and cycle-safe;
// a bad pointer is an error, never a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

// A struct path: a vfsmount and a dentry (addresses).
struct KernelPath {
  uint64_t mnt = 0;
  uint64_t dentry = 0;
  bool operator==(const KernelPath&) const = default;
};

// What a struct file is, beyond its name.
struct FileFacts {
  std::string path;     // as d_path() gives it
  uint64_t inode = 0;   // struct inode address
  uint64_t ino = 0;     // i_ino
  uint32_t mode = 0;    // i_mode (S_IFMT type bits + permissions)
  uint32_t dev = 0;     // i_sb->s_dev, kernel encoding (major << 20 | minor)
  std::string fs_type;  // i_sb->s_type->name: "ext4", "pipefs", "sockfs", "anon_inodefs"
};

class PathResolver {
 public:
  static Result<PathResolver> create(Kernel& kernel);

  // d_path(path) as seen from `root` (a task's fs->root). A path that never
  // meets `root` is named from the global root, as the kernel does.
  Result<std::string> path(KernelPath path, KernelPath root);
  // The f_path of a struct file.
  Result<KernelPath> file_path(uint64_t file);
  // Name, inode, type and device of a struct file, named from `root`.
  Result<FileFacts> file_facts(uint64_t file, KernelPath root);
  // task->fs->root; init_task's root for tasks without an fs (exiting, some kthreads).
  Result<KernelPath> task_root(uint64_t task);
  // The executable of a task (mm->exe_file), as /proc/PID/exe reads; "" without an mm.
  Result<std::string> task_exe(uint64_t task);

  // The name of a superblock's filesystem type ("ext4"); cached until begin_crawl().
  Result<std::string> fs_type_name(uint64_t super_block);
  // Forget cached superblock names (the guest may reuse the memory).
  void begin_crawl() { fs_names_.clear(); }

  struct Layout;

 private:
  PathResolver(Kernel& kernel, std::shared_ptr<const Layout> layout)
      : kernel_(&kernel), layout_(std::move(layout)) {}
  Result<std::string> dynamic_name(const std::vector<uint8_t>& d, uint64_t sb);
  Result<std::string> dentry_name(const std::vector<uint8_t>& d);

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  std::unordered_map<uint64_t, std::string> fs_names_;
  std::vector<uint8_t> dentry_buf_;
};

}  // namespace nfm
