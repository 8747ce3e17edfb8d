// The Redis user story, end to end: real tandem-controller, one real
// tandem-agent per node, real redis-server processes (started by the agents'
// engine from each node's data_dir/redis.conf), driven by tandemctl. Beyond
// the user story: the fenced switchover under a writer, an out-of-sync
// slave and its automatic resync, replication between stacks, and slaves
// added together bootstrapping one at a time.
#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "gtest/gtest.h"
#include "tests/e2e/cluster.h"
#include "tests/harness/redis_server.h"

namespace tandem::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kPassword[] = "redis-secret-4711";
constexpr int64_t kKeys = 100000;

// Creates `count` keys key:1..key:count (value "value N") on the server.
constexpr char kFillScript[] =
    "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do "
    "redis.call('SET', 'key:' .. i, 'value ' .. i) end return tonumber(ARGV[2])";

// Sets key:1 .. key:<keys> in scripts of 20,000 keys: each answers well
// within the client's timeout even on a loaded machine.
absl::Status Fill(const RedisServer& server, int64_t keys) {
  for (int64_t from = 1; from <= keys; from += 20000) {
    const int64_t to = std::min(keys, from + 19999);
    absl::StatusOr<RedisReply> done = server.Command(
        {"EVAL", kFillScript, "0", std::to_string(from), std::to_string(to)});
    if (!done.ok()) return done.status();
  }
  return absl::OkStatus();
}

