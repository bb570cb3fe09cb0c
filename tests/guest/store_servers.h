// Real store servers for guest tests: a ClickHouse and a Prometheus of the test's own
// (free loopback ports, data in a temporary directory), stopped when the test ends.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "store/http_client.h"
#include "util/result.h"

namespace nfm::testing {

// A free loopback TCP port (0 if none).
uint16_t free_port();

void write_file(const std::string& path, const std::string& text);
std::string read_file(const std::string& path);

// Polls `ready` every 200 ms for up to `seconds` (waiting for a server, not timing it).
bool wait_for(const std::function<bool()>& ready, int seconds = 120);

// A server process of this test: dies with it, stopped on request.
class Server {
 public:
  Server() = default;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server() { stop(15); }  // SIGTERM
  bool start(const std::vector<std::string>& argv, const std::string& log);
  // Signals it and reaps it (no-op when not running).
  void stop(int signal);

 private:
  pid_t pid_ = -1;
};

// ClickHouse (Debian's clickhouse-server) with a minimal configuration of its own in `dir`.
// Stopped and started again, it keeps its ports and its data.
class ClickHouse {
 public:
  explicit ClickHouse(const std::string& dir);
  // "http://127.0.0.1:PORT/"
  std::string url() const;
  uint16_t tcp_port() const { return tcp_port_; }
  // XML added inside the configuration's <yandex> (a cluster node's <zookeeper>,
  // <remote_servers>, <macros>); before start().
  void add_config(const std::string& xml);
  // Starts it and waits until it answers.
  bool start();
  void kill();  // SIGKILL: the server is gone at once
  void stop();  // SIGTERM: a clean shutdown (queries in flight finish)
  Result<std::string> query(const std::string& sql);
  std::string log() const;

 private:
  void write_config();

  std::string dir_;
  uint16_t http_port_, tcp_port_;
  std::string extra_config_;
  Server server_;
  HttpClient http_;
};

// A standalone ZooKeeper (Debian's zookeeper package, run with java) for a ClickHouse
// cluster: its own port and data directory.
class ZooKeeper {
 public:
  explicit ZooKeeper(const std::string& dir);
  static bool installed();
  uint16_t port() const { return port_; }
  // Starts it and waits until it answers "srvr".
  bool start();
  std::string log() const;

 private:
  std::string dir_;
  uint16_t port_;
  Server server_;
};

// Prometheus scraping one target (127.0.0.1:target_port) every second.
class Prometheus {
 public:
  Prometheus(const std::string& dir, uint16_t target_port);
  bool start();
  // The value of an instant query's single result, once there is one (nullopt after
  // `seconds` without).
  std::optional<double> value(const std::string& promql, int seconds = 120);
  // The raw JSON answer of an instant query (empty on failure).
  std::string query(const std::string& promql);
  std::string log() const;

 private:
  std::string dir_;
  uint16_t port_;
  Server server_;
  HttpClient http_;
};

// A temporary directory, removed at the end unless NFM_LAB_KEEP is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  // PATH/name, created.
  std::string sub(const std::string& name) const;

 private:
  std::string path_;
};

}  // namespace nfm::testing
