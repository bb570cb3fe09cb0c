#include "features/kmsg/kmsg.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>

#include "kernel/walk.h"

namespace nfm {

std::string KmsgRecord::caller() const {
  // printk_caller_id(): in_task() ? task_pid_nr : 0x80000000 + cpu.
  if (caller_id & 0x80000000u) return fmt::format("C{}", caller_id & ~0x80000000u);
  return fmt::format("T{}", caller_id);
}

namespace printk_ring {

DescState desc_state(uint64_t id, uint64_t state_var) {
  if (desc_id(state_var) != id) return DescState::miss;
  return static_cast<DescState>(state_var >> 62);
}

Block locate_block(unsigned size_bits, uint64_t begin, uint64_t next) {
  constexpr uint64_t kId = 8;           // sizeof(prb_data_block.id)
  constexpr uint64_t kEmptyLine = 0x3;  // EMPTY_LINE_LPOS (6.x) / NO_LPOS (5.10)
  if (size_bits >= 63) return {};
  const uint64_t ring = uint64_t{1} << size_bits;
  auto wraps = [&](uint64_t lpos) { return lpos >> size_bits; };  // DATA_WRAPS
  // Data-less blocks have bit 0 set in both positions.
  if ((begin & 1) && (next & 1)) {
    if (begin == kEmptyLine && next == kEmptyLine) return {BlockKind::empty, 0, 0};
    return {BlockKind::lost, 0, 0};
  }
  if (begin % kId || next % kId) return {};  // blocks are aligned to the id size
  Block b{BlockKind::data, 0, 0};
  uint64_t bytes;  // the whole block: id + data + padding
  // A regular block lies within one wrap. Compare with next - 1 (and sizes
  // modulo 2^64): since 2025 a block may end exactly at the end of the array
  // (commit "printk_ringbuffer: don't needlessly wrap data blocks around"),
  // and lpos values overflow by design (BLK0_LPOS).
  if (wraps(begin) == wraps(next - 1) && next - begin <= ring && next != begin) {
    b.offset = begin & (ring - 1);
    bytes = next - begin;
  } else if (wraps(begin + ring) == wraps(next - 1)) {
    // A wrapping block keeps only its id at `begin`; id and data are stored
    // again from the start of the array, up to `next`.
    b.offset = 0;
    bytes = next & (ring - 1);
  } else {
    return {};
  }
  // data_check_size(): the largest block still leaves room for the next id.
  if (bytes < kId || bytes > ring - kId) return {};
  b.size = bytes - kId;
  return b;
}

namespace {

constexpr uint64_t kPage = 4096;

}  // namespace

}  // namespace printk_ring

Result<KmsgReader> KmsgReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  using printk_ring::Slot;
  auto layout = std::make_shared<printk_ring::Layout>();
  printk_ring::Layout& l = *layout;
  auto require = [&](const char* type, const char* path) { return required_slot(t, type, path); };
  auto optional = [&](const char* type, const char* path) { return optional_slot(t, type, path); };
  // 5.10 (896fbe20b4e2 "printk: use the lockless ringbuffer") introduced `prb`;
  // older kernels kept log_buf/log_first_idx, which we do not read.
  auto prb = kernel.symbol("prb");
  if (!prb)
    return make_error(Errc::unsupported,
                      "no printk ring buffer (`prb`): kernels before 5.10 are not supported");

  // The state encoding (top 2 bits of state_var) must be the one we decode.
  // enum desc_state is in BTF when some function uses it; 5.10 already has
  // desc_finalized (2, "printk: ringbuffer: add finalization/extension support").
  const std::pair<const char*, int64_t> states[] = {
      {"desc_reserved", 0}, {"desc_committed", 1}, {"desc_finalized", 2}, {"desc_reusable", 3}};
  for (auto [name, value] : states) {
    auto v = t.enum_value("desc_state", name);
    if (v && *v != value)
      return make_error(Errc::unsupported,
                        fmt::format("printk ring: {} is {}, expected {}", name, *v, value));
  }

  NFM_ASSIGN(l.rb_size, t.size_of("printk_ringbuffer"));
  NFM_ASSIGN(l.count_bits, require("printk_ringbuffer", "desc_ring.count_bits"));
  NFM_ASSIGN(l.descs, require("printk_ringbuffer", "desc_ring.descs"));
  NFM_ASSIGN(l.head_id, require("printk_ringbuffer", "desc_ring.head_id"));
  NFM_ASSIGN(l.tail_id, require("printk_ringbuffer", "desc_ring.tail_id"));
  NFM_ASSIGN(l.size_bits, require("printk_ringbuffer", "text_data_ring.size_bits"));
  NFM_ASSIGN(l.data, require("printk_ringbuffer", "text_data_ring.data"));