// Files in `dir` whose name starts with `prefix`.
std::vector<std::string> FilesWithPrefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (absl::StartsWith(name, prefix)) out.push_back(dir + "/" + name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

class RedisE2eTest : public ::testing::Test {
 protected:
  void SetUp() override { cluster_.StartController(); }

  // A Redis node: the harness gives it a data dir with an empty redis.conf
  // and a port (it starts the server once to claim the port, then stops it);
  // the node's agent starts redis-server itself, through the engine's
  // default start, with the same arguments (persistence on: AOF and a save
  // rule, which a master needs). Every node has the same requirepass, which
  // is also the replication password.
  //
  // `external`: the node's external address (its server listens there too);
  // `engine_yaml`: more fields of the engine section ("  key: value\n");
  // `tls`: the server also serves TLS on a port of its own with these
  // files, registered as engine.tls_port.
  RedisServer& AddRedisNode(const std::string& id, const std::string& stack = "main",
                            const std::string& external = "",
                            const std::string& engine_yaml = "",
                            const std::optional<TestCertificates>& tls = std::nullopt) {
    RedisServerOptions options;
    options.name = id;
    options.persistence = true;
    options.password = kPassword;
    options.tls = tls;
    // The later --bind wins over the harness's.
    if (!external.empty()) options.extra_args = {"--bind", "127.0.0.1", external};
    absl::StatusOr<std::unique_ptr<RedisServer>> created = RedisServer::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    RedisServer& server = *servers_.emplace_back(*std::move(created));
    EXPECT_TRUE(server.Stop().ok());
    std::vector<std::string> quoted;
    for (const std::string& arg : server.server_args()) quoted.push_back(absl::StrCat("\"", arg, "\""));
    const std::string addresses =
        external.empty() ? "{internal: 127.0.0.1}"
                         : absl::StrCat("{internal: 127.0.0.1, external: ", external, "}");
    cluster_.AddNode(id, stack,
                     absl::StrCat("addresses: ", addresses, "\n"
                                  "engine:\n"
                                  "  type: redis\n"
                                  "  port: ", server.port(), "\n",
                                  "  data_dir: ", server.data_dir(), "\n",
                                  "  password_file: ", server.password_file(), "\n",
                                  "  replication_password_file: ", server.password_file(), "\n",
                                  "  log_file: ", server.log_file(), "\n",
                                  "  server_args: [", absl::StrJoin(quoted, ", "), "]\n",
                                  "  timeout: 60\n",
                                  tls ? absl::StrCat("  tls_port: ", server.tls_port(), "\n") : "",
                                  engine_yaml));
    return server;
  }

  static int64_t DbSize(const RedisServer& server) {
    absl::StatusOr<RedisReply> reply = server.Command({"DBSIZE"});
    return reply.ok() ? reply->integer : -1;
  }

  static std::string Get(const RedisServer& server, const std::string& key) {
    absl::StatusOr<RedisReply> reply = server.Command({"GET", key});
    if (!reply.ok()) return absl::StrCat("<error: ", reply.status().message(), ">");
    if (reply->type == RedisReply::Type::kNil) return "<nil>";
    return reply->str;
  }

  static std::string InfoField(const RedisServer& server, const std::string& section,
                               const std::string& key) {
    absl::StatusOr<std::map<std::string, std::string>> info = server.Info(section);
    if (!info.ok() || info->count(key) == 0) return "";
    return info->at(key);
  }

  static std::string ConfigValue(const RedisServer& server, const std::string& name) {
    absl::StatusOr<RedisReply> reply = server.Command({"CONFIG", "GET", name});
    if (!reply.ok() || reply->elements.size() != 2) return "";
    return reply->elements[1].str;
  }

  // A healthy replica of `master`: role slave, pointed at it, link up, no
  // sync in progress.
  static bool StreamsFrom(const RedisServer& slave, const RedisServer& master) {
    absl::StatusOr<std::map<std::string, std::string>> info = slave.Info("replication");
    if (!info.ok()) return false;
    auto field = [&](const std::string& key) {
      auto it = info->find(key);
      return it == info->end() ? std::string() : it->second;
    };
    return field("role") == "slave" && field("master_host") == "127.0.0.1" &&
           field("master_port") == std::to_string(master.port()) &&
           field("master_link_status") == "up" && field("master_sync_in_progress") == "0";
  }

  static bool IsMaster(const RedisServer& server) {
    return InfoField(server, "replication", "role") == "master";
  }

  // Polls until `key` has `value` on `server`.
  static bool HasValue(const RedisServer& server, const std::string& key, const std::string& value,
                       milliseconds within) {
    return PollUntil([&] { return Get(server, key) == value; }, within, milliseconds(10));
  }

  // The server accepts a write (and takes it back).
  static absl::Status TryWrite(const RedisServer& server) {
    absl::Status st = server.Command({"SET", "tandem:e2e:probe", "1"}).status();
    if (st.ok()) st = server.Command({"DEL", "tandem:e2e:probe"}).status();
    return st;
  }

  static std::string SlaveAddresses(const std::vector<const RedisServer*>& slaves) {
    std::vector<std::string> out;
    for (const RedisServer* s : slaves) out.push_back(absl::StrCat("127.0.0.1:", s->port()));
    return absl::StrJoin(out, ",");
  }

  // Whether `server` takes writes now: role:master and no write pause, seen
  // at one instant. The probe writes nothing: a PFCOUNT of a missing key
  // changes and replicates nothing, yet CLIENT PAUSE WRITE holds it (and a
  // transaction holding it) like every command that may replicate. So
  // MULTI, PFCOUNT, INFO replication, EXEC: an answer within `within` means
  // no pause, and INFO tells the role at that same instant.
  static bool Writable(const RedisServer& server, milliseconds within = milliseconds(250)) {
    absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Connect(
        "127.0.0.1", server.port(), RedisLogin{"", kPassword}, milliseconds(2000));
    if (!client.ok()) return false;
    RedisClient& c = **client;
    if (!c.Command({"MULTI"}).ok() || !c.Command({"PFCOUNT", "tandem:e2e:absent"}).ok() ||
        !c.Command({"INFO", "replication"}).ok()) {
      return false;
    }
    c.SetTimeout(within);
    absl::StatusOr<RedisReply> exec = c.Command({"EXEC"});
    if (!exec.ok() || exec->elements.size() != 2) return false;
    return ParseInfo(exec->elements[1].str)["role"] == "master";
  }

  // Declared before cluster_: the agents stop first (so none restarts a
  // server the harness has just stopped), then the servers.
  std::vector<std::unique_ptr<RedisServer>> servers_;
  Cluster cluster_;
};

TEST_F(RedisE2eTest, UserStory) {
  RedisServer& db1 = AddRedisNode("db1");
  RedisServer& db2 = AddRedisNode("db2");
  RedisServer& db3 = AddRedisNode("db3");
  ASSERT_FALSE(HasFailure());
  const std::string p1 = std::to_string(db1.port());

  // 1. Every node registers and converges as standalone; its agent started
  // its redis-server.
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3"});
  {
    auto nodes = cluster_.Nodes();
    ASSERT_EQ(nodes.size(), 3u) << cluster_.Ctl({"nodes"}).out;
    for (const auto& [id, n] : nodes) {
      EXPECT_EQ(n["engine"], "redis") << id;
      EXPECT_EQ(n["desired"]["role"], "standalone") << id;
      EXPECT_EQ(n["observed"]["role"], "standalone") << id;
      EXPECT_TRUE(n["converged"].get<bool>()) << id;
    }
  }
  for (RedisServer* server : {&db1, &db2, &db3}) {
    EXPECT_TRUE(server->Answers()) << server->data_dir();
    EXPECT_TRUE(IsMaster(*server)) << server->data_dir();
    EXPECT_TRUE(TryWrite(*server).ok()) << server->data_dir();
  }
  for (const char* id : {"db1", "db2", "db3"}) {
    EXPECT_EQ(cluster_.Env(id)["TANDEM_ROLE"], "standalone") << id;
    EXPECT_EQ(cluster_.HookRuns(id), 1) << id;
  }
  absl::Status filled = Fill(db1, kKeys);
  ASSERT_TRUE(filled.ok()) << filled;
  ASSERT_EQ(DbSize(db1), kKeys);
  ASSERT_TRUE(db2.Command({"SET", "own:db2", "42"}).ok());
  ASSERT_TRUE(db3.Command({"SET", "own:db3", "43"}).ok());

  // 2. Enable replication db1 -> db2.
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  EXPECT_TRUE(StreamsFrom(db2, db1));
  EXPECT_TRUE(IsMaster(db1));
  EXPECT_EQ(DbSize(db2), kKeys);
  EXPECT_EQ(Get(db2, "key:1"), "value 1");
  EXPECT_EQ(Get(db2, absl::StrCat("key:", kKeys)), absl::StrCat("value ", kKeys));
  EXPECT_EQ(Get(db2, "own:db2"), "<nil>") << "db2's data was replaced";
  // db2's own dataset was kept aside, as an RDB snapshot in its data dir.
  EXPECT_EQ(FilesWithPrefix(db2.data_dir(), "tandem-old-").size(), 1u);
  // A key written on db1 is readable on db2 within a second.
  ASSERT_TRUE(db1.Command({"SET", "after:enable", "yes"}).ok());
  EXPECT_TRUE(HasValue(db2, "after:enable", "yes", seconds(1)));
  // db2 refuses writes.
  EXPECT_EQ(ConfigValue(db2, "replica-read-only"), "yes");
  absl::Status write = db2.Command({"SET", "on:the:slave", "x"}).status();
  EXPECT_FALSE(write.ok());
  EXPECT_TRUE(absl::StrContains(write.message(), "READONLY")) << write;
  // The role survives a restart of redis-server: it is in redis.conf.
  absl::StatusOr<std::string> conf = ReadFile(db2.data_dir() + "/redis.conf");
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_TRUE(absl::StrContains(*conf, absl::StrCat("replicaof 127.0.0.1 ", p1))) << *conf;

  // 3. Env files and hooks.
  for (const char* id : {"db1", "db2"}) {
    auto env = cluster_.Env(id);
    EXPECT_EQ(env["REDIS_ADDRESS"], "127.0.0.1") << id;
    EXPECT_EQ(env["REDIS_ADDRESS_INT"], "127.0.0.1") << id;
    EXPECT_TRUE(env.count("REDIS_ADDRESS_EXT")) << id;
    EXPECT_EQ(env["REDIS_PORT"], p1) << id;
    EXPECT_EQ(env["REDIS_SLAVE_ADDRESSES"], SlaveAddresses({&db2})) << id;
    EXPECT_EQ(env["REDIS_SLAVE_ADDRESSES_INT"], SlaveAddresses({&db2})) << id;
    EXPECT_TRUE(env.count("REDIS_SLAVE_ADDRESSES_EXT")) << id;
  }
  EXPECT_EQ(cluster_.Env("db1")["TANDEM_ROLE"], "master");
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "slave");
  EXPECT_EQ(cluster_.Env("db3")["TANDEM_ROLE"], "standalone");
  EXPECT_EQ(cluster_.HookRuns("db1"), 2) << "standalone, then master";
  EXPECT_EQ(cluster_.HookRuns("db2"), 2) << "standalone, then slave";
  EXPECT_EQ(cluster_.HookRuns("db3"), 1) << "untouched";

  // env, status, nodes -o json.
  {
    CtlResult env = cluster_.Ctl({"env", "db2"});
    EXPECT_EQ(env.exit_code, 0);
    EXPECT_NE(env.out.find("REDIS_ADDRESS=127.0.0.1"), std::string::npos) << env.out;
    EXPECT_NE(env.out.find("REDIS_PORT=" + p1), std::string::npos) << env.out;
    EXPECT_NE(env.out.find("TANDEM_ROLE=slave"), std::string::npos) << env.out;
    CtlResult status = cluster_.Ctl({"status", "db2"});
    EXPECT_EQ(status.exit_code, 0);
    EXPECT_NE(status.out.find("slave"), std::string::npos) << status.out;
    EXPECT_EQ(status.out.find(kPassword), std::string::npos) << "no secret in status";
    auto nodes = cluster_.Nodes();
    EXPECT_EQ(nodes["db2"]["observed"]["role"], "slave");
    EXPECT_TRUE(nodes["db2"]["observed"]["streaming"].get<bool>());
    EXPECT_EQ(nodes["db2"]["upstream_id"], "db1");
    EXPECT_EQ(nodes["db1"]["observed"]["role"], "master");
    EXPECT_EQ(cluster_.Ctl({"nodes", "-o", "json"}).out.find(kPassword), std::string::npos);
  }

  // 4. The slave's redis-server is shut down: its agent starts it again, from
  // its redis.conf, still a replica of db1. No hook runs (nothing changed).
  {
    (void)db2.Command({"SHUTDOWN"});  // the server closes the connection
    ASSERT_TRUE(PollUntil([&] { return !db2.Answers(); }, seconds(30)));
    ASSERT_TRUE(db1.Command({"SET", "while:db2:down", "1"}).ok());
    EXPECT_TRUE(PollUntil([&] { return StreamsFrom(db2, db1); }, seconds(60)))
        << "db2's agent did not bring its server back as a replica of db1";
    EXPECT_TRUE(HasValue(db2, "while:db2:down", "1", seconds(5)));
    EXPECT_EQ(DbSize(db2), kKeys + 2);
    EXPECT_TRUE(absl::StrContains(db2.Command({"SET", "x", "1"}).status().message(), "READONLY"));
    cluster_.Wait({"db1", "db2"});
    EXPECT_EQ(cluster_.HookRuns("db2"), 2);
  }

  // The slave's agent is killed (-9); replication goes on without it. While
  // it is away its redis-server is stopped too; the restarted agent starts
  // it again, still a replica of db1, and runs no hook.
  {
    cluster_.KillAgent("db2");
    ASSERT_TRUE(db1.Command({"SET", "agent:away", "1"}).ok());
    EXPECT_TRUE(HasValue(db2, "agent:away", "1", seconds(5)));
    ASSERT_TRUE(db2.Stop().ok());
    ASSERT_FALSE(db2.Answers());
    ASSERT_TRUE(db1.Command({"SET", "agent:and:server:away", "1"}).ok());
    cluster_.StartAgent("db2");
    // Polled first: until the new agent reports, the controller still holds
    // the converged report of the killed one.
    EXPECT_TRUE(PollUntil([&] { return StreamsFrom(db2, db1); }, seconds(60)))
        << "the restarted agent did not bring db2's server back as a replica of db1";
    cluster_.Wait({"db1", "db2"});
    EXPECT_TRUE(HasValue(db2, "agent:and:server:away", "1", seconds(5)));
    ASSERT_TRUE(db1.Command({"SET", "agent:back", "1"}).ok());
    EXPECT_TRUE(HasValue(db2, "agent:back", "1", seconds(5)));
    EXPECT_EQ(DbSize(db2), kKeys + 5);
    EXPECT_EQ(ConfigValue(db2, "replica-read-only"), "yes");
    EXPECT_EQ(cluster_.HookRuns("db2"), 2);
    EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "slave");
    EXPECT_EQ(cluster_.Nodes()["db2"]["observed"]["role"], "slave");
  }

  // 5. Add db3 as a second slave, and kill -9 its agent in the middle of the
  // full sync: db1 holds the transfer back for a few seconds
  // (repl-diskless-sync-delay) so that the kill lands inside it. The new
  // agent waits for the sync already under way instead of starting over.
  ASSERT_TRUE(db1.Command({"CONFIG", "SET", "repl-diskless-sync-delay", "5"}).ok());
  CtlResult add = cluster_.Ctl({"slave", "add", "db3", "--master", "db1"});
  ASSERT_EQ(add.exit_code, 0) << add.out;
  // A replica of db1 whose link is not up yet: REPLICAOF done, sync pending.
  const bool caught = PollUntil(
      [&] {
        absl::StatusOr<std::map<std::string, std::string>> info = db3.Info("replication");
        return info.ok() && (*info)["role"] == "slave" &&
               (*info)["master_port"] == std::to_string(db1.port()) &&
               (*info)["master_link_status"] != "up";
      },
      seconds(30), milliseconds(5));
  cluster_.KillAgent("db3");
  cluster_.StartAgent("db3");
  EXPECT_TRUE(caught) << "db3's full sync was never seen in progress";
  ASSERT_TRUE(PollUntil([&] { return StreamsFrom(db3, db1); }, seconds(60)));
  ASSERT_TRUE(db1.Command({"CONFIG", "SET", "repl-diskless-sync-delay", "0"}).ok());
  cluster_.Wait({"db1", "db2", "db3"});
  EXPECT_TRUE(StreamsFrom(db3, db1));
  EXPECT_TRUE(StreamsFrom(db2, db1));
  EXPECT_EQ(DbSize(db3), kKeys + 5);
  EXPECT_EQ(Get(db3, "own:db3"), "<nil>");
  EXPECT_EQ(FilesWithPrefix(db3.data_dir(), "tandem-old-").size(), 1u) << "db3's own data kept";
  ASSERT_TRUE(db1.Command({"SET", "after:add", "yes"}).ok());
  EXPECT_TRUE(HasValue(db3, "after:add", "yes", seconds(1)));
  EXPECT_TRUE(HasValue(db2, "after:add", "yes", seconds(1)));
  EXPECT_TRUE(absl::StrContains(db3.Command({"SET", "x", "1"}).status().message(), "READONLY"));
  EXPECT_EQ(InfoField(db1, "replication", "connected_slaves"), "2");
  for (const char* id : {"db1", "db2", "db3"}) {
    EXPECT_EQ(cluster_.Env(id)["REDIS_SLAVE_ADDRESSES"], SlaveAddresses({&db2, &db3})) << id;
    EXPECT_EQ(cluster_.Env(id)["REDIS_PORT"], p1) << id;
  }
  EXPECT_EQ(cluster_.Env("db3")["TANDEM_ROLE"], "slave");
  EXPECT_EQ(cluster_.HookRuns("db1"), 3) << "master, now with two slaves";
  EXPECT_EQ(cluster_.HookRuns("db2"), 3) << "its env names the new slave";
  EXPECT_EQ(cluster_.HookRuns("db3"), 2);

  // 6. Remove db3: standalone and writable again, with the data it had.
  CtlResult remove = cluster_.Ctl({"slave", "remove", "db3"});
  ASSERT_EQ(remove.exit_code, 0) << remove.out;
  cluster_.Wait({"db1", "db2", "db3"});
  EXPECT_TRUE(IsMaster(db3));
  EXPECT_EQ(DbSize(db3), kKeys + 6);
  EXPECT_TRUE(db3.Command({"SET", "db3:on:its:own", "1"}).ok());
  EXPECT_EQ(Get(db1, "db3:on:its:own"), "<nil>");
  EXPECT_TRUE(PollUntil([&] { return InfoField(db1, "replication", "connected_slaves") == "1"; },
                        seconds(10)));
  EXPECT_TRUE(StreamsFrom(db2, db1));
  EXPECT_EQ(cluster_.Env("db3")["TANDEM_ROLE"], "standalone");
  EXPECT_EQ(cluster_.Env("db3")["REDIS_PORT"], std::to_string(db3.port()));
  EXPECT_EQ(cluster_.Env("db3")["REDIS_SLAVE_ADDRESSES"], "");
  EXPECT_EQ(cluster_.Env("db1")["REDIS_SLAVE_ADDRESSES"], SlaveAddresses({&db2}));
  EXPECT_EQ(cluster_.Nodes()["db3"]["observed"]["role"], "standalone");

  // 7. Disable replication: every member standalone and writable, data kept.
  ASSERT_TRUE(db1.Command({"SET", "before:disable", "1"}).ok());
  EXPECT_TRUE(HasValue(db2, "before:disable", "1", seconds(5)));
  CtlResult disable = cluster_.Ctl({"replication", "disable", "--master", "db1"});
  ASSERT_EQ(disable.exit_code, 0) << disable.out;
  cluster_.Wait({"db1", "db2", "db3"});
  for (RedisServer* server : {&db1, &db2, &db3}) {
    EXPECT_TRUE(IsMaster(*server)) << server->data_dir();
    EXPECT_TRUE(TryWrite(*server).ok()) << server->data_dir();
  }
  EXPECT_EQ(DbSize(db1), kKeys + 7) << "nothing lost on the master";
  EXPECT_EQ(DbSize(db2), kKeys + 7) << "the slave keeps its copy";
  EXPECT_TRUE(db2.Command({"SET", "db2:on:its:own", "1"}).ok());
  EXPECT_EQ(Get(db1, "db2:on:its:own"), "<nil>");
  EXPECT_EQ(InfoField(db1, "replication", "connected_slaves"), "0");
  conf = ReadFile(db2.data_dir() + "/redis.conf");
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_FALSE(absl::StrContains(*conf, "replicaof")) << *conf;
  for (const char* id : {"db1", "db2"}) {
    auto env = cluster_.Env(id);
    EXPECT_EQ(env["TANDEM_ROLE"], "standalone") << id;
    EXPECT_EQ(env["REDIS_SLAVE_ADDRESSES"], "") << id;
    EXPECT_EQ(env["REDIS_ADDRESS"], "127.0.0.1") << id;
  }
  EXPECT_EQ(cluster_.Env("db2")["REDIS_PORT"], std::to_string(db2.port()));
  for (const auto& [id, n] : cluster_.Nodes()) {
    EXPECT_EQ(n["observed"]["role"], "standalone") << id;
    EXPECT_TRUE(n["converged"].get<bool>()) << id;
  }
  // No secret on the servers' command lines or in the agents' env files.
  for (const char* id : {"db1", "db2", "db3"}) {
    absl::StatusOr<std::string> env = ReadFile(cluster_.node(id).env_file);
    ASSERT_TRUE(env.ok());
    EXPECT_FALSE(absl::StrContains(*env, kPassword)) << id;
  }
}


