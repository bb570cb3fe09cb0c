// A private Ethernet segment between lab guests that exists only inside this
// machine: each guest's second NIC (eth1) is a QEMU "dgram" netdev over a pair of
// UNIX datagram sockets, and a hub thread here repeats every frame it receives on
// one port to all the others. No multicast, no TAP device, no address off this host.
//
//   static nfm::lab::PrivateLan lan(3);
//   GuestOptions{.append = lan.append(0), .qemu_args = lan.qemu_args(0), .exclusive = true}
//   ... guest 0 is lan.ipv4(0) = 192.168.50.1 and lan.ipv6(0) = fd50::1 on eth1.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace nfm::lab {

class PrivateLan {
 public:
  explicit PrivateLan(size_t ports);  // throws when the sockets cannot be made
  ~PrivateLan();
  PrivateLan(const PrivateLan&) = delete;
  PrivateLan& operator=(const PrivateLan&) = delete;

  // Guest `i`'s NIC: the QEMU arguments and the kernel argument that has the
  // guest's /init give eth1 its addresses (testing/guest/init.sh).
  std::vector<std::string> qemu_args(size_t i) const;
  std::string append(size_t i) const;
  std::string ipv4(size_t i) const;  // "192.168.50.<i+1>" (/24)
  std::string ipv6(size_t i) const;  // "fd50::<i+1>" (/64)
  uint64_t frames_repeated() const { return repeated_.load(); }

 private:
  void run();
  std::string hub_path(size_t i) const;
  std::string guest_path(size_t i) const;

  std::string dir_;
  std::vector<int> fds_;  // the hub's end of each port
  int stop_[2] = {-1, -1};
  std::atomic<uint64_t> repeated_{0};
  std::thread thread_;
};

}  // namespace nfm::lab
