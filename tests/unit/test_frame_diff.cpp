// diff_frames: rows matched by identity, not position; a reused pid is an exit and a
// start; features missing from a frame are reported as not compared.
#include <gtest/gtest.h>

#include "frame/frame_diff.h"

namespace {

nfm::ProcessRow process(int pid, uint64_t start, const char* comm) {
  nfm::ProcessRow r;
  r.pid = r.tgid = pid;
  r.start_time_ns = start;
  r.comm = comm;
  r.task = 0xffff888000000000ull + pid * 0x1000ull;
  return r;
}

TEST(FrameDiff, ProcessesByPidAndStartTime) {
  nfm::Frame a, b;
  a.set(nfm::ProcessList{});
  b.set(nfm::ProcessList{});
  a.get<nfm::ProcessList>()->rows = {process(1, 10, "init"), process(50, 100, "old"), process(60, 200, "gone")};
  // Reordered, pid 50 reused by a new process, 60 gone, 70 new.
  b.get<nfm::ProcessList>()->rows = {process(70, 400, "new"), process(1, 10, "init"), process(50, 300, "reuse")};
  const nfm::FrameDiff d = nfm::diff_frames(a, b);
  ASSERT_EQ(d.exited.size(), 2u);
  EXPECT_EQ(d.exited[0].comm, "old");
  EXPECT_EQ(d.exited[1].comm, "gone");
  ASSERT_EQ(d.started.size(), 2u);
  EXPECT_EQ(d.started[0].comm, "new");
  EXPECT_EQ(d.started[1].comm, "reuse");
  EXPECT_FALSE(d.empty());
  // Sockets, modules and open files are in neither frame.
  EXPECT_EQ(d.not_compared.size(), 3u);
}

TEST(FrameDiff, SocketsModulesAndFiles) {
  nfm::Frame a, b;
  for (nfm::Frame* f : {&a, &b}) {
    f->set(nfm::SocketList{});
    f->set(nfm::ModuleList{});
    f->set(nfm::OpenFileList{});
    f->set(nfm::ProcessList{});
  }
  nfm::SocketRow s;
  s.proto = "tcp";
  s.local_addr = "127.0.0.1";
  s.local_port = 7001;
  s.sock = 0xffff888000100000ull;
  a.get<nfm::SocketList>()->rows = {s};
  nfm::ModuleRow m;
  m.name = "dummy";
  m.module = 0xffffffffc0000000ull;
  b.get<nfm::ModuleList>()->rows = {m};
  nfm::OpenFileRow o;
  o.pid = 5;
  o.fd = 3;
  o.path = "/etc/x";
  o.file = 0xffff888000200000ull;
  a.get<nfm::OpenFileList>()->rows = {o};
  b.get<nfm::OpenFileList>()->rows = {o};
  const nfm::FrameDiff d = nfm::diff_frames(a, b);
  EXPECT_EQ(d.closed.size(), 1u);
  EXPECT_TRUE(d.opened.empty());
  EXPECT_EQ(d.loaded.size(), 1u);
  EXPECT_TRUE(d.unloaded.empty());
  EXPECT_TRUE(d.files_opened.empty() && d.files_closed.empty());
  EXPECT_TRUE(d.not_compared.empty());
  EXPECT_TRUE(nfm::diff_frames(a, a).empty());
}

}  // namespace
