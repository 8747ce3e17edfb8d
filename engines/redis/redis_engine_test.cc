// Tests of the Redis engine: config validation and helpers without a server,
// then the Engine contract against real redis-server processes started on
// free loopback ports in temp dirs (tests/harness/redis_server.h).
#include "engines/redis/redis_engine.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "engines/redis/redis_client.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_server.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using testing::FreePort;
using testing::PollUntil;
using testing::RedisServer;
using testing::RedisServerOptions;
using testing::TempDir;

constexpr char kPassword[] = "Tandem-S3cret-pw";
constexpr std::chrono::seconds kPoll(30);

#define ASSERT_OK(expr)                            \
  do {                                             \
    const absl::Status _st = (expr);               \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st; \
  } while (0)

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// No error message ever carries the password.
template <typename T>
void ExpectNoSecret(const T& result) {
  EXPECT_FALSE(absl::StrContains(StatusOf(result).ToString(), kPassword)) << StatusOf(result);
}

RedisServerOptions Options(std::string name, bool persistence = false,
                           std::string password = kPassword, bool start = true) {
  RedisServerOptions options;
  options.name = std::move(name);
  options.persistence = persistence;
  options.password = std::move(password);
  options.start = start;
  return options;
}

std::unique_ptr<RedisServer> MustCreate(RedisServerOptions options) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Create(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

EngineConfig ConfigFor(const RedisServer& server) {
  EngineConfig config;
  config.type = EngineType::kRedis;
  config.host = "127.0.0.1";
  config.port = server.port();
  config.data_dir = server.data_dir();
  config.password_file = server.password_file();
  config.replication_password_file = server.password_file();
  config.server_args = server.server_args();
  config.log_file = server.log_file();
  config.timeout_seconds = 30;
  return config;
}

std::unique_ptr<Engine> MustEngine(const EngineConfig& config) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeRedisEngine(config);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

Peer PeerOf(const std::string& id, const RedisServer& server) {
  return Peer{id, "main", "127.0.0.1", server.port()};
}

std::string Addr(const RedisServer& server) { return absl::StrCat("127.0.0.1:", server.port()); }

std::vector<std::string> OldDataFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, kRedisOldDataPrefix) && absl::EndsWith(name, ".rdb")) {
      out.push_back(entry.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string GetKey(const RedisServer& server, const std::string& key) {
  absl::StatusOr<RedisReply> reply = server.Command({"GET", key});
  if (!reply.ok()) return "<error: " + std::string(reply.status().message()) + ">";
  if (reply->type == RedisReply::Type::kNil) return "<nil>";
  return reply->str;
}

int64_t InfoInt(const RedisServer& server, const std::string& section, const std::string& key) {
  absl::StatusOr<std::map<std::string, std::string>> info = server.Info(section);
  if (!info.ok() || info->count(key) == 0) return -1;
  return std::stoll(info->at(key));
}

absl::StatusOr<std::string> GetConfig(const RedisServer& server, const std::string& name) {
  absl::StatusOr<RedisReply> reply = server.Command({"CONFIG", "GET", name});
  if (!reply.ok()) return reply.status();
  if (reply->elements.size() != 2) return absl::NotFoundError(name);
  return reply->elements[1].str;
}

// Writes on the master and waits until `replicas` replicas acknowledged it.
void WaitReplicated(const RedisServer& master, int replicas) {
  ASSERT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<RedisReply> r = master.Command({"WAIT", absl::StrCat(replicas), "1000"});
        return r.ok() && r->integer >= replicas;
      },
      kPoll));
}

// ---------------------------------------------------------------------------
// Without a server.

struct ConfigCase {
  std::string name;
  std::function<void(EngineConfig&, const TempDir&)> change;
  std::string message;  // expected substring; "" = valid
};

TEST(RedisConfigTest, ValidationNamesTheField) {
  TempDir dir("trc");
  ASSERT_OK(WriteFileAtomic(dir.Sub("pw"), "x\n", 0600));
  ASSERT_OK(WriteFileAtomic(dir.Sub("open-pw"), "x\n", 0644));
  // The TLS files are only checked for presence and mode here.
  ASSERT_OK(WriteFileAtomic(dir.Sub("ca.pem"), "ca\n", 0644));
  ASSERT_OK(WriteFileAtomic(dir.Sub("cert.pem"), "cert\n", 0644));
  ASSERT_OK(WriteFileAtomic(dir.Sub("key.pem"), "key\n", 0600));
  auto tls = [](EngineConfig& c, const TempDir& d) {
    c.tls_mode = "between-stacks";
    c.tls_ca_file = d.Sub("ca.pem");
    c.tls_cert_file = d.Sub("cert.pem");
    c.tls_key_file = d.Sub("key.pem");
  };
  const std::vector<ConfigCase> cases = {
      {"valid", [](EngineConfig&, const TempDir&) {}, ""},
      {"type", [](EngineConfig& c, const TempDir&) { c.type = EngineType::kPostgresql; },
       "engine.type: must be redis"},
      {"port0", [](EngineConfig& c, const TempDir&) { c.port = 0; },
       "engine.port: must be 1..65535 (got 0)"},
      {"port_big", [](EngineConfig& c, const TempDir&) { c.port = 70000; },
       "engine.port: must be 1..65535 (got 70000)"},
      {"host", [](EngineConfig& c, const TempDir&) { c.host = ""; }, ""},  // 127.0.0.1
      {"unit_and_command",
       [](EngineConfig& c, const TempDir&) {
         c.systemd_unit = "redis-server@db1";
         c.stop_command = "true";
       },
       "engine.stop_command: not used with engine.systemd_unit"},
      {"unit_bin_dir",
       [](EngineConfig& c, const TempDir& d) {
         c.bin_dir = d.path();  // the unit runs its own redis-server
         c.systemd_unit = "redis-server@db1";
       },
       ""},
      {"data_dir", [](EngineConfig& c, const TempDir&) { c.data_dir = ""; },
       "engine.data_dir: must be set"},
      {"data_dir_rel", [](EngineConfig& c, const TempDir&) { c.data_dir = "var/redis"; },
       "engine.data_dir: must be an absolute path"},
      {"log_rel", [](EngineConfig& c, const TempDir&) { c.log_file = "redis.log"; },
       "engine.log_file: must be an absolute path"},
      {"timeout", [](EngineConfig& c, const TempDir&) { c.timeout_seconds = 0; },
       "engine.timeout_seconds: must be a positive number"},
      {"acl_user", [](EngineConfig& c, const TempDir&) { c.user = "agent"; },
       "engine.password_file: must be set when engine.user names an ACL user (agent)"},
      {"default_user", [](EngineConfig& c, const TempDir&) { c.user = "default"; }, ""},
      {"repl_user", [](EngineConfig& c, const TempDir&) { c.replication_user = "repl"; },
       "engine.replication_password_file: must be set when engine.replication_user"},
      {"missing_pw", [](EngineConfig& c, const TempDir& d) { c.password_file = d.Sub("none"); },
       "engine.password_file:"},
      {"open_pw", [](EngineConfig& c, const TempDir& d) { c.password_file = d.Sub("open-pw"); },
       "engine.password_file: secret file"},
      {"good_pw", [](EngineConfig& c, const TempDir& d) { c.password_file = d.Sub("pw"); }, ""},
      {"open_repl_pw",
       [](EngineConfig& c, const TempDir& d) { c.replication_password_file = d.Sub("open-pw"); },
       "engine.replication_password_file: secret file"},
      {"os_user", [](EngineConfig& c, const TempDir&) { c.os_user = "no-such-user-tdm"; },
       "engine.os_user: no such user no-such-user-tdm"},
      {"bin_dir", [](EngineConfig& c, const TempDir& d) { c.bin_dir = d.path(); },
       "engine.bin_dir: no executable redis-server in"},
      {"bin_dir_custom_start",
       [](EngineConfig& c, const TempDir& d) {
         c.bin_dir = d.path();
         c.start_command = "true";
       },
       ""},
      {"server_args_port",
       [](EngineConfig& c, const TempDir&) {
         c.server_args = {"--port", "1"};
       },
       "engine.server_args: --port is set by the engine"},
      {"tls_off", [](EngineConfig& c, const TempDir&) { c.tls_mode = "off"; }, ""},
      {"tls_empty", [](EngineConfig& c, const TempDir&) { c.tls_mode = ""; }, ""},
      {"tls_unknown", [](EngineConfig& c, const TempDir&) { c.tls_mode = "sometimes"; },
       "engine.tls_mode: unknown mode \"sometimes\""},
      {"tls_no_ca", [](EngineConfig& c, const TempDir&) { c.tls_mode = "always"; },
       "engine.tls_ca_file: required with tls_mode always"},
      {"tls", tls, ""},
      {"tls_always",
       [&](EngineConfig& c, const TempDir& d) {
         tls(c, d);
         c.tls_mode = "always";
       },
       ""},
      {"tls_without_cert_and_key",
       [&](EngineConfig& c, const TempDir& d) {
         tls(c, d);
         c.tls_cert_file.clear();
         c.tls_key_file.clear();
       },
       "engine.tls_cert_file: required for redis with tls_mode between-stacks"},
      {"tls_key_without_cert",
       [&](EngineConfig& c, const TempDir& d) {
         tls(c, d);
         c.tls_cert_file.clear();
       },
       "engine.tls_cert_file: tls_cert_file and tls_key_file go together"},
      {"tls_open_key",
       [&](EngineConfig& c, const TempDir& d) {
         tls(c, d);
         c.tls_key_file = d.Sub("open-pw");
       },
       "engine.tls_key_file: secret file"},
      {"tls_missing_ca",
       [&](EngineConfig& c, const TempDir& d) {
         tls(c, d);
         c.tls_ca_file = d.Sub("none.pem");
       },
       "engine.tls_ca_file:"},
      {"tls_files_unused_when_off",
       [&](EngineConfig& c, const TempDir& d) {
         tls(c, d);
         c.tls_mode = "off";
         c.tls_cert_file.clear();
         c.tls_key_file.clear();
       },
       ""},
      {"tls_port", [](EngineConfig& c, const TempDir&) { c.tls_port = 6380; }, ""},
      {"tls_port_big", [](EngineConfig& c, const TempDir&) { c.tls_port = 70000; },
       "engine.tls_port: must be 0 (none) or 1..65535 (got 70000)"},
      {"tls_port_is_port", [](EngineConfig& c, const TempDir&) { c.tls_port = 6379; },
       "engine.tls_port: must differ from engine.port"},
      {"server_args_daemonize",
       [](EngineConfig& c, const TempDir&) {
         c.server_args = {"--daemonize", "no"};
       },
       "engine.server_args: --daemonize is set by the engine"},
  };
  for (const ConfigCase& tc : cases) {
    SCOPED_TRACE(tc.name);
    EngineConfig config;
    config.type = EngineType::kRedis;
    config.port = 6379;
    config.data_dir = "/var/lib/redis";
    tc.change(config, dir);
    absl::StatusOr<std::unique_ptr<Engine>> engine = MakeRedisEngine(config);
    if (tc.message.empty()) {
      ASSERT_TRUE(engine.ok()) << engine.status();
      EXPECT_EQ((*engine)->type(), EngineType::kRedis);
      EXPECT_EQ((*engine)->DataParentDir(), "/var/lib/redis");
    } else {
      ASSERT_FALSE(engine.ok());
      EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument) << engine.status();
      EXPECT_TRUE(absl::StrContains(engine.status().message(), tc.message))
          << engine.status() << " does not contain " << tc.message;
    }
  }
}

