// Tests of the controller's domain: registry, desired states, env vars,
// generations, store and configuration.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "controller/controller_config.h"
#include "controller/desired.h"
#include "controller/registry.h"
#include "controller/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

NodeInfo Node(const std::string& id, EngineType engine = EngineType::kPostgresql,
              const std::string& stack = "eu", const std::string& internal = "",
              const std::string& external = "", uint32_t port = 5432) {
  NodeInfo info;
  info.id = id;
  info.stack = stack;
  info.engine = engine;
  info.addresses.internal = internal.empty() ? "10.0.0." + std::to_string(id.size()) : internal;
  info.addresses.external = external;
  info.port = port;
  return info;
}

// A temp dir under /tmp, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/ctlcore.XXXXXX";
    const char* dir = ::mkdtemp(pattern);
    EXPECT_NE(dir, nullptr);
    path_ = dir == nullptr ? "" : dir;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

RegistryOptions FixedClock(size_t events_keep = 2000) {
  RegistryOptions options;
  options.events_keep = events_keep;
  // Every slave released at once; QueueTest covers the bootstrap queue.
  options.policy.bootstraps_per_group = 0;
  options.now = [] { return absl::FromUnixSeconds(1700000000); };
  return options;
}

std::unique_ptr<Registry> OpenOrDie(std::unique_ptr<Store> store,
                                    RegistryOptions options = FixedClock()) {
  absl::StatusOr<std::unique_ptr<Registry>> registry = Registry::Open(std::move(store), options);
  EXPECT_TRUE(registry.ok()) << registry.status();
  return registry.ok() ? *std::move(registry) : nullptr;
}

void MustRegister(Registry& registry, const NodeInfo& info) {
  absl::StatusOr<Changes> changes = registry.Register(info);
  ASSERT_TRUE(changes.ok()) << changes.status();
}

void MustEnable(Registry& registry, const std::string& master, const std::string& slave) {
  absl::StatusOr<Changes> changes = registry.EnableReplication(master, slave);
  ASSERT_TRUE(changes.ok()) << changes.status();
}

uint64_t Gen(const Registry& registry, const std::string& id) {
  absl::StatusOr<DesiredState> desired = registry.Desired(id);
  EXPECT_TRUE(desired.ok()) << desired.status();
  return desired.ok() ? desired->generation : 0;
}

DesiredState DesiredOf(const Registry& registry, const std::string& id) {
  absl::StatusOr<DesiredState> desired = registry.Desired(id);
  EXPECT_TRUE(desired.ok()) << desired.status();
  return desired.ok() ? *desired : DesiredState{};
}

std::map<std::string, uint64_t> Generations(const Registry& registry) {
  std::map<std::string, uint64_t> out;
  for (const auto& [id, record] : registry.Snapshot().nodes) out[id] = record.desired.generation;
  return out;
}

// ------------------------------------------------------------ registration

TEST(RegisterTest, NewNodeIsStandaloneAtGenerationOne) {
  auto store = std::make_unique<MemoryStore>();
  std::unique_ptr<Registry> registry = OpenOrDie(std::move(store));
  absl::StatusOr<Changes> changes =
      registry->Register(Node("db1", EngineType::kPostgresql, "eu", "10.0.0.5", "203.0.113.5"));
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, ElementsAre("db1: new node -> standalone (generation 1)"));
  DesiredState desired = DesiredOf(*registry, "db1");
  EXPECT_EQ(desired.generation, 1u);
  EXPECT_EQ(desired.role, Role::kStandalone);
  EXPECT_EQ(desired.env, (EnvMap{{"POSTGRESQL_ADDRESS", "10.0.0.5"},
                                 {"POSTGRESQL_ADDRESS_INT", "10.0.0.5"},
                                 {"POSTGRESQL_ADDRESS_EXT", "203.0.113.5"},
                                 {"POSTGRESQL_PORT", "5432"},
                                 {"POSTGRESQL_SLAVE_ADDRESSES", ""},
                                 {"POSTGRESQL_SLAVE_ADDRESSES_INT", ""},
                                 {"POSTGRESQL_SLAVE_ADDRESSES_EXT", ""},
                                 {"TANDEM_ROLE", "standalone"}}));
  std::vector<Event> events = registry->Events(0, "");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "desired");
  EXPECT_EQ(events[0].node, "db1");
  EXPECT_EQ(events[0].generation, 1u);
  EXPECT_THAT(events[0].message,
              HasSubstr("new node -> standalone (generation 1): db1 registered"));
}

struct BadInfoCase {
  std::string name;
  NodeInfo info;
  std::string message;
};

TEST(RegisterTest, RefusesInvalidInfoAndChangesNothing) {
  auto with = [](auto mutate) {
    NodeInfo info = Node("db1");
    mutate(info);
    return info;
  };
  const std::vector<BadInfoCase> cases = {
      {"empty id", with([](NodeInfo& n) { n.id = ""; }), "the node id is empty"},
      {"id with space", with([](NodeInfo& n) { n.id = "db 1"; }), "contains ' '"},
      {"id with newline", with([](NodeInfo& n) { n.id = "db1\nX=1"; }), "contains byte 0x0a"},
      {"empty stack", with([](NodeInfo& n) { n.stack = ""; }), "node db1: the stack is empty"},
      {"no engine", with([](NodeInfo& n) { n.engine = EngineType::kUnspecified; }),
       "the engine is not given"},
      {"port 0", with([](NodeInfo& n) { n.port = 0; }), "port 0 is not in 1..65535"},
      {"port 65536", with([](NodeInfo& n) { n.port = 65536; }), "port 65536 is not in 1..65535"},
      {"no internal address", with([](NodeInfo& n) { n.addresses.internal = ""; }),
       "the internal address is empty"},
      {"address with comma", with([](NodeInfo& n) { n.addresses.internal = "10.0.0.1,10.0.0.2"; }),
       "',' is not allowed in a host name"},
      {"external with newline", with([](NodeInfo& n) { n.addresses.external = "1.2.3.4\nEVIL=1"; }),
       "external address"},
      {"long id", with([](NodeInfo& n) { n.id = std::string(129, 'a'); }), "longer than 128"},
      // What access rules would read as more than one host.
      {"keyword samenet", with([](NodeInfo& n) { n.addresses.internal = "samenet"; }),
       "keyword of access rules"},
      {"keyword all", with([](NodeInfo& n) { n.addresses.external = "all"; }),
       "keyword of access rules"},
      {"wildcard %", with([](NodeInfo& n) { n.addresses.internal = "%"; }), "wildcard"},
      {"wildcard _", with([](NodeInfo& n) { n.addresses.internal = "db_1"; }), "wildcard"},
      {"wildcard *", with([](NodeInfo& n) { n.addresses.internal = "*.example"; }), "wildcard"},
      {"CIDR", with([](NodeInfo& n) { n.addresses.internal = "10.0.0.0/8"; }), "range"},
  };
  auto store = std::make_unique<MemoryStore>();
  MemoryStore* memory = store.get();
  std::unique_ptr<Registry> registry = OpenOrDie(std::move(store));
  MustRegister(*registry, Node("db0"));
  const ControllerState before = registry->Snapshot();
  const int saves = memory->save_count();
  for (const BadInfoCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Changes> changes = registry->Register(c.info);
    EXPECT_EQ(changes.status().code(), absl::StatusCode::kInvalidArgument) << changes.status();
    EXPECT_THAT(std::string(changes.status().message()), HasSubstr(c.message));
    EXPECT_EQ(registry->Snapshot(), before);
    EXPECT_EQ(memory->save_count(), saves);
  }
}

TEST(RegisterTest, SameInfoAgainChangesAndSavesNothing) {
  auto store = std::make_unique<MemoryStore>();
  MemoryStore* memory = store.get();
  std::unique_ptr<Registry> registry = OpenOrDie(std::move(store));
  MustRegister(*registry, Node("db1"));
  const int saves = memory->save_count();
  absl::StatusOr<Changes> changes = registry->Register(Node("db1"));
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, IsEmpty());
  EXPECT_EQ(memory->save_count(), saves);
  EXPECT_EQ(Gen(*registry, "db1"), 1u);
}

