#include "kernel/paths.h"

#include <fmt/core.h>

#include <algorithm>

#include "kernel/layout.h"
#include "kernel/walk.h"

namespace nfm {

namespace {

constexpr size_t kPathMax = 4096;        // PATH_MAX: d_path fails beyond it
constexpr size_t kNameMax = 255;         // NAME_MAX: one component
constexpr size_t kMaxComponents = 2048;  // a path of 4096 bytes has at most 2048 "/x"
constexpr size_t kMaxMountCrossings = 256;
constexpr size_t kFsNameMax = 64;

using Slot = FieldSlot;

}  // namespace

struct PathResolver::Layout {
  uint64_t dentry_size = 0;
  Slot d_parent, d_name_len, d_name_name, d_op, d_inode, d_sb, d_hash_pprev, d_fsdata;
  uint64_t dops_d_dname = 0;
  // struct mount wraps the struct vfsmount that paths point to (container_of).
  uint64_t mount_mnt = 0, mount_parent = 0, mount_mountpoint = 0;
  uint64_t vfsmount_root = 0;
  uint64_t file_path_mnt = 0, file_path_dentry = 0, file_inode = 0;
  uint64_t inode_mode = 0, inode_ino = 0, inode_sb = 0;
  uint64_t sb_type = 0, sb_dev = 0, fstype_name = 0;
  uint64_t ns_ops_name = 0;
  bool has_ns_ops_name = false;
  uint64_t task_fs = 0, task_mm = 0, fs_root_mnt = 0, fs_root_dentry = 0, mm_exe_file = 0;
  uint64_t init_task = 0;
};

Result<PathResolver> PathResolver::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto require = [&](const char* type, const char* path) { return required_slot(t, type, path); };
  auto offset = [&](const char* type, const char* path) -> Result<uint64_t> {
    NFM_ASSIGN(Field f, t.member(type, path));
    return f.offset;
  };
  NFM_ASSIGN(l.dentry_size, t.size_of("dentry"));
  NFM_ASSIGN(l.d_parent, require("dentry", "d_parent"));
  NFM_ASSIGN(l.d_name_len, require("dentry", "d_name.len"));
  NFM_ASSIGN(l.d_name_name, require("dentry", "d_name.name"));
  NFM_ASSIGN(l.d_op, require("dentry", "d_op"));
  NFM_ASSIGN(l.d_inode, require("dentry", "d_inode"));
  NFM_ASSIGN(l.d_sb, require("dentry", "d_sb"));
  NFM_ASSIGN(l.d_hash_pprev, require("dentry", "d_hash.pprev"));
  NFM_ASSIGN(l.d_fsdata, require("dentry", "d_fsdata"));
  NFM_ASSIGN(l.dops_d_dname, offset("dentry_operations", "d_dname"));
  NFM_ASSIGN(l.mount_mnt, offset("mount", "mnt"));
  NFM_ASSIGN(l.mount_parent, offset("mount", "mnt_parent"));
  NFM_ASSIGN(l.mount_mountpoint, offset("mount", "mnt_mountpoint"));
  NFM_ASSIGN(l.vfsmount_root, offset("vfsmount", "mnt_root"));
  NFM_ASSIGN(l.file_path_mnt, offset("file", "f_path.mnt"));
  NFM_ASSIGN(l.file_path_dentry, offset("file", "f_path.dentry"));
  NFM_ASSIGN(l.file_inode, offset("file", "f_inode"));
  NFM_ASSIGN(l.inode_mode, offset("inode", "i_mode"));
  NFM_ASSIGN(l.inode_ino, offset("inode", "i_ino"));
  NFM_ASSIGN(l.inode_sb, offset("inode", "i_sb"));
  NFM_ASSIGN(l.sb_type, offset("super_block", "s_type"));
  NFM_ASSIGN(l.sb_dev, offset("super_block", "s_dev"));
  NFM_ASSIGN(l.fstype_name, offset("file_system_type", "name"));
  if (auto f = t.member("proc_ns_operations", "name")) {
    l.ns_ops_name = f->offset;
    l.has_ns_ops_name = true;
  }
  NFM_ASSIGN(l.task_fs, offset("task_struct", "fs"));
  NFM_ASSIGN(l.task_mm, offset("task_struct", "mm"));
  NFM_ASSIGN(l.fs_root_mnt, offset("fs_struct", "root.mnt"));
  NFM_ASSIGN(l.fs_root_dentry, offset("fs_struct", "root.dentry"));
  NFM_ASSIGN(l.mm_exe_file, offset("mm_struct", "exe_file"));
  NFM_ASSIGN(l.init_task, kernel.symbol("init_task"));
  return PathResolver(kernel, std::move(layout));
}

