#include "features/file_cache/file_cache.h"

#include <fmt/core.h>

#include <algorithm>
#include <bit>

#include "kernel/layout.h"

namespace nfm {

namespace {

constexpr size_t kNameMax = 255;
constexpr size_t kMaxComponents = 2048;
constexpr size_t kMaxMountStack = 64;  // mounts stacked on one mount point
constexpr size_t kFsNameMax = 64;
constexpr uint64_t kPageSize = 4096;

// xarray entries (include/linux/xarray.h): internal entries have bits 1:0 == 2.
bool xa_is_internal(uint64_t e) { return (e & 3) == 2; }
bool xa_is_value(uint64_t e) { return e & 1; }
uint64_t xa_internal_value(uint64_t e) { return e >> 2; }
// A node pointer is an internal entry above 4096 (xa_is_node).
bool xa_is_node(uint64_t e) { return xa_is_internal(e) && e > 4096; }

// Filesystems whose dentries are the directory itself: nothing lives elsewhere.
bool dcache_is_the_directory(const std::string& fs) {
  return fs == "tmpfs" || fs == "ramfs" || fs == "rootfs" || fs == "devtmpfs";
}

// A timestamp by the members this kernel has, newest layout first:
// i_mtime_sec/i_mtime_nsec (6.7, commit 3aa63a569c64), __i_mtime (6.6), i_mtime (<= 6.5).
struct TimeSlots {
  uint64_t sec = 0, nsec = 0;
  uint64_t sec_size = 8;
  bool present = false;
};

TimeSlots time_slots(const Types& t, const char* which) {
  TimeSlots s;
  const std::string w = which;
  auto try_pair = [&](const std::string& sec, const std::string& nsec) {
    auto a = t.member("inode", sec);
    auto b = t.member("inode", nsec);
    if (!a || !b) return false;
    s = {a->offset, b->offset, a->size, true};
    return true;
  };
  if (try_pair("i_" + w + "_sec", "i_" + w + "_nsec")) return s;
  if (try_pair("__i_" + w + ".tv_sec", "__i_" + w + ".tv_nsec")) return s;
  try_pair("i_" + w + ".tv_sec", "i_" + w + ".tv_nsec");
  return s;
}

}  // namespace

struct FileCacheReader::Layout {
  uint64_t init_task = 0, task_fs = 0, fs_root_mnt = 0, fs_root_dentry = 0;
  uint64_t d_parent = 0, d_name_len = 0, d_name_name = 0, d_inode = 0;
  // Children: d_subdirs (list_head) + d_child, or d_children (hlist_head) + d_sib (6.8,
  // commit da549bdd15c2).
  bool hlist_children = false;
  uint64_t d_children = 0, d_sib = 0;
  uint64_t mount_mnt = 0, mount_parent = 0, mount_mountpoint = 0, mount_mounts = 0,
           mount_child = 0;
  uint64_t vfsmount_root = 0;
  uint64_t i_rdev = 0;
  uint64_t i_mode = 0, i_uid = 0, i_gid = 0, i_nlink = 0, i_size = 0, i_ino = 0, i_sb = 0,
           i_mapping = 0;
  TimeSlots atime, mtime, ctime;
  uint64_t sb_type = 0, sb_dev = 0, fstype_name = 0;
  uint64_t as_i_pages = 0, as_nrpages = 0, xa_head = 0;
  uint64_t node_shift = 0, node_slots = 0, node_slot_count = 0;
  uint64_t page_size = 0;  // sizeof(struct page)
};

Result<FileCacheReader> FileCacheReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto offset = [&](const char* type, const char* path) -> Result<uint64_t> {
    NFM_ASSIGN(Field f, t.member(type, path));
    return f.offset;
  };
  NFM_ASSIGN(l.init_task, kernel.symbol("init_task"));
  NFM_ASSIGN(l.task_fs, offset("task_struct", "fs"));
  NFM_ASSIGN(l.fs_root_mnt, offset("fs_struct", "root.mnt"));
  NFM_ASSIGN(l.fs_root_dentry, offset("fs_struct", "root.dentry"));
  NFM_ASSIGN(l.d_parent, offset("dentry", "d_parent"));
  NFM_ASSIGN(l.d_name_len, offset("dentry", "d_name.len"));
  NFM_ASSIGN(l.d_name_name, offset("dentry", "d_name.name"));
  NFM_ASSIGN(l.d_inode, offset("dentry", "d_inode"));
  if (t.has_member("dentry", "d_children") && t.has_member("dentry", "d_sib")) {
    l.hlist_children = true;
    NFM_ASSIGN(l.d_children, offset("dentry", "d_children"));
    NFM_ASSIGN(l.d_sib, offset("dentry", "d_sib"));
  } else {
    NFM_ASSIGN(l.d_children, offset("dentry", "d_subdirs"));
    NFM_ASSIGN(l.d_sib, offset("dentry", "d_child"));
  }
  NFM_ASSIGN(l.mount_mnt, offset("mount", "mnt"));
  NFM_ASSIGN(l.mount_parent, offset("mount", "mnt_parent"));
  NFM_ASSIGN(l.mount_mountpoint, offset("mount", "mnt_mountpoint"));
  NFM_ASSIGN(l.mount_mounts, offset("mount", "mnt_mounts"));
  NFM_ASSIGN(l.mount_child, offset("mount", "mnt_child"));
  NFM_ASSIGN(l.vfsmount_root, offset("vfsmount", "mnt_root"));
  NFM_ASSIGN(l.i_mode, offset("inode", "i_mode"));
  NFM_ASSIGN(l.i_uid, offset("inode", "i_uid"));
  NFM_ASSIGN(l.i_gid, offset("inode", "i_gid"));
  if (auto f = t.member("inode", "__i_nlink")) {
    l.i_nlink = f->offset;
  } else {
    NFM_ASSIGN(l.i_nlink, offset("inode", "i_nlink"));
  }
  NFM_ASSIGN(l.i_size, offset("inode", "i_size"));
  NFM_ASSIGN(l.i_rdev, offset("inode", "i_rdev"));
  NFM_ASSIGN(l.i_ino, offset("inode", "i_ino"));
  NFM_ASSIGN(l.i_sb, offset("inode", "i_sb"));
  NFM_ASSIGN(l.i_mapping, offset("inode", "i_mapping"));
  l.atime = time_slots(t, "atime");
  l.mtime = time_slots(t, "mtime");
  l.ctime = time_slots(t, "ctime");
  NFM_ASSIGN(l.sb_type, offset("super_block", "s_type"));
  NFM_ASSIGN(l.sb_dev, offset("super_block", "s_dev"));
  NFM_ASSIGN(l.fstype_name, offset("file_system_type", "name"));
  NFM_ASSIGN(l.as_i_pages, offset("address_space", "i_pages"));
  NFM_ASSIGN(l.as_nrpages, offset("address_space", "nrpages"));
  NFM_ASSIGN(l.xa_head, offset("xarray", "xa_head"));
  NFM_ASSIGN(l.node_shift, offset("xa_node", "shift"));
  NFM_ASSIGN(Field slots, t.member("xa_node", "slots"));
  l.node_slots = slots.offset;
  NFM_ASSIGN(ArrayInfo a, t.array(slots.type));
  l.node_slot_count = a.count;
  if (l.node_slot_count == 0 || l.node_slot_count > 256)
    return make_error(Errc::unsupported, fmt::format("xa_node with {} slots", a.count));
  NFM_ASSIGN(l.page_size, t.size_of("page"));
  return FileCacheReader(kernel, std::move(layout));
}

