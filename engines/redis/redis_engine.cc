#include "engines/redis/redis_engine.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/status_util.h"
#include "common/subprocess.h"
#include "engines/redis/redis_client.h"
#include "engines/server_control.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Info = std::map<std::string, std::string>;

// CLIENT PAUSE takes milliseconds; about 24.8 days, re-issued by every
// Observe and Start while the fence marker exists.
constexpr int64_t kFencePauseMs = 2147483647;
// repl-ping-replica-period while fenced: a paused master still sends its
// replicas a PING every period, which moves its replication offset past the
// one its promoted slave stopped at and rules out a partial resync of the
// old master and its other slaves with the new one. The marker records the
// period to put back.
constexpr char kPingPeriodSetting[] = "repl-ping-replica-period";
constexpr char kFencePingPeriod[] = "2147483647";
constexpr char kDefaultPingPeriod[] = "10";
// Bound on one connection attempt or one quick command.
constexpr std::chrono::milliseconds kQuickTimeout{5000};
constexpr char kDefaultReplicationUser[] = "tandem_repl";

// Arguments of the default start command that the engine sets itself.
constexpr const char* kReservedServerArgs[] = {"port", "dir", "daemonize", "pidfile", "logfile"};

std::string Annotate(const absl::Status& status, const std::string& context) {
  return absl::StrCat(context, ": ", status.message());
}

absl::Status WithContext(const absl::Status& status, const std::string& context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), Annotate(status, context));
}

std::string Get(const Info& info, const std::string& key) {
  auto it = info.find(key);
  return it == info.end() ? std::string() : it->second;
}

int64_t GetInt(const Info& info, const std::string& key, int64_t fallback) {
  int64_t value = 0;
  auto it = info.find(key);
  if (it == info.end() || !absl::SimpleAtoi(it->second, &value)) return fallback;
  return value;
}

// Sum of keys=N over the "dbN:keys=..,expires=.." lines of INFO keyspace.
int64_t KeyCount(const Info& info) {
  int64_t total = 0;
  for (const auto& [key, value] : info) {
    if (!absl::StartsWith(key, "db")) continue;
    for (absl::string_view part : absl::StrSplit(value, ',')) {
      int64_t n = 0;
      if (absl::ConsumePrefix(&part, "keys=") && absl::SimpleAtoi(part, &n)) total += n;
    }
  }
  return total;
}

// Tokenizes one line of a redis.conf: whitespace-separated words, double
// quoted words with backslash escapes, single quoted words verbatim.
std::vector<std::string> ConfigWords(absl::string_view line) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && absl::ascii_isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i >= line.size()) break;
    std::string word;
    if (line[i] == '"' || line[i] == '\'') {
      char quote = line[i++];
      while (i < line.size() && line[i] != quote) {
        if (quote == '"' && line[i] == '\\' && i + 1 < line.size()) ++i;
        word.push_back(line[i++]);
      }
      ++i;  // closing quote
    } else {
      while (i < line.size() && !absl::ascii_isspace(static_cast<unsigned char>(line[i]))) {
        word.push_back(line[i++]);
      }
    }
    words.push_back(std::move(word));
  }
  return words;
}

// The settings of a redis.conf that a stopped server is observed from; the
// last occurrence wins, as in Redis.
struct FileSettings {
  std::string replicaof_host;
  uint32_t replicaof_port = 0;
  std::string dbfilename = "dump.rdb";
  std::string appendfilename = "appendonly.aof";
  std::string appenddirname = "appendonlydir";
};

FileSettings ParseConfigFile(const std::string& content) {
  FileSettings out;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    std::vector<std::string> words = ConfigWords(line);
    if (words.empty() || words[0].front() == '#') continue;
    std::string key = absl::AsciiStrToLower(words[0]);
    if ((key == "replicaof" || key == "slaveof") && words.size() >= 3) {
      uint32_t port = 0;
      if (absl::AsciiStrToLower(words[1]) == "no" && absl::AsciiStrToLower(words[2]) == "one") {
        out.replicaof_host.clear();
        out.replicaof_port = 0;
      } else if (absl::SimpleAtoi(words[2], &port)) {
        out.replicaof_host = words[1];
        out.replicaof_port = port;
      }
    } else if (key == "dbfilename" && words.size() >= 2) {
      out.dbfilename = words[1];
    } else if (key == "appendfilename" && words.size() >= 2) {
      out.appendfilename = words[1];
    } else if (key == "appenddirname" && words.size() >= 2) {
      out.appenddirname = words[1];
    }
  }
  return out;
}

bool NonEmptyDirectory(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return false;
  return fs::directory_iterator(path, ec) != fs::directory_iterator();
}

std::string CanonicalPath(const std::string& path) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(path, ec);
  if (ec) return fs::path(path).lexically_normal().string();
  std::string out = canonical.string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string FileTail(const std::string& path) {
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) return "(no log)";
  std::string tail = OutputTail(*content, 600);
  return tail.empty() ? "(empty log)" : tail;
}

// Sleeps a little longer at each call, up to `cap`.
class Backoff {
 public:
  explicit Backoff(std::chrono::milliseconds cap = std::chrono::milliseconds(100)) : cap_(cap) {}
  void Wait() {
    std::this_thread::sleep_for(delay_);
    delay_ = std::min(delay_ * 2, cap_);
  }

 private:
  std::chrono::milliseconds cap_;
  std::chrono::milliseconds delay_{10};
};

// How often WaitForSync looks at the sync: the slave's convergence is seen at
// most this late after Redis finished loading (an INFO costs microseconds).
constexpr std::chrono::milliseconds kSyncPoll{20};

// The login a slave uses on its master.
struct ReplicationLogin {
  std::string masteruser;  // "" = the default user
  std::string masterauth;  // "" = no password
};

// Where a slave's own redis-server connects to its upstream.
struct ReplicationLink {
  uint32_t port = 0;  // upstream.port, or upstream.tls_port over TLS
  bool tls = false;   // tls-replication yes
};

class RedisEngine final : public Engine {
 public:
  explicit RedisEngine(EngineConfig config) : config_(std::move(config)) {
    address_ = absl::StrCat(config_.host, ":", config_.port);
    data_dir_ = CanonicalPath(config_.data_dir);
    log_file_ = config_.log_file.empty() ? data_dir_ + "/redis.log" : config_.log_file;
  }

  EngineType type() const override { return EngineType::kRedis; }

  absl::StatusOr<EngineFacts> Observe() override;
  absl::Status Start() override;
  absl::Status Stop() override;
  absl::Status Fence() override;
  absl::Status ServeSlaves(const std::vector<Peer>& slaves) override;
  absl::StatusOr<std::string> Bootstrap(const Peer& self, const Peer& upstream,
                                        const ProgressFn& progress) override;
  absl::Status Follow(const Peer& self, const Peer& upstream) override;
  absl::Status MakeWritable() override;
  absl::StatusOr<std::string> Rejoin(const Peer& self, const Peer& upstream) override;
  absl::StatusOr<bool> HasReplayed(const std::string& position) override;
  std::string DataParentDir() const override { return data_dir_; }

 private:
  std::chrono::milliseconds Timeout() const {
    return std::chrono::seconds(config_.timeout_seconds);
  }
  std::chrono::milliseconds QuickTimeout() const { return std::min(kQuickTimeout, Timeout()); }
  std::string DataPath(const std::string& name) const { return data_dir_ + "/" + name; }

  absl::StatusOr<std::string> ReadSecret(const std::string& field, const std::string& path) const;
  absl::StatusOr<std::unique_ptr<RedisClient>> ConnectLocal() const;
  // The local server ready for commands: connected, logged in, PING answered
  // and its dir checked. Unavailable while it is down or loading.
  absl::StatusOr<std::unique_ptr<RedisClient>> ConnectReady() const;
  // ConnectReady(), starting the server first when it is down.
  absl::StatusOr<std::unique_ptr<RedisClient>> ConnectOrStart();
  absl::Status CheckDir(RedisClient& client) const;
  absl::Status RequireConfigFile(const Info& server_info) const;
  // ConnectOrStart() and the server's INFO `sections` (with "server"), for a
  // step that changes its role: refused when the server has no config file
  // (CONFIG REWRITE persists the role there).
  struct Local {
    std::unique_ptr<RedisClient> client;
    Info info;
  };
  absl::StatusOr<Local> OpenForRoleChange(const std::vector<std::string>& sections);
  absl::StatusOr<bool> IsListening() const;

