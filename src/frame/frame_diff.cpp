#include "frame/frame_diff.h"

#include <set>
#include <tuple>

namespace nfm {

namespace {

// Rows of `a` whose key is not among `b`'s, in `a`'s order.
template <typename Row, typename Key>
std::vector<Row> missing_from(const std::vector<Row>& a, const std::vector<Row>& b, Key key) {
  std::set<decltype(key(a.front()))> keys;
  for (const Row& r : b) keys.insert(key(r));
  std::vector<Row> out;
  for (const Row& r : a)
    if (!keys.count(key(r))) out.push_back(r);
  return out;
}

template <typename List, typename Row, typename Key>
void compare(const List* before, const List* after, std::vector<Row>& gone, std::vector<Row>& added,
             std::vector<Feature>& not_compared, Key key) {
  if (!before || !after) {
    not_compared.push_back(Feature::named(List::kFeature));
    return;
  }
  gone = missing_from(before->rows, after->rows, key);
  added = missing_from(after->rows, before->rows, key);
}

}  // namespace

FrameDiff diff_frames(const Frame& before, const Frame& after) {
  FrameDiff d;
  compare(before.get<ProcessList>(), after.get<ProcessList>(), d.exited, d.started,
          d.not_compared,
          [](const ProcessRow& r) { return std::make_tuple(r.pid, r.start_time_ns, r.task); });
  compare(before.get<SocketList>(), after.get<SocketList>(), d.closed, d.opened, d.not_compared,
          [](const SocketRow& r) {
            return std::make_tuple(r.sock, r.proto, r.local_addr, r.local_port, r.remote_addr,
                                   r.remote_port, r.inode, r.path);
          });
  compare(before.get<ModuleList>(), after.get<ModuleList>(), d.unloaded, d.loaded, d.not_compared,
          [](const ModuleRow& r) { return std::make_tuple(r.name, r.module, r.base); });
  compare(before.get<OpenFileList>(), after.get<OpenFileList>(), d.files_closed,
          d.files_opened, d.not_compared,
          [](const OpenFileRow& r) { return std::make_tuple(r.pid, r.fd, r.file, r.path); });
  return d;
}

}  // namespace nfm