Result<std::string> FileCacheReader::fs_type_name(uint64_t sb) {
  const Layout& l = *layout_;
  if (!plausible_kernel_pointer(sb)) return fault_at(sb, "bad super_block pointer");
  NFM_ASSIGN(uint64_t type, kernel_->read_pointer(sb + l.sb_type));
  if (!plausible_kernel_pointer(type)) return fault_at(type, "bad file_system_type pointer");
  NFM_ASSIGN(uint64_t name, kernel_->read_pointer(type + l.fstype_name));
  return kernel_->read_string(name, kFsNameMax);
}

Result<CachedInode> FileCacheReader::read_inode(uint64_t inode) {
  const Layout& l = *layout_;
  if (!plausible_kernel_pointer(inode)) return fault_at(inode, "bad inode pointer");
  CachedInode c;
  c.inode = inode;
  NFM_ASSIGN(uint16_t mode, kernel_->read_value<uint16_t>(inode + l.i_mode));
  c.mode = mode;
  NFM_ASSIGN(c.uid, kernel_->read_value<uint32_t>(inode + l.i_uid));
  NFM_ASSIGN(c.gid, kernel_->read_value<uint32_t>(inode + l.i_gid));
  NFM_ASSIGN(c.nlink, kernel_->read_value<uint32_t>(inode + l.i_nlink));
  NFM_ASSIGN(c.size, kernel_->read_value<uint64_t>(inode + l.i_size));
  NFM_ASSIGN(c.ino, kernel_->read_value<uint64_t>(inode + l.i_ino));
  NFM_ASSIGN(c.rdev, kernel_->read_value<uint32_t>(inode + l.i_rdev));
  auto read_time = [&](const TimeSlots& s, FileTime& out) -> Result<void> {
    if (!s.present) return {};
    if (s.sec_size == 4) {
      NFM_ASSIGN(int32_t sec, kernel_->read_value<int32_t>(inode + s.sec));
      out.sec = sec;
    } else {
      NFM_ASSIGN(out.sec, kernel_->read_value<int64_t>(inode + s.sec));
    }
    NFM_ASSIGN(uint32_t nsec, kernel_->read_value<uint32_t>(inode + s.nsec));
    out.nsec = nsec;
    return {};
  };
  NFM_TRY(read_time(l.atime, c.atime));
  NFM_TRY(read_time(l.mtime, c.mtime));
  NFM_TRY(read_time(l.ctime, c.ctime));
  NFM_ASSIGN(uint64_t sb, kernel_->read_pointer(inode + l.i_sb));
  if (plausible_kernel_pointer(sb)) {
    NFM_ASSIGN(c.dev, kernel_->read_value<uint32_t>(sb + l.sb_dev));
    if (auto name = fs_type_name(sb)) c.fs_type = *name;
  }
  NFM_ASSIGN(uint64_t mapping, kernel_->read_pointer(inode + l.i_mapping));
  if (plausible_kernel_pointer(mapping)) {
    NFM_ASSIGN(c.cached_pages, kernel_->read_value<uint64_t>(mapping + l.as_nrpages));
  }
  return c;
}

