#include "fixture.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <optional>

#include "pool.h"

namespace nfm::lab {
namespace {

struct Slot {
  std::string key;
  GuestOptions opts;
  std::unique_ptr<Guest> guest;
  std::optional<Error> error;
  bool pooled = false;  // attached to the guest pool's guest of this kernel
};

struct Registry {
  std::mutex mu;
  std::vector<Slot> slots;
  bool booted = false;
};

Registry& registry() {
  static Registry r;
  return r;
}

// QEMU pids for the signal handler (plain array: async-signal-safe).
volatile pid_t g_pids[64];

void on_signal(int sig) {
  for (auto& p : g_pids)
    if (p > 0) ::kill(p, SIGKILL);
  ::_exit(128 + sig);
}

void boot_all(Registry& r) {
  r.booted = true;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  auto t0 = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // Under ctest, guests that only need the standard workload come from the guest pool
  // (pool.h); the others, and every guest of a program run by hand, boot here.
  // ctest -FA guest_pool (no pool started) boots every guest here, as without ctest.
  const std::string pool_dir = pool::running() ? pool::directory() : "";
  for (auto& s : r.slots) s.pooled = !pool_dir.empty() && pool::matches(s.opts);
  // Kernel fetches and initramfs builds in parallel; QEMU forks from this thread.
  std::vector<std::future<Result<std::unique_ptr<Guest>>>> prepared;
  for (auto& s : r.slots)
    prepared.push_back(
        s.pooled ? std::future<Result<std::unique_ptr<Guest>>>()
                 : std::async(std::launch::async, [&s] { return Guest::prepare(s.opts); }));
  size_t i = 0;
  for (size_t k = 0; k < r.slots.size(); k++) {
    auto& s = r.slots[k];
    if (s.pooled) continue;
    auto g = prepared[k].get();
    if (g) {
      if (auto ok = (*g)->launch(); !ok) g = ok.error();
    }
    if (!g) {
      s.error = g.error();
      continue;
    }
    s.guest = std::move(*g);
    if (i < std::size(g_pids)) g_pids[i++] = s.guest->pid();
  }
  std::fprintf(stderr, "nfm-lab: %zu guest(s) started in %.1f s\n", r.slots.size(), since());
  // Own guests boot meanwhile. The pool may still be booting too (it starts with ctest).
  for (auto& s : r.slots) {
    if (!s.pooled) continue;
    auto g = pool::attach(pool_dir, s.opts.kernel, std::chrono::seconds(420));
    // The boot dump is long gone: a fresh one, so truth() is valid as for own guests.
    if (g) {
      if (auto ok = (*g)->request_truth(); !ok)
        g = ok.error();
      else
        (*g)->resume_if_held();  // no test runs yet: let the other programs in
    }
    if (!g) {
      s.error = g.error();
      continue;
    }
    s.guest = std::move(*g);
    std::fprintf(stderr, "nfm-lab: guest %s is the pool's %s (QEMU pid %d, fixture at %.1f s)\n",
                 s.key.c_str(), s.guest->name().c_str(), s.guest->pid(), since());
  }
  for (auto& s : r.slots) {
    if (!s.guest || s.pooled) continue;
    if (auto ok = s.guest->wait_ready(s.opts.timeout); !ok) {
      s.error = ok.error();
      continue;
    }
    std::fprintf(stderr,
                 "nfm-lab: guest %s (%s, QEMU pid %d) ready in %.1f s (fixture at %.1f s)\n",
                 s.key.c_str(), s.guest->kernel_release().c_str(), s.guest->pid(),
                 s.guest->boot_time().count() / 1000.0, since());
  }
}

}  // namespace

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

int declare_guests(std::vector<GuestOptions> guests) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (auto& o : guests) {
    std::string key = o.name.empty() ? o.kernel : o.name;
    // Test programs run in parallel (ctest -j): QEMU names must not collide,
    // or `qemu:NAME` would be ambiguous.
    o.name = "nfm-" + key + "-" + std::to_string(getpid());
    // Many guests share two host cores: quiet unless the test asks (nfm.burn=PCT,
    // nfm.snapshot=SECONDS).
    o.append = with_quiet_workload(std::move(o.append));
    r.slots.push_back(Slot{key, std::move(o), nullptr, std::nullopt});
  }
  return static_cast<int>(r.slots.size());
}

std::vector<std::string> declared_guests() {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> keys;
  for (auto& s : r.slots) keys.push_back(s.key);
  return keys;
}

Result<Guest*> guest(std::string_view key) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  if (!r.booted) boot_all(r);
  for (auto& s : r.slots) {
    if (s.key != key) continue;
    if (s.error) return *s.error;
    return s.guest.get();
  }
  return make_error(Errc::not_found, "no guest '" + std::string(key) + "' declared");
}

void release_shared_guests() {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (auto& s : r.slots)
    if (s.guest && s.guest->resume_if_held())
      std::fprintf(stderr, "nfm-lab: the test left shared guest %s paused; resumed it\n",
                   s.key.c_str());
}

void shutdown_guests() {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (auto& p : g_pids) p = 0;
  for (auto& s : r.slots) s.guest.reset();
}

}  // namespace nfm::lab