TEST(RegisterTest, ChangedAddressUpdatesEveryDependentNode) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1", EngineType::kPostgresql, "eu", "10.0.0.1"));
  MustRegister(*registry, Node("db2", EngineType::kPostgresql, "eu", "10.0.0.2"));
  MustRegister(*registry, Node("db3", EngineType::kPostgresql, "eu", "10.0.0.3"));
  MustRegister(*registry, Node("other", EngineType::kPostgresql, "eu", "10.0.0.9"));
  MustEnable(*registry, "db1", "db2");
  MustEnable(*registry, "db1", "db3");
  const std::map<std::string, uint64_t> before = Generations(*registry);

  absl::StatusOr<Changes> changes =
      registry->Register(Node("db1", EngineType::kPostgresql, "eu", "10.0.0.11", "", 5433));
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(changes->size(), 3u);
  const std::map<std::string, uint64_t> after = Generations(*registry);
  EXPECT_EQ(after.at("db1"), before.at("db1") + 1);
  EXPECT_EQ(after.at("db2"), before.at("db2") + 1);
  EXPECT_EQ(after.at("db3"), before.at("db3") + 1);
  EXPECT_EQ(after.at("other"), before.at("other"));
  DesiredState db2 = DesiredOf(*registry, "db2");
  EXPECT_EQ(db2.upstream, (Peer{"db1", "eu", "10.0.0.11", 5433}));
  EXPECT_EQ(db2.env.at("POSTGRESQL_ADDRESS"), "10.0.0.11");
  EXPECT_EQ(db2.env.at("POSTGRESQL_PORT"), "5433");
  // The slaves now differ from the master's port: host:port entries.
  EXPECT_EQ(db2.env.at("POSTGRESQL_SLAVE_ADDRESSES"), "10.0.0.2:5432,10.0.0.3:5432");
  std::vector<Event> events = registry->Events(0, "db2");
  ASSERT_FALSE(events.empty());
  EXPECT_THAT(events.back().message, HasSubstr("db1 re-registered: internal address 10.0.0.1 -> "
                                               "10.0.0.11, port 5432 -> 5433"));
}

TEST(RegisterTest, EngineChangeRefusedInAGroupAllowedStandalone) {
  auto store = std::make_unique<MemoryStore>();
  MemoryStore* memory = store.get();
  std::unique_ptr<Registry> registry = OpenOrDie(std::move(store));
  MustRegister(*registry, Node("db1"));
  MustRegister(*registry, Node("db2"));
  MustRegister(*registry, Node("db3"));
  MustEnable(*registry, "db1", "db2");
  const ControllerState before = registry->Snapshot();
  const int saves = memory->save_count();
  for (const std::string id : {"db1", "db2"}) {
    absl::StatusOr<Changes> changes = registry->Register(Node(id, EngineType::kRedis));
    EXPECT_EQ(changes.status().code(), absl::StatusCode::kFailedPrecondition) << id;
    EXPECT_THAT(std::string(changes.status().message()),
                HasSubstr("as postgresql and cannot re-register as redis"));
  }
  EXPECT_EQ(registry->Snapshot(), before);
  EXPECT_EQ(memory->save_count(), saves);

  absl::StatusOr<Changes> changes = registry->Register(Node("db3", EngineType::kRedis));
  ASSERT_TRUE(changes.ok()) << changes.status();
  DesiredState db3 = DesiredOf(*registry, "db3");
  EXPECT_EQ(db3.generation, 2u);
  EXPECT_EQ(db3.env.count("REDIS_ADDRESS"), 1u);
  EXPECT_EQ(db3.env.count("POSTGRESQL_ADDRESS"), 0u);
}

TEST(RegisterTest, MongoGroupCannotMoveAcrossStacks) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("m1", EngineType::kMongodb, "a"));
  MustRegister(*registry, Node("m2", EngineType::kMongodb, "a"));
  MustEnable(*registry, "m1", "m2");
  const ControllerState before = registry->Snapshot();
  absl::StatusOr<Changes> changes = registry->Register(Node("m2", EngineType::kMongodb, "b"));
  EXPECT_EQ(changes.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(changes.status().message()),
              HasSubstr("MongoDB replication between stacks is not supported"));
  EXPECT_EQ(registry->Snapshot(), before);
}

// ---------------------------------------------------------------- refusals

struct RefusalCase {
  std::string name;
  std::function<absl::StatusOr<Changes>(Registry&)> call;
  absl::StatusCode code;
  std::string message;
};

// pg: db1 master of db2; db4 master of db5; db3 and db6 standalone.
// redis: r1. mongodb: m1 (stack a), m2 (stack b).
std::unique_ptr<Registry> World(MemoryStore** memory_out) {
  auto store = std::make_unique<MemoryStore>();
  *memory_out = store.get();
  std::unique_ptr<Registry> registry = OpenOrDie(std::move(store));
  for (const std::string id : {"db1", "db2", "db3", "db4", "db5", "db6"}) {
    MustRegister(*registry, Node(id));
  }
  MustRegister(*registry, Node("r1", EngineType::kRedis));
  MustRegister(*registry, Node("m1", EngineType::kMongodb, "a"));
  MustRegister(*registry, Node("m2", EngineType::kMongodb, "b"));
  MustEnable(*registry, "db1", "db2");
  MustEnable(*registry, "db4", "db5");
  return registry;
}

TEST(RefusalTest, EachRefusalHasItsCodeAndMessageAndChangesNothing) {
  using C = absl::StatusCode;
  const std::vector<RefusalCase> cases = {
      {"own upstream", [](Registry& r) { return r.EnableReplication("db3", "db3"); },
       C::kInvalidArgument, "a node cannot be its own upstream"},
      {"no master", [](Registry& r) { return r.EnableReplication("", "db3"); }, C::kInvalidArgument,
       "no master node given"},
      {"no slave", [](Registry& r) { return r.EnableReplication("db3", ""); }, C::kInvalidArgument,
       "no slave node given"},
      {"unknown master", [](Registry& r) { return r.EnableReplication("db9", "db3"); },
       C::kNotFound, "unknown node db9"},
      {"unknown slave", [](Registry& r) { return r.EnableReplication("db3", "db9"); }, C::kNotFound,
       "unknown node db9"},
      {"engines differ", [](Registry& r) { return r.EnableReplication("db3", "r1"); },
       C::kFailedPrecondition, "engines differ: db3 is postgresql, r1 is redis"},
      {"mongodb between stacks", [](Registry& r) { return r.EnableReplication("m1", "m2"); },
       C::kFailedPrecondition, "MongoDB replication between stacks is not supported"},
      {"slave of a slave", [](Registry& r) { return r.EnableReplication("db2", "db3"); },
       C::kFailedPrecondition, "db2 is a slave of db1; a slave cannot serve slaves"},
      {"master with slaves as slave", [](Registry& r) { return r.EnableReplication("db3", "db1"); },
       C::kFailedPrecondition,
       "db1 is the master of a group (the master of db2); disable replication or remove its "
       "slaves first"},
      {"two masters in a group", [](Registry& r) { return r.EnableReplication("db1", "db4"); },
       C::kFailedPrecondition, "db4 is the master of a group"},
      {"slave of another master", [](Registry& r) { return r.EnableReplication("db4", "db2"); },
       C::kFailedPrecondition, "db2 is already a slave of db1; remove it first"},
      {"disable on a slave", [](Registry& r) { return r.DisableReplication("db2"); },
       C::kFailedPrecondition, "db2 is not a master: it is a slave of db1"},
      {"disable on standalone", [](Registry& r) { return r.DisableReplication("db3"); },
       C::kFailedPrecondition, "db3 is not a master: it is standalone"},
      {"disable unknown", [](Registry& r) { return r.DisableReplication("db9"); }, C::kNotFound,
       "unknown node db9"},
      {"disable nothing", [](Registry& r) { return r.DisableReplication(""); }, C::kInvalidArgument,
       "no master node given"},
      {"remove a master", [](Registry& r) { return r.RemoveSlave("db1"); }, C::kFailedPrecondition,
       "db1 is not a slave: it is the master of db2"},
      {"remove standalone", [](Registry& r) { return r.RemoveSlave("db3"); },
       C::kFailedPrecondition, "db3 is not a slave: it is standalone"},
      {"remove unknown", [](Registry& r) { return r.RemoveSlave("db9"); }, C::kNotFound,
       "unknown node db9"},
      {"resync standalone", [](Registry& r) { return r.Resync("db3"); }, C::kFailedPrecondition,
       "db3 is not a slave"},
      {"resync master", [](Registry& r) { return r.Resync("db1"); }, C::kFailedPrecondition,
       "db1 is not a slave"},
      {"resync unknown", [](Registry& r) { return r.Resync("db9"); }, C::kNotFound,
       "unknown node db9"},
      {"promote before the copy", [](Registry& r) { return r.Promote("db2", false); },
       C::kFailedPrecondition, "db2 has not finished copying db1's data yet"},
      {"promote a master", [](Registry& r) { return r.Promote("db1", false); },
       C::kFailedPrecondition, "db1 is not a slave"},
      {"promote unknown", [](Registry& r) { return r.Promote("db9", true); }, C::kNotFound,
       "unknown node db9"},
  };
  MemoryStore* memory = nullptr;
  std::unique_ptr<Registry> registry = World(&memory);
  const ControllerState before = registry->Snapshot();
  const int saves = memory->save_count();
  for (const RefusalCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Changes> changes = c.call(*registry);
    EXPECT_EQ(changes.status().code(), c.code) << changes.status();
    EXPECT_THAT(std::string(changes.status().message()), HasSubstr(c.message));
    // Nothing changed: roles, generations, tokens, events, and nothing saved.
    EXPECT_EQ(registry->Snapshot(), before);
    EXPECT_EQ(memory->save_count(), saves);
  }
}