  absl::StatusOr<EngineFacts> FactsFromFiles() const;
  absl::StatusOr<std::vector<std::string>> ReadServedSlaves() const;
  bool Fenced() const { return PathExists(DataPath(kRedisFenceMarkerFile)); }
  // The repl-ping-replica-period the fence marker recorded before the fence
  // raised it; "" when it records none (or there is no marker).
  std::string RecordedPingPeriod() const;
  // The fence on a running master: the marker (recording the current ping
  // period when it has none yet), the ping period raised, CLIENT PAUSE WRITE.
  absl::Status ApplyFence(RedisClient& client) const;
  absl::Status ReassertFence(RedisClient& client, const Info& info) const;
  // Ends the fence once the node is a replica (or is to be writable): puts
  // back the recorded ping period, persists the role with CONFIG REWRITE,
  // then CLIENT UNPAUSE and the marker removed. Writes still blocked by the
  // pause run after it: on a replica they fail with READONLY. `lift` false:
  // only the first two.
  absl::Status PersistAndLiftFence(RedisClient& client, const std::string& config_file,
                                   bool lift = true) const;
  absl::Status LiftFence(RedisClient& client) const;

  absl::Status LaunchServer();
  absl::Status PrepareDataDir() const;

  // Connects to `upstream` with the replication login, checks that it is a
  // master (and not this server), and returns the login that worked.
  // `upstream_info` (optional) receives its INFO server and replication,
  // left empty when that login may not run INFO; `not_master` (optional)
  // is set when the upstream answered but is not a master (Unavailable).
  absl::StatusOr<ReplicationLogin> ProbeUpstream(const Peer& upstream,
                                                 std::string* upstream_run_id,
                                                 Info* upstream_info = nullptr,
                                                 bool* not_master = nullptr) const;
  bool LoginMatches(RedisClient& client, const std::string& masterauth) const;
  // The login from the config alone, for a link the agent cannot probe
  // (TLS): see the header.
  absl::StatusOr<ReplicationLogin> ConfiguredLogin() const;
  // How `self` reaches `upstream` (ReplicationTls); FailedPrecondition when
  // the link needs TLS and the upstream has no TLS port.
  absl::StatusOr<ReplicationLink> LinkTo(const Peer& self, const Peer& upstream) const;
  // replica-read-only yes, masteruser/masterauth, and the replication TLS
  // settings of `link` (tls-replication and its files, or tls-replication
  // no), all before any REPLICAOF.
  absl::Status ApplyReplicationSettings(RedisClient& client, const ReplicationLogin& login,
                                        const ReplicationLink& link) const;
  absl::Status ApplyReplicationTls(RedisClient& client, bool tls) const;
  // Whether the server's replication TLS settings are those of `tls`.
  bool TlsMatches(RedisClient& client, bool tls) const;
  absl::Status SaveAside(RedisClient& client) const;
  // CONFIG REWRITE of `config_file` (INFO server), then takes away the
  // access of others that Redis grants the rewritten file (umask based): it
  // holds masterauth and requirepass.
  absl::Status ConfigRewrite(RedisClient& client, const std::string& config_file) const;
  absl::Status WaitForSync(const Peer& upstream, uint32_t port, const ProgressFn& progress) const;

  // Slave: the reason it is out of sync ("" when it is not), from INFO
  // replication; tracks how long the link has been seen down.
  std::string OutOfSync(const Info& info);

  EngineConfig config_;
  std::string address_;
  std::string data_dir_;
  std::string log_file_;
  // Since when Observe has seen the link to `link_down_upstream_` down (""
  // while it is up): Redis reports no down time for a link that never came
  // up since the server started or was pointed at its master.
  std::string link_down_upstream_;
  Clock::time_point link_down_seen_;
};

absl::StatusOr<std::string> RedisEngine::ReadSecret(const std::string& field,
                                                    const std::string& path) const {
  if (path.empty()) return std::string();
  absl::StatusOr<std::string> secret = ReadSecretFile(path);
  if (!secret.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": ", secret.status().message()));
  }
  return secret;
}

absl::StatusOr<std::unique_ptr<RedisClient>> RedisEngine::ConnectLocal() const {
  absl::StatusOr<std::string> password = ReadSecret("engine.password_file", config_.password_file);
  if (!password.ok()) return password.status();
  return RedisClient::Connect(config_.host, config_.port, RedisLogin{config_.user, *password},
                              QuickTimeout());
}

absl::StatusOr<std::unique_ptr<RedisClient>> RedisEngine::ConnectReady() const {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectLocal();
  if (!client.ok()) return client.status();
  absl::StatusOr<std::string> pong = (*client)->CommandText({"PING"});
  if (!pong.ok()) return pong.status();
  absl::Status dir = CheckDir(**client);
  if (!dir.ok()) return dir;
  return client;
}

absl::StatusOr<std::unique_ptr<RedisClient>> RedisEngine::ConnectOrStart() {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectReady();
  if (client.ok() || !absl::IsUnavailable(client.status())) return client;
  absl::Status started = Start();
  if (!started.ok()) return started;
  return ConnectReady();
}

absl::Status RedisEngine::CheckDir(RedisClient& client) const {
  absl::StatusOr<std::string> dir = client.ConfigGet("dir");
  if (!dir.ok()) return dir.status();
  std::string server_dir = CanonicalPath(*dir);
  if (server_dir != data_dir_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine.data_dir is ", data_dir_, " but the redis server at ", address_, " uses dir ",
        server_dir, " (CONFIG GET dir): the agent is pointed at another server"));
  }
  return absl::OkStatus();
}

absl::Status RedisEngine::RequireConfigFile(const Info& server_info) const {
  if (!Get(server_info, "config_file").empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the redis server at ", address_,
      " runs without a config file (INFO server config_file is empty): CONFIG REWRITE cannot "
      "persist its role across a restart; start it with a config file"));
}

absl::StatusOr<bool> RedisEngine::IsListening() const {
  absl::StatusOr<std::unique_ptr<RedisClient>> probe =
      RedisClient::Connect(config_.host, config_.port, RedisLogin{}, QuickTimeout());
  if (probe.ok()) return true;
  if (absl::IsUnavailable(probe.status())) return false;
  return probe.status();
}