TEST(RedisClientTest, DescribeCommandNeverShowsValues) {
  struct Case {
    std::vector<std::string> args;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"AUTH", "user", kPassword}, "AUTH"},
      {{"config", "set", "masterauth", kPassword}, "CONFIG SET masterauth"},
      {{"CONFIG", "GET", "dir"}, "CONFIG GET dir"},
      {{"CLIENT", "PAUSE", "100", "WRITE"}, "CLIENT PAUSE"},
      {{"SET", "k", kPassword}, "SET"},
      {{"REPLICAOF", "NO", "ONE"}, "REPLICAOF"},
  };
  for (const Case& tc : cases) EXPECT_EQ(DescribeCommand(tc.args), tc.want);
}

TEST(RedisClientTest, ParseInfoAndErrorCodes) {
  auto info = ParseInfo(
      "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\n\r\nbad line\r\n"
      "db0:keys=3,expires=0\r\n");
  EXPECT_EQ(info["role"], "slave");
  EXPECT_EQ(info["master_host"], "10.0.0.1");
  EXPECT_EQ(info["db0"], "keys=3,expires=0");
  EXPECT_EQ(info.count("bad line"), 0u);

  struct Case {
    std::string message;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"LOADING Redis is loading the dataset in memory", absl::StatusCode::kUnavailable},
      {"BUSY Redis is busy running a script", absl::StatusCode::kUnavailable},
      {"MASTERDOWN Link with MASTER is down", absl::StatusCode::kUnavailable},
      {"WRONGPASS invalid username-password pair or user is disabled.",
       absl::StatusCode::kFailedPrecondition},
      {"NOAUTH Authentication required.", absl::StatusCode::kFailedPrecondition},
      {"ERR AUTH <password> called without any password configured for the default user.",
       absl::StatusCode::kFailedPrecondition},
      {"NOPERM this user has no permissions to run the 'info' command",
       absl::StatusCode::kFailedPrecondition},
      {"READONLY You can't write against a read only replica.", absl::StatusCode::kInternal},
  };
  for (const Case& tc : cases) {
    absl::Status st = RedisErrorStatus("h:1", "SET", tc.message);
    EXPECT_EQ(st.code(), tc.code) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "redis at h:1 answered SET with: ")) << st;
  }
}

TEST(RedisClientTest, UnreachableServerIsUnavailable) {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Connect(
      "127.0.0.1", FreePort(), RedisLogin{"", kPassword}, std::chrono::milliseconds(2000));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  ExpectNoSecret(client);
}

// ---------------------------------------------------------------------------
// Against real servers.

TEST(RedisEngineTest, ObserveStandalone) {
  auto server = MustCreate(Options("a"));
  ASSERT_NE(server, nullptr);
  auto engine = MustEngine(ConfigFor(*server));
  ASSERT_NE(engine, nullptr);

  absl::StatusOr<EngineFacts> empty = engine->Observe();
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->running);
  // No keys, yet a size: 0 would read as "not reported yet" to the agent.
  EXPECT_GT(empty->data_bytes, 0u);

  ASSERT_TRUE(server->Command({"SET", "k", "v"}).ok());
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->running);
  EXPECT_TRUE(facts->has_data);
  EXPECT_FALSE(facts->is_slave);
  EXPECT_TRUE(facts->writable);
  EXPECT_FALSE(facts->streaming);
  EXPECT_EQ(facts->upstream, "");
  EXPECT_EQ(facts->data_id, "");
  EXPECT_GT(facts->data_bytes, 0u);
  EXPECT_EQ(facts->position, "0");  // no replication yet
  EXPECT_TRUE(facts->served_slaves.empty());
}

