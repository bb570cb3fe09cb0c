// hidden_socket: every listening TCP socket and bound UDP socket is in the
// kernel's hash tables (the packets find it there). The guest's netstat and ss
// see it through /proc/net/{tcp,tcp6,udp,udp6}, and lsof through a process's
// file table. A backdoor listener opened inside the kernel (sock_create_kern)
// has no file; with /proc/net's reader filtered (its seq_operations pointed
// elsewhere, or one of their functions diverted through ftrace), or in a network
// namespace no process is in, nothing inside the guest shows it. A socket some process holds
// is never this check's finding (a filtered reader is proc_hook's), nor a kernel
// socket the guest's /proc/net lists.
#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "features/integrity/code_owners.h"
#include "features/integrity/integrity.h"
#include "features/processes/processes.h"
#include "features/sockets/sockets.h"
#include "kernel/kernel.h"
#include "kernel/object.h"

namespace nfm {
namespace {

enum SocketView : unsigned {
  kHashTables = 1,  // tcp_hashinfo's listeners, udp_table
  kFileTables = 2,  // some process's file table holds it
  kProcNet = 4,     // the guest's /proc/net reader for it lists it
};
constexpr ViewName kSocketViews[] = {
    {kHashTables, "hash_tables"}, {kFileTables, "file_tables"}, {kProcNet, "proc_net"}};
constexpr int kTcpListen = 10;

// What one reading knows of a socket.
struct Seen {
  SocketRow row;
  bool owned = false, listed = false;
  std::string why;   // why /proc/net does not list it: "/proc/net/tcp is hooked"
  std::string hook;  // proc_hook's summary of the hook, if that is why
};

class SocketViews {
 public:
  SocketViews(Kernel& kernel, const IntegrityOptions& options)
      : kernel_(kernel), options_(options) {}

  Result<Sighting> read() {
    const ObjectContext ctx = fresh_reading(kernel_);
    if (!processes_) {
      NFM_ASSIGN(ProcessReader p, ProcessReader::create(kernel_));
      processes_.emplace(std::move(p));
    }
    if (!sockets_) {
      NFM_ASSIGN(SocketReader s, SocketReader::create(kernel_));
      sockets_.emplace(std::move(s));
    }
    NFM_ASSIGN(uint64_t init_net, kernel_.symbol("init_net"));
    NFM_ASSIGN(CodeOwners owners, CodeOwners::read(kernel_, ctx, options_.max_modules));
    Sighting s;
    s.available = kHashTables | kFileTables | kProcNet;
    auto readers = proc_net_readers(kernel_, ctx, owners);
    if (!readers) {
      s.incomplete |= kProcNet;
      s.problems.push_back("/proc/net: " + readers.error().to_string());
    } else if (auto hooked = ftrace_hooked(ctx, owners, *readers); !hooked) {
      s.incomplete |= kProcNet;
      s.problems.push_back("ftrace_ops_list: " + hooked.error().to_string());
    }
    NFM_ASSIGN(ProcessList tasks,
               processes_->list({.max_tasks = options_.max_tasks, .cmdline = false}));
    // The namespaces some process is in: only theirs can be read through /proc.
    std::set<uint64_t> namespaces{init_net};
    NFM_ASSIGN(TypeRef task_type, kernel_.types().find_struct("task_struct"));
    for (const ProcessRow& p : tasks.rows) {
      auto ns = Object(ctx, p.task, task_type).arrow("nsproxy");  // none once exiting
      if (!ns) continue;
      if (auto net = ns->member("net_ns"))
        if (auto address = net->as_pointer(); address && *address) namespaces.insert(*address);
    }
    NFM_ASSIGN(SocketList list,
               sockets_->list({.unix_sockets = false, .every_netns = true}, &tasks));
    for (const auto* walk : {&list.tcp_listen, &list.udp})
      if (!walk->ok()) {
        s.incomplete |= kHashTables;
        s.problems.push_back(fmt::format("socket hash table walk ended {}",
                                         walk->read ? walk_end_name(walk->first_error) : "unread"));
      }
    if (list.row_errors) {
      s.incomplete |= kHashTables;
      s.problems.push_back(fmt::format("{} sockets unreadable", list.row_errors));
    }
    seen_.clear();
    bool unaccounted = false;
    for (SocketRow& row : list.rows) {
      const bool tcp = row.proto.starts_with("tcp");
      if (tcp ? row.state_code != kTcpListen : row.local_port == 0) continue;
      Seen seen{.row = row, .owned = row.pid != 0};
      const std::string reader = "/proc/net/" + row.proto;
      if (row.net != 0 && !namespaces.contains(row.net)) {
        seen.why = "its network namespace has no process";
      } else if (!readers) {
        seen.why = "/proc/net could not be read";
      } else {
        auto it = readers->find(reader);
        if (it == readers->end() || !it->second.present)
          seen.why = reader + " does not exist";
        else if (!it->second.hooks.empty()) {
          seen.why = reader + " is hooked";
          seen.hook = it->second.hooks.front().summary;
        } else if (auto f = ftraced_.find(reader); f != ftraced_.end()) {
          seen.why = reader + " is hooked through ftrace";
          seen.hook = f->second;
        }
      }
      seen.listed = seen.why.empty();
      unaccounted |= !seen.owned && !seen.listed;
      unsigned views = kHashTables;
      if (seen.owned) views |= kFileTables;
      if (seen.listed) views |= kProcNet;
      s.seen[row.sock] |= views;
      seen_[row.sock] = std::move(seen);
    }
    // A process not read, or a file table unreadable, may hold what looks unowned:
    // that proves nothing (and matters only when something looks unowned).
    if (!list.owners_read) {
      s.incomplete |= kFileTables | kProcNet;
      s.problems.push_back("file tables: " + list.owners_error);
    } else if (unaccounted && (!tasks.walk.ok() || list.owner_errors)) {
      s.incomplete |= kFileTables | kProcNet;
      s.problems.push_back(
          tasks.walk.ok()
              ? fmt::format("{} file tables unreadable", list.owner_errors)
              : fmt::format("process list walk ended {}", walk_end_name(tasks.walk.end)));
    }
    return s;
  }