absl::StatusOr<std::vector<std::string>> RedisEngine::ReadServedSlaves() const {
  absl::StatusOr<std::string> content = ReadFile(DataPath(kRedisServedSlavesFile));
  if (absl::IsNotFound(content.status())) return std::vector<std::string>();
  if (!content.ok()) return content.status();
  std::set<std::string> ids;
  for (absl::string_view line : absl::StrSplit(*content, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) ids.insert(std::string(line));
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

absl::StatusOr<EngineFacts> RedisEngine::FactsFromFiles() const {
  EngineFacts facts;
  FileSettings settings;
  absl::StatusOr<std::string> conf = ReadFile(DataPath(kRedisConfigFile));
  if (conf.ok()) {
    settings = ParseConfigFile(*conf);
  } else if (!absl::IsNotFound(conf.status())) {
    return WithContext(conf.status(), "while reading the redis config file");
  }
  if (!settings.replicaof_host.empty()) {
    facts.is_slave = true;
    facts.upstream = absl::StrCat(settings.replicaof_host, ":", settings.replicaof_port);
  }
  std::string rdb = DataPath(settings.dbfilename);
  std::error_code ec;
  bool rdb_exists = fs::is_regular_file(rdb, ec);
  if (rdb_exists) facts.data_bytes = fs::file_size(rdb, ec);
  facts.has_data = rdb_exists || NonEmptyDirectory(DataPath(settings.appenddirname)) ||
                   fs::is_regular_file(DataPath(settings.appendfilename), ec);
  absl::StatusOr<std::vector<std::string>> served = ReadServedSlaves();
  if (!served.ok()) return served.status();
  facts.served_slaves = *std::move(served);
  return facts;
}

std::string RedisEngine::RecordedPingPeriod() const {
  absl::StatusOr<std::string> marker = ReadFile(DataPath(kRedisFenceMarkerFile));
  if (!marker.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*marker, '\n')) {
    std::vector<std::string> words = ConfigWords(line);
    if (words.size() == 2 && words[0] == kPingPeriodSetting) return words[1];
  }
  return "";
}

absl::Status RedisEngine::ApplyFence(RedisClient& client) const {
  if (RecordedPingPeriod().empty()) {
    absl::StatusOr<std::string> period = client.ConfigGet(kPingPeriodSetting);
    if (!period.ok()) return period.status();
    // Already raised by a fence whose marker was lost: Redis's default.
    std::string keep = *period == kFencePingPeriod ? kDefaultPingPeriod : *period;
    absl::Status marked =
        WriteFileAtomic(DataPath(kRedisFenceMarkerFile),
                        absl::StrCat("CLIENT PAUSE WRITE\n", kPingPeriodSetting, " ", keep, "\n"),
                        0644);
    if (!marked.ok()) return marked;
  }
  // The pings stop before the writes: nothing moves the offset after the pause.
  absl::Status st = client.ConfigSet(kPingPeriodSetting, kFencePingPeriod);
  if (st.ok()) {
    st = client.Command({"CLIENT", "PAUSE", absl::StrCat(kFencePauseMs), "WRITE"}).status();
  }
  return st;
}

absl::Status RedisEngine::ReassertFence(RedisClient& client, const Info& info) const {
  if (!Fenced() || Get(info, "role") != "master") return absl::OkStatus();
  return WithContext(ApplyFence(client), "while re-issuing the write fence");
}

absl::Status RedisEngine::PersistAndLiftFence(RedisClient& client, const std::string& config_file,
                                              bool lift) const {
  const std::string period = RecordedPingPeriod();
  if (!period.empty()) {
    absl::Status st = client.ConfigSet(kPingPeriodSetting, period);
    if (!st.ok()) return WithContext(st, "while putting back the replication ping period");
  }
  absl::Status st = ConfigRewrite(client, config_file);
  if (st.ok() && lift) st = LiftFence(client);
  return st;
}

absl::Status RedisEngine::LiftFence(RedisClient& client) const {
  absl::StatusOr<RedisReply> unpaused = client.Command({"CLIENT", "UNPAUSE"});
  if (!unpaused.ok()) return WithContext(unpaused.status(), "while lifting the write fence");
  std::error_code ec;
  fs::remove(DataPath(kRedisFenceMarkerFile), ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("removing the fence marker ",
                                            DataPath(kRedisFenceMarkerFile), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<EngineFacts> RedisEngine::Observe() {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectReady();
  if (absl::IsUnavailable(client.status())) return FactsFromFiles();
  if (!client.ok()) return WithContext(client.status(), "while observing redis");
  RedisClient& c = **client;

  absl::StatusOr<Info> info = c.Info({"server", "replication", "memory"});
  if (!info.ok()) return WithContext(info.status(), "while observing redis");
  absl::StatusOr<std::string> read_only = c.ConfigGet("replica-read-only");
  if (!read_only.ok()) return WithContext(read_only.status(), "while observing redis");

  EngineFacts facts;
  facts.running = true;
  facts.has_data = true;
  const std::string role = Get(*info, "role");
  facts.is_slave = role == "slave";
  if (facts.is_slave) {
    facts.upstream = absl::StrCat(Get(*info, "master_host"), ":", Get(*info, "master_port"));
    facts.streaming = Get(*info, "master_link_status") == "up" &&
                      GetInt(*info, "master_sync_in_progress", 1) == 0;
    if (facts.streaming) {
      facts.lag_bytes = 0;
      facts.lag_seconds = static_cast<double>(GetInt(*info, "master_last_io_seconds_ago", -1));
    }
    // A replica with replica-read-only no does accept writes; say so.
    facts.writable = absl::AsciiStrToLower(*read_only) == "no";
    facts.out_of_sync = OutOfSync(*info);
  } else {
    facts.writable = !Fenced();
    link_down_upstream_.clear();
  }
  facts.position = Get(*info, "master_repl_offset");
  // Never 0 on a running server, even without keys: the agent reads a size
  // of 0 as "not reported yet" and would hold a slave's bootstrap forever.
  facts.data_bytes =
      static_cast<uint64_t>(std::max<int64_t>(1, GetInt(*info, "used_memory", 1)));
  absl::StatusOr<std::vector<std::string>> served = ReadServedSlaves();
  if (!served.ok()) return WithContext(served.status(), "while observing redis");
  facts.served_slaves = *std::move(served);

  absl::Status fence = ReassertFence(c, *info);
  if (!fence.ok()) return WithContext(fence, "while observing redis");
  return facts;
}

std::string RedisEngine::OutOfSync(const Info& info) {
  const std::string upstream =
      absl::StrCat(Get(info, "master_host"), ":", Get(info, "master_port"));
  // A full sync in progress is the cure, however long it takes.
  if (Get(info, "master_link_status") == "up" || GetInt(info, "master_sync_in_progress", 0) != 0) {
    link_down_upstream_.clear();
    return "";
  }
  const auto now = Clock::now();
  if (link_down_upstream_ != upstream) {
    link_down_upstream_ = upstream;
    link_down_seen_ = now;
  }
  const int64_t seen =
      std::chrono::duration_cast<std::chrono::seconds>(now - link_down_seen_).count();
  const int64_t down = std::max(seen, GetInt(info, "master_link_down_since_seconds", -1));
  if (down < config_.out_of_sync_after_seconds) return "";
  return absl::StrCat("link to ", upstream, " down for ", down, " s (more than ",
                      config_.out_of_sync_after_seconds, " s)");
}

// A position is a replication offset (INFO replication master_repl_offset
// of the fenced master); a replica has it once its own offset is as far.
absl::StatusOr<bool> RedisEngine::HasReplayed(const std::string& position) {
  int64_t wanted = 0;
  if (!absl::SimpleAtoi(position, &wanted) || wanted < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", position, "\" is not a Redis replication offset"));
  }
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectLocal();
  if (!client.ok()) return WithContext(client.status(), "while reading the replication offset");
  absl::StatusOr<Info> info = (*client)->Info({"replication"});
  if (!info.ok()) return WithContext(info.status(), "while reading the replication offset");
  return GetInt(*info, "master_repl_offset", -1) >= wanted;
}

absl::Status RedisEngine::PrepareDataDir() const {
  std::optional<UserIds> owner;
  if (!config_.os_user.empty() && ::geteuid() == 0) {
    absl::StatusOr<UserIds> ids = LookupUser(config_.os_user);
    if (!ids.ok()) return WithContext(ids.status(), "engine.os_user");
    owner = *ids;
  }
  auto own = [&](const std::string& path) -> absl::Status {
    if (!owner) return absl::OkStatus();
    if (::chown(path.c_str(), owner->uid, owner->gid) != 0) {
      return absl::InternalError(
          absl::StrCat("chown ", path, " to ", config_.os_user, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  };
  if (!PathExists(data_dir_)) {
    absl::Status made = MakeDirs(data_dir_);
    if (!made.ok()) return made;
    ::chmod(data_dir_.c_str(), 0750);
    absl::Status owned = own(data_dir_);
    if (!owned.ok()) return owned;
  }
  // CONFIG REWRITE needs a config file; it will hold masterauth, hence 0600.
  const std::string conf = DataPath(kRedisConfigFile);
  if (!PathExists(conf)) {
    absl::Status written = WriteFileAtomic(conf, "", 0600);
    if (!written.ok()) return written;
    absl::Status owned = own(conf);
    if (!owned.ok()) return owned;
  }
  // redis-server opens its log as os_user: create it with that owner.
  if (!PathExists(log_file_)) {
    fs::path parent = fs::path(log_file_).parent_path();
    if (!parent.empty() && !PathExists(parent.string())) {
      absl::Status made = MakeDirs(parent.string());
      if (!made.ok()) return made;
    }
    absl::Status written = WriteFileAtomic(log_file_, "", 0640);
    if (!written.ok()) return written;
    absl::Status owned = own(log_file_);
    if (!owned.ok()) return owned;
  }
  return absl::OkStatus();
}

absl::Status RedisEngine::LaunchServer() {
  if (CustomServerControl(config_, ServerAction::kStart)) {
    // The engine creates no directory for a custom start; a unit's server
    // logs where its configuration says.
    return WithContext(RunServerControl(config_, ServerAction::kStart,
                                        config_.systemd_unit.empty() ? log_file_ : "", Timeout()),
                       "while starting redis");
  }
  absl::Status prepared = PrepareDataDir();
  if (!prepared.ok()) return WithContext(prepared, "while preparing " + data_dir_);
  std::string binary =
      config_.bin_dir.empty() ? std::string("redis-server") : config_.bin_dir + "/redis-server";
  std::vector<std::string> argv = {binary,        DataPath(kRedisConfigFile),
                                   "--port",      absl::StrCat(config_.port),
                                   "--dir",       data_dir_,
                                   "--daemonize", "yes",
                                   "--pidfile",   DataPath("redis.pid"),
                                   "--logfile",   log_file_};
  argv.insert(argv.end(), config_.server_args.begin(), config_.server_args.end());
  // Under umask 077 (the shell only sets it and execs the server): the
  // files Redis writes, config rewrites and RDB snapshots included, are
  // private to os_user.
  argv.insert(argv.begin(), {"/bin/sh", "-c", "umask 077 && exec \"$0\" \"$@\""});
  RunOptions options;
  options.run_as = config_.os_user;
  options.timeout = Timeout();
  options.output_file = log_file_;
  absl::StatusOr<RunResult> result = Run(argv, options);
  if (!result.ok()) return WithContext(result.status(), "while starting redis");
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat("while starting redis: redis-server exited with ",
                                            result->exit_code, "; end of ", log_file_,
                                            OutputReason(FileTail(log_file_))));
  }
  return absl::OkStatus();
}

absl::Status RedisEngine::Start() {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectReady();
  bool launched = false;
  if (!client.ok()) {
    if (!absl::IsUnavailable(client.status())) {
      return WithContext(client.status(), "while starting redis");
    }
    // Unavailable: down, or up and still loading its dataset.
    absl::StatusOr<bool> listening = IsListening();
    if (!listening.ok()) return WithContext(listening.status(), "while starting redis");
    if (!*listening) {
      absl::Status launch = LaunchServer();
      if (!launch.ok()) return launch;
      launched = true;
    }
    const auto deadline = Clock::now() + Timeout();
    Backoff backoff;
    for (;;) {
      client = ConnectReady();
      if (client.ok()) break;
      if (!absl::IsUnavailable(client.status())) {
        return WithContext(client.status(), "while starting redis");
      }
      if (Clock::now() >= deadline) {
        return absl::UnavailableError(absl::StrCat(
            "while starting redis: the server at ", address_, " did not answer within ",
            config_.timeout_seconds, " s (", client.status().message(), ")",
            launched && config_.systemd_unit.empty()
                ? absl::StrCat("; end of ", log_file_, OutputReason(FileTail(log_file_)))
                : ""));
      }
      backoff.Wait();
    }
  }
  absl::StatusOr<Info> info = (*client)->Info({"replication"});
  if (!info.ok()) return WithContext(info.status(), "while starting redis");
  return WithContext(ReassertFence(**client, *info), "while starting redis");
}

absl::Status RedisEngine::Stop() {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectReady();
  if (!client.ok()) {
    if (!absl::IsUnavailable(client.status())) {
      return WithContext(client.status(), "while stopping redis");
    }
    absl::StatusOr<bool> listening = IsListening();
    if (!listening.ok()) return WithContext(listening.status(), "while stopping redis");
    // A unit is stopped even when its server looks down: systemd may be
    // restarting it (redis-server@.service restarts always).
    if (!*listening && config_.systemd_unit.empty()) return absl::OkStatus();
    if (!CustomServerControl(config_, ServerAction::kStop)) {
      // Loading its dataset: SHUTDOWN is accepted then too, but the dir
      // cannot be checked; do not stop a server we cannot identify.
      return absl::UnavailableError(absl::StrCat("while stopping redis: the server at ", address_,
                                                 " is not ready (", client.status().message(),
                                                 ")"));
    }
  }

  if (CustomServerControl(config_, ServerAction::kStop)) {
    // A unit's redis-server saves on SIGTERM when it has save points.
    TANDEM_RETURN_IF_ERROR(
        WithContext(RunServerControl(config_, ServerAction::kStop,
                                     config_.systemd_unit.empty() ? log_file_ : "", Timeout()),
                    "while stopping redis"));
  } else {
    RedisClient& c = **client;
    absl::StatusOr<std::string> save = c.ConfigGet("save");
    if (!save.ok()) return WithContext(save.status(), "while stopping redis");
    absl::StatusOr<std::string> dbfilename = c.ConfigGet("dbfilename");
    if (!dbfilename.ok()) return WithContext(dbfilename.status(), "while stopping redis");
    bool keep = !absl::StripAsciiWhitespace(*save).empty() || PathExists(DataPath(*dbfilename));
    std::vector<std::string> shutdown = {"SHUTDOWN"};
    if (keep) shutdown.push_back("SAVE");
    c.SetTimeout(Timeout());
    const auto deadline = Clock::now() + Timeout();
    for (Backoff backoff;; backoff.Wait()) {
      absl::StatusOr<RedisReply> reply = c.Raw(shutdown);
      // Success closes the connection (Unavailable here); a reply is a refusal.
      if (!reply.ok()) break;
      // Redis refuses to exit while it writes the initial AOF (appendonly
      // just turned on): that ends by itself.
      absl::StatusOr<Info> persistence = c.Info({"persistence"});
      const bool aof_rewrite =
          persistence.ok() && (GetInt(*persistence, "aof_rewrite_in_progress", 0) != 0 ||
                               GetInt(*persistence, "aof_rewrite_scheduled", 0) != 0);
      if (!aof_rewrite || Clock::now() >= deadline) {
        return absl::FailedPreconditionError(
            absl::StrCat("while stopping redis: the server at ", address_, " refused ",
                         absl::StrJoin(shutdown, " "), ": ", reply->str, " (see ", log_file_, ")"));
      }
    }
  }

  const auto deadline = Clock::now() + Timeout();
  Backoff backoff;
  for (;;) {
    absl::StatusOr<bool> listening = IsListening();
    if (!listening.ok()) return WithContext(listening.status(), "while stopping redis");
    if (!*listening) return absl::OkStatus();
    if (Clock::now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("while stopping redis: the server at ", address_,
                                                 " still accepts connections after ",
                                                 config_.timeout_seconds, " s"));
    }
    backoff.Wait();
  }
}

absl::Status RedisEngine::Fence() {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectReady();
  if (!client.ok() && !absl::IsUnavailable(client.status())) {
    return WithContext(client.status(), "while fencing redis");
  }
  if (client.ok()) {
    absl::StatusOr<Info> info = (*client)->Info({"replication"});
    if (!info.ok()) return WithContext(info.status(), "while fencing redis");
    if (Get(*info, "role") == "slave") {
      return WithContext((*client)->ConfigSet("replica-read-only", "yes"), "while fencing redis");
    }
  }
  // The marker first: if the pause is lost (crash, restart), Observe and
  // Start re-issue it. A stopped server is fenced as soon as it starts.
  if (!client.ok()) {
    if (Fenced()) return absl::OkStatus();
    return WithContext(
        WriteFileAtomic(DataPath(kRedisFenceMarkerFile), "CLIENT PAUSE WRITE\n", 0644),
        "while fencing redis");
  }
  return WithContext(ApplyFence(**client), "while fencing redis");
}

absl::Status RedisEngine::ServeSlaves(const std::vector<Peer>& slaves) {
  std::set<std::string> ids;
  for (const Peer& slave : slaves) {
    if (slave.id.empty() || std::any_of(slave.id.begin(), slave.id.end(), [](char ch) {
          return absl::ascii_isspace(static_cast<unsigned char>(ch));
        })) {
      return absl::InvalidArgumentError(
          absl::StrCat("while setting up slaves: invalid slave id \"", slave.id, "\""));
    }
    ids.insert(slave.id);
  }
  if (!ids.empty()) {
    absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectReady();
    if (!client.ok()) return WithContext(client.status(), "while setting up slaves");
    absl::StatusOr<std::string> save = (*client)->ConfigGet("save");
    if (!save.ok()) return WithContext(save.status(), "while setting up slaves");
    absl::StatusOr<std::string> aof = (*client)->ConfigGet("appendonly");
    if (!aof.ok()) return WithContext(aof.status(), "while setting up slaves");
    if (absl::StripAsciiWhitespace(*save).empty() && absl::AsciiStrToLower(*aof) == "no") {
      return absl::FailedPreconditionError(
          "master has persistence disabled (save \"\" and appendonly no): a restart would "
          "replicate an empty dataset to every slave; enable RDB or AOF persistence");
    }
  }
  std::string content;
  for (const std::string& id : ids) absl::StrAppend(&content, id, "\n");
  const std::string path = DataPath(kRedisServedSlavesFile);
  absl::StatusOr<std::string> current = ReadFile(path);
  if (current.ok() && *current == content) return absl::OkStatus();
  return WithContext(WriteFileAtomic(path, content, 0644), "while recording the served slaves");
}

absl::StatusOr<ReplicationLogin> RedisEngine::ProbeUpstream(const Peer& upstream,
                                                            std::string* upstream_run_id,
                                                            Info* upstream_info,
                                                            bool* not_master) const {
  const std::string who =
      absl::StrCat("upstream ", upstream.id, " (", upstream.host, ":", upstream.port, ")");
  absl::StatusOr<std::string> password =
      ReadSecret("engine.replication_password_file", config_.replication_password_file);
  if (!password.ok()) return password.status();

  const std::string& user = config_.replication_user;
  std::vector<ReplicationLogin> candidates;
  if (password->empty()) {
    candidates.push_back({"", ""});
  } else if (user.empty() || user == "default") {
    candidates.push_back({"", *password});
  } else if (user == kDefaultReplicationUser) {
    // The default name: the ACL user when the master has it, else requirepass.
    candidates.push_back({user, *password});
    candidates.push_back({"", *password});
  } else {
    candidates.push_back({user, *password});
  }

  absl::Status last;
  for (const ReplicationLogin& login : candidates) {
    absl::StatusOr<std::unique_ptr<RedisClient>> client =
        RedisClient::Connect(upstream.host, upstream.port,
                             RedisLogin{login.masteruser, login.masterauth}, QuickTimeout());
    if (!client.ok()) {
      last = client.status();
      if (absl::IsFailedPrecondition(last)) continue;  // refused login: next candidate
      break;
    }
    absl::StatusOr<std::string> pong = (*client)->CommandText({"PING"});
    if (!pong.ok()) {
      last = pong.status();
      if (absl::StrContains(last.message(), "NOAUTH")) {
        last = absl::FailedPreconditionError(absl::StrCat(last.message(),
                                                          "; the upstream requires a password: set "
                                                          "engine.replication_password_file"));
      }
      break;
    }
    absl::StatusOr<Info> info = (*client)->Info({"server", "replication"});
    if (!info.ok() && absl::StrContains(info.status().message(), "NOPERM")) {
      // A replication-only ACL user (+psync +replconf +ping) may not run
      // INFO: its role and identity then go unchecked.
      return login;
    }
    if (!info.ok()) {
      last = info.status();
      break;
    }
    if (Get(*info, "role") != "master") {
      if (not_master != nullptr) *not_master = true;
      return absl::UnavailableError(absl::StrCat(
          "while checking ", who, ": it is not a master (role:", Get(*info, "role"), ")"));
    }
    if (upstream_run_id != nullptr) *upstream_run_id = Get(*info, "run_id");
    if (upstream_info != nullptr) *upstream_info = *std::move(info);
    return login;
  }
  return absl::Status(last.code(), absl::StrCat("while checking ", who, ": ", last.message()));
}

bool RedisEngine::LoginMatches(RedisClient& client, const std::string& masterauth) const {
  absl::StatusOr<std::string> auth = client.ConfigGet("masterauth");
  absl::StatusOr<std::string> user = client.ConfigGet("masteruser");
  if (!auth.ok() || !user.ok() || *auth != masterauth) return false;
  if (masterauth.empty()) return true;
  const std::string& wanted = config_.replication_user;
  if (wanted.empty() || wanted == "default") return user->empty() || *user == "default";
  if (wanted == kDefaultReplicationUser) return user->empty() || *user == wanted;
  return *user == wanted;
}

absl::StatusOr<ReplicationLogin> RedisEngine::ConfiguredLogin() const {
  absl::StatusOr<std::string> password =
      ReadSecret("engine.replication_password_file", config_.replication_password_file);
  if (!password.ok()) return password.status();
  const std::string& user = config_.replication_user;
  if (password->empty()) return ReplicationLogin{"", ""};
  // The default name cannot be tried on the upstream: the requirepass form,
  // which the example configuration (one password for all) needs.
  if (user.empty() || user == "default" || user == kDefaultReplicationUser) {
    return ReplicationLogin{"", *password};
  }
  return ReplicationLogin{user, *password};
}

absl::StatusOr<ReplicationLink> RedisEngine::LinkTo(const Peer& self, const Peer& upstream) const {
  if (!ReplicationTls(config_, self, upstream)) return ReplicationLink{upstream.port, false};
  if (upstream.tls_port == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "upstream ", upstream.id, " has no tls_port (engine.tls_port in its agent.yaml), and "
        "engine.tls_mode ", config_.tls_mode, " asks for TLS on this link"));
  }
  return ReplicationLink{upstream.tls_port, true};
}

