#include "features/scan/memory_scan.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <span>
#include <tuple>

#include "features/integrity/code_owners.h"
#include "kernel/module_symbols.h"
#include "kernel/object.h"

namespace nfm {

namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kMaxModules = 1 << 14;
constexpr uint64_t kMaxSymbolOffset = 1 << 20;  // a module symbol further away names nothing

// Where the host keeps each guest page, asked once per scan (one pagemap read or one
// mincore call per RAM block, not one per page).
class HostPages {
 public:
  Result<void> load(const PhysicalMemory& memory) {
    for (const PhysRange& r : memory.ranges()) {
      Part part{r.start, std::vector<HostPage>(r.size / kPage)};
      constexpr size_t kChunk = 1 << 16;
      for (size_t i = 0; i < part.pages.size(); i += kChunk) {
        const size_t n = std::min(kChunk, part.pages.size() - i);
        NFM_TRY(memory.host_residency(r.start + i * kPage, std::span(part.pages).subspan(i, n)));
      }
      parts_.push_back(std::move(part));
    }
    return {};
  }
  HostPage at(uint64_t pa) const {
    for (const Part& p : parts_)
      if (pa >= p.start && (pa - p.start) / kPage < p.pages.size())
        return p.pages[(pa - p.start) / kPage];
    return HostPage::unknown;  // not RAM: the read says so
  }

 private:
  struct Part {
    uint64_t start;
    std::vector<HostPage> pages;
  };
  std::vector<Part> parts_;
};

// What a block's bytes belong to: a VMA of the process, or a range of kernel memory.
struct Region {
  uint64_t start = 0, end = 0;
  const MemoryMapRow* vma = nullptr;
  std::string module;  // kernel memory: "vmlinux" or the module's name
};

struct Piece {  // physically contiguous bytes of a block
  uint64_t va = 0, pa = 0, len = 0;
};

struct Block {
  YaraBlock yara;
  size_t first = 0, count = 0;  // its pieces
  size_t region = 0;
};

// Turns mapped pages into blocks: runs of pages the scan may read, contiguous in
// virtual addresses inside one region, at most max_block bytes (a longer run goes
// on in a block that repeats its last page, so that a string across the cut is
// still seen whole once).
class BlockBuilder {
 public:
  BlockBuilder(const HostPages& host, const ScanOptions& options, uint64_t& budget,
               ScanCounts& counts)
      : host_(host), options_(options), budget_(budget), counts_(counts) {}

  void add(uint64_t va, uint64_t pa, uint64_t size, size_t region) {
    for (uint64_t off = 0; off < size; off += kPage) add_page(va + off, pa + off, region);
  }
  void close() { open_ = false; }

  std::vector<Block> blocks;
  std::vector<Piece> pieces;
  std::optional<uint64_t> stopped_at;  // the first page left for lack of budget

 private:
  void add_page(uint64_t va, uint64_t pa, size_t region) {
    if (stopped_at) {
      ++counts_.budget_pages;
      return;
    }
    const HostPage h = host_.at(pa);
    if (!options_.fault_in && h == HostPage::not_resident) {
      ++counts_.host_nonresident_pages;
      return close();
    }
    if (!options_.fault_in && h == HostPage::swapped) {
      ++counts_.host_swapped_pages;
      return close();
    }
    if (budget_ < kPage) {
      stopped_at = va;
      ++counts_.budget_pages;
      return close();
    }
    budget_ -= kPage;
    ++counts_.pages_scanned;
    counts_.bytes_scanned += kPage;
    Block* b = open_ ? &blocks.back() : nullptr;
    const bool follows = b && b->region == region && b->yara.base + b->yara.size == va;
    if (follows && b->yara.size >= options_.max_block) {
      const Piece last = pieces.back();
      start_block(va - kPage, region);
      push(last.va + last.len - kPage, last.pa + last.len - kPage);
    } else if (!follows) {
      start_block(va, region);
    }
    push(va, pa);
  }
  void start_block(uint64_t va, size_t region) {
    blocks.push_back({{va, 0}, pieces.size(), 0, region});
    open_ = true;
  }
  void push(uint64_t va, uint64_t pa) {
    Block& b = blocks.back();
    if (b.count && pieces.back().pa + pieces.back().len == pa) {
      pieces.back().len += kPage;
    } else {
      pieces.push_back({va, pa, kPage});
      ++b.count;
    }
    b.yara.size += kPage;
  }

