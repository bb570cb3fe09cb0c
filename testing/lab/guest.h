// A test guest: a Debian kernel booted under QEMU TCG with the nfm workload, its
// ground truth read from the second serial port, and QMP to control it.
//
//   auto g = nfm::lab::Guest::boot({.kernel = "6.1-cloud"});   // start + wait_ready
//   if (!g) ...g.error()...;
//   (*g)->truth().find_process("nfm-net");
//   (*g)->pause(); /* read guest memory from the host */ (*g)->resume();
//
// Threading note: QEMU is started with PR_SET_PDEATHSIG, which fires when the *thread*
// that forked it exits. Call start()/boot() from a thread that outlives the guest (the
// main thread); wait_ready() may run anywhere. The fixture (fixture.h) does this.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ground_truth.h"
#include "util/result.h"

namespace nfm::lab {

enum class Backing {
  anonymous,       // QEMU's default private RAM
  file,            // memory-backend-file,share=on in /dev/shm: Guest::memory_file() maps it
  disk_file,       // the same in /var/tmp, on disk: its pages can leave the page cache
  memfd,           // memory-backend-memfd,share=on: reachable through /proc/PID/fd of QEMU
  memfd_unsealed,  // the same with seal=off: anyone holding the fd may shrink it
};

struct GuestOptions {
  std::string kernel = "6.1-cloud";  // fetch-kernel.sh alias
  unsigned ram_mib = 512;
  unsigned cpus = 1;
  std::string machine = "pc";          // or "q35"
  std::string nic = "virtio-net-pci";  // or "e1000" (not in the -cloud kernels)
  Backing backing = Backing::anonymous;
  std::string cpu_model;  // -cpu; "" = QEMU's default. "max" gives LA57 (5-level paging) under TCG
  std::string name;       // -name; "" = "nfm-" + kernel
  std::string append;     // extra kernel arguments (e.g. "nfm.burn=10 nfm.snapshot=0")
  std::vector<std::string> qemu_args;  // extra QEMU arguments
  // Extra options of eth0's QEMU user network (e.g. "guestfwd=tcp:10.0.2.100:9000-cmd:cat").
  std::vector<std::string> user_net;
  // Host files the guest finds in /lib/nfm-extra/ (an initramfs appended to the lab's):
  // test kernel modules for the reporter's "insmod FILE ARGS".
  std::vector<std::string> extra_files;
  std::chrono::seconds timeout{240};  // boot() waits this long for the first ready
  // The test changes this guest (spawn/kill, files, timewait, crash, reset, host
  // forwards...): it gets a guest of its own, never one shared from the guest pool.
  bool exclusive = false;
};

// `append` with the quiet workload's defaults added where it does not say otherwise:
// no CPU burner (nfm.burn=0) and no periodic snapshots (nfm.snapshot=0). Under TCG an
// idle guest with the burner at 10% and a snapshot every 2 s costs a sixth of a host
// core, one with neither 1%; a test run keeps ten guests up on two cores. Tests that
// measure CPU shares or sample snapshots ask for them (and get guests of their own).
std::string with_quiet_workload(std::string append);

// A running guest owned by another process (the guest pool, pool.h), as published there.
struct SharedGuestInfo {
  std::string name, run_dir, kernel_dir;
  pid_t pid = -1;
  GuestOptions options;
  std::chrono::milliseconds boot_time{0};
};

const char* backing_name(Backing b);
Result<Backing> parse_backing(std::string_view s);

class Guest {
 public:
  // start() then wait_ready(opts.timeout).
  static Result<std::unique_ptr<Guest>> boot(const GuestOptions& opts);
  // prepare() then launch(): does not wait for the guest.
  static Result<std::unique_ptr<Guest>> start(const GuestOptions& opts);
  // Fetches the kernel, builds the initramfs, composes the QEMU command line (any thread).
  static Result<std::unique_ptr<Guest>> prepare(const GuestOptions& opts);
  // Forks QEMU and connects to the reporter's port (from a long-lived thread, see above).
  Result<void> launch();
  // Uses a guest that another process owns and shares (the guest pool): truth is read
  // from its truth log, commands go through the owner's relay socket (run_dir/cmd.sock),
  // QMP connects per command. Pausing, truth exchanges and memory saves are serialized
  // across processes by flock on run_dir/lock; commands that change the guest are
  // refused (declare the guest .exclusive instead). Does not request a dump.
  static Result<std::unique_ptr<Guest>> attach(const SharedGuestInfo& info);
  ~Guest();  // kills (SIGTERM, then SIGKILL) and reaps QEMU, removes the run dir; an
             // attached guest is only let go (resumed if this process paused it)
  bool shared() const { return attached_; }
  // Lets the other processes have a shared guest again (end of a test): resumes it if
  // this process left it paused (a test failed between pause() and resume()), returning
  // true then.
  bool resume_if_held();
  Guest(const Guest&) = delete;
  Guest& operator=(const Guest&) = delete;

