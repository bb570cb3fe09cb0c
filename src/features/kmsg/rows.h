// `kmsg`'s section of a frame: the kernel log's records as /dev/kmsg and dmesg
// show them. Row types and columns only: no kernel model here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "schema/fields.h"

namespace nfm {

struct KmsgRecord {
  uint64_t seq = 0;
  uint64_t ts_ns = 0;             // local_clock() at printk time (ns since boot)
  uint8_t level = 0;              // syslog level 0-7
  uint8_t facility = 0;           // syslog facility (0 = kernel)
  uint8_t flags = 0;              // printk's LOG_* record flags (LOG_NEWLINE 2, LOG_CONT 8)
  uint32_t caller_id = 0;         // 0x80000000|cpu or a thread id (CONFIG_PRINTK_CALLER data)
  bool finalized = false;         // false: committed, but its writer may still append
  std::string text;               // may hold '\n' (one record, several lines)
  std::string subsystem, device;  // dev_info, when the writer set it

  // "T123" (thread) or "C0" (cpu), as the kernel prints it with PRINTK_CALLER.
  std::string caller() const;
};

struct KmsgOptions {
  // Bounds on what a (possibly hostile) guest can make us allocate. The kernel's
  // configs stop at CONFIG_LOG_BUF_SHIFT=25 (32 MiB of text, 2^20 descriptors);
  // only a huge log_buf_len= boot argument goes beyond.
  uint64_t max_records = 1u << 20;
  uint64_t max_text_bytes = 64u << 20;
};

struct KmsgLog {
  static constexpr std::string_view kFeature = "kmsg";
  std::vector<KmsgRecord> records;  // oldest first, by seq
  uint64_t ring_records = 0;        // descriptor count (2^count_bits)
  uint64_t ring_bytes = 0;          // text ring size (2^size_bits)
  uint64_t in_flight = 0;           // reserved, or changed while we read: a writer is at it
  uint64_t lost = 0;                // descriptor exists but its text is gone (reusable, failed)
  uint64_t torn = 0;                // inconsistent descriptor, block id, lengths or sequence
  uint64_t unreadable = 0;          // text in guest pages that could not be read
};

const schema::Fields<KmsgRecord>& kmsg_fields();

}  // namespace nfm
