// QEMU's command line, as /proc/PID/cmdline shows it: the VM's name and UUID, its
// RAM (size, machine type, memory backends) and its QMP socket. Pure parsers,
// unit-tested without a QEMU.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace nfm {

// QEMU size syntax: "512", "512M", "4G", "1.5G", "2T", "4096k", "123b".
// `default_shift` applies to a bare number: 20 for -m (MiB), 0 for size= (bytes).
Result<uint64_t> parse_qemu_size(std::string_view text, int default_shift);

struct QemuMemoryBackend {
  std::string id;
  std::string type;  // memory-backend-ram / -file / -memfd
  uint64_t size = 0;
  std::string mem_path;  // memory-backend-file
  bool share = false;
};

struct QemuCmdline {
  std::string argv0;
  std::string name;  // -name NAME / -name guest=NAME,...
  std::string uuid;  // -uuid UUID (libvirt always passes one)
  // The QMP socket, when the command line names one: -qmp unix:PATH,... or a
  // -chardev socket,path=PATH used by -mon ...,mode=control. Empty when QMP is off,
  // on TCP, or handed over as a file descriptor (libvirt's fd=N).
  std::string qmp_socket;
  uint64_t ram_size = 128ull << 20;  // -m; QEMU's default is 128 MiB
  bool ram_size_given = false;
  std::string machine = "pc";                // -machine type (pc, q35, pc-q35-7.2, ...)
  std::optional<uint64_t> max_ram_below_4g;  // -machine ...,max-ram-below-4g=
  std::string machine_memory_backend;        // -machine ...,memory-backend=ID
  std::vector<std::string> numa_memdevs;     // -numa node,memdev=ID (in order)
  std::vector<QemuMemoryBackend> backends;   // every -object memory-backend-*
  std::string mem_path;                      // legacy -mem-path

  bool is_q35() const { return machine.find("q35") != std::string::npos; }
  bool is_microvm() const { return machine.find("microvm") != std::string::npos; }
  const QemuMemoryBackend* backend(std::string_view id) const;
  // The backends that make up guest RAM, in guest-physical order (empty: plain RAM of ram_size).
  std::vector<const QemuMemoryBackend*> ram_backends() const;
};

// Parses QEMU's argv (as in /proc/PID/cmdline). Accepts -opt and --opt, the
// key=value,... syntax (",," escapes a comma) and JSON -object (libvirt).
Result<QemuCmdline> parse_qemu_cmdline(std::span<const std::string> argv);

}  // namespace nfm