  // Waits for the first "==NFM== ready" and parses it into truth().
  Result<void> wait_ready(std::chrono::milliseconds timeout);
  bool running() const;  // QEMU still alive

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const GuestOptions& options() const { return opts_; }
  const std::string& run_dir() const { return run_dir_; }
  const std::string& kernel_dir() const {
    return kernel_dir_;
  }                                    // vmlinuz, config, System.map, modules/
  std::string kernel_release() const;  // from kernel_dir's name, e.g. "6.1.0-56-cloud-amd64"
  // QEMU's files are in its owner's run dir; an attached guest's run_dir() is a scratch
  // dir of this process (tests write dumps there), removed with the Guest.
  std::string qmp_socket() const { return qemu_dir_ + "/qmp.sock"; }
  std::string console_log() const { return qemu_dir_ + "/serial0.log"; }  // kernel console (ttyS0)
  std::string truth_log() const { return qemu_dir_ + "/serial1.log"; }    // reporter output (ttyS1)
  // The owner's copy of what it reads from the reporter's port, for attached guests
  // (QEMU's own log of the port can double a byte when the socket is full).
  std::string truth_stream() const { return qemu_dir_ + "/serial1.stream"; }
  // Owner: copy everything read from the reporter's port to truth_stream() from now on.
  Result<void> share_truth_stream();
  const std::string& memory_file() const { return memory_file_; }  // Backing::file only
  // QEMU fork -> first "ready" line received (valid once wait_ready succeeded).
  std::chrono::milliseconds boot_time() const {
    std::lock_guard lock(mu_);
    return boot_time_;
  }

