#include <gtest/gtest.h>
#include <lz4.h>
#include <zlib.h>

#include <cstring>

#include "kernel/profile/vmlinuz.h"
#include "test_vmlinuz_kernels.h"

namespace nfm {
namespace {

using testing::KernelImage;

// A fake bzImage around `payload` (+ the 4-byte size the kernel appends).
std::vector<uint8_t> make_bzimage(const std::vector<uint8_t>& compressed, uint32_t raw_size) {
  std::vector<uint8_t> img(5 * 512, 0);
  img[0x1f1] = 4;
  std::memcpy(&img[0x202], "HdrS", 4);
  img[0x206] = 0x0f;
  img[0x207] = 0x02;
  uint32_t off = 0x40, len = static_cast<uint32_t>(compressed.size() + 4);
  std::memcpy(&img[0x248], &off, 4);
  std::memcpy(&img[0x24c], &len, 4);
  img.resize(img.size() + off, 0);
  img.insert(img.end(), compressed.begin(), compressed.end());
  for (int i = 0; i < 4; ++i) img.push_back(static_cast<uint8_t>(raw_size >> (8 * i)));
  return img;
}

std::vector<uint8_t> fake_elf(size_t size) {
  std::vector<uint8_t> v(size);
  for (size_t i = 0; i < size; ++i) v[i] = static_cast<uint8_t>((i * 7) ^ (i >> 9));
  std::memcpy(v.data(),
              "\x7f"
              "ELF",
              4);
  return v;
}

TEST(Vmlinuz, GzipPayloadRoundTrip) {
  auto raw = fake_elf(3 << 20);
  uLongf cap = compressBound(raw.size()) + 64;
  std::vector<uint8_t> gz(cap);
  z_stream s{};
  ASSERT_EQ(deflateInit2(&s, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  s.next_in = raw.data();
  s.avail_in = static_cast<uInt>(raw.size());
  s.next_out = gz.data();
  s.avail_out = static_cast<uInt>(gz.size());
  ASSERT_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
  gz.resize(s.total_out);
  deflateEnd(&s);

  auto img = make_bzimage(gz, static_cast<uint32_t>(raw.size()));
  auto info = parse_bzimage(img);
  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->compression, Compression::gzip);
  EXPECT_EQ(info->uncompressed_size, raw.size());
  auto out = extract_vmlinux(img);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(*out, raw);
}

TEST(Vmlinuz, Lz4LegacyMultiBlock) {
  // Two 8 MiB blocks and a short one, as the kernel's "lz4 -l" writes them.
  auto raw = fake_elf((8 << 20) * 2 + 12345);
  std::vector<uint8_t> lz = {0x02, 0x21, 0x4c, 0x18};
  for (size_t pos = 0; pos < raw.size(); pos += 8 << 20) {
    int n = static_cast<int>(std::min<size_t>(8 << 20, raw.size() - pos));
    std::vector<char> block(LZ4_compressBound(n));
    int c = LZ4_compress_default(reinterpret_cast<const char*>(raw.data() + pos), block.data(), n,
                                 static_cast<int>(block.size()));
    ASSERT_GT(c, 0);
    for (int i = 0; i < 4; ++i) lz.push_back(static_cast<uint8_t>(c >> (8 * i)));
    lz.insert(lz.end(), block.begin(), block.begin() + c);
  }
  auto out = extract_vmlinux(make_bzimage(lz, static_cast<uint32_t>(raw.size())));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(*out, raw);
}

TEST(Vmlinuz, RejectsGarbage) {
  std::vector<uint8_t> junk(4096, 0x55);
  auto r = extract_vmlinux(junk);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_format);
  EXPECT_NE(r.error().message.find("HdrS"), std::string::npos) << r.error().message;

  auto img = make_bzimage({0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}, 100);
  r = extract_vmlinux(img);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_format);
  EXPECT_NE(r.error().message.find("unknown compression"), std::string::npos) << r.error().message;

  img.resize(img.size() - 10);  // payload_length now points past the end
  r = extract_vmlinux(img);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
}

TEST(Vmlinuz, TruncatedXzStream) {
  // The start of a real xz stream, cut short: must be an error, not a short ELF.
  for (const auto& release : testing::available_kernels()) {
    auto image = read_file_bytes((testing::kernels_dir() / release / "vmlinuz").string());
    ASSERT_TRUE(image);
    auto info = parse_bzimage(*image);
    ASSERT_TRUE(info);
    if (info->compression != Compression::xz) continue;
    auto cut =
        std::span<const uint8_t>(*image).subspan(info->payload_offset, info->payload_length / 2);
    auto r = decompress(cut, Compression::xz);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::bad_format);
    return;
  }
  GTEST_SKIP() << "no xz-compressed kernel in " << testing::kernels_dir();
}

TEST(Vmlinuz, FindBannerSkipsNonBanners) {
  std::string s = std::string("xx Linux version %s\n\0", 21) +
                  "Linux version 6.1.0-x (a@b) #1 SMP\n" + std::string(1, '\0');
  auto m = find_linux_banner({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "Linux version 6.1.0-x (a@b) #1 SMP");
  EXPECT_EQ(m->offset, 21u);
}

class VmlinuzReal : public ::testing::TestWithParam<std::string> {};

TEST_P(VmlinuzReal, ExtractsElfWithBtfAndBanner) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  const ElfImage& elf = kernel->elf;
  EXPECT_GT(kernel->vmlinux.size(), 20u << 20);
  ASSERT_NE(elf.section(".text"), nullptr);
  EXPECT_EQ(elf.section(".text")->addr & 0xffffffff00000000ull, 0xffffffff00000000ull);
  EXPECT_FALSE(elf.load_segments().empty());

  auto btf = read_vmlinux_btf(elf);
  ASSERT_TRUE(btf) << btf.error().to_string();
  EXPECT_GT(btf->size(), 1u << 20);

  auto banner = read_linux_banner(elf);
  ASSERT_TRUE(banner) << banner.error().to_string();
  // The directory is named after the release, which is the banner's first word after "version".
  EXPECT_EQ(banner->rfind("Linux version " + kernel->release + " (", 0), 0u) << *banner;
  EXPECT_EQ(banner->find('\n'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Kernels, VmlinuzReal, ::testing::ValuesIn(testing::kernel_params()),
                         testing::param_name);

}  // namespace
}  // namespace nfm