TEST(RedisEngineTest, ObserveReplicaThenStopped) {
  auto master = MustCreate(Options("m", true));
  auto replica = MustCreate(Options("r"));
  ASSERT_NE(master, nullptr);
  ASSERT_NE(replica, nullptr);
  auto engine = MustEngine(ConfigFor(*replica));
  ASSERT_NE(engine, nullptr);
  ASSERT_OK(engine->Follow(PeerOf("r", *replica), PeerOf("m", *master)));
  ASSERT_TRUE(master->Command({"SET", "k", "v"}).ok());
  WaitReplicated(*master, 1);

  EngineFacts facts;
  ASSERT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<EngineFacts> f = engine->Observe();
        if (f.ok()) facts = *f;
        // The offset can trail the link coming up by a moment.
        return f.ok() && f->streaming && f->position != "0";
      },
      kPoll));
  EXPECT_TRUE(facts.running);
  EXPECT_TRUE(facts.is_slave);
  EXPECT_FALSE(facts.writable);
  EXPECT_EQ(facts.upstream, Addr(*master));
  EXPECT_EQ(facts.lag_bytes, 0);
  EXPECT_GE(facts.lag_seconds, 0);
  EXPECT_NE(facts.position, "0");
  EXPECT_GT(facts.data_bytes, 0u);

  // The replica reaches the master's offset (what a promotion waits for).
  absl::StatusOr<std::map<std::string, std::string>> master_info = master->Info("replication");
  ASSERT_TRUE(master_info.ok()) << master_info.status();
  const std::string master_offset = master_info->at("master_repl_offset");
  EXPECT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<bool> replayed = engine->HasReplayed(master_offset);
        return replayed.ok() && *replayed;
      },
      kPoll));
  absl::StatusOr<bool> ahead = engine->HasReplayed(absl::StrCat(std::stoll(master_offset) + 1000000));
  ASSERT_TRUE(ahead.ok()) << ahead.status();
  EXPECT_FALSE(*ahead);
  EXPECT_EQ(engine->HasReplayed("0/3000").status().code(), absl::StatusCode::kInvalidArgument);

  // Stopped: the role and the data are read from the files.
  ASSERT_TRUE(replica->Command({"SAVE"}).ok());
  ASSERT_OK(replica->Stop());
  absl::StatusOr<EngineFacts> stopped = engine->Observe();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_FALSE(stopped->running);
  EXPECT_TRUE(stopped->has_data);
  EXPECT_TRUE(stopped->is_slave);
  EXPECT_FALSE(stopped->writable);
  EXPECT_EQ(stopped->upstream, Addr(*master));
  EXPECT_GT(stopped->data_bytes, 0u);
}

TEST(RedisEngineTest, ObserveStoppedWithoutDataAndDirMismatch) {
  auto server = MustCreate(Options("a", false, "", false));
  ASSERT_NE(server, nullptr);
  EngineConfig config = ConfigFor(*server);
  config.port = FreePort();
  auto engine = MustEngine(config);
  ASSERT_NE(engine, nullptr);
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(*facts, EngineFacts{});  // not running, no data, no role

  // An engine pointed at a running server with another dir refuses it.
  ASSERT_OK(server->Start());
  TempDir other("trx");
  EngineConfig wrong = ConfigFor(*server);
  wrong.data_dir = other.path();
  auto wrong_engine = MustEngine(wrong);
  ASSERT_NE(wrong_engine, nullptr);
  absl::StatusOr<EngineFacts> mismatch = wrong_engine->Observe();
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(mismatch.status().message(), other.path())) << mismatch.status();
  EXPECT_TRUE(absl::StrContains(mismatch.status().message(), server->data_dir()))
      << mismatch.status();
}

TEST(RedisEngineTest, AuthFromPasswordFileAndNoSecretInErrors) {
  auto server = MustCreate(Options("a"));
  ASSERT_NE(server, nullptr);
  auto good = MustEngine(ConfigFor(*server));
  ASSERT_NE(good, nullptr);
  absl::StatusOr<EngineFacts> ok = good->Observe();
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->running);

  TempDir dir("tra");
  ASSERT_OK(WriteFileAtomic(dir.Sub("wrong"), "not-the-password\n", 0600));
  EngineConfig wrong_config = ConfigFor(*server);
  wrong_config.password_file = dir.Sub("wrong");
  auto wrong = MustEngine(wrong_config);
  ASSERT_NE(wrong, nullptr);
  absl::StatusOr<EngineFacts> refused = wrong->Observe();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "WRONGPASS")) << refused.status();
  EXPECT_FALSE(absl::StrContains(refused.status().ToString(), "not-the-password"));
  ExpectNoSecret(refused);
  absl::Status start = wrong->Start();
  EXPECT_EQ(start.code(), absl::StatusCode::kFailedPrecondition) << start;

  EngineConfig none_config = ConfigFor(*server);
  none_config.password_file = "";
  auto none = MustEngine(none_config);
  ASSERT_NE(none, nullptr);
  absl::StatusOr<EngineFacts> noauth = none->Observe();
  ASSERT_FALSE(noauth.ok());
  EXPECT_EQ(noauth.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(noauth.status().message(), "NOAUTH")) << noauth.status();

  // A wrong replication password: the upstream refuses, nothing changes.
  auto slave = MustCreate(Options("s"));
  ASSERT_NE(slave, nullptr);
  EngineConfig slave_config = ConfigFor(*slave);
  slave_config.replication_password_file = dir.Sub("wrong");
  auto slave_engine = MustEngine(slave_config);
  ASSERT_NE(slave_engine, nullptr);
  absl::StatusOr<std::string> boot =
      slave_engine->Bootstrap(PeerOf("s", *slave), PeerOf("a", *server), nullptr);
  ASSERT_FALSE(boot.ok());
  EXPECT_EQ(boot.status().code(), absl::StatusCode::kFailedPrecondition) << boot.status();
  EXPECT_FALSE(absl::StrContains(boot.status().ToString(), "not-the-password"));
  ExpectNoSecret(boot);
  EXPECT_EQ(InfoInt(*slave, "replication", "connected_slaves"), 0);
  absl::StatusOr<std::map<std::string, std::string>> info = slave->Info("replication");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->at("role"), "master");
}

TEST(RedisEngineTest, ServeSlavesRefusesWithoutPersistenceAndRecordSurvives) {
  auto server = MustCreate(Options("m"));
  ASSERT_NE(server, nullptr);
  auto engine = MustEngine(ConfigFor(*server));
  ASSERT_NE(engine, nullptr);
  const std::vector<Peer> slaves = {{"db3", "eu", "10.0.0.3", 6379},
                                    {"db2", "eu", "10.0.0.2", 6379}};

  absl::Status refused = engine->ServeSlaves(slaves);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_EQ(refused.message(),
            "master has persistence disabled (save \"\" and appendonly no): a restart would "
            "replicate an empty dataset to every slave; enable RDB or AOF persistence");
  EXPECT_FALSE(PathExists(server->data_dir() + "/" + kRedisServedSlavesFile));

  ASSERT_TRUE(server->Command({"CONFIG", "SET", "appendonly", "yes"}).ok());
  ASSERT_OK(engine->ServeSlaves(slaves));
  ASSERT_OK(engine->ServeSlaves(slaves));  // idempotent
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->served_slaves, (std::vector<std::string>{"db2", "db3"}));

  // The record survives a restart of the server and a new engine object.
  ASSERT_OK(server->Stop());
  ASSERT_OK(server->Start());
  auto again = MustEngine(ConfigFor(*server));
  ASSERT_NE(again, nullptr);
  facts = again->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->served_slaves, (std::vector<std::string>{"db2", "db3"}));

  // An empty list clears it, and needs no server.
  ASSERT_OK(server->Stop());
  ASSERT_OK(again->ServeSlaves({}));
  facts = again->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->running);
  EXPECT_TRUE(facts->served_slaves.empty());
}