Result<std::string> PathResolver::fs_type_name(uint64_t sb) {
  if (auto it = fs_names_.find(sb); it != fs_names_.end()) return it->second;
  const Layout& l = *layout_;
  if (!plausible_kernel_pointer(sb)) return fault_at(sb, "bad super_block pointer");
  NFM_ASSIGN(uint64_t type, kernel_->read_pointer(sb + l.sb_type));
  if (!plausible_kernel_pointer(type)) return fault_at(type, "bad file_system_type pointer");
  NFM_ASSIGN(uint64_t name, kernel_->read_pointer(type + l.fstype_name));
  NFM_ASSIGN(std::string s, kernel_->read_string(name, kFsNameMax));
  fs_names_.emplace(sb, s);
  return s;
}

Result<std::string> PathResolver::dentry_name(const std::vector<uint8_t>& d) {
  const Layout& l = *layout_;
  const uint64_t len = load_unsigned(d, l.d_name_len);
  const uint64_t name = load_unsigned(d, l.d_name_name);
  if (len > kNameMax) return make_error(Errc::limit, fmt::format("dentry name of {} bytes", len));
  std::string s(len, '\0');
  if (len) NFM_TRY(kernel_->read(name, s.data(), len));
  return s;
}

// The d_dname() of pseudo filesystems, chosen by filesystem type. Files on a
// filesystem without its own dentry operations get alloc_file_pseudo()'s
// simple_dname(): "/NAME (deleted)" (memfd, shared anonymous memory).
Result<std::string> PathResolver::dynamic_name(const std::vector<uint8_t>& d, uint64_t sb) {
  const Layout& l = *layout_;
  NFM_ASSIGN(std::string fs, fs_type_name(sb));
  NFM_ASSIGN(std::string name, dentry_name(d));
  auto ino = [&]() -> Result<uint64_t> {
    const uint64_t inode = load_unsigned(d, l.d_inode);
    if (!plausible_kernel_pointer(inode)) return fault_at(inode, "pseudo dentry without inode");
    return kernel_->read_value<uint64_t>(inode + l.inode_ino);
  };
  if (fs == "pipefs" || fs == "sockfs") {
    NFM_ASSIGN(uint64_t i, ino());
    return fmt::format("{}:[{}]", fs == "pipefs" ? "pipe" : "socket", i);
  }
  if (fs == "anon_inodefs") return "anon_inode:" + name;  // the name is "[eventfd]" etc.
  if (fs == "pidfs") return std::string("anon_inode:[pidfd]");
  if (fs == "nsfs" && l.has_ns_ops_name) {
    // ns_dname(): d_fsdata is the namespace's proc_ns_operations.
    const uint64_t ops = load_unsigned(d, l.d_fsdata);
    if (!plausible_kernel_pointer(ops)) return fault_at(ops, "nsfs dentry without ops");
    NFM_ASSIGN(uint64_t ops_name, kernel_->read_pointer(ops + l.ns_ops_name));
    NFM_ASSIGN(std::string ns, kernel_->read_string(ops_name, kFsNameMax));
    NFM_ASSIGN(uint64_t i, ino());
    return fmt::format("{}:[{}]", ns, i);
  }
  return "/" + name + " (deleted)";
}

