// The guest's sockets (TCP, UDP over IPv4/IPv6, UNIX) from the kernel's own
// hash tables, as /proc/net/{tcp,tcp6,udp,udp6,unix} and netstat show them.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "features/sockets/rows.h"
#include "kernel/kernel.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {
struct ProcessList;
}

namespace nfm {

class SocketReader {
 public:
  static Result<SocketReader> create(Kernel& kernel);
  // `tasks`: this crawl's process list for the owner lookup when the caller has it.
  Result<SocketList> list(const SocketOptions& options = {}, const ProcessList* tasks = nullptr);

  struct Layout;

 private:
  SocketReader(Kernel& kernel, std::shared_ptr<const Layout> layout)
      : kernel_(&kernel), layout_(std::move(layout)) {}
  void walk_table(uint64_t heads, uint64_t count, uint64_t stride, uint64_t node_offset,
                  bool check_nulls, HashWalk& walk, const SocketOptions& options,
                  std::vector<uint64_t>& socks);
  bool read_inet(uint64_t sk, bool tcp, SocketRow& row, SocketList& out);
  bool read_unix(uint64_t sk, SocketRow& row, SocketList& out);
  bool read_inode(uint64_t socket, SocketRow& row);
  bool in_init_net(std::span<const uint8_t> common) const;

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  std::vector<uint8_t> buffer_;
};

}  // namespace nfm