  NFM_ASSIGN(l.desc_size, t.size_of("prb_desc"));
  NFM_ASSIGN(l.state_var, require("prb_desc", "state_var"));
  NFM_ASSIGN(l.blk_begin, require("prb_desc", "text_blk_lpos.begin"));
  NFM_ASSIGN(l.blk_next, require("prb_desc", "text_blk_lpos.next"));
  // The meta data moved from prb_desc.info to a parallel desc_ring.infos array
  // before 5.10 was released (cfe2790b163a "printk: move printk_info into
  // separate array"); the embedded form only existed in 5.10-rc kernels.
  l.infos = optional("printk_ringbuffer", "desc_ring.infos");
  l.infos_array = l.infos.present;
  if (!l.infos_array) {
    NFM_ASSIGN(Field info, t.member("prb_desc", "info"));
    l.info_in_desc = info.offset;
  }

  NFM_ASSIGN(l.info_size, t.size_of("printk_info"));
  NFM_ASSIGN(l.seq, require("printk_info", "seq"));
  NFM_ASSIGN(l.ts_nsec, require("printk_info", "ts_nsec"));
  NFM_ASSIGN(l.text_len, require("printk_info", "text_len"));
  NFM_ASSIGN(l.level, require("printk_info", "level"));
  l.facility = optional("printk_info", "facility");
  l.flags = optional("printk_info", "flags");
  l.caller_id = optional("printk_info", "caller_id");
  // dev_info (SUBSYSTEM=/DEVICE= of /dev/kmsg) replaced the dict ring in 5.10
  // (74caba7f2a06 "printk: move dictionary keys to dev_printk_info").
  l.subsystem = optional("printk_info", "dev_info.subsystem");
  l.device = optional("printk_info", "dev_info.device");
  return KmsgReader(kernel, *prb, std::move(layout));
}

Result<KmsgLog> KmsgReader::read(const KmsgOptions& options) {
  // `prb` points at printk_rb_static until setup_log_buf() switches it to
  // printk_rb_dynamic (log_buf_len=, many CPUs).
  NFM_ASSIGN(uint64_t rb, kernel_->read_pointer(prb_));
  return printk_ring::read_ring(kernel_->space(), rb, *layout_, options, &kernel_->fresh_space());
}

