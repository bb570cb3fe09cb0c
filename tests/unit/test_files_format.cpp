// How open files and memory maps are written: /proc's own formats.
#include <gtest/gtest.h>

#include "features/memory_maps/memory_maps.h"
#include "features/open_files/open_files.h"

namespace nfm {
namespace {

TEST(ProcMapsLine, PadsNamesToTheKernelsColumn) {
  MemoryMapRow r;
  r.start = 0x400000, r.end = 0x401000, r.perms = "r--p", r.offset = 0, r.dev = (0xfe << 20) | 1;
  r.inode = 10, r.path = "/bin/nfm-work";
  EXPECT_EQ(
      proc_maps_line(r),
      "00400000-00401000 r--p 00000000 fe:01 10                                 /bin/nfm-work");
  r.start = 0x7ffeb32a9000, r.end = 0x7ffeb32ca000, r.perms = "rw-p", r.dev = 0, r.inode = 0;
  r.path = "[stack]";
  EXPECT_EQ(proc_maps_line(r),
            "7ffeb32a9000-7ffeb32ca000 rw-p 00000000 00:00 0                          [stack]");
  r.path = "";  // anonymous: the header alone, with its trailing space
  EXPECT_EQ(proc_maps_line(r), "7ffeb32a9000-7ffeb32ca000 rw-p 00000000 00:00 0 ");
  r.path = "/tmp/a\nb (deleted)";  // seq_file_path() escapes newlines
  EXPECT_EQ(proc_maps_line(r).substr(73), "/tmp/a\\012b (deleted)");
}

TEST(FileTypeName, ByModeAndFilesystem) {
  EXPECT_EQ(file_type_name(0100644, "ext4"), "file");
  EXPECT_EQ(file_type_name(040755, "ext4"), "dir");
  EXPECT_EQ(file_type_name(010600, "pipefs"), "pipe");
  EXPECT_EQ(file_type_name(010600, "tmpfs"), "fifo");
  EXPECT_EQ(file_type_name(0140777, "sockfs"), "socket");
  EXPECT_EQ(file_type_name(0600, "anon_inodefs"), "anon");
  EXPECT_EQ(file_type_name(020666, "devtmpfs"), "char");
  EXPECT_EQ(file_type_name(060660, "devtmpfs"), "block");
  EXPECT_EQ(file_type_name(0120777, "ext4"), "link");
}

}  // namespace
}  // namespace nfm