TEST(RedisEngineTest, BootstrapKeepsOldDataReplicatesAndSurvivesRestart) {
  auto master = MustCreate(Options("m", true));
  auto slave = MustCreate(Options("s"));
  ASSERT_NE(master, nullptr);
  ASSERT_NE(slave, nullptr);
  ASSERT_TRUE(master->Command({"SET", "from_master", "m1"}).ok());
  ASSERT_TRUE(slave->Command({"SET", "old_key", "old_value"}).ok());
  auto engine = MustEngine(ConfigFor(*slave));
  ASSERT_NE(engine, nullptr);

  std::vector<std::pair<uint64_t, uint64_t>> progress;
  absl::StatusOr<std::string> id =
      engine->Bootstrap(PeerOf("s", *slave), PeerOf("m", *master),
                        [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "");
  for (const auto& [done, total] : progress) {
    if (total > 0) {
      EXPECT_LE(done, total);
    }
  }

  // The rewritten config holds masterauth: others may not read it.
  struct stat conf_stat;
  ASSERT_EQ(::stat((slave->data_dir() + "/redis.conf").c_str(), &conf_stat), 0);
  EXPECT_EQ(conf_stat.st_mode & 0007, 0u);
  absl::StatusOr<std::string> conf = ReadFile(slave->data_dir() + "/redis.conf");
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(absl::StrContains(*conf, absl::StrCat("replicaof 127.0.0.1 ", master->port())));

  // The master has no ACL user tandem_repl: the default user (requirepass).
  absl::StatusOr<std::string> masteruser = GetConfig(*slave, "masteruser");
  ASSERT_TRUE(masteruser.ok()) << masteruser.status();
  EXPECT_EQ(*masteruser, "");

  // The old dataset was kept aside, as an RDB holding the old key.
  std::vector<std::string> old = OldDataFiles(slave->data_dir());
  ASSERT_EQ(old.size(), 1u);
  absl::StatusOr<std::string> rdb = ReadFile(old[0]);
  ASSERT_TRUE(rdb.ok()) << rdb.status();
  EXPECT_TRUE(absl::StartsWith(*rdb, "REDIS"));
  {
    auto loader = MustCreate(Options("l", false, "", false));
    ASSERT_NE(loader, nullptr);
    fs::copy_file(old[0], loader->data_dir() + "/dump.rdb");
    ASSERT_OK(loader->Start());
    EXPECT_EQ(GetKey(*loader, "old_key"), "old_value");
  }

  // The slave holds the master's data, and only that, and refuses writes.
  EXPECT_EQ(GetKey(*slave, "from_master"), "m1");
  EXPECT_EQ(GetKey(*slave, "old_key"), "<nil>");
  absl::StatusOr<RedisReply> write = slave->Command({"SET", "x", "1"});
  ASSERT_FALSE(write.ok());
  EXPECT_TRUE(absl::StrContains(write.status().message(), "READONLY")) << write.status();
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->is_slave);
  EXPECT_TRUE(facts->streaming);
  EXPECT_FALSE(facts->writable);
  EXPECT_EQ(facts->upstream, Addr(*master));

  // Follow on a configured slave changes nothing (no new full sync).
  const int64_t full_syncs = InfoInt(*master, "stats", "sync_full");
  ASSERT_OK(engine->Follow(PeerOf("s", *slave), PeerOf("m", *master)));
  EXPECT_EQ(InfoInt(*master, "stats", "sync_full"), full_syncs);

  // The role survives a restart of the slave's redis-server.
  ASSERT_OK(slave->Stop());
  ASSERT_OK(slave->Start());
  ASSERT_TRUE(master->Command({"SET", "after_restart", "m2"}).ok());
  ASSERT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<EngineFacts> f = engine->Observe();
        return f.ok() && f->is_slave && f->streaming && f->upstream == Addr(*master);
      },
      kPoll));
  WaitReplicated(*master, 1);
  EXPECT_EQ(GetKey(*slave, "after_restart"), "m2");

  // A second Bootstrap (a resync) forces a full copy and keeps the data aside again.
  const int64_t before = InfoInt(*master, "stats", "sync_full");
  id = engine->Bootstrap(PeerOf("s", *slave), PeerOf("m", *master), nullptr);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(InfoInt(*master, "stats", "sync_full"), before + 1);
  EXPECT_EQ(OldDataFiles(slave->data_dir()).size(), 2u);
  EXPECT_EQ(GetKey(*slave, "after_restart"), "m2");

  // MakeWritable: a writable standalone that keeps the data, also after a restart.
  ASSERT_OK(engine->MakeWritable());
  ASSERT_OK(engine->MakeWritable());  // idempotent
  facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->is_slave);
  EXPECT_TRUE(facts->writable);
  EXPECT_EQ(GetKey(*slave, "from_master"), "m1");
  EXPECT_TRUE(slave->Command({"SET", "x", "1"}).ok());
  ASSERT_OK(slave->Stop());
  ASSERT_OK(slave->Start());
  facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->is_slave);
}

TEST(RedisEngineTest, BootstrapFromUnreachableMasterTouchesNothing) {
  auto slave = MustCreate(Options("s"));
  ASSERT_NE(slave, nullptr);
  ASSERT_TRUE(slave->Command({"SET", "old_key", "old_value"}).ok());
  absl::StatusOr<std::string> conf_before = ReadFile(slave->data_dir() + "/redis.conf");
  ASSERT_TRUE(conf_before.ok());
  auto engine = MustEngine(ConfigFor(*slave));
  ASSERT_NE(engine, nullptr);

  const Peer gone{"m", "main", "127.0.0.1", FreePort()};
  absl::StatusOr<std::string> id = engine->Bootstrap(PeerOf("s", *slave), gone, nullptr);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnavailable) << id.status();
  EXPECT_TRUE(absl::StrContains(id.status().message(), "upstream m")) << id.status();
  absl::Status follow = engine->Follow(PeerOf("s", *slave), gone);
  EXPECT_EQ(follow.code(), absl::StatusCode::kUnavailable) << follow;

  EXPECT_EQ(GetKey(*slave, "old_key"), "old_value");
  EXPECT_TRUE(OldDataFiles(slave->data_dir()).empty());
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->is_slave);
  EXPECT_TRUE(facts->writable);
  absl::StatusOr<std::string> conf_after = ReadFile(slave->data_dir() + "/redis.conf");
  ASSERT_TRUE(conf_after.ok());
  EXPECT_EQ(*conf_after, *conf_before);

  // Nor does a Bootstrap from itself.
  id = engine->Bootstrap(PeerOf("s", *slave), PeerOf("s", *slave), nullptr);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << id.status();
  EXPECT_EQ(GetKey(*slave, "old_key"), "old_value");
}

TEST(RedisEngineTest, BootstrapUsesTheReplicationAclUserWhenTheMasterHasIt) {
  auto master = MustCreate(Options("m", true));
  auto slave = MustCreate(Options("s"));
  ASSERT_NE(master, nullptr);
  ASSERT_NE(slave, nullptr);
  TempDir dir("tru");
  const std::string repl_password = "Repl-0nly-pw";
  ASSERT_OK(WriteFileAtomic(dir.Sub("repl"), repl_password + "\n", 0600));
  ASSERT_TRUE(master
                  ->Command({"ACL", "SETUSER", "tandem_repl", "on", ">" + repl_password, "+psync",
                             "+replconf", "+ping"})
                  .ok());
  ASSERT_TRUE(master->Command({"SET", "k", "v"}).ok());
  EngineConfig config = ConfigFor(*slave);
  config.replication_password_file = dir.Sub("repl");
  auto engine = MustEngine(config);
  ASSERT_NE(engine, nullptr);

  absl::StatusOr<std::string> id =
      engine->Bootstrap(PeerOf("s", *slave), PeerOf("m", *master), nullptr);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(GetConfig(*slave, "masteruser").value_or("?"), "tandem_repl");
  EXPECT_EQ(GetKey(*slave, "k"), "v");
  ASSERT_OK(engine->Follow(PeerOf("s", *slave), PeerOf("m", *master)));  // already so

  // A named user the master does not have is refused up front.
  config.replication_user = "no_such_user";
  auto named = MustEngine(config);
  ASSERT_NE(named, nullptr);
  id = named->Bootstrap(PeerOf("s", *slave), PeerOf("m", *master), nullptr);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kFailedPrecondition) << id.status();
  EXPECT_TRUE(absl::StrContains(id.status().message(), "user no_such_user")) << id.status();
  EXPECT_FALSE(absl::StrContains(id.status().ToString(), repl_password));
}

