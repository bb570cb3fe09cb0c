#include "features/memory_maps/memory_maps.h"

#include <fmt/core.h>

#include <algorithm>

#include "kernel/layout.h"

namespace nfm {

namespace {

// vm_flags bits /proc/PID/maps shows (include/linux/mm.h; unchanged 5.10-6.12).
constexpr uint64_t kVmRead = 0x1, kVmWrite = 0x2, kVmExec = 0x4, kVmMayShare = 0x80;
constexpr unsigned kPageShift = 12;
constexpr size_t kNameMax = 256;
// show_vma_header_prefix(): seq_setwidth(m, 25 + sizeof(void *) * 6 - 1).
constexpr size_t kNameColumn = 25 + 8 * 6 - 1;

using Slot = FieldSlot;

}  // namespace

struct MemoryMapReader::Layout {
  // mm_struct
  uint64_t mm_pgd = 0, mm_brk = 0, mm_start_brk = 0, mm_start_stack = 0;
  bool maple = false;                    // 6.1+: VMAs in mm->mm_mt
  uint64_t mm_mt_root = 0, mm_mmap = 0;  // maple root, or the list's first VMA
  MapleTreeLayout tree;
  uint64_t task_mm = 0;
  // vm_area_struct
  uint64_t vma_size = 0;
  Slot vm_start, vm_end, vm_next, vm_flags, vm_pgoff, vm_file, vm_ops, vm_private, vm_mm, anon_name;
  uint64_t anon_name_name = 0;
  uint64_t ops_name = 0;
  uint64_t special_mapping_vmops = 0;  // 0: unknown to this kernel's symbols
  uint64_t special_name = 0;
};

std::string proc_maps_line(const MemoryMapRow& r) {
  std::string line = fmt::format("{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ", r.start, r.end,
                                 r.perms, r.offset, r.dev >> 20, r.dev & 0xfffff, r.inode);
  if (r.path.empty()) return line;
  if (line.size() < kNameColumn) line.append(kNameColumn - line.size(), ' ');
  line += ' ';
  // seq_file_path(m, file, "\n"): a newline in a name is written as \012.
  for (char c : r.path) {
    if (c == '\n')
      line += "\\012";
    else
      line += c;
  }
  return line;
}

Result<MemoryMapReader> MemoryMapReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto offset = [&](const char* type, const char* path) -> Result<uint64_t> {
    NFM_ASSIGN(Field f, t.member(type, path));
    return f.offset;
  };
  auto require = [&](const char* type, const char* path) { return required_slot(t, type, path); };
  NFM_ASSIGN(l.task_mm, offset("task_struct", "mm"));
  NFM_ASSIGN(l.mm_pgd, offset("mm_struct", "pgd"));
  NFM_ASSIGN(l.mm_brk, offset("mm_struct", "brk"));
  NFM_ASSIGN(l.mm_start_brk, offset("mm_struct", "start_brk"));
  NFM_ASSIGN(l.mm_start_stack, offset("mm_struct", "start_stack"));
  // 6.1 (d4af56c5c7c6 "mm: start tracking VMAs with maple tree", 763ecb035029
  // "mm: remove the vma linked list") moved VMAs from mm->mmap/vm_next to mm->mm_mt.
  if (auto root = t.member("mm_struct", "mm_mt.ma_root")) {
    l.maple = true;
    l.mm_mt_root = root->offset;
    NFM_ASSIGN(l.tree, maple_tree_layout(t));
  } else {
    NFM_ASSIGN(l.mm_mmap, offset("mm_struct", "mmap"));
    NFM_ASSIGN(l.vm_next, require("vm_area_struct", "vm_next"));
  }
  NFM_ASSIGN(l.vma_size, t.size_of("vm_area_struct"));
  NFM_ASSIGN(l.vm_start, require("vm_area_struct", "vm_start"));
  NFM_ASSIGN(l.vm_end, require("vm_area_struct", "vm_end"));
  NFM_ASSIGN(l.vm_flags, require("vm_area_struct", "vm_flags"));
  NFM_ASSIGN(l.vm_pgoff, require("vm_area_struct", "vm_pgoff"));
  NFM_ASSIGN(l.vm_file, require("vm_area_struct", "vm_file"));
  NFM_ASSIGN(l.vm_ops, require("vm_area_struct", "vm_ops"));
  NFM_ASSIGN(l.vm_private, require("vm_area_struct", "vm_private_data"));
  NFM_ASSIGN(l.vm_mm, require("vm_area_struct", "vm_mm"));
  // CONFIG_ANON_VMA_NAME (5.17+): prctl(PR_SET_VMA_ANON_NAME) names, "[anon:NAME]".
  l.anon_name = optional_slot(t, "vm_area_struct", "anon_name");
  if (l.anon_name.present) {
    NFM_ASSIGN(l.anon_name_name, offset("anon_vma_name", "name"));
  }
  NFM_ASSIGN(l.ops_name, offset("vm_operations_struct", "name"));
  // [vdso], [vvar], [uprobes]: _install_special_mapping() VMAs name themselves
  // through special_mapping_vmops.name, from their struct vm_special_mapping.
  if (auto ops = kernel.symbol("special_mapping_vmops")) {
    l.special_mapping_vmops = *ops;
    NFM_ASSIGN(l.special_name, offset("vm_special_mapping", "name"));
  }
  NFM_ASSIGN(PathResolver paths, PathResolver::create(kernel));
  NFM_ASSIGN(ProcessReader processes, ProcessReader::create(kernel));
  return MemoryMapReader(kernel, std::move(paths), std::move(processes), std::move(layout));
}

