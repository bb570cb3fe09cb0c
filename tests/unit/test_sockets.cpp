// Socket names and states as /proc/net and netstat print them.
#include <gtest/gtest.h>

#include <string>

#include "features/sockets/sockets.h"

namespace nfm {
namespace {

using namespace std::string_literals;

TEST(UnixSocketPath, LikeProcNetUnix) {
  // bind("/tmp/nfm.sock"): the kernel keeps the terminating NUL in addr->len.
  EXPECT_EQ(unix_socket_path("/tmp/nfm.sock\0"s), "/tmp/nfm.sock");
  // Abstract: a leading NUL, no terminator; inner NULs print as '@' too.
  EXPECT_EQ(unix_socket_path("\0nfm-abstract"s), "@nfm-abstract");
  EXPECT_EQ(unix_socket_path("\0a\0b"s), "@a@b");
  // autobind: "\0" + 5 hex digits.
  EXPECT_EQ(unix_socket_path("\0"
                             "0001f"s),
            "@0001f");
  EXPECT_EQ(unix_socket_path(""), "");
}

TEST(TcpStateName, NetstatWords) {
  EXPECT_STREQ(tcp_state_name(1), "ESTABLISHED");
  EXPECT_STREQ(tcp_state_name(6), "TIME_WAIT");
  EXPECT_STREQ(tcp_state_name(10), "LISTEN");
  EXPECT_STREQ(tcp_state_name(12), "SYN_RECV");  // TCP_NEW_SYN_RECV: a request socket
  EXPECT_STREQ(tcp_state_name(0), "UNKNOWN");
  EXPECT_STREQ(tcp_state_name(13), "UNKNOWN");
}

}  // namespace
}  // namespace nfm