TEST(RefusalTest, AlreadySlaveOfThisMasterIsOkWithNothingToChange) {
  MemoryStore* memory = nullptr;
  std::unique_ptr<Registry> registry = World(&memory);
  const ControllerState before = registry->Snapshot();
  const int saves = memory->save_count();
  absl::StatusOr<Changes> changes = registry->EnableReplication("db1", "db2");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, IsEmpty());
  EXPECT_EQ(registry->Snapshot(), before);
  EXPECT_EQ(memory->save_count(), saves);
}

TEST(RefusalTest, FailedSaveChangesNothing) {
  MemoryStore* memory = nullptr;
  std::unique_ptr<Registry> registry = World(&memory);
  const ControllerState before = registry->Snapshot();
  memory->FailSaves(1, absl::ResourceExhaustedError("disk full"));
  absl::StatusOr<Changes> changes = registry->EnableReplication("db1", "db3");
  EXPECT_EQ(changes.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(registry->Snapshot(), before);
  // The next attempt goes through.
  changes = registry->EnableReplication("db1", "db3");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(registry->Snapshot().nodes.at("db3").role, Role::kSlave);
}

// ----------------------------------------------------------------- effects

TEST(ChangeTest, EnableReplicationMakesMasterAndSlave) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1", EngineType::kPostgresql, "eu", "10.0.0.1"));
  MustRegister(*registry, Node("db2", EngineType::kPostgresql, "eu", "10.0.0.2"));
  absl::StatusOr<Changes> changes = registry->EnableReplication("db1", "db2");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, ElementsAre("db1: standalone -> master of db2 (generation 2)",
                                    "db2: standalone -> slave of db1 (generation 2)"));
  DesiredState db1 = DesiredOf(*registry, "db1");
  DesiredState db2 = DesiredOf(*registry, "db2");
  EXPECT_EQ(db1.role, Role::kMaster);
  // db2's copy is under way: the one slave db1's agent streams a backup to.
  EXPECT_THAT(db1.slaves, ElementsAre(Peer{"db2", "eu", "10.0.0.2", 5432, 0, 0, true}));
  EXPECT_TRUE(db1.resync_token.empty());
  EXPECT_EQ(db2.role, Role::kSlave);
  EXPECT_EQ(db2.upstream, (Peer{"db1", "eu", "10.0.0.1", 5432}));
  EXPECT_EQ(db2.resync_token, "r2-1");  // a fresh slave always gets a fresh token
  std::vector<Event> events = registry->Events(2, "");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(
      events[1].message,
      "standalone -> slave of db1 (generation 2): replication enable --master db1 --slave db2");
  EXPECT_EQ(events[1].unix_time, 1700000000.0);
}

TEST(ChangeTest, GenerationsBumpOnlyOnRealChange) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  for (const std::string id : {"db1", "db2", "db3", "lone"}) MustRegister(*registry, Node(id));
  MustRegister(*registry, Node("r1", EngineType::kRedis));
  MustEnable(*registry, "db1", "db2");
  struct Step {
    std::string name;
    std::function<absl::StatusOr<Changes>(Registry&)> call;
    std::set<std::string> bumped;
  };
  const std::vector<Step> steps = {
      // A new slave changes the master's slaves and every member's env.
      {"add db3",
       [](Registry& r) { return r.EnableReplication("db1", "db3"); },
       {"db1", "db2", "db3"}},
      {"again", [](Registry& r) { return r.EnableReplication("db1", "db3"); }, {}},
      // A resync only concerns the slave.
      {"resync db2", [](Registry& r) { return r.Resync("db2"); }, {"db2"}},
      // Removing a slave changes the group's env and the master's slaves.
      {"remove db3", [](Registry& r) { return r.RemoveSlave("db3"); }, {"db1", "db2", "db3"}},
      {"register same", [](Registry& r) { return r.Register(Node("db1")); }, {}},
      {"disable", [](Registry& r) { return r.DisableReplication("db1"); }, {"db1", "db2"}},
  };
  for (const Step& step : steps) {
    SCOPED_TRACE(step.name);
    const std::map<std::string, uint64_t> before = Generations(*registry);
    absl::StatusOr<Changes> changes = step.call(*registry);
    ASSERT_TRUE(changes.ok()) << changes.status();
    EXPECT_EQ(changes->size(), step.bumped.size());
    const std::map<std::string, uint64_t> after = Generations(*registry);
    for (const auto& [id, generation] : before) {
      EXPECT_EQ(after.at(id), generation + (step.bumped.count(id) ? 1 : 0)) << id;
    }
  }
}

TEST(ChangeTest, RemoveSlaveKeepsMasterAndDisableEndsTheGroup) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  for (const std::string id : {"db1", "db2", "db3"}) MustRegister(*registry, Node(id));
  MustEnable(*registry, "db1", "db2");
  MustEnable(*registry, "db1", "db3");
  absl::StatusOr<Changes> changes = registry->RemoveSlave("db2");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, ElementsAre("db1: master of db2,db3 -> master of db3 (generation 4)",
                                    "db2: slave of db1 -> standalone (generation 4)",
                                    "db3: slave of db1: env changed (generation 3)"));
  changes = registry->RemoveSlave("db3");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(DesiredOf(*registry, "db1").role, Role::kMaster);
  EXPECT_THAT(DesiredOf(*registry, "db1").slaves, IsEmpty());
  EXPECT_EQ(DesiredOf(*registry, "db3").resync_token, "");
  // A master with no slaves can itself become a slave.
  MustEnable(*registry, "db3", "db1");
  changes = registry->DisableReplication("db3");
  ASSERT_TRUE(changes.ok()) << changes.status();
  for (const std::string id : {"db1", "db2", "db3"}) {
    DesiredState d = DesiredOf(*registry, id);
    EXPECT_EQ(d.role, Role::kStandalone) << id;
    EXPECT_EQ(d.upstream, Peer{}) << id;
    EXPECT_EQ(d.resync_token, "") << id;
  }
}

TEST(ChangeTest, ResyncTokensAreNeverReused) {
  TempDir dir;
  std::set<std::string> tokens;
  for (int round = 0; round < 3; ++round) {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
    if (round == 0) {
      MustRegister(*registry, Node("db1"));
      MustRegister(*registry, Node("db2"));
      MustEnable(*registry, "db1", "db2");
      tokens.insert(DesiredOf(*registry, "db2").resync_token);
    }
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(registry->Resync("db2").ok());
      EXPECT_TRUE(tokens.insert(DesiredOf(*registry, "db2").resync_token).second);
    }
  }
  EXPECT_EQ(tokens.size(), 10u);
}

// -------------------------------------------------------------------- env

struct EnvCase {
  std::string name;
  std::string node;
  EnvMap env;
};

