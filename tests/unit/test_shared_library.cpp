// Libraries loaded on first use (libcurl, libmicrohttpd, libvirt): binding, and the
// errors a host without them gets.
#include <gtest/gtest.h>

#include <cstring>

#include "store/http_client.h"
#include "util/shared_library.h"

namespace nfm {
namespace {

TEST(SharedLibrary, BindsFunctionsWithTheirDeclaredTypes) {
  auto libc = SharedLibrary::open("libc.so.6");
  ASSERT_TRUE(libc.ok()) << libc.error().to_string();
#define LIBC_FUNCTIONS(X) X(strlen) X(strncmp)
  NFM_LIBRARY_API(Libc, LIBC_FUNCTIONS);
  auto api = Libc::bind(*libc);
  ASSERT_TRUE(api.ok()) << api.error().to_string();
  EXPECT_EQ(api->strlen("near field"), 10u);
  EXPECT_EQ(api->strncmp("nfm-a", "nfm-b", 4), 0);
}

TEST(SharedLibrary, MissingLibraryOrFunctionIsAClearError) {
  auto none = SharedLibrary::open("libnfm-no-such-library.so.7");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, Errc::not_found);
  EXPECT_NE(none.error().message.find("libnfm-no-such-library.so.7"), std::string::npos)
      << none.error().message;

  auto libc = SharedLibrary::open("libc.so.6");
  ASSERT_TRUE(libc.ok());
  auto missing = libc->function<int(int)>("nfm_no_such_function");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("libc.so.6"), std::string::npos);
  EXPECT_NE(missing.error().message.find("nfm_no_such_function"), std::string::npos);
}

TEST(HttpClient, EscapesQueryStringsAsRfc3986Says) {
  EXPECT_EQ(HttpClient::escape("SELECT 1"), "SELECT%201");
  EXPECT_EQ(HttpClient::escape("a-b.c_d~e"), "a-b.c_d~e");  // unreserved: as is
  EXPECT_EQ(HttpClient::escape("x=1&y=\"z\"/%"), "x%3D1%26y%3D%22z%22%2F%25");
  EXPECT_EQ(HttpClient::escape("\xc3\xa9\n"), "%C3%A9%0A");  // bytes, not characters
}

}  // namespace
}  // namespace nfm