// Without a config file the role could not survive a restart: refused
// before anything changes.
TEST(RedisEngineTest, RoleChangesNeedAConfigFile) {
  auto master = MustCreate(Options("m", true));
  ASSERT_NE(master, nullptr);
  TempDir dir("trn");
  const uint16_t port = FreePort();
  absl::StatusOr<std::unique_ptr<testing::ChildProcess>> child = testing::ChildProcess::Start(
      {"redis-server", "--port", absl::StrCat(port), "--bind", "127.0.0.1", "--dir", dir.path(),
       "--save", "", "--appendonly", "no", "--logfile", dir.Sub("log")});
  ASSERT_TRUE(child.ok()) << child.status();
  EngineConfig config;
  config.type = EngineType::kRedis;
  config.port = port;
  config.data_dir = dir.path();
  config.replication_password_file = master->password_file();
  auto engine = MustEngine(config);
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(PollUntil([&] { return engine->Observe().value_or(EngineFacts{}).running; }, kPoll));

  absl::Status follow = engine->Follow(Peer{"n", "main", "127.0.0.1", port}, PeerOf("m", *master));
  EXPECT_EQ(follow.code(), absl::StatusCode::kFailedPrecondition) << follow;
  EXPECT_TRUE(absl::StrContains(follow.message(), "without a config file")) << follow;
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->is_slave);
  absl::Status writable = engine->MakeWritable();
  EXPECT_EQ(writable.code(), absl::StatusCode::kFailedPrecondition) << writable;
}

TEST(RedisEngineTest, FollowKeepsTheOldMastersDataAside) {
  auto master = MustCreate(Options("m", true));
  auto other = MustCreate(Options("o", true));
  ASSERT_NE(master, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(master->Command({"SET", "new_master", "1"}).ok());
  ASSERT_TRUE(other->Command({"SET", "old_master", "1"}).ok());
  auto engine = MustEngine(ConfigFor(*other));
  ASSERT_NE(engine, nullptr);

  // The failover path: the old master is fenced first, then follows.
  ASSERT_OK(engine->Fence());
  ASSERT_OK(engine->Follow(PeerOf("o", *other), PeerOf("m", *master)));
  ASSERT_EQ(OldDataFiles(other->data_dir()).size(), 1u);
  EXPECT_FALSE(PathExists(other->data_dir() + "/" + kRedisFenceMarkerFile));
  // The write pause is lifted: it would also hold back the replication stream.
  ASSERT_TRUE(master->Command({"SET", "after_follow", "2"}).ok());
  WaitReplicated(*master, 1);
  EXPECT_EQ(GetKey(*other, "new_master"), "1");
  EXPECT_EQ(GetKey(*other, "after_follow"), "2");
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->is_slave);
  EXPECT_FALSE(facts->writable);
  absl::StatusOr<std::string> conf = ReadFile(other->data_dir() + "/redis.conf");
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(absl::StrContains(*conf, absl::StrCat("replicaof 127.0.0.1 ", master->port())));
  EXPECT_EQ(StatusOf(other->Command({"SET", "x", "1"})).code(), absl::StatusCode::kInternal);
}

// ---------------------------------------------------------------------------
// TLS on the replication link: the replica's own redis-server connects to
// its master's TLS port; the agent never speaks to the upstream then.

RedisServerOptions TlsOptions(std::string name, bool persistence,
                              const testing::TestCertificates& certs) {
  RedisServerOptions options = Options(std::move(name), persistence);
  options.tls = certs;
  return options;
}

EngineConfig TlsConfigFor(const RedisServer& server, const testing::TestCertificates& certs) {
  EngineConfig config = ConfigFor(server);
  config.tls_mode = "always";
  config.tls_ca_file = certs.ca_file;
  config.tls_cert_file = certs.cert_file;
  config.tls_key_file = certs.key_file;
  config.tls_port = server.tls_port();
  return config;
}

// The peer as the controller sends it: with its TLS port.
Peer TlsPeerOf(const std::string& id, const RedisServer& server) {
  Peer peer = PeerOf(id, server);
  peer.tls_port = server.tls_port();
  return peer;
}

std::string InfoText(const RedisServer& server, const std::string& section,
                     const std::string& key) {
  absl::StatusOr<std::map<std::string, std::string>> info = server.Info(section);
  if (!info.ok() || info->count(key) == 0) return "";
  return info->at(key);
}

// `slave` replicates from 127.0.0.1:`port`, link up, no sync in progress.
bool StreamsFromPort(const RedisServer& slave, uint32_t port) {
  absl::StatusOr<std::map<std::string, std::string>> info = slave.Info("replication");
  if (!info.ok()) return false;
  return (*info)["role"] == "slave" && (*info)["master_host"] == "127.0.0.1" &&
         (*info)["master_port"] == absl::StrCat(port) &&
         (*info)["master_link_status"] == "up" && (*info)["master_sync_in_progress"] == "0";
}

