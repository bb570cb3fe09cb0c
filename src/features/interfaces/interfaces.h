// Network interfaces of the initial network namespace: names, addresses, flags
// and the counters the guest's /proc/net/dev shows (dev_get_stats()).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "features/interfaces/rows.h"
#include "kernel/kernel.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

// struct rtnl_link_stats64, the fields /proc/net/dev prints (dev_seq_printf_stats()).
class InterfaceReader {
 public:
  static Result<InterfaceReader> create(Kernel& kernel);
  Result<InterfaceList> list(const InterfaceOptions& options = {});

  struct Layout;
  struct VirtioLayout;

 private:
  InterfaceReader(Kernel& kernel, std::shared_ptr<const Layout> layout)
      : kernel_(&kernel), layout_(std::move(layout)) {}
  bool read_device(uint64_t dev, InterfaceRow& row, InterfaceList& out,
                   const InterfaceOptions& options);
  void read_ipv4(uint64_t in_dev, InterfaceRow& row, InterfaceList& out,
                 const InterfaceOptions& options);
  void read_ipv6(uint64_t inet6_dev, InterfaceRow& row, InterfaceList& out,
                 const InterfaceOptions& options);
  void read_stats(uint64_t dev, InterfaceRow& row, InterfaceList& out,
                  const InterfaceOptions& options);
  Result<std::shared_ptr<const VirtioLayout>> virtio_layout();
  bool read_virtnet_stats(uint64_t dev, const VirtioLayout& v, LinkStats& s,
                          const InterfaceOptions& options);
  bool sum_lstats(uint64_t percpu, uint64_t& packets, uint64_t& bytes);
  std::string function_name(uint64_t address);

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  std::shared_ptr<const VirtioLayout> virtio_;      // resolved on first use (module BTF)
  std::optional<Error> virtio_error_;               // or why it cannot be
  std::map<uint64_t, std::string> function_names_;  // per list(): ops pointers seen
  std::vector<uint8_t> buffer_;
};

}  // namespace nfm