// A master without a single key still gets its slave: an empty dataset is a
// size (zero), not an unknown one.
TEST_F(RedisE2eTest, EmptyMasterGetsASlave) {
  RedisServer& db1 = AddRedisNode("db1");
  RedisServer& db2 = AddRedisNode("db2");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  ASSERT_EQ(DbSize(db1), 0);
  ASSERT_TRUE(db2.Command({"SET", "own:db2", "42"}).ok());

  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"}, "60s");
  EXPECT_TRUE(StreamsFrom(db2, db1));
  EXPECT_EQ(DbSize(db2), 0);
  EXPECT_EQ(FilesWithPrefix(db2.data_dir(), "tandem-old-").size(), 1u);
  ASSERT_TRUE(db1.Command({"SET", "first", "1"}).ok());
  EXPECT_TRUE(HasValue(db2, "first", "1", seconds(1)));
}

// Fenced switchover with an application writing the whole time to the node
// its env file names as master: never two writable nodes (sampled every
// 50 ms), no acknowledged write lost, the env files switch only once the new
// master takes writes, and the old master and the other slave continue from
// their own data (a partial resync, no full copy).
TEST_F(RedisE2eTest, PromoteIsAFencedSwitchover) {
  RedisServer& db1 = AddRedisNode("db1");
  RedisServer& db2 = AddRedisNode("db2");
  RedisServer& db3 = AddRedisNode("db3");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3"});
  ASSERT_TRUE(Fill(db1, 10000).ok());
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  CtlResult add = cluster_.Ctl({"slave", "add", "db3", "--master", "db1"});
  ASSERT_EQ(add.exit_code, 0) << add.out;
  cluster_.Wait({"db1", "db2", "db3"});
  const std::string p2 = std::to_string(db2.port());

  // The application: SET w:<n> for n = 1, 2, ... against the master named
  // by db1's env file, reconnecting (and reading the file again) after any
  // error, as an application restarted by the env hook would.
  std::atomic<bool> stop{false};
  std::vector<int64_t> acknowledged;  // read once the writer stopped
  std::atomic<int64_t> acknowledged_count{0};
  std::atomic<int64_t> acknowledged_by_db2{0};
  std::thread writer([&] {
    std::unique_ptr<RedisClient> client;
    std::string port;
    for (int64_t n = 1; !stop.load(); ++n) {
      if (client == nullptr) {
        port = cluster_.Env("db1")["REDIS_PORT"];
        uint32_t p = 0;
        if (!absl::SimpleAtoi(port, &p)) continue;
        absl::StatusOr<std::unique_ptr<RedisClient>> c =
            RedisClient::Connect(cluster_.Env("db1")["REDIS_ADDRESS"], p,
                                 RedisLogin{"", kPassword}, milliseconds(1000));
        if (!c.ok()) continue;
        client = *std::move(c);
      }
      if (client->Command({"SET", absl::StrCat("w:", n), "1"}).ok()) {
        acknowledged.push_back(n);
        ++acknowledged_count;
        if (port == p2) ++acknowledged_by_db2;
      } else {
        client.reset();
      }
    }
  });
  // Every 50 ms: how many nodes take writes, and whether an env file names
  // db2 before db2 takes writes. The nodes are probed one after the other,
  // db2 first: once writable it stays so, hence db2 writable and then
  // another node writable a moment later means both were at that moment.
  const std::vector<const RedisServer*> probe_order = {&db2, &db3, &db1};
  std::atomic<int> max_writable{0};
  std::atomic<int> samples{0};
  std::atomic<int> env_before_writable{0};
  std::thread sampler([&] {
    PollUntil(
        [&] {
          bool env_names_db2 = false;
          for (const char* id : {"db1", "db2", "db3"}) {
            env_names_db2 = env_names_db2 || cluster_.Env(id)["REDIS_PORT"] == p2;
          }
          int writable = 0;
          for (const RedisServer* server : probe_order) writable += Writable(*server);
          max_writable = std::max(max_writable.load(), writable);
          if (env_names_db2 && !Writable(db2, milliseconds(2000))) ++env_before_writable;
          ++samples;
          return stop.load();
        },
        std::chrono::minutes(10), milliseconds(50));
  });
  EXPECT_TRUE(PollUntil([&] { return samples.load() >= 5 && acknowledged_count.load() >= 10; },
                        seconds(30)));

  const int samples_before = samples.load();
  CtlResult promote = cluster_.Ctl({"promote", "db2"});
  EXPECT_EQ(promote.exit_code, 0) << promote.out;
  EXPECT_NE(promote.out.find("fenced"), std::string::npos) << promote.out;
  cluster_.Wait({"db1", "db2", "db3"}, "180s");
  // The application reaches the new master through the switched env file.
  EXPECT_TRUE(PollUntil(
      [&] { return acknowledged_by_db2.load() >= 10 && samples.load() >= samples_before + 5; },
      seconds(30)));
  stop = true;
  writer.join();
  sampler.join();

  std::cout << "[ MEASURED ] " << samples.load() << " samples, " << acknowledged.size()
            << " acknowledged writes (" << acknowledged_by_db2.load() << " by db2), at most "
            << max_writable.load() << " writable node(s) at once" << std::endl;
  EXPECT_LE(max_writable.load(), 1) << "two writable nodes at once";
  EXPECT_EQ(env_before_writable.load(), 0) << "an env file named db2 before it took writes";
  ASSERT_FALSE(acknowledged.empty());
  // Every acknowledged write is on the new master.
  int64_t missing = 0;
  for (size_t i = 0; i < acknowledged.size(); i += 500) {
    std::vector<std::string> exists = {"EXISTS"};
    for (size_t j = i; j < std::min(acknowledged.size(), i + 500); ++j) {
      exists.push_back(absl::StrCat("w:", acknowledged[j]));
    }
    absl::StatusOr<RedisReply> found = db2.Command(exists);
    ASSERT_TRUE(found.ok()) << found.status();
    missing += static_cast<int64_t>(exists.size() - 1) - found->integer;
  }
  EXPECT_EQ(missing, 0) << "acknowledged writes lost (of " << acknowledged.size() << ")";

  // db2 is the writable master; db1 and db3 follow it, having continued
  // from their own data.
  EXPECT_TRUE(Writable(db2, milliseconds(2000)));
  EXPECT_TRUE(StreamsFrom(db1, db2));
  EXPECT_TRUE(StreamsFrom(db3, db2));
  EXPECT_EQ(InfoField(db2, "stats", "sync_full"), "0") << "a follower was copied in full";
  EXPECT_EQ(InfoField(db2, "stats", "sync_partial_ok"), "2");
  EXPECT_EQ(FilesWithPrefix(db1.data_dir(), "tandem-old-").size(), 0u);
  EXPECT_FALSE(PathExists(db1.data_dir() + "/tandem-fenced"));
  EXPECT_EQ(ConfigValue(db1, "repl-ping-replica-period"), "10");
  ASSERT_TRUE(db2.Command({"SET", "after:promote", "1"}).ok());
  EXPECT_TRUE(HasValue(db1, "after:promote", "1", seconds(5)));
  EXPECT_TRUE(HasValue(db3, "after:promote", "1", seconds(5)));
  EXPECT_EQ(DbSize(db1), DbSize(db2));
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["desired"]["role"], "master");
  EXPECT_EQ(nodes["db1"]["upstream_id"], "db2");
  EXPECT_EQ(nodes["db3"]["upstream_id"], "db2");
  for (const char* id : {"db1", "db2", "db3"}) {
    EXPECT_EQ(cluster_.Env(id)["REDIS_PORT"], p2) << id;
    EXPECT_EQ(cluster_.Env(id)["REDIS_SLAVE_ADDRESSES"], SlaveAddresses({&db1, &db3})) << id;
  }
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "master");
  EXPECT_EQ(cluster_.Env("db1")["TANDEM_ROLE"], "slave");
}