TEST(RedisEngineTest, BootstrapFollowAndRejoinOverTls) {
  TempDir certs_dir("trt");
  absl::StatusOr<testing::TestCertificates> certs =
      testing::MakeTestCertificates(certs_dir.path(), {"127.0.0.1"});
  ASSERT_TRUE(certs.ok()) << certs.status();
  auto master = MustCreate(TlsOptions("m", true, *certs));
  auto slave = MustCreate(TlsOptions("s", true, *certs));
  ASSERT_TRUE(master && slave);
  ASSERT_NE(master->tls_port(), 0);
  ASSERT_NE(master->tls_port(), master->port());
  ASSERT_TRUE(master->Command({"SET", "from_master", "m1"}).ok());
  ASSERT_TRUE(slave->Command({"SET", "old_key", "old_value"}).ok());
  auto engine = MustEngine(TlsConfigFor(*slave, *certs));
  ASSERT_NE(engine, nullptr);
  const Peer self = TlsPeerOf("s", *slave);
  const Peer upstream = TlsPeerOf("m", *master);
  const std::string tls_addr = absl::StrCat("127.0.0.1:", master->tls_port());

  // Bootstrap: the old data kept aside, then a sync over the TLS port (the
  // master asks every client, the replica too, for a certificate).
  absl::StatusOr<std::string> id = engine->Bootstrap(self, upstream, ProgressFn());
  ASSERT_TRUE(id.ok()) << id.status();
  ExpectNoSecret(id);
  EXPECT_TRUE(StreamsFromPort(*slave, master->tls_port()));
  EXPECT_EQ(OldDataFiles(slave->data_dir()).size(), 1u);
  EXPECT_EQ(GetKey(*slave, "from_master"), "m1");
  EXPECT_EQ(GetKey(*slave, "old_key"), "<nil>");
  EXPECT_EQ(*GetConfig(*slave, "tls-replication"), "yes");
  EXPECT_EQ(*GetConfig(*slave, "tls-ca-cert-file"), certs->ca_file);
  absl::StatusOr<std::string> conf = ReadFile(slave->data_dir() + "/redis.conf");
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_TRUE(absl::StrContains(*conf, "replicaof 127.0.0.1 " + absl::StrCat(master->tls_port())))
      << *conf;
  EXPECT_TRUE(absl::StrContains(*conf, "tls-replication yes")) << *conf;
  ASSERT_TRUE(master->Command({"SET", "after", "1"}).ok());
  WaitReplicated(*master, 1);
  EXPECT_EQ(GetKey(*slave, "after"), "1");
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->is_slave);
  EXPECT_TRUE(facts->streaming);
  EXPECT_EQ(facts->upstream, tls_addr);

  // Follow and Rejoin on a replica already streaming over TLS change
  // nothing: no new full sync.
  const int64_t full_syncs = InfoInt(*master, "stats", "sync_full");
  ASSERT_OK(engine->Follow(self, upstream));
  absl::StatusOr<std::string> rejoined = engine->Rejoin(self, upstream);
  ASSERT_TRUE(rejoined.ok()) << rejoined.status();
  EXPECT_EQ(InfoInt(*master, "stats", "sync_full"), full_syncs);
  EXPECT_TRUE(StreamsFromPort(*slave, master->tls_port()));

  // Anything else is a full copy over TLS: the agent cannot read the
  // upstream's replication state to predict a partial resync.
  ASSERT_OK(engine->MakeWritable());
  ASSERT_OK(engine->Fence());
  rejoined = engine->Rejoin(self, upstream);
  ASSERT_FALSE(rejoined.ok());
  EXPECT_EQ(rejoined.status().code(), absl::StatusCode::kUnimplemented) << rejoined.status();
  EXPECT_TRUE(absl::StrContains(rejoined.status().message(),
                                "over TLS the agent cannot read the upstream's replication state"))
      << rejoined.status();
  EXPECT_EQ(InfoText(*slave, "replication", "role"), "master");  // untouched, still fenced
  EXPECT_TRUE(PathExists(slave->data_dir() + "/" + kRedisFenceMarkerFile));

  // Follow from the fenced master: a replica over TLS again.
  ASSERT_OK(engine->Follow(self, upstream));
  EXPECT_FALSE(PathExists(slave->data_dir() + "/" + kRedisFenceMarkerFile));
  ASSERT_TRUE(PollUntil([&] { return StreamsFromPort(*slave, master->tls_port()); }, kPoll));

  // TLS off: back to the plain port, tls-replication no.
  EngineConfig plain = TlsConfigFor(*slave, *certs);
  plain.tls_mode = "off";
  auto plain_engine = MustEngine(plain);
  ASSERT_NE(plain_engine, nullptr);
  ASSERT_OK(plain_engine->Follow(self, upstream));
  ASSERT_TRUE(PollUntil([&] { return StreamsFromPort(*slave, master->port()); }, kPoll));
  EXPECT_EQ(*GetConfig(*slave, "tls-replication"), "no");
  facts = plain_engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->upstream, Addr(*master));
}

TEST(RedisEngineTest, TlsLinkToAnUpstreamWithoutTlsPortChangesNothing) {
  TempDir certs_dir("trt");
  absl::StatusOr<testing::TestCertificates> certs =
      testing::MakeTestCertificates(certs_dir.path(), {"127.0.0.1"});
  ASSERT_TRUE(certs.ok()) << certs.status();
  auto master = MustCreate(TlsOptions("m", true, *certs));
  auto slave = MustCreate(Options("s", true));
  ASSERT_TRUE(master && slave);
  ASSERT_TRUE(slave->Command({"SET", "mine", "1"}).ok());
  auto engine = MustEngine(TlsConfigFor(*slave, *certs));
  ASSERT_NE(engine, nullptr);
  const Peer self = PeerOf("s", *slave);
  const Peer upstream = PeerOf("m", *master);  // tls_port 0: not registered
  const std::string want = "upstream m has no tls_port (engine.tls_port in its agent.yaml)";

  absl::Status follow = engine->Follow(self, upstream);
  absl::StatusOr<std::string> bootstrap = engine->Bootstrap(self, upstream, ProgressFn());
  absl::StatusOr<std::string> rejoin = engine->Rejoin(self, upstream);
  for (const absl::Status& st : {follow, bootstrap.status(), rejoin.status()}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), want)) << st;
  }
  EXPECT_EQ(InfoText(*slave, "replication", "role"), "master");
  EXPECT_EQ(GetKey(*slave, "mine"), "1");
  EXPECT_TRUE(OldDataFiles(slave->data_dir()).empty());
  EXPECT_EQ(*GetConfig(*slave, "tls-replication"), "no");

  // between-stacks within one stack: the plain port, no TLS port needed.
  EngineConfig same_stack = TlsConfigFor(*slave, *certs);
  same_stack.tls_mode = "between-stacks";
  auto same_stack_engine = MustEngine(same_stack);
  ASSERT_NE(same_stack_engine, nullptr);
  ASSERT_OK(same_stack_engine->Follow(self, upstream));
  ASSERT_TRUE(PollUntil([&] { return StreamsFromPort(*slave, master->port()); }, kPoll));
  EXPECT_EQ(*GetConfig(*slave, "tls-replication"), "no");
}

TEST(RedisEngineTest, FenceBlocksWritesUntilMakeWritable) {
  auto server = MustCreate(Options("m", true));
  ASSERT_NE(server, nullptr);
  auto engine = MustEngine(ConfigFor(*server));
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(server->Command({"SET", "k", "v"}).ok());

  // A write from a client that gives up after `ms` milliseconds.
  auto try_write = [&](int ms) {
    absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Connect(
        "127.0.0.1", server->port(), RedisLogin{"", kPassword}, std::chrono::milliseconds(ms));
    if (!client.ok()) return client.status();
    return (*client)->Command({"SET", "w", "1"}).status();
  };
  ASSERT_OK(try_write(5000));

  ASSERT_OK(engine->Fence());
  ASSERT_OK(engine->Fence());  // idempotent
  absl::Status blocked = try_write(300);
  EXPECT_EQ(blocked.code(), absl::StatusCode::kUnavailable) << blocked;
  EXPECT_EQ(GetKey(*server, "k"), "v");  // reads still work
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->writable);
  EXPECT_FALSE(facts->is_slave);

  // A restart drops the pause; the next Observe (or Start) fences it again.
  ASSERT_OK(server->Stop());
  ASSERT_OK(server->Start());
  ASSERT_OK(engine->Start());
  blocked = try_write(300);
  EXPECT_EQ(blocked.code(), absl::StatusCode::kUnavailable) << blocked;
  facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->writable);

  ASSERT_OK(engine->MakeWritable());
  ASSERT_OK(try_write(5000));
  facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->writable);
  EXPECT_FALSE(PathExists(server->data_dir() + "/" + kRedisFenceMarkerFile));
  EXPECT_EQ(GetKey(*server, "k"), "v");
}

TEST(RedisEngineTest, FenceOnASlaveMakesItReadOnly) {
  auto master = MustCreate(Options("m", true));
  auto slave = MustCreate(Options("s"));
  ASSERT_NE(master, nullptr);
  ASSERT_NE(slave, nullptr);
  auto engine = MustEngine(ConfigFor(*slave));
  ASSERT_NE(engine, nullptr);
  ASSERT_OK(engine->Follow(PeerOf("s", *slave), PeerOf("m", *master)));
  ASSERT_TRUE(slave->Command({"CONFIG", "SET", "replica-read-only", "no"}).ok());
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->writable);  // a writable replica is reported as such

  ASSERT_OK(engine->Fence());
  facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->writable);
  EXPECT_TRUE(facts->is_slave);
  absl::StatusOr<RedisReply> write = slave->Command({"SET", "x", "1"});
  ASSERT_FALSE(write.ok());
  EXPECT_TRUE(absl::StrContains(write.status().message(), "READONLY")) << write.status();
}