Result<uint64_t> FileCacheReader::dentry_inode(uint64_t dentry) {
  return kernel_->read_pointer(dentry + layout_->d_inode);
}

Result<uint64_t> FileCacheReader::dentry_parent(uint64_t dentry) {
  return kernel_->read_pointer(dentry + layout_->d_parent);
}

Result<std::string> FileCacheReader::dentry_name(uint64_t dentry) {
  const Layout& l = *layout_;
  NFM_ASSIGN(uint32_t len, kernel_->read_value<uint32_t>(dentry + l.d_name_len));
  NFM_ASSIGN(uint64_t name, kernel_->read_pointer(dentry + l.d_name_name));
  if (len > kNameMax) return make_error(Errc::limit, fmt::format("dentry name of {} bytes", len));
  std::string s(len, '\0');
  if (len) NFM_TRY(kernel_->read(name, s.data(), len));
  return s;
}

template <typename Visit>
Result<WalkResult> FileCacheReader::for_each_child(uint64_t dentry, Visit&& visit) {
  const Layout& l = *layout_;
  AddressSpace& space = kernel_->space();
  if (l.hlist_children) {
    NFM_ASSIGN(uint64_t first, kernel_->read_pointer(dentry + l.d_children));
    return walk_hlist(space, first, options_.max_children,
                      [&](uint64_t node) { return visit(node - l.d_sib); });
  }
  return walk_list(space, dentry + l.d_children, options_.max_children,
                   [&](uint64_t node) { return visit(node - l.d_sib); });
}

