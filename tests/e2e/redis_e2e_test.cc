// The Redis user story, end to end: real tandem-controller, one real
// tandem-agent per node, real redis-server processes (started by the agents'
// engine from each node's data_dir/redis.conf), driven by tandemctl.
#include <dirent.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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
    "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'key:' .. i, 'value ' .. i) end "
    "return tonumber(ARGV[1])";

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
  RedisServer& AddRedisNode(const std::string& id) {
    RedisServerOptions options;
    options.name = id;
    options.persistence = true;
    options.password = kPassword;
    absl::StatusOr<std::unique_ptr<RedisServer>> created = RedisServer::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    RedisServer& server = *servers_.emplace_back(*std::move(created));
    EXPECT_TRUE(server.Stop().ok());
    std::vector<std::string> quoted;
    for (const std::string& arg : server.server_args()) quoted.push_back(absl::StrCat("\"", arg, "\""));
    cluster_.AddNode(id, "main",
                     absl::StrCat("addresses: {internal: 127.0.0.1}\n"
                                  "engine:\n"
                                  "  type: redis\n"
                                  "  port: ", server.port(), "\n",
                                  "  data_dir: ", server.data_dir(), "\n",
                                  "  password_file: ", server.password_file(), "\n",
                                  "  replication_password_file: ", server.password_file(), "\n",
                                  "  log_file: ", server.log_file(), "\n",
                                  "  server_args: [", absl::StrJoin(quoted, ", "), "]\n",
                                  "  timeout: 60\n"));
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
  absl::StatusOr<RedisReply> filled =
      db1.Command({"EVAL", kFillScript, "0", std::to_string(kKeys)});
  ASSERT_TRUE(filled.ok()) << filled.status();
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

}  // namespace
}  // namespace tandem::testing