Result<std::string> PathResolver::path(KernelPath p, KernelPath root) {
  const Layout& l = *layout_;
  std::vector<uint8_t>& d = dentry_buf_;
  d.resize(l.dentry_size);
  auto read_dentry = [&](uint64_t dentry) -> Result<void> {
    if (!plausible_kernel_pointer(dentry)) return fault_at(dentry, "bad dentry pointer");
    return kernel_->read(dentry, d.data(), d.size());
  };
  auto read_ptr = [&](uint64_t va) -> Result<uint64_t> {
    if (!plausible_kernel_pointer(va)) return fault_at(va, "bad pointer");
    return kernel_->read_pointer(va);
  };
  uint64_t dentry = p.dentry;
  uint64_t vfsmnt = p.mnt;
  NFM_TRY(read_dentry(dentry));
  NFM_ASSIGN(uint64_t mnt_root, read_ptr(vfsmnt + l.vfsmount_root));
  const bool is_root = load_unsigned(d, l.d_parent) == dentry;

  // Pseudo files name themselves (d_op->d_dname), unless the dentry is its mount's root.
  if (const uint64_t ops = load_unsigned(d, l.d_op); ops && (!is_root || dentry != mnt_root)) {
    NFM_ASSIGN(uint64_t dname, read_ptr(ops + l.dops_d_dname));
    if (dname) return dynamic_name(d, load_unsigned(d, l.d_sb));
  }
  // d_unlinked(): unhashed, and not a root.
  const bool unlinked = load_unsigned(d, l.d_hash_pprev) == 0 && !is_root;

  // prepend_path(): components from the leaf up, crossing to the parent mount at
  // each mount root, until the root or the global root.
  std::vector<std::string> parts;
  size_t total = 0, crossings = 0;
  while (dentry != root.dentry || vfsmnt != root.mnt) {
    if (parts.size() >= kMaxComponents)
      return make_error(Errc::limit, "path deeper than any real one (a dentry cycle?)");
    const uint64_t parent = load_unsigned(d, l.d_parent);
    if (dentry == mnt_root || parent == dentry) {
      if (dentry != mnt_root) {  // escaped its mount: the kernel names it "/"
        parts.clear();
        break;
      }
      const uint64_t mount = vfsmnt - l.mount_mnt;  // container_of(vfsmnt, struct mount, mnt)
      NFM_ASSIGN(uint64_t mparent, read_ptr(mount + l.mount_parent));
      if (mparent == mount) break;  // the global root
      if (++crossings > kMaxMountCrossings)
        return make_error(Errc::limit, "too many mount crossings (a mount cycle?)");
      NFM_ASSIGN(dentry, read_ptr(mount + l.mount_mountpoint));
      vfsmnt = mparent + l.mount_mnt;
      NFM_TRY(read_dentry(dentry));
      NFM_ASSIGN(mnt_root, read_ptr(vfsmnt + l.vfsmount_root));
      continue;
    }
    NFM_ASSIGN(std::string name, dentry_name(d));
    total += name.size() + 1;
    if (total > kPathMax) return make_error(Errc::limit, "path longer than PATH_MAX");
    parts.push_back(std::move(name));
    dentry = parent;
    NFM_TRY(read_dentry(dentry));
  }
  std::string out;
  out.reserve(total + 11);
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    out += '/';
    out += *it;
  }
  if (out.empty()) out.push_back('/');  // not `out = "/"`: GCC 12 -O2 -Wrestrict false positive
  if (unlinked) out += " (deleted)";
  return out;
}

Result<KernelPath> PathResolver::file_path(uint64_t file) {
  const Layout& l = *layout_;
  if (!plausible_kernel_pointer(file)) return fault_at(file, "bad file pointer");
  KernelPath p;
  NFM_ASSIGN(p.mnt, kernel_->read_pointer(file + l.file_path_mnt));
  NFM_ASSIGN(p.dentry, kernel_->read_pointer(file + l.file_path_dentry));
  return p;
}

Result<FileFacts> PathResolver::file_facts(uint64_t file, KernelPath root) {
  const Layout& l = *layout_;
  NFM_ASSIGN(KernelPath p, file_path(file));
  FileFacts f;
  NFM_ASSIGN(f.path, path(p, root));
  NFM_ASSIGN(f.inode, kernel_->read_pointer(file + l.file_inode));
  if (!plausible_kernel_pointer(f.inode)) return fault_at(f.inode, "bad inode pointer");
  NFM_ASSIGN(uint16_t mode, kernel_->read_value<uint16_t>(f.inode + l.inode_mode));
  f.mode = mode;
  NFM_ASSIGN(f.ino, kernel_->read_value<uint64_t>(f.inode + l.inode_ino));
  NFM_ASSIGN(uint64_t sb, kernel_->read_pointer(f.inode + l.inode_sb));
  if (!plausible_kernel_pointer(sb)) return fault_at(sb, "bad super_block pointer");
  NFM_ASSIGN(f.dev, kernel_->read_value<uint32_t>(sb + l.sb_dev));
  NFM_ASSIGN(f.fs_type, fs_type_name(sb));
  return f;
}

Result<KernelPath> PathResolver::task_root(uint64_t task) {
  const Layout& l = *layout_;
  NFM_ASSIGN(uint64_t fs, kernel_->read_pointer(task + l.task_fs));
  if (!fs) {
    NFM_ASSIGN(fs, kernel_->read_pointer(l.init_task + l.task_fs));
  }
  if (!plausible_kernel_pointer(fs)) return fault_at(fs, "bad fs_struct pointer");
  KernelPath root;
  NFM_ASSIGN(root.mnt, kernel_->read_pointer(fs + l.fs_root_mnt));
  NFM_ASSIGN(root.dentry, kernel_->read_pointer(fs + l.fs_root_dentry));
  return root;
}

Result<std::string> PathResolver::task_exe(uint64_t task) {
  const Layout& l = *layout_;
  NFM_ASSIGN(uint64_t mm, kernel_->read_pointer(task + l.task_mm));
  if (!mm) return std::string();
  if (!plausible_kernel_pointer(mm)) return fault_at(mm, "bad mm pointer");
  NFM_ASSIGN(uint64_t exe, kernel_->read_pointer(mm + l.mm_exe_file));
  if (!exe) return std::string();
  NFM_ASSIGN(KernelPath root, task_root(task));
  NFM_ASSIGN(KernelPath p, file_path(exe));
  return path(p, root);
}

}  // namespace nfm