  // The readers whose start, next, stop or show an ftrace hook (one whose handler is
  // not the kernel's) diverts: what they print is filtered too. Into ftraced_.
  Result<void> ftrace_hooked(const ObjectContext& ctx, const CodeOwners& owners,
                             const std::map<std::string, ProcNetReader>& readers) {
    ftraced_.clear();
    std::vector<IntegrityFinding> hooks;
    if (auto count = ftrace_hooks(kernel_, ctx, owners, hooks); !count) return count.error();
    if (hooks.empty()) return {};
    NFM_ASSIGN(TypeRef seq_ops, kernel_.types().find_struct("seq_operations"));
    for (const auto& [reader, r] : readers) {
      if (!r.present) continue;
      const Object ops(ctx, r.ops, seq_ops);
      for (const char* member : {"start", "next", "stop", "show"}) {
        auto field = ops.member(member);
        auto target = field ? field->as_pointer() : Result<uint64_t>(0);
        auto name = target && *target ? kernel_.symbols().nearest(*target) : std::nullopt;
        if (!name || name->offset != 0) continue;
        for (const IntegrityFinding& h : hooks) {
          const auto& functions = h.evidence["functions"];
          if (functions.empty() || std::find(functions.begin(), functions.end(),
                                             std::string(name->symbol.name)) != functions.end())
            ftraced_.emplace(reader, h.summary);
        }
      }
    }
    return {};
  }

  // A socket is compared when neither a process nor the guest's /proc/net shows it.
  Result<Subject> subject(uint64_t address) const {
    auto it = seen_.find(address);
    if (it == seen_.end()) return make_error(Errc::not_found, "socket not in this reading");
    const Seen& s = it->second;
    const SocketRow& r = s.row;
    const bool v6 = r.proto.ends_with("6");
    const std::string local = v6 ? fmt::format("[{}]:{}", r.local_addr, r.local_port)
                                 : fmt::format("{}:{}", r.local_addr, r.local_port);
    Subject out;
    out.live = true;
    out.expected = s.owned || s.listed ? 0u : kFileTables | kProcNet;
    out.identity = fmt::format("{} {} {} {}", r.proto, local, r.inode, s.why);
    out.label = fmt::format("{} {}{} (no process; {})", r.proto, local,
                            r.state.empty() ? "" : " " + r.state, s.why);
    out.evidence = {{"proto", r.proto},
                    {"local_addr", r.local_addr},
                    {"local_port", r.local_port},
                    {"state", r.state},
                    {"inode", r.inode},
                    {"pid", r.pid},
                    {"sock", schema::hex_address(r.sock)},
                    {"net", schema::hex_address(r.net)},
                    {"reason", s.why}};
    if (!s.hook.empty()) out.evidence["hook"] = s.hook;
    return out;
  }

 private:
  Kernel& kernel_;
  const IntegrityOptions& options_;
  std::optional<ProcessReader> processes_;
  std::optional<SocketReader> sockets_;
  std::map<uint64_t, Seen> seen_;               // the latest reading's
  std::map<std::string, std::string> ftraced_;  // reader -> the ftrace hook's summary
};

}  // namespace

Result<CheckOutcome> check_hidden_sockets(Kernel& kernel, const IntegrityOptions& options,
                                          std::vector<IntegrityFinding>& findings) {
  SocketViews views(kernel, options);
  return compare_views({.kind = "hidden_socket",
                        .objects = "listening sockets",
                        .views = kSocketViews,
                        .read = [&] { return views.read(); },
                        .subject = [&](uint64_t a) { return views.subject(a); },
                        .kernel = &kernel},
                       findings);
}

}  // namespace nfm
