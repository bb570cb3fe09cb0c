// The kernel log: every record of the lockless printk ring buffer (5.10+,
// kernel/printk/printk_ringbuffer.{h,c}), as /dev/kmsg and dmesg show it.
//
// The ring is read without the guest's help, while the guest may be writing:
// the descriptor array is read before and after the text, and a record counts
// only if its descriptor did not change in between, its data block carries its
// id, and its lengths fit. Everything else is skipped and counted.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "arch/address_space.h"
#include "features/kmsg/rows.h"
#include "kernel/kernel.h"
#include "kernel/layout.h"
#include "util/result.h"

namespace nfm {

// Pure ring arithmetic (printk_ringbuffer.c), separate so it can be unit-tested.
namespace printk_ring {

// Descriptor states: the top two bits of state_var (DESC_FLAGS_SHIFT = 62);
// the remaining 62 bits are the id the descriptor currently holds.
enum class DescState { reserved = 0, committed = 1, finalized = 2, reusable = 3, miss = -1 };
inline constexpr uint64_t kIdMask = ~(uint64_t{3} << 62);
inline uint64_t desc_id(uint64_t state_var) {
  return state_var & kIdMask;
}
// get_desc_state(): `miss` when the descriptor holds another id than `id`.
DescState desc_state(uint64_t id, uint64_t state_var);

// Where a data block lies in the data array (get_data()).
enum class BlockKind {
  data,     // a regular or wrapped block: [offset, offset + size) holds id + text
  empty,    // data-less: an empty line (EMPTY_LINE_LPOS / NO_LPOS, both 0x3)
  lost,     // data-less: no data (FAILED_LPOS) or dropped
  invalid,  // lpos values that no writer produces: torn or hostile
};
struct Block {
  BlockKind kind = BlockKind::invalid;
  uint64_t offset = 0;  // index of the block's id in the data array
  uint64_t size = 0;    // bytes after the id (text plus alignment padding)
};
Block locate_block(unsigned size_bits, uint64_t begin, uint64_t next);

// A field of a ring structure (bitfields included).
using Slot = FieldSlot;

// Where the ring's fields lie (from BTF; by hand in tests).
struct Layout {
  uint64_t rb_size = 0;                             // sizeof(struct printk_ringbuffer)
  Slot count_bits, descs, infos, head_id, tail_id;  // .desc_ring.*
  Slot size_bits, data;                             // .text_data_ring.*
  uint64_t desc_size = 0;                           // sizeof(struct prb_desc)
  Slot state_var, blk_begin, blk_next;              // prb_desc: state_var, text_blk_lpos.*
  bool infos_array = true;    // printk_info in desc_ring.infos[], or embedded at...
  uint64_t info_in_desc = 0;  // ...prb_desc.info (5.10-rc only)
  uint64_t info_size = 0;     // sizeof(struct printk_info)
  Slot seq, ts_nsec, text_len, facility, flags, level, caller_id, subsystem, device;
};

// Reads every record of the struct printk_ringbuffer at `rb`. `recheck` reads the
// descriptors a second time after the text; it must not serve them from a cache
// filled by the first read (Kernel::fresh_space()). Default: `space`.
Result<KmsgLog> read_ring(AddressSpace& space, uint64_t rb, const Layout& layout,
                          const KmsgOptions& options, AddressSpace* recheck = nullptr);

}  // namespace printk_ring

// Resolves the ring layout once per kernel (by field names); read() then runs
// as often as wanted.
class KmsgReader {
 public:
  static Result<KmsgReader> create(Kernel& kernel);
  Result<KmsgLog> read(const KmsgOptions& options = {});

 private:
  KmsgReader(Kernel& kernel, uint64_t prb, std::shared_ptr<const printk_ring::Layout> layout)
      : kernel_(&kernel), prb_(prb), layout_(std::move(layout)) {}

  Kernel* kernel_;
  uint64_t prb_;  // address of the `prb` pointer variable
  std::shared_ptr<const printk_ring::Layout> layout_;
};

}  // namespace nfm