absl::Status RedisEngine::ApplyReplicationSettings(RedisClient& client,
                                                   const ReplicationLogin& login,
                                                   const ReplicationLink& link) const {
  absl::Status st = client.ConfigSet("replica-read-only", "yes");
  if (st.ok()) st = client.ConfigSet("masteruser", login.masteruser);
  if (st.ok()) st = client.ConfigSet("masterauth", login.masterauth);
  if (st.ok()) st = ApplyReplicationTls(client, link.tls);
  return st;
}

absl::Status RedisEngine::ApplyReplicationTls(RedisClient& client, bool tls) const {
  if (!tls) {
    // A server built without TLS has no such parameter: nothing to turn off.
    absl::StatusOr<std::string> on = client.ConfigGet("tls-replication");
    if (absl::IsNotFound(on.status()) || (on.ok() && *on != "yes")) return absl::OkStatus();
    if (!on.ok()) return on.status();
    return client.ConfigSet("tls-replication", "no");
  }
  // One CONFIG SET: Redis loads the files together, and refuses
  // tls-replication without a certificate of the replica's own.
  absl::StatusOr<RedisReply> set = client.Command(
      {"CONFIG", "SET", "tls-ca-cert-file", config_.tls_ca_file, "tls-cert-file",
       config_.tls_cert_file, "tls-key-file", config_.tls_key_file, "tls-replication", "yes"});
  if (set.ok()) return absl::OkStatus();
  if (absl::IsUnavailable(set.status())) return set.status();
  return absl::FailedPreconditionError(absl::StrCat(
      "the redis server did not take the replication TLS settings (engine.tls_ca_file ",
      config_.tls_ca_file, ", tls_cert_file ", config_.tls_cert_file, ", tls_key_file ",
      config_.tls_key_file, "; they must be readable by the server's OS user, and redis-server "
      "built with TLS; see its log): ", set.status().message()));
}