TEST(EnvTest, WithinAStackAndBetweenStacks) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  // eu: m (master) and s1; us: s2 (external address), s3 (no external
  // address, other port).
  MustRegister(*registry, Node("m", EngineType::kRedis, "eu", "10.0.0.1", "198.51.100.1", 6379));
  MustRegister(*registry, Node("s1", EngineType::kRedis, "eu", "10.0.0.2", "198.51.100.2", 6379));
  MustRegister(*registry, Node("s2", EngineType::kRedis, "us", "10.1.0.2", "203.0.113.2", 6379));
  MustRegister(*registry, Node("s3", EngineType::kRedis, "us", "10.1.0.3", "", 6380));
  MustRegister(*registry, Node("solo", EngineType::kRedis, "us", "10.1.0.9", "", 6390));
  for (const std::string id : {"s1", "s2", "s3"}) MustEnable(*registry, "m", id);

  const std::vector<EnvCase> cases = {
      {"master",
       "m",
       {{"REDIS_ADDRESS", "10.0.0.1"},
        {"REDIS_ADDRESS_INT", "10.0.0.1"},
        {"REDIS_ADDRESS_EXT", "198.51.100.1"},
        {"REDIS_PORT", "6379"},
        {"REDIS_SLAVE_ADDRESSES", "10.0.0.2,203.0.113.2,10.1.0.3:6380"},
        {"REDIS_SLAVE_ADDRESSES_INT", "10.0.0.2,10.1.0.2,10.1.0.3:6380"},
        {"REDIS_SLAVE_ADDRESSES_EXT", "198.51.100.2,203.0.113.2"},
        {"TANDEM_ROLE", "master"}}},
      {"slave in the master's stack",
       "s1",
       {{"REDIS_ADDRESS", "10.0.0.1"},
        {"REDIS_ADDRESS_INT", "10.0.0.1"},
        {"REDIS_ADDRESS_EXT", "198.51.100.1"},
        {"REDIS_PORT", "6379"},
        {"REDIS_SLAVE_ADDRESSES", "10.0.0.2,203.0.113.2,10.1.0.3:6380"},
        {"REDIS_SLAVE_ADDRESSES_INT", "10.0.0.2,10.1.0.2,10.1.0.3:6380"},
        {"REDIS_SLAVE_ADDRESSES_EXT", "198.51.100.2,203.0.113.2"},
        {"TANDEM_ROLE", "slave"}}},
      {"slave in another stack",
       "s2",
       {{"REDIS_ADDRESS", "198.51.100.1"},
        {"REDIS_ADDRESS_INT", "10.0.0.1"},
        {"REDIS_ADDRESS_EXT", "198.51.100.1"},
        {"REDIS_PORT", "6379"},
        {"REDIS_SLAVE_ADDRESSES", "198.51.100.2,10.1.0.2,10.1.0.3:6380"},
        {"REDIS_SLAVE_ADDRESSES_INT", "10.0.0.2,10.1.0.2,10.1.0.3:6380"},
        {"REDIS_SLAVE_ADDRESSES_EXT", "198.51.100.2,203.0.113.2"},
        {"TANDEM_ROLE", "slave"}}},
      {"standalone",
       "solo",
       {{"REDIS_ADDRESS", "10.1.0.9"},
        {"REDIS_ADDRESS_INT", "10.1.0.9"},
        {"REDIS_ADDRESS_EXT", ""},
        {"REDIS_PORT", "6390"},
        {"REDIS_SLAVE_ADDRESSES", ""},
        {"REDIS_SLAVE_ADDRESSES_INT", ""},
        {"REDIS_SLAVE_ADDRESSES_EXT", ""},
        {"TANDEM_ROLE", "standalone"}}},
  };
  for (const EnvCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(DesiredOf(*registry, c.node).env, c.env);
  }
  // Peers: hosts as reachable from the receiving node's stack.
  EXPECT_THAT(DesiredOf(*registry, "m").slaves,
              ElementsAre(Peer{"s1", "eu", "10.0.0.2", 6379, 0, 0, true},
                          Peer{"s2", "us", "203.0.113.2", 6379, 0, 0, true},
                          Peer{"s3", "us", "10.1.0.3", 6380, 0, 0, true}));
  EXPECT_EQ(DesiredOf(*registry, "s2").upstream, (Peer{"m", "eu", "198.51.100.1", 6379}));
  EXPECT_EQ(DesiredOf(*registry, "s1").upstream, (Peer{"m", "eu", "10.0.0.1", 6379}));
}

TEST(EnvTest, MasterWithoutExternalAddressIsReachedInternallyAndIPv6GetsBrackets) {
  ControllerState state;
  NodeRecord m;
  m.info = Node("m", EngineType::kMysql, "eu", "fd00::1", "", 3306);
  m.role = Role::kMaster;
  NodeRecord s;
  s.info = Node("s", EngineType::kMysql, "us", "fd00::2", "", 3307);
  s.role = Role::kSlave;
  s.upstream_id = "m";
  state.nodes = {{"m", m}, {"s", s}};
  EnvMap env = ComputeEnv(state, state.nodes.at("s"));
  EXPECT_EQ(env.at("MYSQL_ADDRESS"), "fd00::1");
  EXPECT_EQ(env.at("MYSQL_SLAVE_ADDRESSES"), "[fd00::2]:3307");
  EXPECT_EQ(env.at("MYSQL_SLAVE_ADDRESSES_EXT"), "");
  EXPECT_EQ(ComputeDesired(state, state.nodes.at("s")).upstream,
            (Peer{"m", "eu", "fd00::1", 3306}));
  EXPECT_EQ(ReachableAddress(m.info, "us"), "fd00::1");
}

// ------------------------------------------------------------------ store

ControllerState SampleState() {
  ControllerState state;
  NodeRecord m;
  m.info = Node("db1", EngineType::kPostgresql, "eu", "10.0.0.1", "203.0.113.1");
  m.role = Role::kMaster;
  NodeRecord s;
  s.info = Node("db2", EngineType::kPostgresql, "us", "10.1.0.1", "");
  s.role = Role::kSlave;
  s.upstream_id = "db1";
  s.resync_token = "r7-3";
  state.nodes = {{"db1", m}, {"db2", s}};
  RecomputeDesired(&state);
  state.nodes.at("db1").desired.generation = 7;
  state.nodes.at("db2").desired.generation = 9;
  state.resync_counter = 3;
  state.events.push_back(
      Event{4, 1700000000.25, "db2", "step", "bootstrap: \"quoted\" \xc3\xa9", false, 9, 1.5});
  state.events.push_back(Event{5, 1700000001, "db1", "desired", "x", true, 7, 0});
  state.next_event_seq = 6;
  return state;
}

TEST(StoreTest, SerializeParseRoundTrip) {
  const ControllerState state = SampleState();
  absl::StatusOr<ControllerState> parsed = ParseState(SerializeState(state));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, state);
  // Deterministic.
  EXPECT_EQ(SerializeState(*parsed), SerializeState(state));
}

struct CorruptCase {
  std::string name;
  std::string text;
  std::string message;
};

TEST(StoreTest, CorruptDocumentsAreRefused) {
  const std::string good = SerializeState(SampleState());
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) text.replace(at, from.size(), to);
    return text;
  };
  const std::vector<CorruptCase> cases = {
      {"empty", "", "not a valid JSON document"},
      {"truncated", good.substr(0, good.size() / 2), "not a valid JSON document"},
      {"garbage", "\x01\x02garbage", "not a valid JSON document"},
      {"array", "[]", "not a JSON object"},
      {"other format", replace("tandem-controller-state", "other"), "\"format\""},
      {"future version", replace("\"version\": 1", "\"version\": 99"), "format version 99"},
      {"unknown engine", replace("\"postgresql\"", "\"oracle\""), "unknown engine"},
      {"missing field", replace("\"resync_counter\"", "\"resync_kounter\""), "resync_counter"},
      {"dangling upstream", replace("\"upstream\": \"db1\"", "\"upstream\": \"db7\""),
       "slave of unknown node"},
      {"event order", replace("\"seq\": 5", "\"seq\": 3"), "out of order"},
  };
  for (const CorruptCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<ControllerState> parsed = ParseState(c.text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss) << parsed.status();
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.message));
  }
}