  const HostPages& host_;
  const ScanOptions& options_;
  uint64_t& budget_;
  ScanCounts& counts_;
  bool open_ = false;
};

// Gives libyara each block's bytes: straight from the source's mapping when the block
// is one physically contiguous piece of mapped RAM (zero-copy), else copied into one
// reused buffer, from the source itself (a scan would only churn the crawl's page
// cache).
class BlockReader {
 public:
  BlockReader(PhysicalMemory& memory, const BlockBuilder& built, ScanCounts& counts)
      : memory_(memory), built_(built), counts_(counts) {}
  const uint8_t* fetch(size_t i) {
    const Block& b = built_.blocks[i];
    if (b.count == 1) {
      if (const uint8_t* v = memory_.view(built_.pieces[b.first].pa, b.yara.size)) return v;
    }
    if (b.yara.size > capacity_) {
      // Not a vector: resizing one would zero every byte that is then overwritten.
      buffer_ = std::make_unique_for_overwrite<uint8_t[]>(b.yara.size);
      capacity_ = b.yara.size;
    }
    ops_.clear();
    uint64_t at = 0;
    for (size_t p = b.first; p < b.first + b.count; ++p) {
      const Piece& piece = built_.pieces[p];
      ops_.push_back({piece.pa, buffer_.get() + at, piece.len, false});
      at += piece.len;
    }
    memory_.read_many(ops_);
    for (const ReadOp& op : ops_) {
      if (op.ok) continue;
      std::memset(op.dst, 0, op.len);  // a failed read must not show the last block's bytes
      counts_.unreadable_pages += op.len / kPage;
    }
    return buffer_.get();
  }

 private:
  PhysicalMemory& memory_;
  const BlockBuilder& built_;
  ScanCounts& counts_;
  std::unique_ptr<uint8_t[]> buffer_;
  uint64_t capacity_ = 0;
  std::vector<ReadOp> ops_;
};

std::vector<std::string> meta_list(const std::map<std::string, std::string>& meta) {
  std::vector<std::string> out;
  out.reserve(meta.size());
  for (const auto& [k, v] : meta) out.push_back(fmt::format("{}={}", k, v));
  return out;
}

// Scans one object's blocks; each match as a row with its block's attribution.
Result<void> scan_blocks(YaraScanner& scanner, PhysicalMemory& memory, const BlockBuilder& built,
                         const std::vector<Region>& regions, ScanCounts& counts,
                         const std::function<void(ScanMatchRow&, const Region&)>& fill,
                         std::vector<ScanMatchRow>& out) {
  if (built.blocks.empty()) return {};
  std::vector<YaraBlock> blocks;
  blocks.reserve(built.blocks.size());
  for (const Block& b : built.blocks) blocks.push_back(b.yara);
  BlockReader reader(memory, built, counts);
  NFM_ASSIGN(std::vector<YaraMatch> matches,
             scanner.scan(
                 blocks, [&](size_t i) { return reader.fetch(i); }, &counts.matches_dropped));
  // A block cut at max_block repeats a page: a string inside it is found twice.
  std::sort(matches.begin(), matches.end(), [](const YaraMatch& a, const YaraMatch& b) {
    return std::tie(a.address, a.rule, a.string_id) < std::tie(b.address, b.rule, b.string_id);
  });
  matches.erase(std::unique(matches.begin(), matches.end(),
                            [](const YaraMatch& a, const YaraMatch& b) {
                              return a.address == b.address && a.rule == b.rule &&
                                     a.string_id == b.string_id;
                            }),
                matches.end());
  for (YaraMatch& m : matches) {
    ScanMatchRow row;
    row.rule = std::move(m.rule);
    row.string_id = std::move(m.string_id);
    row.tags = std::move(m.tags);
    row.meta = meta_list(m.meta);
    row.va = m.address;
    const Region* region = nullptr;
    if (m.address) {
      for (const Block& b : built.blocks) {
        if (*m.address < b.yara.base || *m.address - b.yara.base >= b.yara.size) continue;
        for (size_t p = b.first; p < b.first + b.count; ++p) {
          const Piece& piece = built.pieces[p];
          if (*m.address >= piece.va && *m.address - piece.va < piece.len)
            row.pa = piece.pa + (*m.address - piece.va);
        }
        region = &regions[b.region];
        break;
      }
    }
    if (region) fill(row, *region);
    out.push_back(std::move(row));
    ++counts.matches;
  }
  return {};
}

bool file_backed(const MemoryMapRow& vma) {
  return vma.inode != 0 && !vma.path.empty() && vma.path[0] != '[';
}

}  // namespace

