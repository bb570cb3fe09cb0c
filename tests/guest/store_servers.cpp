#include "store_servers.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <thread>

namespace nfm::testing {

using json = nlohmann::json;

uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool wait_for(const std::function<bool()>& ready, int seconds) {
  for (int i = 0; i < seconds * 5; ++i) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

bool Server::start(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid_ > 0;
}

void Server::stop(int signal) {
  if (pid_ <= 0) return;
  ::kill(pid_, signal);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

ClickHouse::ClickHouse(const std::string& dir)
    : dir_(dir), http_port_(free_port()), tcp_port_(free_port()) {
  write_file(dir_ + "/users.xml", R"(<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
)");
  write_config();
}

void ClickHouse::add_config(const std::string& xml) {
  extra_config_ += xml;
  write_config();
}

void ClickHouse::write_config() {
  write_file(dir_ + "/config.xml", fmt::format(R"(<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{0}/server.log</log><errorlog>{0}/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{1}</http_port>
  <tcp_port>{2}</tcp_port>
  <path>{0}/data/</path>
  <tmp_path>{0}/tmp/</tmp_path>
  <user_files_path>{0}/user_files/</user_files_path>
  <format_schema_path>{0}/format_schemas/</format_schema_path>
  <users_config>{0}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <timezone>UTC</timezone>
{3}</yandex>
)",
                                               dir_, http_port_, tcp_port_, extra_config_));
}

std::string ClickHouse::url() const {
  return fmt::format("http://127.0.0.1:{}/", http_port_);
}

bool ClickHouse::start() {
  if (!server_.start({"clickhouse-server", "--config-file=" + dir_ + "/config.xml"},
                     dir_ + "/stdout.log"))
    return false;
  return wait_for([&] { return query("SELECT 1").ok(); });
}

void ClickHouse::kill() {
  server_.stop(SIGKILL);
}

void ClickHouse::stop() {
  server_.stop(SIGTERM);
}

Result<std::string> ClickHouse::query(const std::string& sql) {
  return http_.post(url(), sql, 10000);
}

std::string ClickHouse::log() const {
  return read_file(dir_ + "/server.err.log") + read_file(dir_ + "/stdout.log");
}

ZooKeeper::ZooKeeper(const std::string& dir) : dir_(dir), port_(free_port()) {}

bool ZooKeeper::installed() {
  return std::filesystem::exists("/usr/share/java/zookeeper.jar") &&
         std::filesystem::exists("/usr/bin/java");
}

bool ZooKeeper::start() {
  std::filesystem::create_directories(dir_ + "/data");
  if (!server_.start({"java", "-Xmx256m", "-cp", "/usr/share/java/zookeeper.jar",
                      "org.apache.zookeeper.server.ZooKeeperServerMain", std::to_string(port_),
                      dir_ + "/data"},
                     dir_ + "/zookeeper.log"))
    return false;
  return wait_for([&] {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port_);
    bool ok = false;
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        write(fd, "srvr", 4) == 4) {
      char buf[64] = {};
      ok = read(fd, buf, sizeof buf - 1) > 0 && std::string(buf).find("Zookeeper") == 0;
    }
    if (fd >= 0) close(fd);
    return ok;
  });
}

std::string ZooKeeper::log() const {
  return read_file(dir_ + "/zookeeper.log");
}

Prometheus::Prometheus(const std::string& dir, uint16_t target_port)
    : dir_(dir), port_(free_port()) {
  write_file(dir_ + "/prometheus.yml", fmt::format(R"(global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: nfm
    static_configs:
      - targets: ['127.0.0.1:{}']
)",
                                                   target_port));
}

bool Prometheus::start() {
  return server_.start({"prometheus", "--config.file=" + dir_ + "/prometheus.yml",
                        "--storage.tsdb.path=" + dir_ + "/data",
                        fmt::format("--web.listen-address=127.0.0.1:{}", port_)},
                       dir_ + "/prometheus.log");
}

std::string Prometheus::query(const std::string& promql) {
  auto r = http_.get(
      fmt::format("http://127.0.0.1:{}/api/v1/query?query={}", port_, HttpClient::escape(promql)),
      5000);
  return r ? *r : std::string();
}

std::optional<double> Prometheus::value(const std::string& promql, int seconds) {
  std::optional<double> out;
  wait_for(
      [&] {
        const json j = json::parse(query(promql), nullptr, false);
        if (j.is_discarded() || j.value("status", "") != "success") return false;
        const json& result = j.at("data").at("result");
        if (result.size() != 1) return false;
        out = std::stod(result[0].at("value").at(1).get<std::string>());
        return true;
      },
      seconds);
  return out;
}

std::string Prometheus::log() const {
  return read_file(dir_ + "/prometheus.log");
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/nfm-stores-XXXXXX";
  path_ = mkdtemp(tmpl);
}

TempDir::~TempDir() {
  if (!getenv("NFM_LAB_KEEP")) std::filesystem::remove_all(path_);
}

std::string TempDir::sub(const std::string& name) const {
  std::filesystem::create_directories(path_ + "/" + name);
  return path_ + "/" + name;
}

}  // namespace nfm::testing
