// Files as the guest's own caches hold them: names from the dentry cache, metadata
// from the inodes, contents from the page cache (inode->i_mapping->i_pages). No disk
// is read: what the guest has not cached is reported as missing, never guessed.
//
//   auto files = FileCacheReader::create(kernel);
//   files->stat("/etc/hostname");     // CachedInode: mode, uid, size, mtime, ...
//   files->list("/etc");              // the cached children (negative dentries skipped)
//   files->read("/etc/hostname");     // the cached pages, and which ones are missing
//
// Paths are looked up from init's root (init_task.fs->root), component by component
// through each dentry's children (d_subdirs/d_child up to 6.7, d_children/d_sib hlist
// from 6.8), crossing mount points through the mount tree (mnt_mounts/mnt_child).
// Symbolic links are not followed (lstat semantics). Every walk is bounded.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/kernel.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

struct FileTime {
  int64_t sec = 0;
  uint32_t nsec = 0;
};

struct CachedInode {
  uint64_t inode = 0;  // struct inode address
  uint64_t ino = 0;
  uint32_t mode = 0;  // S_IFMT type bits + permissions
  uint32_t uid = 0, gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  FileTime atime, mtime, ctime;
  uint32_t dev = 0;          // i_sb->s_dev (major << 20 | minor)
  uint32_t rdev = 0;         // i_rdev: the device a device file stands for
  std::string fs_type;       // "tmpfs", "ext4", ...
  uint64_t cached_pages = 0;  // i_mapping->nrpages
};

struct CachedEntry {
  std::string name;
  uint64_t dentry = 0;
  CachedInode inode;  // of what the name leads to (for a mount point: the mounted root)
  bool mount_point = false;
};

struct DirListing {
  std::string path;
  CachedInode dir;
  std::vector<CachedEntry> entries;  // sorted by name
  WalkResult walk;                   // the children walk
  uint64_t negative = 0;             // negative dentries (and cursors) skipped
  uint64_t errors = 0;               // children that could not be read
  // True on filesystems whose dentry cache is the directory itself (tmpfs, ramfs,
  // devtmpfs): every child is listed. Elsewhere only what the guest has cached.
  bool complete = false;
};

struct FileContents {
  std::string path;
  CachedInode inode;
  std::string data;                     // i_size bytes (up to max_bytes); missing pages are zeros
  std::vector<uint64_t> missing_pages;  // page indices not in the page cache
  uint64_t pages = 0;                   // pages the file's size spans (read ones)
  bool truncated = false;               // larger than max_bytes
  uint64_t page_errors = 0;             // pages present but unreadable
};

struct FileCacheOptions {
  size_t max_children = 1 << 16;  // per directory
  size_t max_mounts = 1 << 12;    // per mount's child list
  uint64_t max_bytes = 16 << 20;  // read(): at most this much content
};

class FileCacheReader {
 public:
  static Result<FileCacheReader> create(Kernel& kernel);

  // Errc::not_found when a component is not in the guest's dentry cache (or is negative).
  Result<CachedInode> stat(std::string_view path);
  Result<DirListing> list(std::string_view path);
  Result<FileContents> read(std::string_view path);

  void set_options(const FileCacheOptions& options) { options_ = options; }

  struct Layout;

 private:
  FileCacheReader(Kernel& kernel, std::shared_ptr<const Layout> layout)
      : kernel_(&kernel), layout_(std::move(layout)) {}
  struct Location {
    uint64_t mount = 0;  // struct mount
    uint64_t dentry = 0;
    bool mount_point = false;
  };
  Result<Location> lookup(std::string_view path);
  Result<Location> cross_mounts(Location at);
  Result<CachedInode> read_inode(uint64_t inode);
  Result<uint64_t> dentry_inode(uint64_t dentry);
  Result<std::string> dentry_name(uint64_t dentry);
  Result<uint64_t> dentry_parent(uint64_t dentry);
  // Calls visit(child dentry) for each child; returns how the walk ended.
  template <typename Visit>
  Result<WalkResult> for_each_child(uint64_t dentry, Visit&& visit);
  // The struct page holding file page `index`, 0 when not cached.
  Result<uint64_t> page_of(uint64_t mapping, uint64_t index);
  Result<std::string> fs_type_name(uint64_t sb);

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  FileCacheOptions options_;
};

// "drwxr-xr-x" from a mode, like ls -l.
std::string mode_string(uint32_t mode);

}  // namespace nfm