std::string InfoField(const RedisServer& server, const std::string& section,
                      const std::string& key) {
  absl::StatusOr<std::map<std::string, std::string>> info = server.Info(section);
  if (!info.ok() || info->count(key) == 0) return "";
  return info->at(key);
}

bool StreamsFrom(Engine& engine, const RedisServer& upstream) {
  absl::StatusOr<EngineFacts> f = engine.Observe();
  return f.ok() && f->is_slave && f->streaming && f->upstream == Addr(upstream);
}

// The fenced switchover, engine by engine, as the agents run it: the old
// master is fenced (writes block, its offset stops), the promoted slave
// catches up with that offset and becomes writable, then the old master and
// the other slave rejoin it in place, with a partial resync, no full copy.
// A write blocked by the fence is refused once the old master is a replica.
TEST(RedisEngineTest, SwitchoverRejoinsInPlaceAndRefusesTheBlockedWrites) {
  auto a = MustCreate(Options("a", true));
  auto b = MustCreate(Options("b", true));
  auto c = MustCreate(Options("c", true));
  ASSERT_TRUE(a && b && c);
  auto ea = MustEngine(ConfigFor(*a));
  auto eb = MustEngine(ConfigFor(*b));
  auto ec = MustEngine(ConfigFor(*c));
  ASSERT_TRUE(ea && eb && ec);
  ASSERT_OK(eb->Follow(PeerOf("b", *b), PeerOf("a", *a)));
  ASSERT_OK(ec->Follow(PeerOf("c", *c), PeerOf("a", *a)));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(a->Command({"SET", absl::StrCat("k", i), absl::StrCat(i)}).ok());
  }
  WaitReplicated(*a, 2);
  // Pings every second: without the fence's pause of them, the old master's
  // offset would soon move past the one the promoted slave stopped at.
  ASSERT_TRUE(a->Command({"CONFIG", "SET", "repl-ping-replica-period", "1"}).ok());

  ASSERT_OK(ea->Fence());
  absl::StatusOr<EngineFacts> fenced = ea->Observe();
  ASSERT_TRUE(fenced.ok()) << fenced.status();
  EXPECT_FALSE(fenced->writable);
  EXPECT_FALSE(fenced->is_slave);
  EXPECT_EQ(fenced->position, InfoField(*a, "replication", "master_repl_offset"));
  EXPECT_EQ(*GetConfig(*a, "repl-ping-replica-period"), "2147483647");

  // An application's write, blocked by the fence.
  std::atomic<bool> write_done{false};
  absl::Status blocked_write;
  std::thread writer([&] {
    absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Connect(
        "127.0.0.1", a->port(), RedisLogin{"", kPassword}, std::chrono::seconds(60));
    blocked_write = client.ok() ? (*client)->Command({"SET", "blocked", "1"}).status()
                                : client.status();
    write_done = true;
  });
  EXPECT_TRUE(PollUntil([&] { return InfoField(*a, "clients", "blocked_clients") == "1"; }, kPoll));
  EXPECT_FALSE(write_done.load());

  // A is told to follow B at the same time as B is told to take over: its
  // Rejoin waits until B is a master.
  absl::StatusOr<std::string> rejoined;
  std::thread rejoin([&] { rejoined = ea->Rejoin(PeerOf("a", *a), PeerOf("b", *b)); });
  // B catches up with the fenced position and takes over.
  EXPECT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<bool> replayed = eb->HasReplayed(fenced->position);
        return replayed.ok() && *replayed;
      },
      kPoll));
  ASSERT_OK(eb->MakeWritable());
  ASSERT_TRUE(b->Command({"SET", "on_b", "1"}).ok());

  // A and C rejoin B in place.
  rejoin.join();
  ASSERT_TRUE(rejoined.ok()) << rejoined.status();
  EXPECT_EQ(*rejoined, "");
  writer.join();
  EXPECT_FALSE(blocked_write.ok());
  EXPECT_TRUE(absl::StrContains(blocked_write.message(), "READONLY")) << blocked_write;
  rejoined = ec->Rejoin(PeerOf("c", *c), PeerOf("b", *b));
  ASSERT_TRUE(rejoined.ok()) << rejoined.status();
  EXPECT_EQ(InfoInt(*b, "stats", "sync_full"), 0);
  EXPECT_EQ(InfoInt(*b, "stats", "sync_partial_ok"), 2);
  EXPECT_TRUE(OldDataFiles(a->data_dir()).empty()) << "nothing to keep aside";
  EXPECT_FALSE(PathExists(a->data_dir() + "/" + kRedisFenceMarkerFile));
  EXPECT_EQ(*GetConfig(*a, "repl-ping-replica-period"), "1") << "put back";
  EXPECT_TRUE(StreamsFrom(*ea, *b));
  EXPECT_TRUE(StreamsFrom(*ec, *b));
  // Idempotent: a second call finds it streaming.
  ASSERT_OK(StatusOf(ea->Rejoin(PeerOf("a", *a), PeerOf("b", *b))));
  EXPECT_EQ(InfoInt(*b, "stats", "sync_partial_ok"), 2);

  ASSERT_TRUE(b->Command({"SET", "after", "2"}).ok());
  WaitReplicated(*b, 2);
  for (const RedisServer* s : {a.get(), c.get()}) {
    EXPECT_EQ(GetKey(*s, "k99"), "99");
    EXPECT_EQ(GetKey(*s, "on_b"), "1");
    EXPECT_EQ(GetKey(*s, "after"), "2");
    EXPECT_EQ(GetKey(*s, "blocked"), "<nil>");
  }
  EXPECT_EQ(GetKey(*b, "blocked"), "<nil>");
  absl::StatusOr<std::string> conf = ReadFile(a->data_dir() + "/redis.conf");
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(absl::StrContains(*conf, absl::StrCat("replicaof 127.0.0.1 ", b->port())));
  EXPECT_FALSE(absl::StrContains(*conf, "2147483647")) << *conf;
}

// Rejoin never touches a writable server, nor data the upstream lacks.
TEST(RedisEngineTest, RejoinRefusesWritableOrDivergedData) {
  auto x = MustCreate(Options("x", true));
  auto y = MustCreate(Options("y", true));
  ASSERT_TRUE(x && y);
  auto ex = MustEngine(ConfigFor(*x));
  auto ey = MustEngine(ConfigFor(*y));
  ASSERT_TRUE(ex && ey);
  ASSERT_TRUE(x->Command({"SET", "own", "x"}).ok());

  absl::StatusOr<std::string> r = ex->Rejoin(PeerOf("x", *x), PeerOf("y", *y));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "fenced first")) << r.status();
  ExpectNoSecret(r);

  // Fenced, but another history: Bootstrap's full copy is the way.
  ASSERT_OK(ex->Fence());
  r = ex->Rejoin(PeerOf("x", *x), PeerOf("y", *y));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "replication history")) << r.status();
  EXPECT_EQ(InfoField(*x, "replication", "role"), "master");
  EXPECT_TRUE(PathExists(x->data_dir() + "/" + kRedisFenceMarkerFile)) << "still fenced";
  ASSERT_OK(ex->MakeWritable());

  // Y follows X, is promoted too early, and X takes one more write: X now
  // holds a write Y never received.
  ASSERT_OK(ey->Follow(PeerOf("y", *y), PeerOf("x", *x)));
  WaitReplicated(*x, 1);
  ASSERT_OK(ey->MakeWritable());
  ASSERT_TRUE(x->Command({"SET", "only_on_x", "1"}).ok());
  ASSERT_OK(ex->Fence());
  r = ex->Rejoin(PeerOf("x", *x), PeerOf("y", *y));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "never received")) << r.status();
  EXPECT_EQ(InfoField(*x, "replication", "role"), "master");
  EXPECT_EQ(GetKey(*x, "only_on_x"), "1");
}

