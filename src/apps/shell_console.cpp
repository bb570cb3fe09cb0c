#include "apps/shell_console.h"

#include <fmt/core.h>
#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <iterator>

#include "apps/format.h"
#include "frame/frame_diff.h"
#include "frame/frame_json.h"
#include "topology/render.h"

namespace nfm::app {

namespace {

bool fail(Output& o, const std::string& message) {
  put(o.err, "nfm: error: {}\n", message);
  return false;
}

uint64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string clock_time(uint64_t ns) {
  const std::time_t t = static_cast<std::time_t>(ns / kNsPerSec);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[16];
  std::strftime(out, sizeof out, "%H:%M:%S", &tm);
  return out;
}

// Splits a line into commands at ';' and each command into words at blanks; double or
// single quotes keep blanks (and ';') inside a word.
std::vector<std::vector<std::string>> split_line(const std::string& line) {
  std::vector<std::vector<std::string>> commands(1);
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (char c : line) {
    if (quote) {
      if (c == quote)
        quote = 0;
      else
        word += c;
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (c == ';' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) commands.back().push_back(word);
      word.clear();
      in_word = false;
      if (c == ';') commands.emplace_back();
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) commands.back().push_back(word);
  return commands;
}

std::optional<int64_t> parse_int(const std::string& s) {
  if (s.empty()) return std::nullopt;
  size_t used = 0;
  try {
    const long long v = std::stoll(s, &used, 10);
    if (used != s.size()) return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}

// The options a frame or file command takes.
struct Args {
  bool json = false, tcp = false, udp = false, unix_sockets = false, long_list = false;
  bool local = false;  // topology --local
  std::optional<int32_t> pid;
  std::vector<std::string> positional;
};

Result<Args> parse_args(const std::string& command, const std::vector<std::string>& words) {
  Args a;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    const bool has_pid = command == "ps" || command == "lsof" || command == "maps";
    if (w == "--json" && command != "ls" && command != "cat" && command != "stat") {
      a.json = true;
    } else if (has_pid && (w == "-p" || w == "--pid")) {
      if (i + 1 >= words.size())
        return make_error(Errc::invalid_argument, fmt::format("{}: {} needs a PID", command, w));
      auto pid = parse_int(words[++i]);
      if (!pid || *pid < 0)
        return make_error(Errc::invalid_argument, command + ": bad PID '" + words[i] + "'");
      a.pid = static_cast<int32_t>(*pid);
    } else if (command == "netstat" && w.size() > 1 && w[0] == '-' && w[1] != '-') {
      for (char c : w.substr(1)) {
        if (c == 't')
          a.tcp = true;
        else if (c == 'u')
          a.udp = true;
        else if (c == 'x')
          a.unix_sockets = true;
        else if (c != 'a' && c != 'n' && c != 'p')  // netstat -tuxanp habits: accepted
          return make_error(Errc::invalid_argument,
                            "netstat: unknown option -" + std::string(1, c));
      }
    } else if (command == "netstat" && (w == "--tcp" || w == "--udp" || w == "--unix")) {
      (w == "--tcp" ? a.tcp : w == "--udp" ? a.udp : a.unix_sockets) = true;
    } else if (command == "topology" && w == "--local") {
      a.local = true;
    } else if (command == "ls" && w.size() > 1 && w[0] == '-') {
      for (char c : w.substr(1)) {
        if (c == 'l' || c == 'n')
          a.long_list = true;
        else if (c != 'a' && c != '1')
          return make_error(Errc::invalid_argument, "ls: unknown option -" + std::string(1, c));
      }
    } else if (w.size() > 1 && w[0] == '-') {
      return make_error(Errc::invalid_argument, fmt::format("{}: unknown option {}", command, w));
    } else {
      a.positional.push_back(w);
    }
  }
  return a;
}

constexpr const char* kHelp =
    "Frame commands (answer from the current snapshot; same output as `nfm CMD`):\n"
    "  ps [-p PID]        processes (like ps aux)\n"
    "  lsmod              kernel modules (/proc/modules)\n"
    "  netstat [-t|-u|-x] sockets (like netstat -tuxanp)\n"
    "  ifconfig           network interfaces\n"
    "  topology [--local] this VM's services and who it talks to (peers are external:\n"
    "                     `nfm topology` joins many VMs)\n"
    "  check              rootkit checks: hidden processes and modules, syscall hooks\n"
    "  lsof [-p PID]      open files\n"
    "  maps [-p PID]      memory maps\n"
    "  dmesg              kernel log\n"
    "  uname, cpuinfo, meminfo, uptime\n"
    "  (each takes --json)\n"
    "File commands (the live guest's dentry and page caches; nothing is read from disk):\n"
    "  ls [-l] PATH       cached directory entries (-l: ls -ln style)\n"
    "  cat PATH           cached contents of a regular file\n"
    "  stat PATH          inode metadata\n"
    "Time travel:\n"
    "  sync               take a new snapshot of the guest (and move to it)\n"
    "  history            list the snapshots (N, time, tasks, sockets)\n"
    "  seed N             answer as of snapshot N ('seed' alone: back to the newest)\n"
    "  at TIME            the newest snapshot at or before TIME (-30s, -5m, -2h,\n"
    "                     2026-11-27T23:50:01Z, 23:50:01 UTC today)\n"
    "  diff N [M]         what changed from snapshot N to M (default: the current one)\n"
    "Other: help, quit (or exit, Ctrl-D). Separate commands with ';'.\n";

const char* file_type_word(uint32_t mode) {
  switch (mode & 0170000) {
    case 0040000:
      return "directory";
    case 0100000:
      return "regular file";
    case 0120000:
      return "symbolic link";
    case 0020000:
      return "character special file";
    case 0060000:
      return "block special file";
    case 0010000:
      return "fifo";
    case 0140000:
      return "socket";
  }
  return "unknown";
}

std::string full_time(const FileTime& t) {
  const std::time_t s = static_cast<std::time_t>(t.sec);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:09} +0000", out, t.nsec);
}

// ls -l's date column: "Nov 27 23:50" (UTC).
std::string ls_time(const FileTime& t) {
  const std::time_t s = static_cast<std::time_t>(t.sec);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%b %e %H:%M", &tm);
  return out;
}

std::string dev_text(uint32_t dev) {
  return fmt::format("{},{}", dev >> 20, dev & 0xfffff);
}

}  // namespace

Console::Console(Kernel* kernel, Source take, ConsoleOptions options)
    : kernel_(kernel), take_(std::move(take)), options_(std::move(options)) {
  if (options_.keep == 0) options_.keep = 1;
}

Result<void> Console::sync(Output& o) {
  NFM_ASSIGN(std::vector<Frame> frames, take_());
  if (frames.empty()) return make_error(Errc::not_found, "no new snapshot");
  for (Frame& f : frames) {
    for (const auto& [feature, status] : f.meta.features)
      if (!status.ok)
        put(o.err, "nfm: warning: snapshot {}: {}: {}\n", next_number_, feature_name(feature),
            status.error);
    snapshots_.push_back({next_number_++, std::move(f)});
  }
  while (snapshots_.size() > options_.keep) {
    if (seeded_ && *seeded_ == snapshots_.front().number) seeded_.reset();
    snapshots_.pop_front();
  }
  seeded_.reset();  // a sync moves to the newest
  return {};
}

const Snapshot* Console::find(uint64_t number) const {
  for (const Snapshot& s : snapshots_)
    if (s.number == number) return &s;
  return nullptr;
}

const Snapshot* Console::current() const {
  if (snapshots_.empty()) return nullptr;
  if (seeded_)
    if (const Snapshot* s = find(*seeded_)) return s;
  return &snapshots_.back();
}

std::string Console::prompt() const {
  const Snapshot* s = current();
  if (!s) return fmt::format("nfm {}> ", options_.label);
  const bool past = s != &snapshots_.back();
  return fmt::format("nfm {} #{} {}{}> ", options_.label, s->number, clock_time(s->time_ns()),
                     past ? " (past)" : "");
}

bool Console::run(const std::string& line, Output& o) {
  bool ok = true;
  for (const auto& words : split_line(line)) {
    if (words.empty()) continue;
    ok = run_one(words, o) && ok;
    if (quit_) break;
  }
  return ok;
}

bool Console::run_one(const std::vector<std::string>& words, Output& o) {
  const std::string& name = words[0];
  const std::vector<std::string> args(words.begin() + 1, words.end());
  if (name == "help" || name == "?") {
    o.out += kHelp;
    return true;
  }
  if (name == "quit" || name == "exit") {
    quit_ = true;
    return true;
  }
  if (name == "sync") {
    if (!args.empty()) return fail(o, "sync takes no arguments");
    auto r = sync(o);
    if (!r) return fail(o, "sync: " + r.error().to_string());
    const Snapshot& s = snapshots_.back();
    put(o.out, "snapshot #{} at {}\n", s.number, iso_time(s.time_ns()));
    return true;
  }
  if (name == "history") {
    history(o);
    return true;
  }
  if (name == "seed") return seed(args, o);
  if (name == "at") return at(args, o);
  if (name == "diff") return diff(args, o);
  if (name == "ls" || name == "cat" || name == "stat") return file_command(name, args, o);
  static const char* frame_commands[] = {"ps",     "lsmod",    "netstat", "ifconfig", "lsof",
                                         "maps",   "dmesg",    "uname",   "cpuinfo",  "meminfo",
                                         "uptime", "topology", "check"};
  for (const char* c : frame_commands)
    if (name == c) return frame_command(name, args, o);
  return fail(o, "unknown command '" + name + "' (try help)");
}

bool Console::frame_command(const std::string& name, const std::vector<std::string>& words,
                            Output& o) {
  auto parsed = parse_args(name, words);
  if (!parsed) return fail(o, parsed.error().message);
  const Args& a = *parsed;
  if (!a.positional.empty())
    return fail(o, name + ": unexpected argument '" + a.positional[0] + "'");
  const Snapshot* s = current();
  if (!s) return fail(o, "no snapshot yet (sync)");
  const Frame& f = s->frame;
  auto missing = [&](Feature feature) {
    auto it = f.meta.features.find(feature);
    const std::string why = it == f.meta.features.end() ? "not in this snapshot" : it->second.error;
    return fail(o, fmt::format("{}: snapshot #{} has no {} ({})", name, s->number,
                               feature_name(feature), why));
  };
  if (name == "ps") {
    if (!f.get<ProcessList>()) return missing(Feature::named("processes"));
    PsFormat p;
    p.json = a.json;
    p.pid = a.pid;
    p.boot_time = f.get<UptimeInfo>() ? f.get<UptimeInfo>()->boot_time : 0;
    format_ps(o, *f.get<ProcessList>(), p);
  } else if (name == "lsmod") {
    if (!f.get<ModuleList>()) return missing(Feature::named("modules"));
    format_lsmod(o, *f.get<ModuleList>(), a.json);
  } else if (name == "netstat") {
    if (!f.get<SocketList>()) return missing(Feature::named("sockets"));
    NetstatFilter filter;
    if (a.tcp || a.udp || a.unix_sockets) filter = {a.tcp, a.udp, a.unix_sockets};
    format_netstat(o, *f.get<SocketList>(), filter, a.json);
  } else if (name == "ifconfig") {
    if (!f.get<InterfaceList>()) return missing(Feature::named("interfaces"));
    format_ifconfig(o, *f.get<InterfaceList>(), a.json);
  } else if (name == "topology") {
    if (!f.get<SocketList>()) return missing(Feature::named("sockets"));
    const topology::Graph g =
        topology::build_graph({topology::view_of_frame(f)}, {.local = a.local});
    o.out += a.json ? dump_json(topology::graph_json(g), 2) + "\n" : topology::graph_text(g);
  } else if (name == "check") {
    if (!f.get<IntegrityReport>()) return missing(Feature::named("integrity"));
    format_check(o, *f.get<IntegrityReport>(), a.json);
  } else if (name == "lsof") {
    if (!f.get<OpenFileList>()) return missing(Feature::named("open_files"));
    format_lsof(o, *f.get<OpenFileList>(), a.pid, a.json);
  } else if (name == "maps") {
    if (!f.get<MemoryMapList>()) return missing(Feature::named("memory_maps"));
    format_maps(o, *f.get<MemoryMapList>(), a.pid, false, a.json);
  } else if (name == "dmesg") {
    if (!f.get<KmsgLog>()) return missing(Feature::named("kmsg"));
    format_dmesg(o, *f.get<KmsgLog>(), a.json);
  } else if (name == "uname") {
    if (!f.get<UnameInfo>()) return missing(Feature::named("uname"));
    format_uname(o, *f.get<UnameInfo>(), a.json);
  } else if (name == "cpuinfo") {
    if (!f.get<CpuList>()) return missing(Feature::named("cpuinfo"));
    format_cpuinfo(o, f.get<CpuList>()->rows, a.json);
  } else if (name == "meminfo") {
    if (!f.get<MemInfo>()) return missing(Feature::named("meminfo"));
    format_meminfo(o, *f.get<MemInfo>(), a.json);
  } else if (name == "uptime") {
    if (!f.get<UptimeInfo>()) return missing(Feature::named("uptime"));
    format_uptime(o, *f.get<UptimeInfo>(), a.json);
  }
  return true;
}

bool Console::file_command(const std::string& name, const std::vector<std::string>& words,
                           Output& o) {
  auto parsed = parse_args(name, words);
  if (!parsed) return fail(o, parsed.error().message);
  const Args& a = *parsed;
  if (a.positional.size() != 1) return fail(o, name + " takes one PATH");
  const std::string& path = a.positional[0];
  if (!kernel_)
    return fail(o, name +
                       ": file commands read the live guest's caches; snapshots from a "
                       "store hold no files");
  if (!files_) files_.emplace(FileCacheReader::create(*kernel_));
  if (!*files_) return fail(o, name + ": " + files_->error().to_string());
  FileCacheReader& files = files_->value();
  const Snapshot* s = current();
  if (s && s != &snapshots_.back())
    put(o.err,
        "nfm: note: {} reads the live guest now, not snapshot #{} ({}): files are not kept in "
        "snapshots\n",
        name, s->number, iso_time(s->time_ns()));
  kernel_->begin_crawl();
  if (name == "stat") {
    auto st = files.stat(path);
    if (!st) return fail(o, "stat: " + st.error().to_string());
    put(o.out, "  File: {}\n", path);
    put(o.out, "  Size: {:<15} Cached: {} pages   {}\n", st->size, st->cached_pages,
        file_type_word(st->mode));
    put(o.out, "Device: {:<13} Inode: {:<11} Links: {:<5} Fs: {}\n", dev_text(st->dev), st->ino,
        st->nlink, st->fs_type);
    put(o.out, "Access: ({:04o}/{})  Uid: {:>5}   Gid: {:>5}\n", st->mode & 07777,
        mode_string(st->mode), st->uid, st->gid);
    put(o.out, "Access: {}\nModify: {}\nChange: {}\n", full_time(st->atime), full_time(st->mtime),
        full_time(st->ctime));
    return true;
  }
  if (name == "ls") {
    auto d = files.list(path);
    if (!d) return fail(o, "ls: " + d.error().to_string());
    for (const CachedEntry& e : d->entries) {
      if (!a.long_list) {
        put(o.out, "{}\n", e.name);
        continue;
      }
      const CachedInode& i = e.inode;
      const bool device = (i.mode & 0170000) == 0020000 || (i.mode & 0170000) == 0060000;
      put(o.out, "{} {:>4} {:<8} {:<8} {:>10} {} {}\n", mode_string(i.mode), i.nlink, i.uid, i.gid,
          device ? fmt::format("{}, {}", i.rdev >> 20, i.rdev & 0xfffff) : std::to_string(i.size),
          ls_time(i.mtime), e.name);
    }
    if (!d->walk.ok())
      put(o.err, "nfm: warning: {}: the children walk ended early ({})\n", path,
          walk_end_name(d->walk.end));
    if (d->errors) put(o.err, "nfm: warning: {}: {} entries could not be read\n", path, d->errors);
    if (!d->complete)
      put(o.err,
          "nfm: note: {}: listing from the guest's dentry cache only ({}): names the guest has "
          "not looked up recently are missing, the listing may be incomplete\n",
          path, d->dir.fs_type);
    return true;
  }
  // cat
  auto c = files.read(path);
  if (!c) return fail(o, "cat: " + c.error().to_string());
  size_t next_missing = 0;
  for (uint64_t i = 0; i < c->pages; ++i) {
    const uint64_t from = i * 4096, to = std::min<uint64_t>(from + 4096, c->data.size());
    if (next_missing < c->missing_pages.size() && c->missing_pages[next_missing] == i) {
      ++next_missing;
      put(o.err,
          "nfm: warning: {}: page {} (bytes {}-{}) not in the guest's page cache: left out\n", path,
          i, from, to - 1);
      continue;
    }
    o.out.append(c->data, from, to - from);
  }
  if (c->truncated)
    put(o.err, "nfm: warning: {}: only the first {} of {} bytes shown\n", path, c->data.size(),
        c->inode.size);
  return c->missing_pages.empty();
}

void Console::history(Output& o) const {
  const Snapshot* cur = current();
  put(o.out, "{:>5}  {:<20} {:>6} {:>8}\n", "N", "TIME", "TASKS", "SOCKETS");
  for (const Snapshot& s : snapshots_) {
    const Frame& f = s.frame;
    put(o.out, "{}{:>4}  {:<20} {:>6} {:>8}\n", &s == cur ? '*' : ' ', s.number,
        iso_time(s.time_ns()),
        f.get<ProcessList>() ? std::to_string(f.get<ProcessList>()->rows.size()) : "-",
        f.get<SocketList>() ? std::to_string(f.get<SocketList>()->rows.size()) : "-");
  }
}

bool Console::seed(const std::vector<std::string>& args, Output& o) {
  if (args.empty()) {
    seeded_.reset();
    if (const Snapshot* s = current())
      put(o.out, "at snapshot #{} ({}), the newest\n", s->number, iso_time(s->time_ns()));
    return true;
  }
  if (args.size() != 1) return fail(o, "seed takes one snapshot number");
  std::string text = args[0];
  if (!text.empty() && text[0] == '#') text.erase(0, 1);
  auto n = parse_int(text);
  if (!n || *n <= 0) return fail(o, "seed: bad snapshot number '" + args[0] + "'");
  const Snapshot* s = find(static_cast<uint64_t>(*n));
  if (!s) {
    if (snapshots_.empty()) return fail(o, "seed: no snapshots");
    return fail(o, fmt::format("seed: no snapshot #{} (kept: #{} to #{})", *n,
                               snapshots_.front().number, snapshots_.back().number));
  }
  seeded_ = s->number;
  put(o.out, "at snapshot #{} ({})\n", s->number, iso_time(s->time_ns()));
  return true;
}

bool Console::at(const std::vector<std::string>& args, Output& o) {
  if (args.empty()) return fail(o, "at takes a TIME (-30s, 2026-11-27T23:50:01Z, 23:50:01)");
  std::string text = args[0];
  for (size_t i = 1; i < args.size(); ++i) text += " " + args[i];
  auto t = parse_time(text, now_ns());
  if (!t) return fail(o, "at: " + t.error().message);
  const Snapshot* best = nullptr;
  for (const Snapshot& s : snapshots_)
    if (s.time_ns() <= *t) best = &s;
  if (!best) {
    if (snapshots_.empty()) return fail(o, "at: no snapshots");
    return fail(o, fmt::format("at: no snapshot at or before {} (the oldest, #{}, is from {})",
                               iso_time(*t), snapshots_.front().number,
                               iso_time(snapshots_.front().time_ns())));
  }
  seeded_ = best->number;
  put(o.out, "at snapshot #{} ({})\n", best->number, iso_time(best->time_ns()));
  return true;
}

bool Console::diff(const std::vector<std::string>& args, Output& o) {
  if (args.empty() || args.size() > 2) return fail(o, "diff takes N [M]");
  const Snapshot* snaps[2] = {nullptr, current()};
  for (size_t i = 0; i < args.size(); ++i) {
    std::string text = args[i];
    if (!text.empty() && text[0] == '#') text.erase(0, 1);
    auto n = parse_int(text);
    if (!n || *n <= 0) return fail(o, "diff: bad snapshot number '" + args[i] + "'");
    snaps[i] = find(static_cast<uint64_t>(*n));
    if (!snaps[i]) return fail(o, fmt::format("diff: no snapshot #{}", *n));
  }
  if (!snaps[1]) return fail(o, "diff: no snapshots");
  const Snapshot& a = *snaps[0];
  const Snapshot& b = *snaps[1];
  const FrameDiff d = diff_frames(a.frame, b.frame);
  put(o.out, "diff #{} ({}) -> #{} ({})\n", a.number, iso_time(a.time_ns()), b.number,
      iso_time(b.time_ns()));
  auto process = [&](char sign, const ProcessRow& r, const char* what) {
    put(o.out, "  {} pid {} {} (uid {}, ppid {}) {}\n", sign, r.pid, r.comm, r.uid, r.ppid, what);
  };
  if (!d.started.empty() || !d.exited.empty()) {
    put(o.out, "processes: {} started, {} exited\n", d.started.size(), d.exited.size());
    for (const ProcessRow& r : d.started) process('+', r, "started");
    for (const ProcessRow& r : d.exited) process('-', r, "exited");
  }
  auto socket = [&](char sign, const SocketRow& r, const char* what) {
    if (r.proto == "unix")
      put(o.out, "  {} unix {} {} inode {} {} {}\n", sign, r.type, r.state, r.inode,
          r.path.empty() ? "-" : r.path, what);
    else
      put(o.out, "  {} {} {}:{} -> {}:{} {} {}\n", sign, r.proto, r.local_addr, r.local_port,
          r.remote_addr, r.remote_port, r.state, what);
  };
  if (!d.opened.empty() || !d.closed.empty()) {
    put(o.out, "sockets: {} opened, {} closed\n", d.opened.size(), d.closed.size());
    for (const SocketRow& r : d.opened) socket('+', r, "opened");
    for (const SocketRow& r : d.closed) socket('-', r, "closed");
  }
  if (!d.loaded.empty() || !d.unloaded.empty()) {
    put(o.out, "modules: {} loaded, {} unloaded\n", d.loaded.size(), d.unloaded.size());
    for (const ModuleRow& r : d.loaded) put(o.out, "  + {} loaded\n", r.name);
    for (const ModuleRow& r : d.unloaded) put(o.out, "  - {} unloaded\n", r.name);
  }
  if (!d.files_opened.empty() || !d.files_closed.empty()) {
    put(o.out, "open files: {} opened, {} closed\n", d.files_opened.size(), d.files_closed.size());
    for (const OpenFileRow& r : d.files_opened)
      put(o.out, "  + pid {} {} fd {} {} opened\n", r.pid, r.comm, r.fd, r.path);
    for (const OpenFileRow& r : d.files_closed)
      put(o.out, "  - pid {} {} fd {} {} closed\n", r.pid, r.comm, r.fd, r.path);
  }
  if (d.empty()) put(o.out, "no changes\n");
  for (Feature f : d.not_compared)
    put(o.err, "nfm: warning: {} not compared: missing from a snapshot\n", feature_name(f));
  return true;
}

}  // namespace nfm::app