bool RedisEngine::TlsMatches(RedisClient& client, bool tls) const {
  absl::StatusOr<std::string> on = client.ConfigGet("tls-replication");
  if (!on.ok()) return !tls && absl::IsNotFound(on.status());
  if (!tls) return *on != "yes";
  if (*on != "yes") return false;
  for (const auto& [name, want] :
       {std::pair<const char*, const std::string&>{"tls-ca-cert-file", config_.tls_ca_file},
        {"tls-cert-file", config_.tls_cert_file},
        {"tls-key-file", config_.tls_key_file}}) {
    absl::StatusOr<std::string> value = client.ConfigGet(name);
    if (!value.ok() || *value != want) return false;
  }
  return true;
}

absl::Status RedisEngine::ConfigRewrite(RedisClient& client, const std::string& config_file) const {
  absl::StatusOr<RedisReply> reply = client.Command({"CONFIG", "REWRITE"});
  if (!reply.ok()) return WithContext(reply.status(), "while persisting the role (CONFIG REWRITE)");
  struct stat sb;
  if (::stat(config_file.c_str(), &sb) != 0) {
    return absl::InternalError(
        absl::StrCat("after CONFIG REWRITE: stat ", config_file, ": ", std::strerror(errno)));
  }
  if ((sb.st_mode & 0007) != 0 && ::chmod(config_file.c_str(), sb.st_mode & 0770) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "after CONFIG REWRITE, ", config_file,
        " (it holds the replication password) is readable by others and chmod o-rwx failed: ",
        std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status RedisEngine::SaveAside(RedisClient& client) const {
  absl::StatusOr<Info> keyspace = client.Info({"keyspace"});
  if (!keyspace.ok()) return keyspace.status();
  if (KeyCount(*keyspace) == 0) return absl::OkStatus();  // nothing to keep

  const auto deadline = Clock::now() + Timeout();
  Backoff backoff;
  int64_t saves_before = -1;
  for (;;) {
    absl::StatusOr<Info> persistence = client.Info({"persistence"});
    if (!persistence.ok()) return persistence.status();
    saves_before = GetInt(*persistence, "rdb_saves", -1);
    if (saves_before < 0) {
      return absl::InternalError("INFO persistence has no rdb_saves (Redis 7.0 or later needed)");
    }
    absl::StatusOr<RedisReply> reply = client.Raw({"BGSAVE", "SCHEDULE"});
    if (!reply.ok()) return reply.status();
    if (!reply->is_error()) break;
    if (!absl::StrContains(reply->str, "in progress")) {
      return RedisErrorStatus(client.address(), "BGSAVE", reply->str);
    }
    // Another save runs: ours must start after it, to hold the current data.
    if (Clock::now() >= deadline) {
      return absl::UnavailableError("a background save already in progress did not finish");
    }
    backoff.Wait();
  }
  // rdb_saves counts forks: ours has started once it grew, and is done when
  // no save is in progress any more.
  for (Backoff wait;; wait.Wait()) {
    absl::StatusOr<Info> persistence = client.Info({"persistence"});
    if (!persistence.ok()) return persistence.status();
    if (GetInt(*persistence, "rdb_saves", -1) > saves_before &&
        GetInt(*persistence, "rdb_bgsave_in_progress", 1) == 0) {
      if (Get(*persistence, "rdb_last_bgsave_status") == "ok") break;
      return absl::FailedPreconditionError(
          "BGSAVE failed (rdb_last_bgsave_status:err, see the redis log): the current dataset "
          "could not be saved aside, so it is not replaced");
    }
    if (Clock::now() >= deadline) {
      return absl::UnavailableError(
          absl::StrCat("BGSAVE did not finish within ", config_.timeout_seconds, " s"));
    }
  }

  absl::StatusOr<std::string> dbfilename = client.ConfigGet("dbfilename");
  if (!dbfilename.ok()) return dbfilename.status();
  const std::string source = DataPath(*dbfilename);
  const std::string stem = DataPath(absl::StrCat(kRedisOldDataPrefix, UtcStamp()));
  std::string target = stem + ".rdb";
  for (int n = 2; PathExists(target); ++n) target = absl::StrCat(stem, "-", n, ".rdb");
  // Redis replaces its RDB by rename, never in place: a hard link keeps this
  // snapshot whatever the server writes next, and costs no space.
  if (::link(source.c_str(), target.c_str()) != 0) {
    std::error_code ec;
    fs::copy_file(source, target, fs::copy_options::none, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("copying ", source, " to ", target, ": ", ec.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status RedisEngine::WaitForSync(const Peer& upstream, uint32_t port,
                                      const ProgressFn& progress) const {
  const auto deadline = Clock::now() + Timeout();
  const std::string master_port = absl::StrCat(port);
  int64_t last_read = -1;
  int64_t last_total = -1;
  std::string state = "not connected";
  std::unique_ptr<RedisClient> client;
  for (Backoff backoff(kSyncPoll);; backoff.Wait()) {
    if (client == nullptr) {
      absl::StatusOr<std::unique_ptr<RedisClient>> connected = ConnectLocal();
      if (!connected.ok() && !absl::IsUnavailable(connected.status())) return connected.status();
      if (connected.ok()) client = *std::move(connected);
    }
    if (client != nullptr) {
      absl::StatusOr<Info> info = client->Info({"replication"});
      if (!info.ok() && !absl::IsUnavailable(info.status())) return info.status();
      if (!info.ok()) {
        client.reset();
      } else {
        if (Get(*info, "role") != "slave" || Get(*info, "master_host") != upstream.host ||
            Get(*info, "master_port") != master_port) {
          return absl::FailedPreconditionError(
              absl::StrCat("the server stopped replicating from ", upstream.host, ":", port,
                           " while it synchronised (someone changed REPLICAOF)"));
        }
        bool syncing = GetInt(*info, "master_sync_in_progress", 0) != 0;
        std::string link = Get(*info, "master_link_status");
        if (link == "up" && !syncing) break;
        if (syncing) {
          int64_t total = GetInt(*info, "master_sync_total_bytes", -1);
          int64_t read = GetInt(*info, "master_sync_read_bytes", 0);
          if (progress && (read != last_read || total != last_total)) {
            progress(static_cast<uint64_t>(std::max<int64_t>(0, read)),
                     static_cast<uint64_t>(std::max<int64_t>(0, total)));
          }
          last_read = read;
          last_total = total;
          state = absl::StrCat("transfer in progress, ", read, " of ",
                               total < 0 ? std::string("unknown") : absl::StrCat(total), " bytes");
        } else {
          state = absl::StrCat("master_link_status:", link);
        }
      }
    }
    if (Clock::now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("not in sync with upstream ", upstream.id, " (",
                                                 upstream.host, ":", port, ") after ",
                                                 config_.timeout_seconds, " s: ", state));
    }
  }
  if (progress && last_read >= 0) {
    uint64_t done = static_cast<uint64_t>(std::max(last_read, last_total));
    progress(done, done);
  }
  return absl::OkStatus();
}

absl::Status ValidatePeer(const Peer& upstream) {
  if (upstream.host.empty() || upstream.port == 0 || upstream.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("upstream ", upstream.id,
                                                   " has no valid address (host \"", upstream.host,
                                                   "\", port ", upstream.port, ")"));
  }
  if (upstream.tls_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("upstream ", upstream.id,
                                                   " has an invalid tls_port ", upstream.tls_port));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RedisEngine::Bootstrap(const Peer& self, const Peer& upstream,
                                                   const ProgressFn& progress) {
  const std::string context = absl::StrCat("while bootstrapping from ", upstream.id);
  absl::Status valid = ValidatePeer(upstream);
  if (!valid.ok()) return WithContext(valid, context);
  absl::StatusOr<ReplicationLink> link = LinkTo(self, upstream);
  if (!link.ok()) return WithContext(link.status(), context);

  // Before anything changes: the upstream must answer our replication login.
  // Over TLS the agent cannot speak to it: the local server's sync is the
  // only check, and the dataset is kept aside before it starts.
  std::string upstream_run_id;
  absl::StatusOr<ReplicationLogin> login =
      link->tls ? ConfiguredLogin() : ProbeUpstream(upstream, &upstream_run_id);
  if (!login.ok()) return WithContext(login.status(), context);

  absl::StatusOr<Local> local = OpenForRoleChange({"server", "replication"});
  if (!local.ok()) return WithContext(local.status(), context);
  RedisClient& c = *local->client;
  const Info* info = &local->info;
  if (!upstream_run_id.empty() && Get(*info, "run_id") == upstream_run_id) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": ", upstream.host, ":", upstream.port, " is this server"));
  }

  const bool follows_upstream = Get(*info, "role") == "slave" &&
                                Get(*info, "master_host") == upstream.host &&
                                Get(*info, "master_port") == absl::StrCat(link->port);
  const bool streaming = follows_upstream && Get(*info, "master_link_status") == "up" &&
                         GetInt(*info, "master_sync_in_progress", 1) == 0;
  absl::Status st;
  if (follows_upstream && !streaming) {
    // A previous Bootstrap set this up and the sync has not finished:
    // restarting it would only delay it. Refresh the login and wait.
    st = ApplyReplicationSettings(c, *login, *link);
  } else {
    st = SaveAside(c);
    if (!st.ok()) return WithContext(st, context + ": while keeping the current dataset");
    st = ApplyReplicationSettings(c, *login, *link);
    const std::vector<std::string> replicaof = {"REPLICAOF", upstream.host,
                                                absl::StrCat(link->port)};
    if (st.ok() && streaming) {
      // A resync: force a full copy. REPLICAOF NO ONE gives this node a new
      // replication id, unknown to the master, so the next PSYNC cannot
      // continue. The fence keeps it from taking writes in between, also
      // when the agent stops right here.
      st = ApplyFence(c);
      if (st.ok()) st = c.Command({"REPLICAOF", "NO", "ONE"}).status();
      if (st.ok()) st = c.Command(replicaof).status();
    } else if (st.ok()) {
      st = c.Command(replicaof).status();
    }
  }
  // Persist the role now: a restart mid-sync must come back as a replica,
  // not as a writable master holding the old data. Then, a read-only
  // replica, it needs the write pause no more.
  if (st.ok()) st = PersistAndLiftFence(c, Get(*info, "config_file"));
  if (!st.ok()) return WithContext(st, context);

  st = WaitForSync(upstream, link->port, progress);
  if (!st.ok()) return WithContext(st, context);
  return std::string();
}

absl::Status RedisEngine::Follow(const Peer& self, const Peer& upstream) {
  const std::string context = absl::StrCat("while following ", upstream.id);
  absl::Status valid = ValidatePeer(upstream);
  if (!valid.ok()) return WithContext(valid, context);
  absl::StatusOr<ReplicationLink> link = LinkTo(self, upstream);
  if (!link.ok()) return WithContext(link.status(), context);
  absl::StatusOr<std::string> password =
      ReadSecret("engine.replication_password_file", config_.replication_password_file);
  if (!password.ok()) return WithContext(password.status(), context);

  absl::StatusOr<Local> local = OpenForRoleChange({"server", "replication", "keyspace"});
  if (!local.ok()) return WithContext(local.status(), context);
  RedisClient& c = *local->client;
  const Info* info = &local->info;

  const std::string role = Get(*info, "role");
  const bool follows_upstream = role == "slave" && Get(*info, "master_host") == upstream.host &&
                                Get(*info, "master_port") == absl::StrCat(link->port);
  absl::StatusOr<std::string> read_only = c.ConfigGet("replica-read-only");
  if (!read_only.ok()) return WithContext(read_only.status(), context);
  const bool configured = follows_upstream && *read_only == "yes" &&
                          LoginMatches(c, *password) && TlsMatches(c, link->tls);

  absl::Status st;
  if (!configured) {
    std::string upstream_run_id;
    absl::StatusOr<ReplicationLogin> login =
        link->tls ? ConfiguredLogin() : ProbeUpstream(upstream, &upstream_run_id);
    if (!login.ok()) return WithContext(login.status(), context);
    if (!upstream_run_id.empty() && Get(*info, "run_id") == upstream_run_id) {
      return absl::InvalidArgumentError(
          absl::StrCat(context, ": ", upstream.host, ":", upstream.port, " is this server"));
    }
    if (role == "master") {
      // Leaving the master role: a full resync would replace this data.
      st = SaveAside(c);
      if (!st.ok()) return WithContext(st, context + ": while keeping the current dataset");
    }
    st = ApplyReplicationSettings(c, *login, *link);
    if (st.ok() && !follows_upstream) {
      st = c.Command({"REPLICAOF", upstream.host, absl::StrCat(link->port)}).status();
    }
  }
  // Always rewritten: a crash between REPLICAOF and CONFIG REWRITE must not
  // leave a config that restarts the node as a master.
  if (st.ok()) st = PersistAndLiftFence(c, Get(*info, "config_file"), Fenced() || !configured);
  return WithContext(st, context);
}

// Whether a replica whose replication state is `local` (INFO replication)
// can continue from `upstream`'s (INFO replication) with a partial resync,
// as Redis decides it (masterTryPartialResynchronization): the same
// replication history (the upstream's current id, or its previous one up to
// the offset where it was promoted) and the missing part still in its
// backlog. Either way the local data is then a prefix of the upstream's: it
// holds no write the upstream lacks. FailedPrecondition says why not.
absl::Status CanContinue(const Info& local, const Info& upstream, const std::string& who) {
  const std::string replid = Get(local, "master_replid");
  const int64_t offset = GetInt(local, "master_repl_offset", -1);
  if (replid.empty() || offset < 0) {
    return absl::FailedPreconditionError("INFO replication shows no replication id and offset");
  }
  const int64_t next = offset + 1;  // what PSYNC asks for
  if (replid == Get(upstream, "master_replid")) {
    const int64_t end = GetInt(upstream, "master_repl_offset", -1);
    if (offset > end) {
      return absl::FailedPreconditionError(absl::StrCat(
          "its offset ", offset, " is ahead of ", who, "'s ", end, " in the same history"));
    }
  } else if (replid == Get(upstream, "master_replid2")) {
    const int64_t limit = GetInt(upstream, "second_repl_offset", -1);
    if (next > limit) {
      return absl::FailedPreconditionError(absl::StrCat(
          "it holds writes ", who, " never received (offset ", offset, ", ", who,
          " was promoted at ", limit - 1, ")"));
    }
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "its replication history (id ", replid, ") is not ", who, "'s"));
  }
  const int64_t first = GetInt(upstream, "repl_backlog_first_byte_offset", -1);
  const int64_t length = GetInt(upstream, "repl_backlog_histlen", -1);
  if (GetInt(upstream, "repl_backlog_active", 0) != 1 || next < first || next > first + length) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, "'s replication backlog no longer holds offset ", next));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RedisEngine::Rejoin(const Peer& self, const Peer& upstream) {
  const std::string context = absl::StrCat("while rejoining ", upstream.id);
  absl::Status valid = ValidatePeer(upstream);
  if (!valid.ok()) return WithContext(valid, context);
  absl::StatusOr<ReplicationLink> link = LinkTo(self, upstream);
  if (!link.ok()) return WithContext(link.status(), context);
  std::string upstream_run_id;
  Info upstream_info;
  absl::StatusOr<ReplicationLogin> login;
  if (link->tls) {
    login = ConfiguredLogin();
  } else {
    // The followers of a switchover get here at the same time as the
    // promoted node is told to take over: wait (bounded) until it is a
    // master, rather than fail and have the caller make a full copy.
    const auto deadline = Clock::now() + Timeout();
    for (Backoff backoff(std::chrono::milliseconds(200));; backoff.Wait()) {
      upstream_info.clear();
      bool not_master = false;
      login = ProbeUpstream(upstream, &upstream_run_id, &upstream_info, &not_master);
      if (login.ok() || !not_master || Clock::now() >= deadline) break;
    }
  }
  if (!login.ok()) return WithContext(login.status(), context);

  absl::StatusOr<Local> local = OpenForRoleChange({"server", "replication"});
  if (!local.ok()) return WithContext(local.status(), context);
  RedisClient& c = *local->client;
  const Info* info = &local->info;
  if (!upstream_run_id.empty() && Get(*info, "run_id") == upstream_run_id) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": ", upstream.host, ":", upstream.port, " is this server"));
  }
  const std::string role = Get(*info, "role");
  absl::StatusOr<std::string> read_only = c.ConfigGet("replica-read-only");
  if (!read_only.ok()) return WithContext(read_only.status(), context);
  const bool writable =
      role == "master" ? !Fenced() : absl::AsciiStrToLower(*read_only) == "no";
  if (writable) {
    return absl::FailedPreconditionError(
        absl::StrCat(context, ": the server accepts writes (a ",
                     role == "master" ? "master" : "writable replica",
                     " that is not fenced); it must be fenced first"));
  }
  const bool follows_upstream = role == "slave" && Get(*info, "master_host") == upstream.host &&
                                Get(*info, "master_port") == absl::StrCat(link->port);
  const bool streaming = follows_upstream && Get(*info, "master_link_status") == "up" &&
                         GetInt(*info, "master_sync_in_progress", 1) == 0;
  if (!streaming && link->tls) {
    return absl::UnimplementedError(absl::StrCat(
        context, ": over TLS the agent cannot read the upstream's replication state; a full "
        "copy is made"));
  }
  if (!streaming) {
    // Only where Redis will continue from this data: a full resync would
    // replace it in place, without keeping it aside as Bootstrap does.
    if (upstream_info.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          context, ": cannot tell whether its data can continue from ", upstream.id,
          " (the replication login may not run INFO there)"));
    }
    absl::Status can = CanContinue(*info, upstream_info, upstream.id);
    if (!can.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(context, ": it cannot continue from ",
                                                        upstream.id, "'s stream: ", can.message()));
    }
  }
  // Still fenced while it turns into a replica: the writes the pause holds
  // back then fail with READONLY instead of landing on data that is about
  // to follow another master.
  absl::Status st = ApplyReplicationSettings(c, *login, *link);
  if (st.ok() && !follows_upstream) {
    st = c.Command({"REPLICAOF", upstream.host, absl::StrCat(link->port)}).status();
  }
  if (st.ok()) st = PersistAndLiftFence(c, Get(*info, "config_file"));
  if (st.ok()) st = WaitForSync(upstream, link->port, ProgressFn());
  if (!st.ok()) return WithContext(st, context);
  return std::string();
}