// Follows mounts stacked on `at`: the child mount of at.mount whose mountpoint is
// at.dentry, then any mounted on that one's root, and so on (the newest is on top).
Result<FileCacheReader::Location> FileCacheReader::cross_mounts(Location at) {
  const Layout& l = *layout_;
  for (size_t depth = 0; depth < kMaxMountStack; ++depth) {
    uint64_t found = 0;
    const WalkResult w =
        walk_list(kernel_->space(), at.mount + l.mount_mounts, options_.max_mounts,
                  [&](uint64_t node) {
                    const uint64_t child = node - l.mount_child;
                    auto mp = kernel_->read_pointer(child + l.mount_mountpoint);
                    if (mp && *mp == at.dentry) found = child;  // keep the last (newest)
                    return true;
                  });
    if (!w.ok() && !found)
      return make_error(Errc::limit, fmt::format("mount list walk ended early ({})",
                                                 walk_end_name(w.end)));
    if (!found) return at;
    NFM_ASSIGN(uint64_t root, kernel_->read_pointer(found + l.mount_mnt + l.vfsmount_root));
    if (!plausible_kernel_pointer(root)) return fault_at(root, "bad mount root");
    at = {found, root, true};
  }
  return make_error(Errc::limit, "too many mounts stacked on one mount point");
}

Result<FileCacheReader::Location> FileCacheReader::lookup(std::string_view path) {
  const Layout& l = *layout_;
  if (path.empty() || path[0] != '/')
    return make_error(Errc::invalid_argument,
                      "'" + std::string(path) + "': paths are absolute (from the guest's /)");
  NFM_ASSIGN(uint64_t fs, kernel_->read_pointer(l.init_task + l.task_fs));
  if (!plausible_kernel_pointer(fs)) return fault_at(fs, "init_task has no fs_struct");
  NFM_ASSIGN(uint64_t vfsmnt, kernel_->read_pointer(fs + l.fs_root_mnt));
  NFM_ASSIGN(uint64_t root_dentry, kernel_->read_pointer(fs + l.fs_root_dentry));
  if (!plausible_kernel_pointer(vfsmnt) || !plausible_kernel_pointer(root_dentry))
    return fault_at(vfsmnt, "init's root is unreadable");
  const Location root{vfsmnt - l.mount_mnt, root_dentry, false};
  Location at = root;
  NFM_ASSIGN(at, cross_mounts(at));
  std::string walked;
  size_t components = 0;
  while (!path.empty()) {
    while (!path.empty() && path[0] == '/') path.remove_prefix(1);
    const size_t slash = path.find('/');
    const std::string_view name = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash);
    if (name.empty() || name == ".") continue;
    if (++components > kMaxComponents) return make_error(Errc::limit, "path too deep");
    if (name.size() > kNameMax) return make_error(Errc::invalid_argument, "name too long");
    if (name == "..") {
      // Up one: at a mount's root, first down to where that mount is mounted.
      for (size_t i = 0; i < kMaxMountStack && at.dentry != root.dentry; ++i) {
        NFM_ASSIGN(uint64_t mroot,
                   kernel_->read_pointer(at.mount + l.mount_mnt + l.vfsmount_root));
        if (at.dentry != mroot) break;
        NFM_ASSIGN(uint64_t parent, kernel_->read_pointer(at.mount + l.mount_parent));
        if (parent == at.mount) break;
        NFM_ASSIGN(at.dentry, kernel_->read_pointer(at.mount + l.mount_mountpoint));
        at.mount = parent;
      }
      if (at.dentry != root.dentry) {
        NFM_ASSIGN(at.dentry, dentry_parent(at.dentry));
      }
      at.mount_point = false;
      const size_t cut = walked.rfind('/');
      walked.resize(cut == std::string::npos ? 0 : cut);
      continue;
    }
    walked += "/" + std::string(name);
    uint64_t found = 0;
    NFM_ASSIGN(WalkResult w, for_each_child(at.dentry, [&](uint64_t child) {
                 auto n = dentry_name(child);
                 if (!n || *n != name) return true;
                 auto inode = dentry_inode(child);
                 if (!inode || *inode == 0) return true;  // negative: "does not exist"
                 found = child;
                 return false;
               }));
    if (!found) {
      if (!w.ok())
        return make_error(Errc::limit,
                          fmt::format("{}: the guest's dentry list of its directory ended early "
                                      "({})",
                                      walked, walk_end_name(w.end)));
      return make_error(Errc::not_found, walked + ": not in the guest's dentry cache");
    }
    NFM_ASSIGN(at, cross_mounts({at.mount, found, false}));
  }
  return at;
}

