#include "features/meminfo/meminfo.h"

#include <algorithm>

#include "kernel/object.h"

namespace nfm {

namespace {

constexpr uint64_t kPageKb = 4;            // x86-64 PAGE_SIZE / 1024
constexpr size_t kMaxBlockDevs = 1 << 16;  // bound on the bdev inode list walk

class Reader {
 public:
  explicit Reader(Kernel& kernel) : kernel_(kernel), ctx_(object_context(kernel)) {}

  // A global unsigned long / atomic_long_t (both one 8-byte word on x86-64).
  Result<int64_t> word(std::string_view symbol) {
    NFM_ASSIGN(uint64_t address, kernel_.symbol(symbol));
    return kernel_.read_value<int64_t>(address);
  }
  Result<int64_t> first_word(std::initializer_list<std::string_view> symbols) {
    Result<int64_t> r = make_error(Errc::not_found, "no symbol");
    for (std::string_view s : symbols)
      if ((r = word(s))) return r;
    return r;
  }

  // global_zone_page_state() / global_node_page_state(): one element of the
  // vm_zone_stat[] / vm_node_stat[] atomic_long_t arrays, indexed by the
  // enumerator's value from BTF, negative (per-cpu drift) read as 0.
  Result<uint64_t> global_stat(std::string_view array, std::string_view item) {
    NFM_ASSIGN(int64_t index, kernel_.types().enum_value(item));
    NFM_ASSIGN(uint64_t address, kernel_.symbol(array));
    NFM_ASSIGN(int64_t v, kernel_.read_value<int64_t>(address + 8 * index));
    return v < 0 ? 0 : static_cast<uint64_t>(v);
  }
  // The first enumerator that exists (newest name first).
  Result<uint64_t> node_stat(std::initializer_list<std::string_view> items) {
    for (std::string_view item : items)
      if (kernel_.types().enum_value(item)) return global_stat("vm_node_stat", item);
    return make_error(Errc::not_found, "no node_stat_item " + std::string(*items.begin()));
  }

  // for_each_zone(): sum of low_wmark_pages() = _watermark[WMARK_LOW] +
  // watermark_boost (5.0+; older kernels: watermark[WMARK_LOW]).
  Result<uint64_t> low_watermarks() {
    const Types& t = kernel_.types();
    NFM_ASSIGN(int64_t wmark_low, t.enum_value("WMARK_LOW"));
    NFM_ASSIGN(std::vector<uint64_t> pgdats, online_pgdats());
    const bool underscore = t.has_member("zone", "_watermark");
    const bool boost = t.has_member("zone", "watermark_boost");
    NFM_ASSIGN(Field zones, t.member("pglist_data", "node_zones"));
    NFM_ASSIGN(ArrayInfo array, t.array(zones.type));
    NFM_ASSIGN(TypeRef zone_type, t.find_struct("zone"));
    uint64_t sum = 0;
    for (uint64_t pgdat : pgdats) {
      for (uint32_t z = 0; z < array.count; ++z) {
        Object zone(ctx_, pgdat + zones.offset + z * array.element_size, zone_type);
        const std::string path = std::string(underscore ? "_watermark[" : "watermark[") +
                                 std::to_string(wmark_low) + "]";
        NFM_ASSIGN(Object w, zone.member(path));
        NFM_ASSIGN(uint64_t pages, w.as_unsigned());
        sum += pages;
        if (boost) {
          NFM_ASSIGN(Object b, zone.member("watermark_boost"));
          NFM_ASSIGN(uint64_t boosted, b.as_unsigned());
          sum += boosted;
        }
      }
    }
    return sum;
  }

  // NODE_DATA(n) of every online node: node_data[] on NUMA kernels (the online
  // set is node_states[N_ONLINE]), the single contig_page_data otherwise.
  Result<std::vector<uint64_t>> online_pgdats() {
    auto node_data = kernel_.symbol("node_data");
    if (!node_data) {
      NFM_ASSIGN(uint64_t contig, kernel_.symbol("contig_page_data"));
      return std::vector<uint64_t>{contig};
    }
    NFM_ASSIGN(int64_t n_online, kernel_.types().enum_value("N_ONLINE"));
    NFM_ASSIGN(uint64_t states, kernel_.symbol("node_states"));
    NFM_ASSIGN(TypeRef mask_type, kernel_.types().find_type("nodemask_t"));
    NFM_ASSIGN(uint64_t mask_size, kernel_.types().size_of(mask_type));
    std::vector<uint64_t> pgdats;
    for (uint64_t word = 0; word < mask_size / 8; ++word) {
      NFM_ASSIGN(uint64_t bits,
                 kernel_.read_value<uint64_t>(states + n_online * mask_size + 8 * word));
      for (int bit = 0; bit < 64; ++bit) {
        if (!(bits >> bit & 1)) continue;
        NFM_ASSIGN(uint64_t pgdat, kernel_.read_pointer(*node_data + 8 * (word * 64 + bit)));
        if (pgdat) pgdats.push_back(pgdat);
      }
    }
    return pgdats;
  }