std::vector<uint64_t> MemoryMapReader::vmas_of(uint64_t mm, MemoryMapList& out,
                                               const MemoryMapOptions& options) {
  const Layout& l = *layout_;
  std::vector<uint64_t> vmas;
  WalkResult walk;
  if (l.maple) {
    auto root = kernel_->read_pointer(mm + l.mm_mt_root);
    if (!root) {
      ++out.vma_walk_errors;
      return vmas;
    }
    walk = walk_maple_tree(kernel_->space(), l.tree, *root, options.max_tree_nodes,
                           [&](uint64_t entry, uint64_t, uint64_t) {
                             if (vmas.size() >= options.max_vmas) return false;
                             vmas.push_back(entry);
                             return true;
                           });
    if (vmas.size() >= options.max_vmas) walk.end = WalkEnd::limit;
  } else {
    // A NULL-terminated list in address order: the order itself bounds cycles.
    auto first = kernel_->read_pointer(mm + l.mm_mmap);
    uint64_t vma = first ? *first : 0, last_start = 0;
    if (!first) walk.end = WalkEnd::bad_pointer;
    while (vma) {
      if (vmas.size() >= options.max_vmas) {
        walk.end = WalkEnd::limit;
        break;
      }
      if (!plausible_kernel_pointer(vma)) {
        walk.end = WalkEnd::bad_pointer;
        walk.fault_address = vma;
        break;
      }
      auto next = kernel_->read_pointer(vma + l.vm_next.offset);
      auto start = kernel_->read_pointer(vma + l.vm_start.offset);
      if (!next || !start) {
        walk.end = WalkEnd::bad_pointer;
        walk.fault_address = vma;
        break;
      }
      // Addresses only grow along the list: anything else is a loop or a tear.
      if (!vmas.empty() && *start <= last_start) {
        walk.end = WalkEnd::cycle;
        break;
      }
      last_start = *start;
      vmas.push_back(vma);
      vma = *next;
    }
  }
  if (!walk.ok()) ++out.vma_walk_errors;
  return vmas;
}