absl::StatusOr<RedisEngine::Local> RedisEngine::OpenForRoleChange(
    const std::vector<std::string>& sections) {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectOrStart();
  if (!client.ok()) return client.status();
  absl::StatusOr<Info> info = (*client)->Info(sections);
  if (!info.ok()) return info.status();
  if (absl::Status st = RequireConfigFile(*info); !st.ok()) return st;
  return Local{*std::move(client), *std::move(info)};
}

absl::Status RedisEngine::MakeWritable() {
  const std::string context = "while making redis writable";
  absl::StatusOr<Local> local = OpenForRoleChange({"server", "replication"});
  if (!local.ok()) return WithContext(local.status(), context);
  RedisClient& c = *local->client;
  const Info* info = &local->info;
  absl::Status st;
  if (Get(*info, "role") == "slave") st = c.Command({"REPLICAOF", "NO", "ONE"}).status();
  // Always rewritten, so that a crash before it cannot leave a replicaof
  // line that would turn the node back into a slave at its next restart.
  if (st.ok()) st = PersistAndLiftFence(c, Get(*info, "config_file"));
  return WithContext(st, context);
}

// --- configuration -------------------------------------------------------

absl::Status ValidateConfig(const EngineConfig& config) {
  auto invalid = [](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("engine.", field, ": ", why));
  };
  if (config.type != EngineType::kRedis) {
    return invalid("type", absl::StrCat("must be redis for the Redis engine (got \"",
                                        std::string(EngineName(config.type)), "\")"));
  }
  TANDEM_RETURN_IF_ERROR(ValidateServerControl(config));
  if (config.port == 0 || config.port > 65535) {
    return invalid("port", absl::StrCat("must be 1..65535 (got ", config.port, ")"));
  }
  if (config.data_dir.empty()) return invalid("data_dir", "must be set (the server's dir)");
  if (config.data_dir.front() != '/') {
    return invalid("data_dir",
                   absl::StrCat("must be an absolute path (got ", config.data_dir, ")"));
  }
  if (!config.log_file.empty() && config.log_file.front() != '/') {
    return invalid("log_file",
                   absl::StrCat("must be an absolute path (got ", config.log_file, ")"));
  }
  if (config.timeout_seconds <= 0) {
    return invalid("timeout_seconds", absl::StrCat("must be a positive number of seconds (got ",
                                                   config.timeout_seconds, ")"));
  }
  // The common checks (mode known, CA set unless off, files absolute and
  // readable, the key private), on a copy: they normalise "" to off.
  EngineConfig tls = config;
  absl::Status tls_valid = ValidateReplicationTls(&tls);
  if (!tls_valid.ok()) return tls_valid;
  if (tls.tls_mode != "off") {
    for (const auto& [field, path] :
         {std::pair<std::string, std::string>{"tls_cert_file", tls.tls_cert_file},
          {"tls_key_file", tls.tls_key_file}}) {
      if (path.empty()) {
        return invalid(field, absl::StrCat("required for redis with tls_mode ", tls.tls_mode,
                                           ": Redis makes a TLS replication connection only with "
                                           "a certificate of its own (tls-cert-file, "
                                           "tls-key-file)"));
      }
    }
  }
  if (config.tls_port > 65535) {
    return invalid("tls_port", absl::StrCat("must be 0 (none) or 1..65535 (got ",
                                            config.tls_port, ")"));
  }
  if (config.tls_port != 0 && config.tls_port == config.port) {
    return invalid("tls_port", absl::StrCat("must differ from engine.port (both ",
                                            config.port, ")"));
  }
  if (!config.user.empty() && config.user != "default" && config.password_file.empty()) {
    return invalid("password_file", absl::StrCat("must be set when engine.user names an ACL user (",
                                                 config.user, ")"));
  }
  const std::string& repl_user = config.replication_user;
  if (!repl_user.empty() && repl_user != "default" && repl_user != kDefaultReplicationUser &&
      config.replication_password_file.empty()) {
    return invalid("replication_password_file",
                   absl::StrCat("must be set when engine.replication_user names an ACL user (",
                                repl_user, ")"));
  }
  for (const auto& [field, path] :
       {std::pair<std::string, std::string>{"password_file", config.password_file},
        {"replication_password_file", config.replication_password_file}}) {
    if (path.empty()) continue;
    absl::StatusOr<std::string> secret = ReadSecretFile(path);
    if (!secret.ok()) return invalid(field, std::string(secret.status().message()));
  }
  if (!config.os_user.empty()) {
    absl::StatusOr<UserIds> ids = LookupUser(config.os_user);
    if (!ids.ok()) return invalid("os_user", absl::StrCat("no such user ", config.os_user));
  }
  if (!CustomServerControl(config, ServerAction::kStart)) {
    if (!config.bin_dir.empty() &&
        ::access((config.bin_dir + "/redis-server").c_str(), X_OK) != 0) {
      return invalid("bin_dir", absl::StrCat("no executable redis-server in ", config.bin_dir));
    }
    for (const std::string& arg : config.server_args) {
      absl::string_view name = arg;
      if (!absl::ConsumePrefix(&name, "--")) continue;
      name = name.substr(0, name.find_first_of(" ="));
      for (const char* reserved : kReservedServerArgs) {
        if (absl::EqualsIgnoreCase(name, reserved)) {
          return invalid("server_args",
                         absl::StrCat("--", reserved,
                                      " is set by the engine (from engine.port, "
                                      "engine.data_dir and engine.log_file); remove it"));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> MakeRedisEngine(const EngineConfig& config_in) {
  absl::Status valid = ValidateConfig(config_in);
  if (!valid.ok()) return valid;
  EngineConfig config = config_in;
  // The local server: a stock redis-server listens on 127.0.0.1.
  if (config.host.empty()) config.host = "127.0.0.1";
  return std::unique_ptr<Engine>(new RedisEngine(config));
}

}  // namespace tandem