namespace printk_ring {

Result<KmsgLog> read_ring(AddressSpace& space, uint64_t rb, const Layout& l,
                          const KmsgOptions& options, AddressSpace* recheck) {
  KmsgLog out;
  if (!plausible_kernel_pointer(rb)) return fault_at(rb, "printk ring: bad `prb` pointer");
  std::vector<uint8_t> header(l.rb_size);
  NFM_TRY(space.read(rb, header.data(), header.size()));
  const uint8_t* h = header.data();
  const uint64_t count_bits = load_unsigned({h, l.rb_size}, l.count_bits);
  const uint64_t text_bits = load_unsigned({h, l.rb_size}, l.size_bits);
  const uint64_t descs = load_unsigned({h, l.rb_size}, l.descs);
  const uint64_t infos = l.infos_array ? load_unsigned({h, l.rb_size}, l.infos) : 0;
  const uint64_t data = load_unsigned({h, l.rb_size}, l.data);
  const uint64_t head_id = desc_id(load_unsigned({h, l.rb_size}, l.head_id));
  const uint64_t tail_id = desc_id(load_unsigned({h, l.rb_size}, l.tail_id));

  // Sizes come from the guest: bound them before allocating anything.
  if (count_bits >= 32 || (uint64_t{1} << count_bits) > options.max_records)
    return make_error(Errc::limit,
                      fmt::format("printk ring: 2^{} descriptors is over the limit", count_bits));
  if (text_bits >= 40 || (uint64_t{1} << text_bits) > options.max_text_bytes || text_bits < 4)
    return make_error(Errc::limit,
                      fmt::format("printk ring: 2^{} text bytes is out of range", text_bits));
  for (uint64_t p : {descs, data, l.infos_array ? infos : descs})
    if (!plausible_kernel_pointer(p)) return fault_at(p, "printk ring: bad array pointer");
  const uint64_t count = uint64_t{1} << count_bits;
  const uint64_t ring = uint64_t{1} << text_bits;
  out.ring_records = count;
  out.ring_bytes = ring;

  // Descriptors, then meta data and text, then the descriptors again: a record
  // whose state_var did not change in between was stable while we read it
  // (the kernel's desc_read() does the same per record).
  std::vector<uint8_t> before(count * l.desc_size), after(before.size());
  NFM_TRY(space.read(descs, before.data(), before.size()));
  std::vector<uint8_t> info_array;
  if (l.infos_array) {
    info_array.resize(count * l.info_size);
    NFM_TRY(space.read(infos, info_array.data(), info_array.size()));
  }
  // The text ring page by page, so one unreadable page costs only its records.
  std::vector<uint8_t> text(ring);
  std::vector<bool> page_ok((ring + kPage - 1) / kPage, true);
  if (!space.read(data, text.data(), ring)) {
    for (uint64_t off = 0; off < ring; off += kPage) {
      const uint64_t n = std::min(kPage, ring - off);
      if (!space.read(data + off, text.data() + off, n)) page_ok[off / kPage] = false;
    }
  }
  NFM_TRY((recheck ? *recheck : space).read(descs, after.data(), after.size()));

  auto readable = [&](uint64_t off, uint64_t len) {
    for (uint64_t p = off / kPage; p <= (off + len - 1) / kPage; ++p)
      if (!page_ok[p]) return false;
    return true;
  };

  // From the oldest descriptor to the newest, head included: at most `count`
  // ids, so a torn head/tail pair cannot make us loop.
  const uint64_t span = std::min<uint64_t>(((head_id - tail_id) & kIdMask) + 1, count);
  if (((head_id - tail_id) & kIdMask) >= count) ++out.torn;
  for (uint64_t i = 0, id = tail_id; i < span; ++i, id = (id + 1) & kIdMask) {
    const uint64_t index = id & (count - 1);
    const uint8_t* d1 = before.data() + index * l.desc_size;
    const uint8_t* d2 = after.data() + index * l.desc_size;
    const uint64_t sv = load_unsigned({d1, l.desc_size}, l.state_var);
    const DescState state = desc_state(id, sv);
    // Changed while we read, still being written, or recycled for a newer record.
    if (sv != load_unsigned({d2, l.desc_size}, l.state_var) || state == DescState::reserved ||
        state == DescState::miss) {
      ++out.in_flight;
      continue;
    }
    if (state == DescState::reusable) {  // still listed, but its text may be gone
      ++out.lost;
      continue;
    }
    const uint8_t* info =
        l.infos_array ? info_array.data() + index * l.info_size : d1 + l.info_in_desc;
    const uint64_t info_size = l.infos_array ? l.info_size : l.desc_size - l.info_in_desc;

    KmsgRecord r;
    r.seq = load_unsigned({info, info_size}, l.seq);
    // A sequence number maps to the same array slot as its id (DESC_INDEX).
    if ((r.seq & (count - 1)) != index) {
      ++out.torn;
      continue;
    }
    r.ts_ns = load_unsigned({info, info_size}, l.ts_nsec);
    r.level = static_cast<uint8_t>(load_unsigned({info, info_size}, l.level));
    r.facility = static_cast<uint8_t>(load_unsigned({info, info_size}, l.facility));
    r.flags = static_cast<uint8_t>(load_unsigned({info, info_size}, l.flags));
    r.caller_id = static_cast<uint32_t>(load_unsigned({info, info_size}, l.caller_id));
    r.subsystem = load_chars({info, info_size}, l.subsystem);
    r.device = load_chars({info, info_size}, l.device);
    r.finalized = state == DescState::finalized;
    const uint64_t text_len = load_unsigned({info, info_size}, l.text_len);

    const Block b = locate_block(static_cast<unsigned>(text_bits),
                                 load_unsigned({d1, l.desc_size}, l.blk_begin),
                                 load_unsigned({d1, l.desc_size}, l.blk_next));
    if (b.kind == BlockKind::lost) {
      ++out.lost;
      continue;
    }
    if (b.kind == BlockKind::invalid || (b.kind == BlockKind::empty && text_len != 0)) {
      ++out.torn;
      continue;
    }
    if (b.kind == BlockKind::data) {
      // copy_data(): the block may hold padding beyond text_len, never less.
      if (text_len > b.size) {
        ++out.torn;
        continue;
      }
      if (!readable(b.offset, 8 + text_len)) {
        ++out.unreadable;
        continue;
      }
      uint64_t block_id = 0;
      std::memcpy(&block_id, text.data() + b.offset, 8);
      if (block_id != id) {  // the block was reused by a newer record
        ++out.torn;
        continue;
      }
      r.text.assign(reinterpret_cast<const char*>(text.data() + b.offset + 8), text_len);
    }
    out.records.push_back(std::move(r));
  }
  return out;
}

}  // namespace printk_ring

}  // namespace nfm