// A slave whose link stays down longer than engine.out_of_sync_after (its
// masterauth changed by hand: the agent's Follow does not look at it) is
// reported out of sync; with auto_resync the controller resyncs it, and the
// cheap path (a rejoin that continues from its data) repairs it.
TEST_F(RedisE2eTest, OutOfSyncSlaveIsReportedThenResyncedAutomatically) {
  RedisServer& db1 = AddRedisNode("db1");
  RedisServer& db2 = AddRedisNode("db2", "main", "", "  out_of_sync_after: 2\n");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  ASSERT_TRUE(StreamsFrom(db2, db1));
  const size_t kept_aside = FilesWithPrefix(db2.data_dir(), "tandem-old-").size();

  ASSERT_TRUE(db2.Command({"CONFIG", "SET", "masterauth", "not-the-password"}).ok());
  ASSERT_TRUE(db2.Command({"CLIENT", "KILL", "TYPE", "master"}).ok());
  ASSERT_TRUE(db1.Command({"SET", "while:broken", "1"}).ok());
  // Reported by the agent (its observation), shown by tandemctl status.
  EXPECT_TRUE(PollUntil(
      [&] {
        auto n = cluster_.Nodes()["db2"];
        return n.is_object() && n["observed"]["out_of_sync"].is_string() &&
               n["observed"]["out_of_sync"] != "";
      },
      seconds(60), milliseconds(200)))
      << cluster_.Ctl({"status", "db2"}).out;
  CtlResult status = cluster_.Ctl({"status", "db2"});
  EXPECT_EQ(status.exit_code, 0) << status.out;
  const std::string reason = absl::StrCat("link to 127.0.0.1:", db1.port(), " down for");
  bool shown = false;
  for (absl::string_view line : absl::StrSplit(status.out, '\n')) {
    shown = shown || (absl::StrContains(line, "out of sync") && absl::StrContains(line, reason) &&
                      !absl::StrContains(line, "wait-streaming"));
  }
  EXPECT_TRUE(shown) << status.out;
  EXPECT_EQ(status.out.find(kPassword), std::string::npos);
  EXPECT_FALSE(StreamsFrom(db2, db1)) << "nothing repairs it without auto_resync";

  const std::string full_syncs = InfoField(db1, "stats", "sync_full");
  cluster_.KillController();
  cluster_.StartController("auto_resync: true\n");
  EXPECT_TRUE(PollUntil([&] { return StreamsFrom(db2, db1); }, seconds(60)));
  // Polled first: until db2's agent reports the resync, its last report
  // still carries the error of the pass before.
  EXPECT_TRUE(PollUntil(
      [&] {
        auto n = cluster_.Nodes()["db2"];
        return n.is_object() && n["converged"].get<bool>() && n["observed"]["out_of_sync"] == "";
      },
      seconds(60), milliseconds(200)));
  cluster_.Wait({"db1", "db2"});
  EXPECT_TRUE(HasValue(db2, "while:broken", "1", seconds(5)));
  EXPECT_EQ(ConfigValue(db2, "masterauth"), kPassword);
  EXPECT_EQ(cluster_.Nodes()["db2"]["observed"]["out_of_sync"], "");
  bool auto_resync_event = false;
  for (const nlohmann::json& e : cluster_.Events()) {
    auto_resync_event = auto_resync_event ||
                        absl::StrContains(e.value("message", ""), "auto-resync db2: link to");
  }
  EXPECT_TRUE(auto_resync_event) << cluster_.Ctl({"events"}).out;
  // The cheap path: no full copy, nothing more kept aside.
  EXPECT_EQ(InfoField(db1, "stats", "sync_full"), full_syncs);
  EXPECT_EQ(FilesWithPrefix(db2.data_dir(), "tandem-old-").size(), kept_aside);

  // An operator's resync never takes the cheap path: a full copy, the
  // slave's data kept aside first.
  CtlResult resync = cluster_.Ctl({"resync", "db2"});
  ASSERT_EQ(resync.exit_code, 0) << resync.out;
  EXPECT_TRUE(PollUntil([&] { return InfoField(db1, "stats", "sync_full") != full_syncs; },
                        seconds(60)));
  cluster_.Wait({"db1", "db2"});
  EXPECT_TRUE(StreamsFrom(db2, db1));
  EXPECT_EQ(FilesWithPrefix(db2.data_dir(), "tandem-old-").size(), kept_aside + 1);
  ASSERT_TRUE(db1.Command({"SET", "after:resync", "1"}).ok());
  EXPECT_TRUE(HasValue(db2, "after:resync", "1", seconds(5)));
}

