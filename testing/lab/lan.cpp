#include "lan.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace nfm::lab {

namespace {

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) throw std::runtime_error("socket path too long: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

}  // namespace

PrivateLan::PrivateLan(size_t ports) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "nfm-lan-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp: " + std::string(strerror(errno)));
  dir_ = tmpl;
  for (size_t i = 0; i < ports; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a = unix_address(hub_path(i));
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
      throw std::runtime_error("hub socket " + hub_path(i) + ": " + strerror(errno));
    fds_.push_back(fd);
  }
  if (::pipe2(stop_, O_CLOEXEC) < 0)
    throw std::runtime_error("pipe: " + std::string(strerror(errno)));
  thread_ = std::thread([this] { run(); });
}

PrivateLan::~PrivateLan() {
  (void)!::write(stop_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  for (int fd : fds_) ::close(fd);
  ::close(stop_[0]);
  ::close(stop_[1]);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string PrivateLan::hub_path(size_t i) const {
  return fmt::format("{}/hub-{}.sock", dir_, i);
}
std::string PrivateLan::guest_path(size_t i) const {
  return fmt::format("{}/guest-{}.sock", dir_, i);
}
std::string PrivateLan::ipv4(size_t i) const {
  return fmt::format("192.168.50.{}", i + 1);
}
std::string PrivateLan::ipv6(size_t i) const {
  return fmt::format("fd50::{}", i + 1);
}

std::vector<std::string> PrivateLan::qemu_args(size_t i) const {
  // QEMU binds guest-i.sock and sends to hub-i.sock. A MAC of its own per guest:
  // QEMU would give every guest's second NIC the same one.
  return {"-netdev",
          fmt::format("dgram,id=lan,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                      guest_path(i), hub_path(i)),
          "-device", fmt::format("virtio-net-pci,netdev=lan,mac=52:54:00:50:00:{:02x}", i + 1)};
}

std::string PrivateLan::append(size_t i) const {
  return fmt::format("nfm.lan={}/24,{}/64", ipv4(i), ipv6(i));
}

void PrivateLan::run() {
  std::vector<pollfd> polls;
  for (int fd : fds_) polls.push_back({.fd = fd, .events = POLLIN});
  polls.push_back({.fd = stop_[0], .events = POLLIN});
  std::vector<char> frame(65536);
  for (;;) {
    if (::poll(polls.data(), polls.size(), -1) < 0 && errno != EINTR) return;
    if (polls.back().revents) return;
    for (size_t from = 0; from < fds_.size(); ++from) {
      if (!(polls[from].revents & POLLIN)) continue;
      ssize_t n = ::recv(fds_[from], frame.data(), frame.size(), MSG_DONTWAIT);
      if (n <= 0) continue;
      for (size_t to = 0; to < fds_.size(); ++to) {
        if (to == from) continue;
        sockaddr_un a = unix_address(guest_path(to));
        // A guest not started yet (no socket) just misses the frame, as on a wire.
        if (::sendto(fds_[to], frame.data(), n, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a),
                     sizeof a) == n)
          ++repeated_;
      }
    }
  }
}

}  // namespace nfm::lab