// A slave whose link stays down longer than out_of_sync_after reports it;
// Rejoin repairs what the agent's Follow does not look at (here a
// masterauth changed by hand) and the slave continues where it stopped.
TEST(RedisEngineTest, LinkDownTooLongIsOutOfSyncAndRejoinRepairsIt) {
  auto m = MustCreate(Options("m", true));
  auto s = MustCreate(Options("s"));
  ASSERT_TRUE(m && s);
  EngineConfig config = ConfigFor(*s);
  config.out_of_sync_after_seconds = 1;
  auto es = MustEngine(config);
  ASSERT_TRUE(es);
  ASSERT_OK(es->Follow(PeerOf("s", *s), PeerOf("m", *m)));
  ASSERT_TRUE(m->Command({"SET", "k", "1"}).ok());
  WaitReplicated(*m, 1);
  absl::StatusOr<EngineFacts> facts = es->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->out_of_sync, "");

  ASSERT_TRUE(s->Command({"CONFIG", "SET", "masterauth", "not-the-password"}).ok());
  ASSERT_TRUE(s->Command({"CLIENT", "KILL", "TYPE", "master"}).ok());
  const std::string want = absl::StrCat("link to ", Addr(*m), " down for ");
  EXPECT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<EngineFacts> f = es->Observe();
        if (f.ok()) facts = *f;
        return f.ok() && !f->out_of_sync.empty();
      },
      kPoll, std::chrono::milliseconds(100)));
  EXPECT_TRUE(absl::StartsWith(facts->out_of_sync, want)) << facts->out_of_sync;
  EXPECT_FALSE(facts->streaming);
  EXPECT_TRUE(facts->is_slave);
  ASSERT_TRUE(m->Command({"SET", "while_down", "1"}).ok());

  const int64_t partial = InfoInt(*m, "stats", "sync_partial_ok");
  const int64_t full = InfoInt(*m, "stats", "sync_full");
  absl::StatusOr<std::string> r = es->Rejoin(PeerOf("s", *s), PeerOf("m", *m));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*GetConfig(*s, "masterauth"), kPassword);
  EXPECT_EQ(InfoInt(*m, "stats", "sync_partial_ok"), partial + 1);
  EXPECT_EQ(InfoInt(*m, "stats", "sync_full"), full);
  WaitReplicated(*m, 1);
  EXPECT_EQ(GetKey(*s, "while_down"), "1");
  facts = es->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->streaming);
  EXPECT_EQ(facts->out_of_sync, "");

  // A link that never came up (pointed at a port nobody listens on) counts too.
  ASSERT_TRUE(s->Command({"REPLICAOF", "127.0.0.1", absl::StrCat(FreePort())}).ok());
  EXPECT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<EngineFacts> f = es->Observe();
        return f.ok() && absl::StrContains(f->out_of_sync, "down for");
      },
      kPoll, std::chrono::milliseconds(100)));
}

// The default start command: the engine creates the data dir, runs
// redis-server daemonized as the redis OS user, and stops it keeping the data.
TEST(RedisEngineTest, DefaultStartAndStopKeepData) {
  testing::AdoptOrphans();
  TempDir dir("trs");
  const std::string data_dir = dir.Sub("data");
  struct Cleanup {
    std::string data_dir;
    ~Cleanup() {
      (void)testing::StopRedisByPidFile(data_dir);
      testing::ReapAdoptedZombies();
    }
  } cleanup{data_dir};

  EngineConfig config;
  config.type = EngineType::kRedis;
  config.host = "127.0.0.1";
  config.port = FreePort();
  config.data_dir = data_dir;
  absl::StatusOr<UserIds> redis_user = LookupUser("redis");
  const bool as_redis = ::geteuid() == 0 && redis_user.ok();
  if (as_redis) config.os_user = "redis";
  config.server_args = {"--bind", "127.0.0.1", "--save", "", "--appendonly", "no"};
  config.timeout_seconds = 30;
  auto engine = MustEngine(config);
  ASSERT_NE(engine, nullptr);

  ASSERT_OK(engine->Start());
  ASSERT_OK(engine->Start());  // idempotent
  struct stat conf_stat;
  ASSERT_EQ(::stat((data_dir + "/redis.conf").c_str(), &conf_stat), 0);
  EXPECT_EQ(conf_stat.st_mode & 0777, 0600u);
  absl::StatusOr<std::string> pid = ReadFile(data_dir + "/redis.pid");
  ASSERT_TRUE(pid.ok()) << pid.status();
  if (as_redis) {
    EXPECT_EQ(conf_stat.st_uid, redis_user->uid);
    struct stat proc_stat;
    ASSERT_EQ(::stat(absl::StrCat("/proc/", absl::StripAsciiWhitespace(*pid)).c_str(), &proc_stat),
              0);
    EXPECT_EQ(proc_stat.st_uid, redis_user->uid);  // the server runs as os_user
  }
  absl::StatusOr<EngineFacts> facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->running);
  EXPECT_TRUE(facts->writable);

  {
    absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Connect(
        "127.0.0.1", config.port, RedisLogin{}, std::chrono::milliseconds(5000));
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->Command({"SET", "a", "1"}).ok());
    ASSERT_TRUE((*client)->Command({"SAVE"}).ok());
    ASSERT_TRUE((*client)->Command({"SET", "b", "2"}).ok());
  }

  struct stat rdb_stat;
  ASSERT_EQ(::stat((data_dir + "/dump.rdb").c_str(), &rdb_stat), 0);
  EXPECT_EQ(rdb_stat.st_mode & 0077, 0u);  // written under umask 077

  // An RDB exists: Stop saves, so the restart holds b too.
  ASSERT_OK(engine->Stop());
  ASSERT_OK(engine->Stop());  // idempotent
  facts = engine->Observe();
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->running);
  EXPECT_TRUE(facts->has_data);
  ASSERT_OK(engine->Start());
  {
    absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Connect(
        "127.0.0.1", config.port, RedisLogin{}, std::chrono::milliseconds(5000));
    ASSERT_TRUE(client.ok()) << client.status();
    absl::StatusOr<std::string> b = (*client)->CommandText({"GET", "b"});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(*b, "2");
  }
  ASSERT_OK(engine->Stop());
  EXPECT_TRUE(PollUntil([&] { return !PathExists(data_dir + "/redis.pid"); }, kPoll));
}

// Start never takes another server on its port for its own, and reports a
// start command that fails.
TEST(RedisEngineTest, StartRefusesAForeignServerAndReportsAFailedCommand) {
  auto busy = MustCreate(Options("busy", false, ""));
  ASSERT_NE(busy, nullptr);
  TempDir dir("trf");
  EngineConfig config;
  config.type = EngineType::kRedis;
  config.port = busy->port();
  config.data_dir = dir.Sub("data");
  config.server_args = {"--bind", "127.0.0.1", "--save", "", "--appendonly", "no"};
  config.timeout_seconds = 3;
  config.start_command = "exit 3";
  auto engine = MustEngine(config);
  ASSERT_NE(engine, nullptr);
  // The port answers, but with another dir: never taken for ours.
  absl::Status st = engine->Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;

  config.port = FreePort();
  engine = MustEngine(config);
  ASSERT_NE(engine, nullptr);
  st = engine->Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "engine.start_command exited with 3")) << st;
}

}  // namespace
}  // namespace tandem