TEST(StoreTest, CorruptStateFileIsAStartUpErrorNamingTheFile) {
  TempDir dir;
  const std::string path = dir.path() + "/state.json";
  {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
    MustRegister(*registry, Node("db1"));
  }
  absl::StatusOr<std::string> text = ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_TRUE(WriteFileAtomic(path, text->substr(0, text->size() - 10)).ok());
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::unique_ptr<Registry>> registry = Registry::Open(*std::move(store));
  EXPECT_EQ(registry.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(registry.status().message()), HasSubstr(path));
  // And the file was left as it was: never silently reset.
  absl::StatusOr<std::string> after = ReadFile(path);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, text->substr(0, text->size() - 10));
}

TEST(StoreTest, GenerationsNeverGoBackAcrossReloads) {
  TempDir dir;
  std::map<std::string, uint64_t> last;
  ControllerState saved;
  {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
    for (const std::string id : {"db1", "db2", "db3"}) MustRegister(*registry, Node(id));
    MustEnable(*registry, "db1", "db2");
    MustEnable(*registry, "db1", "db3");
    ASSERT_TRUE(registry->Resync("db3").ok());
    last = Generations(*registry);
    saved = registry->Snapshot();
  }
  {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
    // Same state, same generations: a restart bumps nothing.
    EXPECT_EQ(registry->Snapshot(), saved);
    EXPECT_EQ(Generations(*registry), last);
    ASSERT_TRUE(registry->DisableReplication("db1").ok());
    for (const auto& [id, generation] : Generations(*registry)) {
      EXPECT_EQ(generation, last.at(id) + 1) << id;
    }
    last = Generations(*registry);
  }
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
  EXPECT_EQ(Generations(*registry), last);
  EXPECT_EQ(DesiredOf(*registry, "db2").role, Role::kStandalone);
}

TEST(StoreTest, StartUpBumpsGenerationWhenSavedTargetDiffers) {
  // As after an upgrade whose env computation differs: the saved target is
  // republished under a new generation, never under the old one.
  ControllerState state = SampleState();
  state.nodes.at("db2").desired.env["POSTGRESQL_ADDRESS"] = "stale";
  auto store = std::make_unique<MemoryStore>();
  store->SetContent(SerializeState(state));
  std::unique_ptr<Registry> registry = OpenOrDie(std::move(store));
  EXPECT_EQ(Gen(*registry, "db1"), 7u);
  EXPECT_EQ(Gen(*registry, "db2"), 10u);
  EXPECT_EQ(DesiredOf(*registry, "db2").env.at("POSTGRESQL_ADDRESS"), "203.0.113.1");
  std::vector<Event> events = registry->Events(5, "");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].message, HasSubstr("recomputed at controller start-up"));
}

TEST(StoreTest, DataDirIsLockedAgainstASecondController) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<FileStore>> first = FileStore::Open(dir.path());
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<FileStore>> second = FileStore::Open(dir.path());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use by another"));
  first->reset();
  EXPECT_TRUE(FileStore::Open(dir.path()).ok());
}

TEST(StoreTest, FreshDataDirIsCreatedAndSavedAtOnce) {
  TempDir dir;
  const std::string data_dir = dir.path() + "/a/b";
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(data_dir);
  ASSERT_TRUE(store.ok()) << store.status();
  std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
  EXPECT_TRUE(PathExists(data_dir + "/state.json"));
  EXPECT_TRUE(registry->ListNodes().empty());
}

// ----------------------------------------------------------------- events

TEST(EventsTest, HistoryIsBoundedAndSurvivesReload) {
  TempDir dir;
  uint64_t last_seq = 0;
  {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store), FixedClock(5));
    MustRegister(*registry, Node("db1"));
    MustRegister(*registry, Node("db2"));
    MustEnable(*registry, "db1", "db2");
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(registry->Resync("db2").ok());
    std::vector<Event> events = registry->Events(0, "");
    ASSERT_EQ(events.size(), 5u);
    for (size_t i = 1; i < events.size(); ++i) EXPECT_EQ(events[i].seq, events[i - 1].seq + 1);
    last_seq = events.back().seq;
    EXPECT_EQ(last_seq, 14u);  // 2 registrations + 2 enable + 10 resyncs
  }
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store), FixedClock(3));
  std::vector<Event> events = registry->Events(0, "");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events.back().seq, last_seq);
  ASSERT_TRUE(registry->Resync("db2").ok());
  EXPECT_EQ(registry->Events(last_seq, "").at(0).seq, last_seq + 1);
}

TEST(EventsTest, ReportRecordsStepsAndObservedState) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1"));
  MustRegister(*registry, Node("db2"));
  MustEnable(*registry, "db1", "db2");
  registry->AgentConnected("db1");
  registry->AgentConnected("db2");

  EXPECT_EQ(registry->Report("db9", ObservedState{}, {}).code(), absl::StatusCode::kNotFound);
  absl::StatusOr<NodeView> view = registry->GetNode("db2");
  ASSERT_TRUE(view.ok());
  EXPECT_FALSE(view->observed.has_value());
  EXPECT_EQ(view->seconds_since_report, -1);
  EXPECT_FALSE(view->converged);
  EXPECT_EQ(view->upstream_id, "db1");

  ObservedState master;
  master.data_bytes = 123456;
  master.converged_generation = 2;
  ASSERT_TRUE(registry->Report("db1", master, {}).ok());
  ObservedState slave;
  slave.converged_generation = 1;
  std::vector<StepEvent> steps = {{2, "bootstrap", "standalone -> slave", true, "", 3.5},
                                  {2, "follow_upstream", "", false, "connection refused", 0.1}};
  ASSERT_TRUE(registry->Report("db2", slave, steps).ok());

  std::vector<Event> events = registry->Events(0, "db2");
  ASSERT_GE(events.size(), 2u);
  const Event& ok = events[events.size() - 2];
  const Event& failed = events.back();
  EXPECT_EQ(ok.kind, "step");
  EXPECT_EQ(ok.message, "bootstrap: standalone -> slave");
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.seconds, 3.5);
  EXPECT_EQ(failed.message, "follow_upstream failed: connection refused");
  EXPECT_FALSE(failed.ok);
  EXPECT_EQ(failed.generation, 2u);

  view = registry->GetNode("db2");
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(view->observed.has_value());
  EXPECT_FALSE(view->converged);  // converged on 1, desired is 2
  EXPECT_EQ(view->seconds_since_report, 0);
  EXPECT_EQ(view->desired.upstream_data_bytes, 123456u);
  view = registry->GetNode("db1");
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->converged);
  EXPECT_EQ(view->desired.upstream_data_bytes, 0u);  // a master has no upstream
}

TEST(EventsTest, ARestartedAgentIsNotConvergedOnItsPredecessorsReport) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1"));
  registry->AgentConnected("db1");
  ObservedState converged;
  converged.converged_generation = Gen(*registry, "db1");
  ASSERT_TRUE(registry->Report("db1", converged, {}).ok());
  EXPECT_TRUE(registry->GetNode("db1")->converged);
  registry->AgentDisconnected("db1");
  EXPECT_FALSE(registry->GetNode("db1")->converged) << "no agent";
  registry->AgentConnected("db1");
  EXPECT_FALSE(registry->GetNode("db1")->converged) << "not reported since it came back";
  ASSERT_TRUE(registry->Report("db1", converged, {}).ok());
  EXPECT_TRUE(registry->GetNode("db1")->converged);
}

TEST(EventsTest, AgentConnectionIsCounted) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1"));
  registry->AgentConnected("db1");
  registry->AgentConnected("db1");
  registry->AgentDisconnected("db1");
  EXPECT_TRUE(registry->GetNode("db1")->agent_connected);
  registry->AgentDisconnected("db1");
  EXPECT_FALSE(registry->GetNode("db1")->agent_connected);
}

// ---------------------------------------------------------------- waiting