  // The latest parsed dump. Valid until the next request_truth().
  const GroundTruth& truth() const { return *truth_; }
  // Asks the reporter for a fresh dump ("dump" on ttyS1) and waits for it. The guest
  // must be running.
  Result<void> request_truth(std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // Panics the guest kernel (the reporter writes SysRq c) and waits until the console
  // shows the panic. Boot with "panic=0" in the append line so it stays down.
  Result<void> crash(std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // Writes one command line to the reporter (e.g. "timewait", see report.c). It runs
  // them in order, so a request_truth() that follows sees the command's effect.
  Result<void> send_command(std::string_view command);
  // The raw text of the latest dump and of the latest periodic "snapshot" section.
  std::string truth_text() const;
  std::string latest_snapshot() const;

  // QMP: sends {"execute": ...} and returns its "return" value (errors become Error).
  Result<nlohmann::json> qmp(const nlohmann::json& cmd);
  Result<nlohmann::json> qmp_execute(const std::string& command,
                                     const nlohmann::json& arguments = nullptr);
  std::vector<nlohmann::json> qmp_events();                  // async events seen so far (drained)
  Result<std::string> hmp(const std::string& command_line);  // human-monitor-command
  Result<void> pause();   // stop (a shared guest: held for this process until resume())
  Result<void> resume();  // cont
  Result<bool> is_paused();

  // dump-guest-memory, paging=false: an ELF core with one PT_LOAD per RAM block.
  Result<void> dump_elf(const std::string& path);
  // Raw RAM laid out by guest-physical address: file offset == GPA. RAM below the PCI hole
  // starts at 0; RAM above 4 GiB (when ram_mib is large enough) at 0x100000000, the hole in
  // between left sparse. Pauses the guest during the save if it was running.
  Result<void> pmemsave(const std::string& path);
  // migrate to "exec:cat > path" (QEMU 7.2 has no file: URI). The guest ends paused
  // (postmigrate); resume() continues it.
  Result<void> migrate_to_file(const std::string& path);

  // A RAM region as QEMU maps it (from "info mtree").
  struct RamRange {
    uint64_t gpa = 0, size = 0,
             ram_offset = 0;  // ram_offset: offset in the RAM block / backing file
  };
  Result<std::vector<RamRange>> ram_ranges();

 private:
  void shut_down();  // the destructor's work, which may throw
  Guest() = default;
  void reader_loop();
  void tail_loop();                          // attached: follows the truth log
  void consume(const char* data, size_t n);  // parses serial output (mu_ held)
  Result<void> hold();                       // attached: the lock, until resume()/resume_if_held()
  Result<void> lock_shared_guest();          // attached: flock run_dir/lock (counted)
  void unlock_shared_guest();
  Result<void> catch_up_with_log();                  // attached: parsed to the log's current end
  Result<void> write_serial(std::string_view line);  // direct, or through the owner's relay
  Result<nlohmann::json> qmp_raw(const nlohmann::json& cmd);
  Result<void> wait_for_seq(unsigned seq, std::chrono::milliseconds timeout);
  Result<void> qmp_connect();
  Result<nlohmann::json> qmp_read_reply();
  std::string console_tail(size_t bytes = 3000) const;

  GuestOptions opts_;
  std::vector<std::string> qemu_args_;
  std::string name_, run_dir_, kernel_dir_, memory_file_;
  std::string qemu_dir_;  // QEMU's sockets and logs: run_dir_, or the owner's for attach()
  pid_t pid_ = -1;
  int serial_fd_ = -1;
  int qmp_fd_ = -1;
  std::string qmp_buf_;
  std::vector<nlohmann::json> events_;
  std::mutex qmp_mu_;
  std::thread reader_;
  std::chrono::steady_clock::time_point started_;

  mutable std::mutex mu_;  // guards the fields below, written by the reader thread
  std::condition_variable cv_;
  std::string line_;       // partial line
  std::string dump_text_;  // the dump being received
  bool in_dump_ = false;
  std::string last_dump_;  // text of the last complete dump
  unsigned last_seq_ = 0;
  std::string snapshot_;
  bool eof_ = false;
  std::chrono::milliseconds boot_time_{0};

  bool in_snapshot_ = false;
  std::string snap_;
  uint64_t consumed_ = 0;  // bytes of serial output parsed (attached: truth log offset)

  bool attached_ = false;
  int lock_fd_ = -1;
  int stream_fd_ = -1;         // share_truth_stream(): written by the reader thread
  int log_fd_ = -1;            // serial1.log, everything the reporter sent (for people)
  int lock_depth_ = 0;         // lock_shared_guest() nesting in this process
  bool held_ = false;          // hold(): one level of lock_depth_
  bool paused_by_us_ = false;  // this process paused the shared guest
  bool stop_tail_ = false;     // under mu_

  std::unique_ptr<GroundTruth> truth_;
  mutable std::mutex reap_mu_;
  mutable bool exited_ = false;
};

// Runs a program and returns its stdout (stderr passes through); error if it fails.
Result<std::string> run_capture(const std::vector<std::string>& argv);

}  // namespace nfm::lab
