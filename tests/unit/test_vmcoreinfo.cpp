#include <gtest/gtest.h>

#include "kernel/vmcoreinfo.h"

namespace nfm {
namespace {

TEST(VmcoreInfo, ParsesTypedEntries) {
  auto info = VmcoreInfo::parse(
      "OSRELEASE=6.1.0-56-cloud-amd64\nBUILD-ID=3b43fa\nPAGESIZE=4096\n"
      "SYMBOL(swapper_pg_dir)=ffffffffa7a10000\nOFFSET(list_head.prev)=8\nSIZE(page)=64\n"
      "NUMBER(phys_base)=-335544320\nKERNELOFFSET=25000000\n");
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->osrelease(), "6.1.0-56-cloud-amd64");
  EXPECT_EQ(info->symbol("swapper_pg_dir"), 0xffffffffa7a10000ULL);
  EXPECT_EQ(info->number("phys_base"), -335544320);
  EXPECT_EQ(info->offset("list_head.prev"), 8u);
  EXPECT_EQ(info->size("page"), 64u);
  EXPECT_EQ(info->kernel_offset(), 0x25000000u);
  EXPECT_EQ(info->build_id(), "3b43fa");
  EXPECT_FALSE(info->symbol("missing"));
}

TEST(VmcoreInfo, RejectsTheFormatStringAndGarbage) {
  EXPECT_FALSE(VmcoreInfo::parse("OSRELEASE=%s\nPAGESIZE=%ld\n"));
  EXPECT_FALSE(VmcoreInfo::parse("hello world"));
  EXPECT_FALSE(VmcoreInfo::parse("OSRELEASE=6.1.0\n"));  // no page table symbol
}

}  // namespace
}  // namespace nfm