TEST(WaitTest, WaitForDesiredWakesOnNewGeneration) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1"));
  MustRegister(*registry, Node("db2"));
  // Known generation older than the current one: at once.
  absl::StatusOr<DesiredState> now = registry->WaitForDesired("db2", 0, absl::InfiniteFuture());
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->generation, 1u);

  absl::StatusOr<DesiredState> woken;
  std::thread waiter(
      [&] { woken = registry->WaitForDesired("db2", 1, absl::Now() + absl::Seconds(30)); });
  MustEnable(*registry, "db1", "db2");
  waiter.join();
  ASSERT_TRUE(woken.ok()) << woken.status();
  EXPECT_EQ(woken->generation, 2u);
  EXPECT_EQ(woken->role, Role::kSlave);

  // No change until the deadline: the current state comes back.
  absl::StatusOr<DesiredState> same =
      registry->WaitForDesired("db2", 2, absl::Now() + absl::Milliseconds(20));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->generation, 2u);
  EXPECT_EQ(registry->WaitForDesired("db9", 0, absl::Now()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(WaitTest, ShutdownReleasesWaiters) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1"));
  absl::StatusOr<DesiredState> woken;
  std::vector<Event> events = {Event{}};
  std::thread waiter([&] { woken = registry->WaitForDesired("db1", 1, absl::InfiniteFuture()); });
  std::thread event_waiter(
      [&] { events = registry->WaitForEvents(1000, "", absl::InfiniteFuture()); });
  registry->Shutdown();
  waiter.join();
  event_waiter.join();
  EXPECT_EQ(woken.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(registry->IsShutdown());
}

TEST(WaitTest, WaitForEventsWakesOnNewEvent) {
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  MustRegister(*registry, Node("db1"));
  MustRegister(*registry, Node("db2"));
  std::vector<Event> events;
  std::thread waiter(
      [&] { events = registry->WaitForEvents(2, "db2", absl::Now() + absl::Seconds(30)); });
  ASSERT_TRUE(registry->Report("db1", ObservedState{}, {{1, "start", "", true, "", 0}}).ok());
  MustEnable(*registry, "db1", "db2");
  waiter.join();
  ASSERT_FALSE(events.empty());
  for (const Event& e : events) EXPECT_EQ(e.node, "db2");
  EXPECT_EQ(events[0].kind, "desired");
}

// ----------------------------------------------------------------- config

TEST(ConfigTest, ParsesEveryField) {
  absl::StatusOr<ControllerConfig> config = ParseControllerConfig(
      "listen: 0.0.0.0:7500\ndata_dir: /srv/tc\ncerts_dir: /srv/certs\n"
      "tls_key_file: /srv/keys/c.key\n"
      "events_keep: 50\nauto_resync: true\nauto_resync_interval: 60\n",
      "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->auto_resync);
  EXPECT_EQ(config->auto_resync_interval_seconds, 60);
  EXPECT_EQ(config->listen, "0.0.0.0:7500");
  EXPECT_EQ(config->data_dir, "/srv/tc");
  EXPECT_EQ(ControllerTlsFiles(*config).ca_file, "/srv/certs/ca.crt");
  EXPECT_EQ(ControllerTlsFiles(*config).cert_file, "/srv/certs/controller.crt");
  EXPECT_EQ(ControllerTlsFiles(*config).key_file, "/srv/keys/c.key");
  EXPECT_FALSE(config->insecure);
  EXPECT_EQ(config->events_keep, 50u);
  absl::StatusOr<ControllerConfig> empty = ParseControllerConfig("", "c.yaml");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->listen, "127.0.0.1:7400");
  EXPECT_EQ(empty->data_dir, "/var/lib/tandem-controller");
  EXPECT_FALSE(empty->auto_resync);
  EXPECT_EQ(empty->auto_resync_interval_seconds, 300);
  EXPECT_EQ(ControllerTlsFiles(*empty).cert_file, "/etc/tandem/certs/controller.crt");
}

TEST(ConfigTest, ErrorsNameFileFieldAndReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"listen: 127.0.0.1", "c.yaml: field 'listen': \"127.0.0.1\" has no port"},
      {"listen: 127.0.0.1:99999", "c.yaml: field 'listen': port \"99999\" is not in 0..65535"},
      {"listen: ::1:7400", "c.yaml: field 'listen': \"::1:7400\": write an IPv6 host in brackets"},
      {"data_dir: ''", "c.yaml: field 'data_dir': must not be empty"},
      {"auto_resync: sometimes", "c.yaml: field 'auto_resync': \"sometimes\" is not true or false"},
      {"auto_resync_interval: 0",
       "c.yaml: field 'auto_resync_interval': \"0\" is not a number of seconds in 1..604800"},
      {"events_keep: 0", "c.yaml: field 'events_keep': \"0\" is not a number in 1..1000000"},
      {"events_keep: lots", "c.yaml: field 'events_keep'"},
      {"listne: 1.2.3.4:5", "c.yaml: field 'listne': unknown field"},
      {"auth_token_file: /etc/tandem/token",
       "c.yaml: field 'auth_token_file': the shared token is gone"},
      {"insecure: maybe", "c.yaml: field 'insecure': \"maybe\" is not true or false"},
      {"certs_dir: ''", "c.yaml: field 'certs_dir': must not be empty"},
      {"listen: [a, b]", "c.yaml: field 'listen': must be a single value"},
      {"- a\n- b", "c.yaml: must be a map"},
      {"listen: \"unterminated", "c.yaml: not valid YAML"},
  };
  for (const auto& [yaml, message] : cases) {
    SCOPED_TRACE(yaml);
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(yaml, "c.yaml");
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(message));
  }
}

TEST(ConfigTest, FlagsOverrideTheFile) {
  TempDir dir;
  const std::string path = dir.path() + "/controller.yaml";
  ASSERT_TRUE(WriteFileAtomic(path, "listen: 127.0.0.1:7500\ndata_dir: /from/file\n").ok());
  absl::StatusOr<CommandLine> command_line =
      ParseCommandLine({"--config", path, "--listen=127.0.0.1:7600"});
  ASSERT_TRUE(command_line.ok()) << command_line.status();
  absl::StatusOr<ControllerConfig> config = ResolveConfig(*command_line);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "127.0.0.1:7600");
  EXPECT_EQ(config->data_dir, "/from/file");

  EXPECT_EQ(ParseCommandLine({"--bogus"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ParseCommandLine({"--listen"}).status().message()),
              HasSubstr("--listen needs a value"));
  CommandLine bad_listen;
  bad_listen.listen = "nope";
  EXPECT_EQ(ResolveConfig(bad_listen).status().code(), absl::StatusCode::kInvalidArgument);
  CommandLine missing_file;
  missing_file.config = dir.path() + "/none.yaml";
  absl::StatusOr<ControllerConfig> missing = ResolveConfig(missing_file);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("none.yaml"));
}

}  // namespace
}  // namespace tandem

// ------------------------------------------------------------ bootstrap queue

namespace tandem {
namespace {

ObservedState ConvergedOn(uint64_t generation) {
  ObservedState observed;
  observed.converged_generation = generation;
  observed.seen_generation = generation;
  return observed;
}

std::map<std::string, NodeView> Views(const Registry& registry) {
  std::map<std::string, NodeView> out;
  for (NodeView& view : registry.ListNodes()) out[view.info.id] = view;
  return out;
}

TEST(QueueTest, SlavesOfOneMasterBootstrapOneAtATime) {
  RegistryOptions options = FixedClock();
  options.policy.bootstraps_per_group = 1;
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>(), options);
  for (const char* id : {"db1", "db2", "db3", "db4"}) MustRegister(*registry, Node(id));
  MustEnable(*registry, "db1", "db2");
  MustEnable(*registry, "db1", "db3");
  MustEnable(*registry, "db1", "db4");

  // Only db2 is published as a slave; db3 and db4 wait, unpublished.
  EXPECT_EQ(DesiredOf(*registry, "db2").role, Role::kSlave);
  EXPECT_EQ(DesiredOf(*registry, "db3").role, Role::kStandalone);
  EXPECT_EQ(DesiredOf(*registry, "db3").generation, 1u);
  EXPECT_EQ(DesiredOf(*registry, "db4").role, Role::kStandalone);
  ASSERT_EQ(DesiredOf(*registry, "db1").slaves.size(), 1u);
  EXPECT_EQ(DesiredOf(*registry, "db1").slaves[0].id, "db2");
  auto views = Views(*registry);
  EXPECT_FALSE(views["db2"].queued);
  EXPECT_TRUE(views["db3"].queued);
  EXPECT_TRUE(views["db4"].queued);
  // A queued node is never reported converged, even on its old target.
  ASSERT_TRUE(registry->Report("db3", ConvergedOn(1), {}).ok());
  EXPECT_FALSE(Views(*registry)["db3"].converged);