  // nr_blockdev_pages() (block/bdev.c, fs/block_dev.c before 5.15): the page
  // cache of every block device inode on blockdev_superblock->s_inodes.
  Result<uint64_t> blockdev_pages() {
    NFM_ASSIGN(uint64_t sb_pointer, kernel_.symbol("blockdev_superblock"));
    NFM_ASSIGN(uint64_t sb_address, kernel_.read_pointer(sb_pointer));
    NFM_ASSIGN(TypeRef sb_type, kernel_.types().find_struct("super_block"));
    Object sb(ctx_, sb_address, sb_type);
    NFM_ASSIGN(Object inodes, sb.member("s_inodes"));
    uint64_t pages = 0;
    bool failed = false;
    NFM_ASSIGN(
        WalkResult walk,
        for_each_entry(inodes, "inode", "i_sb_list", kMaxBlockDevs, [&](const Object& inode) {
          auto mapping = inode.arrow("i_mapping");
          auto nr = mapping ? mapping->member("nrpages") : Result<Object>(mapping.error());
          auto v = nr ? nr->as_unsigned() : Result<uint64_t>(nr.error());
          if (!v) return !(failed = true);
          pages += *v;
          return true;
        }));
    if (failed || !walk.ok()) return make_error(Errc::fault, "block device inode list unreadable");
    return pages;
  }

  // total_swapcache_pages(): NR_SWAPCACHE (5.13+); before, the nrpages of
  // every swapper_spaces[type][i] address space of the nr_swapfiles swap types.
  Result<uint64_t> swapcache_pages() {
    if (kernel_.types().enum_value("NR_SWAPCACHE"))
      return global_stat("vm_node_stat", "NR_SWAPCACHE");
    NFM_ASSIGN(uint64_t nr_swapfiles_address, kernel_.symbol("nr_swapfiles"));
    NFM_ASSIGN(uint32_t nr_swapfiles, kernel_.read_value<uint32_t>(nr_swapfiles_address));
    if (nr_swapfiles == 0) return uint64_t{0};
    NFM_ASSIGN(uint64_t spaces, kernel_.symbol("swapper_spaces"));
    NFM_ASSIGN(uint64_t counts, kernel_.symbol("nr_swapper_spaces"));
    NFM_ASSIGN(Field nrpages, kernel_.types().member("address_space", "nrpages"));
    NFM_ASSIGN(uint64_t space_size, kernel_.types().size_of("address_space"));
    uint64_t total = 0;
    for (uint32_t type = 0; type < std::min<uint32_t>(nr_swapfiles, 64); ++type) {
      NFM_ASSIGN(uint64_t array, kernel_.read_pointer(spaces + 8 * type));
      NFM_ASSIGN(uint32_t n, kernel_.read_value<uint32_t>(counts + 4 * type));
      if (!array) continue;
      for (uint32_t i = 0; i < n; ++i) {
        NFM_ASSIGN(uint64_t v,
                   kernel_.read_value<uint64_t>(array + i * space_size + nrpages.offset));
        total += v;
      }
    }
    return total;
  }

 private:
  Kernel& kernel_;
  ObjectContext ctx_;
};

}  // namespace

Result<MemInfo> read_meminfo(Kernel& kernel) {
  Reader r(kernel);
  MemInfo m;
  // 5.0 (ca79b0c211af "mm: convert totalram_pages ... to atomic") renamed it _totalram_pages.
  NFM_ASSIGN(int64_t total, r.first_word({"_totalram_pages", "totalram_pages"}));
  NFM_ASSIGN(uint64_t free_pages, r.global_stat("vm_zone_stat", "NR_FREE_PAGES"));

  // si_mem_available() (mm/page_alloc.c; mm/show_mem.c since 6.2), same logic 5.10-6.12.
  NFM_ASSIGN(int64_t reserve, r.word("totalreserve_pages"));
  NFM_ASSIGN(uint64_t wmark_low, r.low_watermarks());
  NFM_ASSIGN(uint64_t active_file, r.node_stat({"NR_ACTIVE_FILE"}));
  NFM_ASSIGN(uint64_t inactive_file, r.node_stat({"NR_INACTIVE_FILE"}));
  // 5.9 (d42f3245c7e2) counts slab in bytes per cpu, pages globally: NR_SLAB_RECLAIMABLE_B.
  NFM_ASSIGN(uint64_t slab, r.node_stat({"NR_SLAB_RECLAIMABLE_B", "NR_SLAB_RECLAIMABLE"}));
  auto misc = r.node_stat({"NR_KERNEL_MISC_RECLAIMABLE"});  // 4.20+
  int64_t available = static_cast<int64_t>(free_pages) - reserve;
  uint64_t pagecache = active_file + inactive_file;
  pagecache -= std::min(pagecache / 2, wmark_low);
  available += pagecache;
  const uint64_t reclaimable = slab + misc.value_or(0);
  available += reclaimable - std::min(reclaimable / 2, wmark_low);
  if (available < 0) available = 0;

  NFM_ASSIGN(uint64_t buffers, r.blockdev_pages());
  NFM_ASSIGN(uint64_t file_pages, r.node_stat({"NR_FILE_PAGES"}));
  NFM_ASSIGN(uint64_t swapcache, r.swapcache_pages());
  const int64_t cached = static_cast<int64_t>(file_pages - swapcache - buffers);

  // si_swapinfo(); swap areas being swapped off (nr_to_be_unused) are not added.
  NFM_ASSIGN(int64_t swap_total, r.word("total_swap_pages"));
  NFM_ASSIGN(int64_t swap_free, r.word("nr_swap_pages"));

  m.total_kb = static_cast<uint64_t>(total) * kPageKb;
  m.free_kb = free_pages * kPageKb;
  m.available_kb = static_cast<uint64_t>(available) * kPageKb;
  m.buffers_kb = buffers * kPageKb;
  m.cached_kb = cached < 0 ? 0 : static_cast<uint64_t>(cached) * kPageKb;
  m.swap_total_kb = static_cast<uint64_t>(std::max<int64_t>(swap_total, 0)) * kPageKb;
  m.swap_free_kb = static_cast<uint64_t>(std::max<int64_t>(swap_free, 0)) * kPageKb;
  return m;
}

}  // namespace nfm