void ScanCounts::add(const ScanCounts& o) {
  bytes_scanned += o.bytes_scanned;
  pages_scanned += o.pages_scanned;
  not_present_pages += o.not_present_pages;
  swapped_pages += o.swapped_pages;
  host_nonresident_pages += o.host_nonresident_pages;
  host_swapped_pages += o.host_swapped_pages;
  unreadable_pages += o.unreadable_pages;
  budget_pages += o.budget_pages;
  matches += o.matches;
  matches_dropped += o.matches_dropped;
}

Result<MemoryScanner> MemoryScanner::create(Kernel& kernel) {
  NFM_ASSIGN(ProcessReader processes, ProcessReader::create(kernel));
  NFM_ASSIGN(MemoryMapReader maps, MemoryMapReader::create(kernel));
  return MemoryScanner(kernel, std::move(processes), std::move(maps));
}

Result<ScanResult> MemoryScanner::scan(const ScanOptions& options, const ProcessList* tasks) {
  ScanCursor cursor;
  cursor.pid = options.processes ? 1 : 0;
  ScanOptions once = options;
  // Unbudgeted, a scan still reads each process at most once per byte of guest RAM
  // (below): the total is bounded by the process count.
  if (!once.max_bytes) once.max_bytes = UINT64_MAX;
  return scan_from(cursor, once, tasks, [](int32_t) {});
}