  // A report that is not yet on db2's new generation releases nothing.
  ASSERT_TRUE(registry->Report("db2", ConvergedOn(1), {}).ok());
  EXPECT_EQ(DesiredOf(*registry, "db3").role, Role::kStandalone);

  // db2 converged on its copy: db3's turn (in the order they were added).
  ASSERT_TRUE(registry->Report("db2", ConvergedOn(Gen(*registry, "db2")), {}).ok());
  EXPECT_EQ(DesiredOf(*registry, "db3").role, Role::kSlave);
  EXPECT_EQ(DesiredOf(*registry, "db3").generation, 2u);
  EXPECT_EQ(DesiredOf(*registry, "db4").role, Role::kStandalone);
  EXPECT_EQ(DesiredOf(*registry, "db1").slaves.size(), 2u);
  EXPECT_EQ(DesiredOf(*registry, "db1").env.at("POSTGRESQL_SLAVE_ADDRESSES"), "10.0.0.3,10.0.0.3");

  ASSERT_TRUE(registry->Report("db3", ConvergedOn(Gen(*registry, "db3")), {}).ok());
  EXPECT_EQ(DesiredOf(*registry, "db4").role, Role::kSlave);
  EXPECT_FALSE(Views(*registry)["db4"].queued);

  // A resync waits its turn but keeps streaming meanwhile (still listed).
  ASSERT_TRUE(registry->Resync("db2").ok());
  const DesiredState before = DesiredOf(*registry, "db2");
  EXPECT_TRUE(Views(*registry)["db2"].queued);
  EXPECT_EQ(DesiredOf(*registry, "db1").slaves.size(), 3u);
  ASSERT_TRUE(registry->Report("db4", ConvergedOn(Gen(*registry, "db4")), {}).ok());
  EXPECT_GT(DesiredOf(*registry, "db2").generation, before.generation);
  EXPECT_NE(DesiredOf(*registry, "db2").resync_token, before.resync_token);
}

TEST(QueueTest, LimitZeroReleasesEverySlaveAtOnce) {
  RegistryOptions options = FixedClock();
  options.policy.bootstraps_per_group = 0;
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>(), options);
  for (const char* id : {"db1", "db2", "db3"}) MustRegister(*registry, Node(id));
  MustEnable(*registry, "db1", "db2");
  MustEnable(*registry, "db1", "db3");
  EXPECT_EQ(DesiredOf(*registry, "db2").role, Role::kSlave);
  EXPECT_EQ(DesiredOf(*registry, "db3").role, Role::kSlave);
}

TEST(QueueTest, SeededSurvivesTheStore) {
  TempDir dir;
  RegistryOptions options = FixedClock();
  {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store), options);
    for (const char* id : {"db1", "db2", "db3"}) MustRegister(*registry, Node(id));
    MustEnable(*registry, "db1", "db2");
    MustEnable(*registry, "db1", "db3");
    ASSERT_TRUE(registry->Report("db2", ConvergedOn(Gen(*registry, "db2")), {}).ok());
  }
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store), options);
  EXPECT_TRUE(registry->Snapshot().nodes.at("db2").seeded);
  EXPECT_EQ(DesiredOf(*registry, "db3").role, Role::kSlave);
}


// ------------------------------------------------------------ promote

class PromoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = OpenOrDie(std::make_unique<MemoryStore>());
    for (const char* id : {"db1", "db2", "db3"}) MustRegister(*registry_, Node(id));
    MustEnable(*registry_, "db1", "db2");
    MustEnable(*registry_, "db1", "db3");
    for (const char* id : {"db1", "db2", "db3"}) ReportConverged(id);
  }
  void ReportConverged(const std::string& id, bool writable = true, std::string position = "") {
    ObservedState observed = ConvergedOn(Gen(*registry_, id));
    observed.writable = writable;
    observed.position = std::move(position);
    ASSERT_TRUE(registry_->Report(id, observed, {}).ok());
  }
  std::unique_ptr<Registry> registry_;
};

TEST_F(PromoteTest, FencesTheMasterFirstThenSwitches) {
  // The old master's agent must be there to be fenced.
  absl::StatusOr<Changes> refused = registry_->Promote("db2", false);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("db1's agent is not connected"));
  registry_->AgentConnected("db1");

  const uint64_t db2_gen = Gen(*registry_, "db2");
  absl::StatusOr<Changes> phase1 = registry_->Promote("db2", false);
  ASSERT_TRUE(phase1.ok()) << phase1.status();
  EXPECT_THAT(*phase1, ElementsAre(HasSubstr("db1: master of db2,db3 -> fenced master")));
  EXPECT_TRUE(DesiredOf(*registry_, "db1").fenced);
  EXPECT_EQ(DesiredOf(*registry_, "db2").role, Role::kSlave) << "not writable before the fence";
  EXPECT_EQ(Gen(*registry_, "db2"), db2_gen);
  // Group changes wait for the switchover.
  absl::StatusOr<Changes> busy = registry_->RemoveSlave("db3");
  EXPECT_THAT(std::string(busy.status().message()), HasSubstr("switchover (promote db2)"));
  // A report from before the fence changes nothing.
  ReportConverged("db1", /*writable=*/true, "0/5000");
  EXPECT_EQ(DesiredOf(*registry_, "db2").role, Role::kSlave);

  // db1 reports the fence and where it stopped: db2 takes over.
  ReportConverged("db1", /*writable=*/false, "0/5000");
  DesiredState db2 = DesiredOf(*registry_, "db2");
  EXPECT_EQ(db2.role, Role::kMaster);
  EXPECT_EQ(db2.catch_up_position, "0/5000");
  EXPECT_FALSE(db2.fenced);
  DesiredState db1 = DesiredOf(*registry_, "db1");
  EXPECT_EQ(db1.role, Role::kSlave);
  EXPECT_EQ(db1.upstream.id, "db2");
  EXPECT_FALSE(db1.fenced);
  EXPECT_FALSE(db1.resync_token.empty());
  // db3 follows too, after db1 (one bootstrap at a time is the default
  // policy; this registry releases all).
  EXPECT_EQ(DesiredOf(*registry_, "db3").upstream.id, "db2");
  EXPECT_EQ(DesiredOf(*registry_, "db3").env.at("POSTGRESQL_ADDRESS"), "10.0.0.3");
  EXPECT_TRUE(registry_->Snapshot().promoting.empty());
  EXPECT_TRUE(registry_->RemoveSlave("db3").ok());
}

TEST_F(PromoteTest, FollowersOfAFencedSwitchoverRejoinInPlaceFirst) {
  registry_->AgentConnected("db1");
  ASSERT_TRUE(registry_->Promote("db2", false).ok());
  ReportConverged("db1", /*writable=*/false, "0/5000");
  for (const char* id : {"db1", "db3"}) {
    DesiredState d = DesiredOf(*registry_, id);
    EXPECT_EQ(d.upstream.id, "db2") << id;
    EXPECT_TRUE(d.rejoin_first) << id << ": fenced before db2 took over, nothing to lose";
  }
  EXPECT_FALSE(DesiredOf(*registry_, "db2").rejoin_first);
}

TEST_F(PromoteTest, RedisAndMysqlGroupsArePromotedToo) {
  for (EngineType engine : {EngineType::kRedis, EngineType::kMysql}) {
    const std::string a = absl::StrCat(std::string(EngineName(engine)), "1");
    const std::string b = absl::StrCat(std::string(EngineName(engine)), "2");
    MustRegister(*registry_, Node(a, engine));
    MustRegister(*registry_, Node(b, engine));
    MustEnable(*registry_, a, b);
    ReportConverged(a);
    ReportConverged(b);
    absl::StatusOr<Changes> forced = registry_->Promote(b, true);
    ASSERT_TRUE(forced.ok()) << forced.status();
    EXPECT_EQ(DesiredOf(*registry_, b).role, Role::kMaster);
    EXPECT_EQ(DesiredOf(*registry_, a).upstream.id, b);
  }
}