// A slave in another stack replicates from its master's external address,
// and each side's env file points at the master as reachable from its stack.
TEST_F(RedisE2eTest, ReplicationBetweenStacksUsesExternalAddresses) {
  RedisServer& db1 = AddRedisNode("db1", "a", "127.0.0.2");
  RedisServer& db2 = AddRedisNode("db2", "b", "127.0.0.3");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  ASSERT_TRUE(db1.Command({"SET", "from:a", "1"}).ok());
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["observed"]["upstream"], absl::StrCat("127.0.0.2:", db1.port()));
  EXPECT_EQ(nodes["db2"]["desired"]["upstream"]["host"], "127.0.0.2");
  EXPECT_EQ(InfoField(db2, "replication", "master_host"), "127.0.0.2");
  EXPECT_EQ(InfoField(db2, "replication", "master_link_status"), "up");
  EXPECT_EQ(Get(db2, "from:a"), "1");
  ASSERT_TRUE(db1.Command({"SET", "after", "1"}).ok());
  EXPECT_TRUE(HasValue(db2, "after", "1", seconds(5)));
  // The slave's stack reaches the master by its external address; the
  // master's stack by its internal one.
  const std::string p1 = std::to_string(db1.port());
  auto slave_env = cluster_.Env("db2");
  EXPECT_EQ(slave_env["REDIS_ADDRESS"], "127.0.0.2");
  EXPECT_EQ(slave_env["REDIS_ADDRESS_INT"], "127.0.0.1");
  EXPECT_EQ(slave_env["REDIS_ADDRESS_EXT"], "127.0.0.2");
  EXPECT_EQ(slave_env["REDIS_PORT"], p1);
  EXPECT_EQ(slave_env["TANDEM_ROLE"], "slave");
  EXPECT_EQ(slave_env["REDIS_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port()));
  auto master_env = cluster_.Env("db1");
  EXPECT_EQ(master_env["REDIS_ADDRESS"], "127.0.0.1");
  EXPECT_EQ(master_env["REDIS_ADDRESS_INT"], "127.0.0.1");
  EXPECT_EQ(master_env["REDIS_ADDRESS_EXT"], "127.0.0.2");
  EXPECT_EQ(master_env["REDIS_PORT"], p1);
  EXPECT_EQ(master_env["REDIS_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.3:", db2.port()));
  EXPECT_EQ(master_env["REDIS_SLAVE_ADDRESSES_INT"], absl::StrCat("127.0.0.1:", db2.port()));
  EXPECT_EQ(master_env["REDIS_SLAVE_ADDRESSES_EXT"], absl::StrCat("127.0.0.3:", db2.port()));
}

// The same between stacks over TLS: the slave's redis-server connects to the
// master's TLS port (registered as engine.tls_port) with a certificate of
// its own, and checks the master's against the CA.
TEST_F(RedisE2eTest, ReplicationBetweenStacksUsesTls) {
  TempDir certs_dir("tcert");
  absl::StatusOr<TestCertificates> certs =
      MakeTestCertificates(certs_dir.path(), {"127.0.0.2", "127.0.0.3"});
  ASSERT_TRUE(certs.ok()) << certs.status();
  const std::string tls_agent =
      absl::StrCat("  tls_mode: between-stacks\n  tls_ca_file: ", certs->ca_file,
                   "\n  tls_cert_file: ", certs->cert_file, "\n  tls_key_file: ", certs->key_file,
                   "\n");
  RedisServer& db1 = AddRedisNode("db1", "a", "127.0.0.2", tls_agent, *certs);
  RedisServer& db2 = AddRedisNode("db2", "b", "127.0.0.3", tls_agent, *certs);
  ASSERT_FALSE(HasFailure());
  ASSERT_NE(db1.tls_port(), 0);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  ASSERT_TRUE(db1.Command({"SET", "from:a", "1"}).ok());
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  const std::string tls_port = std::to_string(db1.tls_port());
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["observed"]["upstream"], "127.0.0.2:" + tls_port);
  EXPECT_EQ(nodes["db2"]["desired"]["upstream"]["host"], "127.0.0.2");
  EXPECT_EQ(InfoField(db2, "replication", "master_host"), "127.0.0.2");
  EXPECT_EQ(InfoField(db2, "replication", "master_port"), tls_port);
  EXPECT_EQ(InfoField(db2, "replication", "master_link_status"), "up");
  EXPECT_EQ(ConfigValue(db2, "tls-replication"), "yes");
  EXPECT_EQ(Get(db2, "from:a"), "1");
  ASSERT_TRUE(db1.Command({"SET", "after", "1"}).ok());
  EXPECT_TRUE(HasValue(db2, "after", "1", seconds(5)));
  // The environment names the plain port, as without TLS.
  const std::string p1 = std::to_string(db1.port());
  auto slave_env = cluster_.Env("db2");
  EXPECT_EQ(slave_env["REDIS_ADDRESS"], "127.0.0.2");
  EXPECT_EQ(slave_env["REDIS_ADDRESS_INT"], "127.0.0.1");
  EXPECT_EQ(slave_env["REDIS_ADDRESS_EXT"], "127.0.0.2");
  EXPECT_EQ(slave_env["REDIS_PORT"], p1);
  EXPECT_EQ(slave_env["TANDEM_ROLE"], "slave");
  EXPECT_EQ(slave_env["REDIS_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port()));
  auto master_env = cluster_.Env("db1");
  EXPECT_EQ(master_env["REDIS_ADDRESS"], "127.0.0.1");
  EXPECT_EQ(master_env["REDIS_ADDRESS_EXT"], "127.0.0.2");
  EXPECT_EQ(master_env["REDIS_PORT"], p1);
  EXPECT_EQ(master_env["REDIS_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.3:", db2.port()));
  EXPECT_EQ(master_env["REDIS_SLAVE_ADDRESSES_EXT"], absl::StrCat("127.0.0.3:", db2.port()));
}

// Three slaves added in one command are bootstrapped one at a time: the
// master never serves two full copies at once.
TEST_F(RedisE2eTest, SlavesAddedTogetherBootstrapOneAtATime) {
  RedisServer& db1 = AddRedisNode("db1");
  for (const char* id : {"db2", "db3", "db4"}) AddRedisNode(id);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 4; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3", "db4"});
  // Big enough that a copy takes a while: the queue is visible right after
  // the command even on a fast machine.
  absl::Status filled = Fill(db1, 300000);
  ASSERT_TRUE(filled.ok()) << filled;

  CtlResult add = cluster_.Ctl({"slave", "add", "db2", "db3", "db4", "--master", "db1"});
  ASSERT_EQ(add.exit_code, 0) << add.out;
  cluster_.ExpectBootstrapsOneAtATime({"db2", "db3", "db4"});
  // Each one a full copy of its own, one after the other.
  EXPECT_EQ(InfoField(db1, "stats", "sync_full"), "3");
  ASSERT_TRUE(db1.Command({"SET", "last", "1"}).ok());
  for (const char* id : {"db2", "db3", "db4"}) {
    const RedisServer& server = *servers_[id[2] - '1'];
    EXPECT_TRUE(StreamsFrom(server, db1)) << id;
    EXPECT_TRUE(HasValue(server, "last", "1", seconds(5))) << id;
    EXPECT_EQ(DbSize(server), 300001) << id;
  }
}

}  // namespace
}  // namespace tandem::testing