Result<CachedInode> FileCacheReader::stat(std::string_view path) {
  NFM_ASSIGN(Location at, lookup(path));
  NFM_ASSIGN(uint64_t inode, dentry_inode(at.dentry));
  return read_inode(inode);
}

Result<DirListing> FileCacheReader::list(std::string_view path) {
  NFM_ASSIGN(Location at, lookup(path));
  DirListing out;
  out.path = std::string(path);
  NFM_ASSIGN(uint64_t inode, dentry_inode(at.dentry));
  NFM_ASSIGN(out.dir, read_inode(inode));
  if ((out.dir.mode & 0170000) != 0040000) {
    // ls of a file lists the file.
    CachedEntry e;
    e.name = out.path;
    e.dentry = at.dentry;
    e.inode = out.dir;
    out.entries.push_back(std::move(e));
    out.complete = true;
    return out;
  }
  NFM_ASSIGN(out.walk, for_each_child(at.dentry, [&](uint64_t child) {
               auto ino = dentry_inode(child);
               if (!ino) {
                 ++out.errors;
                 return true;
               }
               if (*ino == 0) {
                 ++out.negative;
                 return true;
               }
               CachedEntry e;
               e.dentry = child;
               auto name = dentry_name(child);
               auto crossed = cross_mounts({at.mount, child, false});
               if (!name || !crossed) {
                 ++out.errors;
                 return true;
               }
               e.name = std::move(*name);
               e.mount_point = crossed->mount_point;
               auto target = crossed->mount_point ? dentry_inode(crossed->dentry) : ino;
               auto inode = target ? read_inode(*target) : Result<CachedInode>(target.error());
               if (!inode) {
                 ++out.errors;
                 return true;
               }
               e.inode = std::move(*inode);
               out.entries.push_back(std::move(e));
               return true;
             }));
  std::sort(out.entries.begin(), out.entries.end(),
            [](const CachedEntry& a, const CachedEntry& b) { return a.name < b.name; });
  out.complete = dcache_is_the_directory(out.dir.fs_type) && out.walk.ok() && !out.errors;
  return out;
}

