#include "memory/mapping_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

namespace nfm {

namespace {

// A fixed table the signal handler can read without locks or allocation. One
// slot per mapped dump or RAM region; 4096 is hundreds of VMs' worth.
constexpr int kSlots = 4096;

struct Slot {
  std::atomic<uintptr_t> base{0};  // 0: free; published last
  std::atomic<size_t> length{0};
  std::atomic<bool> shrunk{false};
};

Slot g_slots[kSlots];
struct sigaction g_previous;

void forward(int sig, siginfo_t* info, void* context) {
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) {
      g_previous.sa_sigaction(sig, info, context);
      return;
    }
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  // Default action: returning re-runs the faulting read, which now kills us.
  signal(sig, SIG_DFL);
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t base = s.base.load(std::memory_order_acquire);
    const size_t length = s.length.load(std::memory_order_relaxed);
    if (base == 0 || addr < base || addr - base >= length) continue;
    // Zero pages from the faulting page to the end of the mapping: the read that
    // faulted is re-run and sees zeros, and so does every later one.
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t from = addr & ~(page - 1);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): MAP_FIXED takes the address itself.
    void* p = mmap(reinterpret_cast<void*>(from), base + length - from, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) break;  // cannot recover: let the previous handler decide
    s.shrunk.store(true, std::memory_order_release);
    return;
  }
  forward(sig, info, context);
}

void install_handler() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  // SA_NODEFER: a second mapping can shrink while the first fault is handled.
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

MappingGuard& MappingGuard::operator=(MappingGuard&& o) noexcept {
  if (this != &o) {
    release();
    slot_ = o.slot_;
    o.slot_ = -1;
  }
  return *this;
}

bool MappingGuard::guard(void* base, size_t length, MappingGuard* out) {
  static std::once_flag installed;
  std::call_once(installed, install_handler);
  static std::mutex claim;  // claims only; the handler reads without it
  std::lock_guard lock(claim);
  for (int i = 0; i < kSlots; ++i) {
    Slot& s = g_slots[i];
    if (s.base.load(std::memory_order_relaxed) != 0) continue;
    s.length.store(length, std::memory_order_relaxed);
    s.shrunk.store(false, std::memory_order_relaxed);
    s.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
    out->release();
    out->slot_ = i;
    return true;
  }
  return false;
}

bool MappingGuard::shrunk() const {
  return slot_ >= 0 && g_slots[slot_].shrunk.load(std::memory_order_acquire);
}

void MappingGuard::release() {
  if (slot_ < 0) return;
  g_slots[slot_].base.store(0, std::memory_order_release);
  slot_ = -1;
}

}  // namespace nfm