bool MemoryMapReader::read_vma(uint64_t vma, uint64_t mm, const KernelPath& root,
                               MemoryMapRow& row) {
  const Layout& l = *layout_;
  vma_buf_.resize(l.vma_size);
  if (!plausible_kernel_pointer(vma) || !kernel_->read(vma, vma_buf_.data(), vma_buf_.size()))
    return false;
  const std::span<const uint8_t> b(vma_buf_);
  if (load_unsigned(b, l.vm_mm) != mm) return false;  // not this process's: torn
  row.vma = vma;
  row.start = load_unsigned(b, l.vm_start);
  row.end = load_unsigned(b, l.vm_end);
  if (row.end <= row.start) return false;
  row.flags = load_unsigned(b, l.vm_flags);
  row.perms = {row.flags & kVmRead ? 'r' : '-', row.flags & kVmWrite ? 'w' : '-',
               row.flags & kVmExec ? 'x' : '-', row.flags & kVmMayShare ? 's' : 'p'};
  const uint64_t file = load_unsigned(b, l.vm_file);
  if (file) {
    auto facts = paths_.file_facts(file, root);
    if (!facts) return false;
    row.offset = load_unsigned(b, l.vm_pgoff) << kPageShift;
    row.dev = facts->dev;
    row.inode = facts->ino;
    row.path = std::move(facts->path);
    return true;
  }
  // fs/proc/task_mmu.c show_map_vma(): vm_ops->name, then heap, stack, anon name.
  const uint64_t ops = load_unsigned(b, l.vm_ops);
  if (ops && l.special_mapping_vmops && ops == l.special_mapping_vmops) {
    const uint64_t sm = load_unsigned(b, l.vm_private);
    auto name = kernel_->read_pointer(sm + l.special_name);
    if (!name) return false;
    if (*name) {
      auto s = kernel_->read_string(*name, kNameMax);
      if (!s) return false;
      row.path = *s;
      return true;
    }
  }
  // vma_is_initial_heap() / vma_is_initial_stack().
  if (row.start < brk_ && row.end > start_brk_) {
    row.path = "[heap]";
    return true;
  }
  if (row.start <= start_stack_ && row.end >= start_stack_) {
    row.path = "[stack]";
    return true;
  }
  if (l.anon_name.present) {
    if (const uint64_t anon = load_unsigned(b, l.anon_name)) {
      auto s = kernel_->read_string(anon + l.anon_name_name, kNameMax);
      if (!s) return false;
      row.path = "[anon:" + *s + "]";
    }
  }
  return true;
}

void MemoryMapReader::read_process(const ProcessRow& p, MemoryMapList& out,
                                   const MemoryMapOptions& options) {
  const Layout& l = *layout_;
  auto mm = kernel_->read_pointer(p.task + l.task_mm);
  if (!mm) {
    ++out.task_errors;
    return;
  }
  if (*mm == 0) return;  // kernel threads: /proc/PID/maps is empty
  auto root = paths_.task_root(p.task);
  auto brk = kernel_->read_pointer(*mm + l.mm_brk);
  auto start_brk = kernel_->read_pointer(*mm + l.mm_start_brk);
  auto start_stack = kernel_->read_pointer(*mm + l.mm_start_stack);
  if (!plausible_kernel_pointer(*mm) || !root || !brk || !start_brk || !start_stack) {
    ++out.task_errors;
    return;
  }
  brk_ = *brk, start_brk_ = *start_brk, start_stack_ = *start_stack;
  std::unique_ptr<X86_64AddressSpace> user;
  if (options.pages) {
    auto pgd = kernel_->read_pointer(*mm + l.mm_pgd);
    auto space =
        pgd ? kernel_->user_space(*pgd) : Result<std::unique_ptr<X86_64AddressSpace>>(pgd.error());
    if (space)
      user = std::move(space).value();
    else
      ++out.page_errors;
  }
  uint64_t previous_end = 0;
  uint64_t pages_left = options.max_pages;
  bool pages_cut = false;
  for (uint64_t vma : vmas_of(*mm, out, options)) {
    MemoryMapRow row;
    row.pid = p.pid;
    row.comm = p.comm;
    if (!read_vma(vma, *mm, *root, row) || row.start < previous_end) {
      ++out.row_errors;
      continue;
    }
    previous_end = row.end;
    if (user) {
      uint64_t skipped = 0;
      auto walked = user->for_each_mapping(
          row.start, row.end,
          [&](const PageMapping& m) {
            // A large page may start before the VMA: report the part inside it.
            const uint64_t from = std::max(m.va, row.start);
            const uint64_t to = std::min(m.va + m.size, row.end);
            if (from >= to) return true;
            const uint64_t n = (to - from) / x86_64::kPageSize;
            if (n > pages_left) {
              pages_cut = true;  // a page list that ended early: counted below
              return false;
            }
            pages_left -= n;
            row.pages.push_back({from, m.pa + (from - m.va), to - from, m.writable()});
            return true;
          },
          &skipped, &row.swapped_pages);
      if (!walked || skipped || pages_cut) ++out.page_errors;
    }
    out.rows.push_back(std::move(row));
  }
}

Result<MemoryMapList> MemoryMapReader::list(const MemoryMapOptions& options,
                                            const ProcessList* shared) {
  paths_.begin_crawl();
  NFM_ASSIGN(ProcessSet set, ProcessSet::of(processes_, shared, options.max_tasks));
  MemoryMapList out;
  out.walk = set.list().walk;
  out.task_errors = set.list().row_errors;
  for (const ProcessRow* p : set.in_proc(options.pid)) read_process(*p, out, options);
  return out;
}

}  // namespace nfm