Result<ScanResult> MemoryScanner::scan_from(ScanCursor& cursor, const ScanOptions& options,
                                            const ProcessList* tasks,
                                            const std::function<void(int32_t pid)>& started) {
  if (!options.rules) return make_error(Errc::invalid_argument, "no rules to scan with");
  const auto t0 = std::chrono::steady_clock::now();
  ScanResult out;
  Kernel& kernel = *kernel_;
  PhysicalMemory& memory = kernel.source_memory();
  // The guest cannot raise this: a process's page tables may map one frame at every
  // address, but a process never holds more than the guest's RAM.
  const uint64_t ram = memory.end();
  HostPages host;
  NFM_TRY(host.load(memory));
  YaraScanner scanner(options.rules);
  uint64_t budget = options.max_bytes;
  if (!options.processes && cursor.pid > 0) cursor = {0, 0};

  if (cursor.pid > 0 && options.processes) {
    NFM_ASSIGN(ProcessSet set, ProcessSet::of(processes_, tasks, 1 << 16));
    std::vector<const ProcessRow*> procs = set.in_proc();
    std::sort(procs.begin(), procs.end(),
              [](const ProcessRow* a, const ProcessRow* b) { return a->pid < b->pid; });
    std::erase_if(procs, [&](const ProcessRow* p) {
      return p->kernel_thread || p->pid < cursor.pid ||
             (!options.pids.empty() &&
              std::find(options.pids.begin(), options.pids.end(), p->pid) == options.pids.end());
    });
    ScanProgress progress{.processes_total = procs.size()};
    for (const ProcessRow* p : procs) {
      const uint64_t from = p->pid == cursor.pid ? cursor.va : 0;
      if (from == 0) started(p->pid);
      ProcessScan ps{.pid = p->pid, .comm = p->comm};
      MemoryMapOptions mo{.pid = p->pid, .pages = true, .max_pages = ram / kPage};
      auto maps = maps_.list(mo, &set.list());
      if (!maps || maps->task_errors) {
        ps.error = maps ? "its memory descriptor could not be read" : maps.error().to_string();
        ++out.processes_unreadable;
        out.processes.push_back(std::move(ps));
        out.completed.push_back(p->pid);  // nothing more to read of it
        continue;
      }
      if (maps->page_errors) ps.error = "some of its page tables could not be read";
      uint64_t process_budget = std::min(budget, ram);
      const uint64_t before = process_budget;
      BlockBuilder built(host, options, process_budget, ps.counts);
      std::vector<Region> regions;
      regions.reserve(maps->rows.size());
      for (const MemoryMapRow& vma : maps->rows) {
        if (vma.end <= from) continue;
        regions.push_back({vma.start, vma.end, &vma, {}});
        uint64_t present = 0;  // of the pages from `from` on
        for (const MappedPage& page : vma.pages) {
          const uint64_t start = std::max(page.va, from);
          if (start >= page.va + page.size) continue;
          present += (page.va + page.size - start) / kPage;
          built.add(start, page.pa + (start - page.va), page.va + page.size - start,
                    regions.size() - 1);
        }
        built.close();
        const uint64_t pages = (vma.end - std::max(vma.start, from)) / kPage;
        ps.counts.swapped_pages += vma.swapped_pages;
        ps.counts.not_present_pages += pages - std::min(pages, present + vma.swapped_pages);
      }
      auto scanned = scan_blocks(
          scanner, memory, built, regions, ps.counts,
          [&](ScanMatchRow& row, const Region& r) {
            const MemoryMapRow& vma = *r.vma;
            row.memory = "process";
            row.pid = p->pid;
            row.tgid = p->tgid;
            row.comm = p->comm;
            row.vma_start = vma.start;
            row.vma_end = vma.end;
            row.perms = vma.perms;
            row.path = vma.path;
            if (file_backed(vma) && row.va) row.file_offset = vma.offset + (*row.va - vma.start);
          },
          out.rows);
      if (!scanned) return scanned.error();
      budget -= std::min(budget, before - process_budget);
      out.total.add(ps.counts);
      progress.bytes_scanned = out.total.bytes_scanned;
      ++progress.processes_done;
      const bool stopped = built.stopped_at.has_value();
      if (stopped)
        cursor = {p->pid, *built.stopped_at};
      else
        out.completed.push_back(p->pid);
      out.processes.push_back(std::move(ps));
      if (options.progress) options.progress(progress);
      if (stopped && budget < kPage) {
        out.duration_ns = static_cast<uint64_t>((std::chrono::steady_clock::now() - t0).count());
        return out;
      }
    }
    cursor = options.kernel ? ScanCursor{0, 0} : ScanCursor{};  // kernel memory next, or wrap
  }

  if (options.kernel && cursor.pid == 0) {
    if (cursor.va == 0) started(0);
    ScanCounts counts;
    NFM_ASSIGN(CodeOwners owners, CodeOwners::read(kernel, object_context(kernel), kMaxModules));
    std::vector<Region> regions;
    for (const CodeOwners::Range& r : owners.ranges())
      regions.push_back(
          {r.start, r.end, nullptr, r.module == CodeOwners::kKernel ? "vmlinux" : r.module});
    // The kernel log lives in the image's .bss unless log_buf_len= moved it.
    if (auto log = kernel.symbol("log_buf")) {
      auto buf = kernel.read_pointer(*log);
      auto len = kernel.symbol("log_buf_len");
      auto size = len ? kernel.read_value<uint32_t>(*len) : Result<uint32_t>(len.error());
      if (buf && size && *size && *size <= ram &&
          !(regions[0].start <= *buf && *buf < regions[0].end))
        regions.push_back({*buf, *buf + *size, nullptr, "vmlinux"});
    }
    uint64_t kernel_budget = budget;
    BlockBuilder built(host, options, kernel_budget, counts);
    for (size_t i = 0; i < regions.size(); ++i) {
      const Region& r = regions[i];
      const uint64_t from = std::max(r.start, cursor.va);
      if (from >= r.end) continue;
      uint64_t skipped = 0;
      auto walked = kernel.space().for_each_mapping(
          from & ~(kPage - 1), r.end,
          [&](const PageMapping& m) {
            const uint64_t start = std::max(m.va, from & ~(kPage - 1));
            const uint64_t end = std::min(m.va + m.size, r.end);
            if (start < end) built.add(start, m.pa + (start - m.va), end - start, i);
            return true;
          },
          &skipped);
      built.close();
      if (!walked || skipped) ++counts.unreadable_pages;
    }
    NFM_TRY(scan_blocks(
        scanner, memory, built, regions, counts,
        [&](ScanMatchRow& row, const Region& r) {
          row.memory = "kernel";
          row.module = r.module;
          if (!row.va) return;
          if (r.module != "vmlinux") {
            if (auto s = module_symbol_near(kernel, *row.va, kMaxSymbolOffset))
              row.symbol = s->name;
          } else if (auto near = kernel.symbols().nearest(*row.va)) {
            row.symbol = near->offset ? fmt::format("{}+0x{:x}", near->symbol.name, near->offset)
                                      : std::string(near->symbol.name);
          }
        },
        out.rows));
    budget = kernel_budget;
    out.total.add(counts);
    out.kernel = counts;
    cursor = built.stopped_at ? ScanCursor{0, *built.stopped_at} : ScanCursor{};
    if (!built.stopped_at) out.completed.push_back(0);
  }
  out.duration_ns = static_cast<uint64_t>((std::chrono::steady_clock::now() - t0).count());
  return out;
}

}  // namespace nfm