Result<uint64_t> FileCacheReader::page_of(uint64_t mapping, uint64_t index) {
  const Layout& l = *layout_;
  NFM_ASSIGN(uint64_t entry, kernel_->read_pointer(mapping + l.as_i_pages + l.xa_head));
  const uint64_t fanout_bits = std::bit_width(l.node_slot_count) - 1;  // 6: 64 slots
  uint64_t start = 0;  // first index the entry covers
  if (!xa_is_node(entry)) {
    if (index != 0) return 0;
  } else {
    // Down the tree: each node covers (slots << shift) indices.
    for (int depth = 0; depth < 16 && xa_is_node(entry); ++depth) {
      const uint64_t node = entry - 2;
      if (!plausible_kernel_pointer(node)) return fault_at(node, "bad xa_node pointer");
      NFM_ASSIGN(uint8_t shift, kernel_->read_value<uint8_t>(node + l.node_shift));
      if (shift >= 64) return fault_at(node, "bad xa_node shift");
      if (depth == 0 && shift + fanout_bits < 64 && (index >> (shift + fanout_bits)) != 0) return 0;
      uint64_t offset = (index >> shift) & (l.node_slot_count - 1);
      NFM_ASSIGN(entry, kernel_->read_pointer(node + l.node_slots + offset * 8));
      // A multi-index entry (large folio): sibling slots name the canonical one.
      if (xa_is_internal(entry) && xa_internal_value(entry) < l.node_slot_count - 1) {
        offset = xa_internal_value(entry);
        NFM_ASSIGN(entry, kernel_->read_pointer(node + l.node_slots + offset * 8));
      }
      const uint64_t span_mask = shift + fanout_bits >= 64 ? ~0ull : (1ull << (shift + fanout_bits)) - 1;
      start = (index & ~span_mask) + (offset << shift);
    }
  }
  if (entry == 0 || xa_is_value(entry) || xa_is_internal(entry)) return 0;  // absent, shadow, retry
  const uint64_t page = entry + (index - start) * l.page_size;
  const uint64_t base = kernel_->vmemmap_base();
  if (page < base || (page - base) % l.page_size != 0)
    return fault_at(page, "page-cache entry outside vmemmap");
  return page;
}

Result<FileContents> FileCacheReader::read(std::string_view path) {
  const Layout& l = *layout_;
  NFM_ASSIGN(Location at, lookup(path));
  FileContents out;
  out.path = std::string(path);
  NFM_ASSIGN(uint64_t inode, dentry_inode(at.dentry));
  NFM_ASSIGN(out.inode, read_inode(inode));
  const uint32_t type = out.inode.mode & 0170000;
  if (type == 0040000) return make_error(Errc::invalid_argument, out.path + ": is a directory");
  if (type != 0100000)
    return make_error(Errc::unsupported,
                      out.path + ": not a regular file (only regular files have cached contents)");
  uint64_t size = out.inode.size;
  if (size > options_.max_bytes) {
    size = options_.max_bytes;
    out.truncated = true;
  }
  out.data.assign(size, '\0');
  NFM_ASSIGN(uint64_t mapping, kernel_->read_pointer(inode + l.i_mapping));
  if (!plausible_kernel_pointer(mapping)) return fault_at(mapping, "bad i_mapping");
  out.pages = (size + kPageSize - 1) / kPageSize;
  const uint64_t frames = kernel_->memory().end() / kPageSize;
  for (uint64_t i = 0; i < out.pages; ++i) {
    auto page = page_of(mapping, i);
    if (!page) {
      ++out.page_errors;
      out.missing_pages.push_back(i);
      continue;
    }
    if (*page == 0) {
      out.missing_pages.push_back(i);
      continue;
    }
    // vmemmap arithmetic: struct page N describes page frame N.
    const uint64_t pfn = (*page - kernel_->vmemmap_base()) / l.page_size;
    const uint64_t len = std::min<uint64_t>(kPageSize, size - i * kPageSize);
    if (pfn >= frames ||
        !kernel_->read(kernel_->page_offset_base() + pfn * kPageSize, out.data.data() + i * kPageSize,
                       len)) {
      ++out.page_errors;
      out.missing_pages.push_back(i);
    }
  }
  return out;
}

std::string mode_string(uint32_t mode) {
  std::string s = "?---------";
  switch (mode & 0170000) {
    case 0040000: s[0] = 'd'; break;
    case 0100000: s[0] = '-'; break;
    case 0120000: s[0] = 'l'; break;
    case 0020000: s[0] = 'c'; break;
    case 0060000: s[0] = 'b'; break;
    case 0010000: s[0] = 'p'; break;
    case 0140000: s[0] = 's'; break;
  }
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (mode & (0400 >> i)) s[1 + i] = rwx[i];
  if (mode & 04000) s[3] = (mode & 0100) ? 's' : 'S';
  if (mode & 02000) s[6] = (mode & 0010) ? 's' : 'S';
  if (mode & 01000) s[9] = (mode & 0001) ? 't' : 'T';
  return s;
}

}  // namespace nfm