TEST_F(PromoteTest, ForceSkipsTheFenceAndRebuildsTheOldMaster) {
  absl::StatusOr<Changes> forced = registry_->Promote("db2", true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(DesiredOf(*registry_, "db2").role, Role::kMaster);
  EXPECT_TRUE(DesiredOf(*registry_, "db2").catch_up_position.empty());
  EXPECT_EQ(DesiredOf(*registry_, "db1").role, Role::kSlave);
  EXPECT_EQ(DesiredOf(*registry_, "db1").upstream.id, "db2");
  EXPECT_FALSE(registry_->Snapshot().nodes.at("db1").seeded);
  // The old master, and the slaves that got more of its writes than db2,
  // may hold writes db2 lacks: full copies keep them aside.
  EXPECT_FALSE(DesiredOf(*registry_, "db1").rejoin_first);
  EXPECT_FALSE(DesiredOf(*registry_, "db3").rejoin_first);
}

// ------------------------------------------------------------ auto resync

class AutoResyncTest : public ::testing::Test {
 protected:
  void Open(bool auto_resync) {
    RegistryOptions options = FixedClock();
    options.auto_resync = auto_resync;
    options.auto_resync_interval = absl::Minutes(5);
    options.now = [this] { return now_; };
    registry_ = OpenOrDie(std::make_unique<MemoryStore>(), options);
    for (const char* id : {"db1", "db2"}) MustRegister(*registry_, Node(id));
    MustEnable(*registry_, "db1", "db2");
    for (const char* id : {"db1", "db2"}) Report(id, "");
  }
  void Report(const std::string& id, const std::string& out_of_sync) {
    ObservedState observed = ConvergedOn(Gen(*registry_, id));
    observed.out_of_sync = out_of_sync;
    ASSERT_TRUE(registry_->Report(id, observed, {}).ok());
  }
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
  std::unique_ptr<Registry> registry_;
};

TEST_F(AutoResyncTest, AnOutOfSyncSlaveIsResyncedCheapPathFirst) {
  Open(true);
  const std::string token = DesiredOf(*registry_, "db2").resync_token;
  Report("db2", "timeline fork: new timeline 2 forked off");
  DesiredState d = DesiredOf(*registry_, "db2");
  EXPECT_NE(d.resync_token, token);
  EXPECT_TRUE(d.rejoin_first);
  std::vector<Event> events = registry_->Events(0, "db2");
  ASSERT_FALSE(events.empty());
  EXPECT_THAT(events.back().message, HasSubstr("auto-resync db2: timeline fork"));

  // Not again while that copy runs, nor within the interval once it is done.
  const std::string second = d.resync_token;
  Report("db2", "timeline fork: new timeline 2 forked off");
  EXPECT_EQ(DesiredOf(*registry_, "db2").resync_token, second);
  Report("db2", "");  // converged on the new copy: seeded again
  now_ += absl::Minutes(1);
  Report("db2", "link down");
  EXPECT_EQ(DesiredOf(*registry_, "db2").resync_token, second);
  now_ += absl::Minutes(5);
  Report("db2", "link down");
  EXPECT_NE(DesiredOf(*registry_, "db2").resync_token, second);
}

TEST_F(AutoResyncTest, OffByDefaultTheOperatorDecides) {
  Open(false);
  const std::string token = DesiredOf(*registry_, "db2").resync_token;
  Report("db2", "timeline fork");
  EXPECT_EQ(DesiredOf(*registry_, "db2").resync_token, token);
  // An operator's resync makes a full copy.
  ASSERT_TRUE(registry_->Resync("db2").ok());
  EXPECT_FALSE(DesiredOf(*registry_, "db2").rejoin_first);
}

TEST_F(AutoResyncTest, TheGroupPolicyOverridesTheDefault) {
  Open(false);
  EXPECT_FALSE(registry_->GetNode("db2")->auto_resync);
  // On an existing pair, only the policy changes (no new generation).
  const uint64_t gen = Gen(*registry_, "db2");
  absl::StatusOr<Changes> on = registry_->EnableReplication("db1", "db2", true);
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_THAT(*on, ElementsAre("db1: group policy auto_resync on"));
  EXPECT_EQ(Gen(*registry_, "db2"), gen);
  EXPECT_TRUE(registry_->GetNode("db1")->auto_resync);
  EXPECT_TRUE(registry_->GetNode("db2")->auto_resync);
  EXPECT_TRUE(registry_->EnableReplication("db1", "db2", true)->empty()) << "already on";
  const std::string token = DesiredOf(*registry_, "db2").resync_token;
  Report("db2", "timeline fork");
  EXPECT_NE(DesiredOf(*registry_, "db2").resync_token, token);
  // The policy is the group's: it follows a switchover, and goes with the
  // group when replication is disabled.
  Report("db2", "");
  ASSERT_TRUE(registry_->Promote("db2", true).ok());
  EXPECT_TRUE(registry_->GetNode("db2")->auto_resync);
  EXPECT_TRUE(registry_->GetNode("db1")->auto_resync);
  ASSERT_TRUE(registry_->DisableReplication("db2").ok());
  EXPECT_FALSE(registry_->GetNode("db2")->auto_resync);
  // Off for one group while the default is on.
  ASSERT_TRUE(registry_->EnableReplication("db1", "db2", false).ok());
  EXPECT_FALSE(registry_->GetNode("db2")->auto_resync);
}

TEST(TlsPortTest, ASlaveLearnsItsUpstreamsTlsPortAcrossARestart) {
  TempDir dir;
  for (int round = 0; round < 2; ++round) {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
    if (round == 0) {
      NodeInfo master = Node("r1", EngineType::kRedis, "a", "10.0.0.1", "203.0.113.1", 6379);
      master.tls_port = 6380;
      MustRegister(*registry, master);
      MustRegister(*registry, Node("r2", EngineType::kRedis, "b", "10.1.0.2", "", 6379));
      MustEnable(*registry, "r1", "r2");
    }
    DesiredState slave = DesiredOf(*registry, "r2");
    EXPECT_EQ(slave.upstream.host, "203.0.113.1") << round;
    EXPECT_EQ(slave.upstream.tls_port, 6380u) << round;
  }
  NodeInfo bad = Node("r3", EngineType::kRedis);
  bad.tls_port = 70000;
  std::unique_ptr<Registry> registry = OpenOrDie(std::make_unique<MemoryStore>());
  absl::StatusOr<Changes> refused = registry->Register(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("TLS port 70000"));
}

TEST_F(AutoResyncTest, TheGroupPolicySurvivesARestart) {
  TempDir dir;
  {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
    for (const char* id : {"db1", "db2"}) MustRegister(*registry, Node(id));
    ASSERT_TRUE(registry->EnableReplication("db1", "db2", true).ok());
  }
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
  EXPECT_TRUE(registry->GetNode("db2")->auto_resync);
}

TEST_F(AutoResyncTest, AMasterIsNeverResynced) {
  Open(true);
  const uint64_t gen = Gen(*registry_, "db1");
  Report("db1", "whatever");
  EXPECT_EQ(Gen(*registry_, "db1"), gen);
  EXPECT_EQ(DesiredOf(*registry_, "db1").role, Role::kMaster);
}

TEST_F(PromoteTest, SwitchoverSurvivesTheStore) {
  TempDir dir;
  {
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
    for (const char* id : {"db1", "db2"}) MustRegister(*registry, Node(id));
    MustEnable(*registry, "db1", "db2");
    for (const char* id : {"db1", "db2"}) {
      ASSERT_TRUE(registry->Report(id, ConvergedOn(Gen(*registry, id)), {}).ok());
    }
    registry->AgentConnected("db1");
    ASSERT_TRUE(registry->Promote("db2", false).ok());
  }
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  std::unique_ptr<Registry> registry = OpenOrDie(*std::move(store));
  EXPECT_EQ(registry->Snapshot().promoting, "db2");
  EXPECT_TRUE(DesiredOf(*registry, "db1").fenced);
  ObservedState fenced = ConvergedOn(Gen(*registry, "db1"));
  fenced.writable = false;
  fenced.position = "0/7";
  ASSERT_TRUE(registry->Report("db1", fenced, {}).ok());
  EXPECT_EQ(DesiredOf(*registry, "db2").role, Role::kMaster);
}

}  // namespace
}  // namespace tandem
