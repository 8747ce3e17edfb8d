// Unit tests of tandem_cli: argument parsing, durations, formatting and the
// wait decision. No server, no process.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tandemctl/args.h"
#include "tandemctl/format.h"
#include "tandemctl/wait.h"

namespace tandem::cli {
namespace {

using std::chrono::milliseconds;
using Args = std::vector<std::string>;

// ---------------------------------------------------------------- parsing

struct GoodCase {
  Args args;
  Verb verb;
  std::string node;
  std::string master;
  std::string slave;
};

TEST(ParseArgsTest, VerbsAndTheirArguments) {
  const GoodCase cases[] = {
      {{"nodes"}, Verb::kNodes, "", "", ""},
      {{"status", "db1"}, Verb::kStatus, "db1", "", ""},
      {{"env", "db1"}, Verb::kEnv, "db1", "", ""},
      {{"promote", "db2"}, Verb::kPromote, "db2", "", ""},
      {{"resync", "db2"}, Verb::kResync, "", "", "db2"},
      {{"replication", "enable", "--master", "db1", "--slave", "db2"},
       Verb::kReplicationEnable,
       "",
       "db1",
       "db2"},
      {{"--slave=db2", "replication", "--master=db1", "enable"},
       Verb::kReplicationEnable,
       "",
       "db1",
       "db2"},
      {{"replication", "disable", "--master", "db1"}, Verb::kReplicationDisable, "", "db1", ""},
      {{"slave", "add", "db3", "--master", "db1"}, Verb::kSlaveAdd, "", "db1", "db3"},
      {{"slave", "add", "--master", "db1", "db3"}, Verb::kSlaveAdd, "", "db1", "db3"},
      {{"slave", "remove", "db3"}, Verb::kSlaveRemove, "", "", "db3"},
      {{"status", "--", "-odd-name"}, Verb::kStatus, "-odd-name", "", ""},
      {{"wait"}, Verb::kWait, "", "", ""},
      {{"events"}, Verb::kEvents, "", "", ""},
  };
  for (const GoodCase& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    absl::StatusOr<Command> command = ParseArgs(c.args);
    ASSERT_TRUE(command.ok()) << command.status();
    EXPECT_EQ(command->verb, c.verb);
    EXPECT_EQ(command->node, c.node);
    EXPECT_EQ(command->master, c.master);
    EXPECT_EQ(command->slave, c.slave);
    EXPECT_EQ(command->controller, "127.0.0.1:7400");
    EXPECT_EQ(command->output, OutputFormat::kTable);
    EXPECT_EQ(command->certs_dir, "/etc/tandem/certs");
    EXPECT_EQ(command->user, "");
    EXPECT_FALSE(command->insecure);
  }
}

TEST(ParseArgsTest, SlaveAddTakesSeveralNodes) {
  absl::StatusOr<Command> add = ParseArgs({"slave", "add", "db2", "db3", "--master", "db1", "db2"});
  ASSERT_TRUE(add.ok()) << add.status();
  EXPECT_EQ(add->nodes, (std::vector<std::string>{"db2", "db3"}));
  EXPECT_EQ(add->slave, "db2");
  EXPECT_EQ(add->master, "db1");
}

TEST(ParseArgsTest, VerbOptions) {
  absl::StatusOr<Command> promote = ParseArgs({"promote", "--force", "db2"});
  ASSERT_TRUE(promote.ok()) << promote.status();
  EXPECT_TRUE(promote->force);
  EXPECT_FALSE(ParseArgs({"promote", "db2"})->force);

  absl::StatusOr<Command> wait = ParseArgs({"wait", "db1", "--timeout", "5m", "db2", "db1"});
  ASSERT_TRUE(wait.ok()) << wait.status();
  EXPECT_EQ(wait->nodes, (std::vector<std::string>{"db1", "db2"}));
  EXPECT_EQ(wait->timeout, milliseconds(300'000));
  EXPECT_EQ(ParseArgs({"wait"})->timeout, kDefaultWaitTimeout);
  EXPECT_EQ(ParseArgs({"wait", "--timeout=90"})->timeout, milliseconds(90'000));

  absl::StatusOr<Command> events = ParseArgs({"events", "--follow", "--node", "db2"});
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_TRUE(events->follow);
  EXPECT_EQ(events->node_filter, "db2");
  EXPECT_TRUE(ParseArgs({"events", "-f"})->follow);
  EXPECT_FALSE(ParseArgs({"events"})->follow);

  EXPECT_EQ(ParseArgs({"replication", "enable", "--master", "a", "--slave", "b", "--auto-resync",
                       "on"})
                ->auto_resync,
            std::optional<bool>(true));
  EXPECT_EQ(ParseArgs({"slave", "add", "b", "--master", "a", "--auto-resync=off"})->auto_resync,
            std::optional<bool>(false));
  EXPECT_EQ(ParseArgs({"replication", "enable", "--master", "a", "--slave", "b"})->auto_resync,
            std::nullopt);
}

TEST(ParseArgsTest, GlobalOptionsAnywhere) {
  const Args cases[] = {
      {"-o", "json", "nodes"},    {"nodes", "-o", "json"},       {"nodes", "-ojson"},
      {"nodes", "--output=json"}, {"--output", "json", "nodes"},
  };
  for (const Args& args : cases) {
    SCOPED_TRACE(::testing::PrintToString(args));
    absl::StatusOr<Command> command = ParseArgs(args);
    ASSERT_TRUE(command.ok()) << command.status();
    EXPECT_EQ(command->output, OutputFormat::kJson);
  }
  absl::StatusOr<Command> command =
      ParseArgs({"status", "db1", "--controller", "10.0.0.9:7500", "--certs-dir", "/etc/t",
                 "--user", "alice"});
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->controller, "10.0.0.9:7500");
  EXPECT_EQ(command->certs_dir, "/etc/t");
  EXPECT_EQ(command->user, "alice");
}

TEST(ParseArgsTest, EnvironmentDefaults) {
  EnvDefaults env{"ctl.example:7401", "/run/certs", "bob", std::nullopt};
  absl::StatusOr<Command> from_env = ParseArgs({"nodes"}, env);
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->controller, "ctl.example:7401");
  EXPECT_EQ(from_env->certs_dir, "/run/certs");
  EXPECT_EQ(from_env->user, "bob");

  absl::StatusOr<Command> options_win = ParseArgs(
      {"nodes", "--controller", "127.0.0.1:9000", "--certs-dir", "/other", "--user", "al"}, env);
  ASSERT_TRUE(options_win.ok()) << options_win.status();
  EXPECT_EQ(options_win->controller, "127.0.0.1:9000");
  EXPECT_EQ(options_win->certs_dir, "/other");
  EXPECT_EQ(options_win->user, "al");

  // An empty TANDEM_CONTROLLER is the same as an unset one.
  EXPECT_EQ(ParseArgs({"nodes"}, EnvDefaults{"", std::nullopt})->controller, "127.0.0.1:7400");
  // The shared token is gone, and saying so beats ignoring it.
  EnvDefaults old{std::nullopt, std::nullopt, std::nullopt, "/run/token"};
  EXPECT_NE(std::string(ParseArgs({"nodes"}, old).status().message())
                .find("TANDEM_TOKEN_FILE is no longer used: tandemctl authenticates with a client "
                      "certificate"),
            std::string::npos);
  // A bad TANDEM_CONTROLLER is named, but only when it is used.
  EnvDefaults bad{"nonsense", std::nullopt};
  EXPECT_EQ(ParseArgs({"nodes"}, bad).status().message(),
            "TANDEM_CONTROLLER expects HOST:PORT, not 'nonsense'");
  EXPECT_TRUE(ParseArgs({"nodes", "--controller", "h:1"}, bad).ok());
}

TEST(ParseArgsTest, CertVerbs) {
  absl::StatusOr<Command> node = ParseArgs({"cert", "create-node", "db1", "--address", "10.0.0.5",
                                            "--address=db1.example", "--certs-dir", "/c"});
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->verb, Verb::kCertCreateNode);
  EXPECT_EQ(node->cert_name, "db1");
  EXPECT_EQ(node->addresses, (std::vector<std::string>{"10.0.0.5", "db1.example"}));
  EXPECT_EQ(node->certs_dir, "/c");
  absl::StatusOr<Command> client =
      ParseArgs({"cert", "create-client", "bob", "--role", "viewer", "--days", "30"});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(client->verb, Verb::kCertCreateClient);
  EXPECT_EQ(client->role, "viewer");
  EXPECT_EQ(client->days, 30);
  absl::StatusOr<Command> ctl = ParseArgs({"cert", "create-controller", "--address", "::1"});
  ASSERT_TRUE(ctl.ok()) << ctl.status();
  EXPECT_EQ(ctl->cert_name, "controller");
  absl::StatusOr<Command> ca = ParseArgs({"cert", "create-ca", "--name", "prod", "--ca-key", "/k"});
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(ca->ca_name, "prod");
  EXPECT_EQ(ca->ca_key, "/k");
  EXPECT_EQ(ParseArgs({"cert", "list"})->verb, Verb::kCertList);
  for (const auto& [args, start] : std::vector<std::pair<Args, std::string>>{
           {{"nodes", "--token-file=/t"},
            "option '--token-file' is no longer used: tandemctl authenticates with a client "
            "certificate"},
           {{"cert"}, "'cert' needs an action (expected 'create-ca', 'create-node'"},
           {{"cert", "create-thing"}, "unknown 'cert' action 'create-thing'"},
           {{"cert", "create-node", "db1"}, "'cert create-node' needs --address"},
           {{"cert", "create-controller"}, "'cert create-controller' needs --address"}}) {
    absl::StatusOr<Command> bad = ParseArgs(args);
    EXPECT_EQ(std::string(bad.status().message()).rfind(start, 0), 0u) << bad.status();
  }
  EXPECT_EQ(ParseArgs({"cert", "--help"})->help_topic, "cert");
}

TEST(ParseArgsTest, Help) {
  struct Case {
    Args args;
    std::string topic;
  };
  const Case cases[] = {
      {{"help"}, ""},
      {{"--help"}, ""},
      {{"-h"}, ""},
      {{"help", "wait"}, "wait"},
      {{"wait", "--help"}, "wait"},
      {{"status", "-h"}, "status"},
      {{"replication", "--help"}, "replication"},
      {{"replication", "enable", "--help"}, "replication"},
      {{"slave", "-h"}, "slave"},
      {{"help", "help"}, "help"},
      // Help wins over what else is wrong on the line.
      {{"nodes", "--force", "--help"}, "nodes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    absl::StatusOr<Command> command = ParseArgs(c.args);
    ASSERT_TRUE(command.ok()) << command.status();
    EXPECT_EQ(command->verb, Verb::kHelp);
    EXPECT_EQ(command->help_topic, c.topic);
    std::optional<std::string> text = HelpText(command->help_topic);
    ASSERT_TRUE(text.has_value());
    EXPECT_NE(text->find("Usage: tandemctl"), std::string::npos);
  }
}

TEST(HelpTextTest, EveryVerbHasUsageAndExample) {
  for (std::string_view topic : {"nodes", "status", "replication", "slave", "resync", "promote",
                                 "env", "wait", "events", "help"}) {
    SCOPED_TRACE(topic);
    std::optional<std::string> text = HelpText(topic);
    ASSERT_TRUE(text.has_value());
    EXPECT_NE(text->find("Usage: tandemctl " + std::string(topic)), std::string::npos);
    EXPECT_NE(text->find("Example"), std::string::npos);
  }
  std::optional<std::string> general = HelpText("");
  ASSERT_TRUE(general.has_value());
  for (std::string_view verb :
       {"nodes", "status NODE", "replication enable", "replication disable", "slave add",
        "slave remove", "resync", "promote", "env NODE", "wait", "events"}) {
    EXPECT_NE(general->find(verb), std::string::npos) << verb;
  }
  EXPECT_FALSE(HelpText("frobnicate").has_value());
}

TEST(ParseArgsTest, UsageErrorsNameTheArgument) {
  struct Case {
    Args args;
    std::string message;
  };
  const Case cases[] = {
      {{}, "missing verb (try 'tandemctl help')"},
      {{"frobnicate"}, "unknown verb 'frobnicate' (try 'tandemctl help')"},
      {{"nodes", "--frob"}, "unknown option '--frob'"},
      {{"nodes", "--frob=1"}, "unknown option '--frob'"},
      {{"nodes", "-x"}, "unknown option '-x'"},
      {{"nodes", "-h=x"}, "unknown option '-h=x'"},
      {{"nodes", "--force"}, "option '--force' does not apply to 'nodes'"},
      {{"replication", "enable", "--master", "a", "--slave", "b", "--auto-resync", "maybe"},
       "option '--auto-resync' takes on or off, not 'maybe'"},
      {{"resync", "b", "--auto-resync", "on"},
       "option '--auto-resync' does not apply to 'resync'"},
      {{"nodes", "extra"}, "unexpected argument 'extra' for 'nodes'"},
      {{"status"}, "'status' needs a NODE"},
      {{"status", "db1", "db2"}, "unexpected argument 'db2' for 'status'"},
      {{"status", ""}, "'status': a NODE is empty"},
      {{"status", "db1", "--timeout", "5s"}, "option '--timeout' does not apply to 'status'"},
      {{"env"}, "'env' needs a NODE"},
      {{"replication"}, "'replication' needs 'enable' or 'disable'"},
      {{"replication", "start"},
       "unknown 'replication' action 'start' (expected 'enable' or 'disable')"},
      {{"replication", "enable", "--master", "db1"}, "'replication enable' needs --slave"},
      {{"replication", "enable", "--slave", "db2"}, "'replication enable' needs --master"},
      {{"replication", "enable", "--slave", "db2", "--master"}, "option '--master' needs a value"},
      {{"replication", "enable", "--master=", "--slave", "db2"},
       "option '--master' needs a node id"},
      {{"replication", "enable", "--master", "a", "--master", "b", "--slave", "c"},
       "option '--master' given more than once"},
      {{"replication", "enable", "db2", "--master", "a", "--slave", "c"},
       "unexpected argument 'db2' for 'replication enable'"},
      {{"replication", "disable", "--master", "db1", "--slave", "db2"},
       "option '--slave' does not apply to 'replication disable'"},
      {{"replication", "disable"}, "'replication disable' needs --master"},
      {{"slave"}, "'slave' needs 'add' or 'remove'"},
      {{"slave", "drop", "db3"}, "unknown 'slave' action 'drop' (expected 'add' or 'remove')"},
      {{"slave", "add", "db3"}, "'slave add' needs --master"},
      {{"slave", "add", "--master", "db1"}, "'slave add' needs a slave NODE"},
      {{"slave", "remove", "db3", "--master", "db1"},
       "option '--master' does not apply to 'slave remove'"},
      {{"slave", "remove"}, "'slave remove' needs a slave NODE"},
      {{"resync"}, "'resync' needs a slave NODE"},
      {{"resync", "db2", "db3"}, "unexpected argument 'db3' for 'resync'"},
      {{"promote", "db2", "--force=yes"}, "option '--force' takes no value"},
      {{"promote", "db2", "db3"}, "unexpected argument 'db3' for 'promote'"},
      {{"wait", "--timeout", "soon"},
       "option '--timeout': invalid duration 'soon' (expected e.g. 300s, 5m, 1h, 250ms or a "
       "number of seconds)"},
      {{"wait", "--timeout", "-5s"},
       "option '--timeout': invalid duration '-5s' (expected e.g. 300s, 5m, 1h, 250ms or a "
       "number of seconds)"},
      {{"wait", "--timeout"}, "option '--timeout' needs a value"},
      {{"wait", "--follow"}, "option '--follow' does not apply to 'wait'"},
      {{"events", "db1"}, "unexpected argument 'db1' for 'events'"},
      {{"events", "--node"}, "option '--node' needs a value"},
      {{"events", "--node="}, "option '--node' needs a node id"},
      {{"nodes", "-o", "xml"}, "option '-o' expects table or json, not 'xml'"},
      {{"nodes", "--output", "yaml"}, "option '--output' expects table or json, not 'yaml'"},
      {{"nodes", "--controller", "localhost"},
       "option '--controller' expects HOST:PORT, not 'localhost'"},
      {{"nodes", "--controller", "h:99999"},
       "option '--controller' expects HOST:PORT, not 'h:99999'"},
      {{"cert", "create-client", "alice"}, "'cert create-client' needs --role admin|viewer"},
      {{"cert", "create-client", "alice", "--role", "root"},
       "option '--role' takes admin or viewer, not 'root'"},
      {{"cert", "create-ca", "--days", "0"},
       "option '--days' takes a number of days in 1..36500, not '0'"},
      {{"cert", "list", "--address", "1.2.3.4"}, "option '--address' does not apply to 'cert list'"},
      {{"nodes", "--address", "1.2.3.4"}, "option '--address' does not apply to 'nodes'"},
      {{"help", "frob"}, "no help for 'frob': not a verb (try 'tandemctl help')"},
      {{"help", "wait", "now"}, "unexpected argument 'now' for 'help'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    absl::StatusOr<Command> command = ParseArgs(c.args);
    ASSERT_FALSE(command.ok());
    EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(command.status().message(), c.message);
  }
}

// -------------------------------------------------------------- durations

TEST(DurationTest, Parses) {
  struct Case {
    std::string text;
    int64_t ms;
  };
  const Case cases[] = {
      {"300s", 300'000}, {"5m", 300'000}, {"1h", 3'600'000}, {"300", 300'000},        {"0", 0},
      {"1.5", 1'500},    {"250ms", 250},  {"0.5m", 30'000},  {"720h", 2'592'000'000},
  };
  for (const Case& c : cases) {
    absl::StatusOr<milliseconds> d = ParseDuration(c.text);
    ASSERT_TRUE(d.ok()) << c.text << ": " << d.status();
    EXPECT_EQ(d->count(), c.ms) << c.text;
  }
}

TEST(DurationTest, Rejects) {
  for (std::string text : {"", "s", "5x", "-1", "5 m", "1h30m", "1.2.3", "3d", ".", "m5", "5M"}) {
    absl::StatusOr<milliseconds> d = ParseDuration(text);
    ASSERT_FALSE(d.ok()) << "'" << text << "'";
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("'" + text + "'"), std::string::npos) << d.status();
  }
  EXPECT_EQ(ParseDuration("721h").status().message(), "duration '721h' is longer than 30 days");
}

TEST(DurationTest, Formats) {
  EXPECT_EQ(FormatDuration(milliseconds(120'000)), "120s");
  EXPECT_EQ(FormatDuration(milliseconds(1'500)), "1.5s");
  EXPECT_EQ(FormatDuration(milliseconds(250)), "0.25s");
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0s");
}

TEST(AddressTest, Validates) {
  for (std::string good :
       {"127.0.0.1:7400", "ctl.example.com:7400", "[::1]:7400", "h:1", "h:65535"}) {
    EXPECT_TRUE(ValidateAddress(good, "x").ok()) << good;
  }
  for (std::string bad : {"localhost", ":7400", "host:", "host:0", "host:65536", "::1:7400",
                          "host:74a0", "a b:1", "[]:1", "[::1:7400", "dns:///h:1"}) {
    absl::Status st = ValidateAddress(bad, "option '--controller'");
    EXPECT_EQ(st.message(), "option '--controller' expects HOST:PORT, not '" + bad + "'") << bad;
  }
}

// ------------------------------------------------------------- formatting

v1::NodeStatus MakeNode(std::string id, v1::Role desired, v1::Role observed, uint64_t gen,
                        uint64_t converged_gen) {
  v1::NodeStatus node;
  node.mutable_info()->set_id(id);
  node.mutable_info()->set_stack("eu-main");
  node.mutable_info()->set_engine(v1::ENGINE_TYPE_POSTGRESQL);
  node.mutable_info()->set_address_internal("10.0.0.5");
  node.mutable_info()->set_port(5432);
  node.mutable_desired()->set_generation(gen);
  node.mutable_desired()->set_role(desired);
  node.mutable_observed()->set_engine_reachable(true);
  node.mutable_observed()->set_role(observed);
  node.mutable_observed()->set_lag_bytes(-1);
  node.mutable_observed()->set_lag_seconds(-1);
  node.mutable_observed()->set_converged_generation(converged_gen);
  node.mutable_observed()->set_seen_generation(gen);
  node.set_converged(gen == converged_gen);
  node.set_agent_connected(true);
  node.set_seconds_since_report(1.5);
  return node;
}

TEST(RenderTableTest, AlignsColumnsWithoutTrailingSpaces) {
  EXPECT_EQ(RenderTable({"A", "LONGER", "C"}, {{"xxxx", "y", "z"}, {"z", "", ""}, {"q"}}),
            "A     LONGER  C\n"
            "xxxx  y       z\n"
            "z\n"
            "q\n");
  EXPECT_EQ(RenderTable({"NODE", "ROLE"}, {}), "NODE  ROLE\n");
}

TEST(FormatTest, CompactValues) {
  EXPECT_EQ(CompactBytes(0), "0B");
  EXPECT_EQ(CompactBytes(512), "512B");
  EXPECT_EQ(CompactBytes(1536), "1.5K");
  EXPECT_EQ(CompactBytes(12 * 1024 * 1024), "12M");
  EXPECT_EQ(CompactBytes(3ull << 40), "3.0T");
  EXPECT_EQ(CompactSeconds(0), "0s");
  EXPECT_EQ(CompactSeconds(0.42), "0.4s");
  EXPECT_EQ(CompactSeconds(42), "42s");
  EXPECT_EQ(CompactSeconds(192), "3m12s");
  EXPECT_EQ(CompactSeconds(7500), "2h05m");
  EXPECT_EQ(CompactSeconds(-1), "?");
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(5ull << 30), "5.0 GiB");
}

TEST(FormatTest, LagCell) {
  struct Case {
    v1::Role role;
    int64_t bytes;
    double seconds;
    std::string cell;
  };
  const Case cases[] = {
      {v1::ROLE_MASTER, 0, 0, "-"},      {v1::ROLE_STANDALONE, -1, -1, "-"},
      {v1::ROLE_SLAVE, 0, 0, "0B/0s"},   {v1::ROLE_SLAVE, 1536, 0.42, "1.5K/0.4s"},
      {v1::ROLE_SLAVE, -1, 2, "?/2.0s"}, {v1::ROLE_SLAVE, 100, -1, "100B/?"},
      {v1::ROLE_SLAVE, -1, -1, "?"},
  };
  for (const Case& c : cases) {
    v1::ObservedState observed;
    observed.set_role(c.role);
    observed.set_lag_bytes(c.bytes);
    observed.set_lag_seconds(c.seconds);
    EXPECT_EQ(LagCell(observed), c.cell);
  }
}

TEST(FormatTest, OneLine) {
  EXPECT_EQ(OneLine("a\nb\r\n\tc  d "), "a b c d");
  EXPECT_EQ(OneLine("abcdefghij", 8), "abcde...");
  EXPECT_EQ(OneLine("abcdefgh", 8), "abcdefgh");
  // "é" is two bytes; the cut backs off rather than split it.
  EXPECT_EQ(OneLine("abcd\xc3\xa9xyz", 8), "abcd...");
}

TEST(FormatTest, Rfc3339) {
  EXPECT_EQ(Rfc3339Utc(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339Utc(1714564803.7), "2024-05-01T12:00:03Z");
}

TEST(NodesTableTest, ColumnsAndRows) {
  v1::ListNodesResponse nodes;
  *nodes.add_nodes() = MakeNode("db1", v1::ROLE_MASTER, v1::ROLE_MASTER, 5, 5);
  v1::NodeStatus slave = MakeNode("db2-long", v1::ROLE_SLAVE, v1::ROLE_SLAVE, 4, 3);
  slave.mutable_info()->set_stack("us-dr");
  slave.set_upstream_id("db1");
  slave.mutable_observed()->set_lag_bytes(1536);
  slave.mutable_observed()->set_lag_seconds(0.42);
  slave.mutable_observed()->set_last_error(
      "pg_basebackup failed:\nconnection refused by the upstream at 10.0.0.5:5432");
  *nodes.add_nodes() = slave;
  v1::NodeStatus fresh = MakeNode("db3", v1::ROLE_STANDALONE, v1::ROLE_UNSPECIFIED, 1, 0);
  fresh.set_seconds_since_report(-1);
  fresh.mutable_info()->set_engine(v1::ENGINE_TYPE_REDIS);
  *nodes.add_nodes() = fresh;

  EXPECT_EQ(NodesTable(nodes),
            "NODE      STACK    ENGINE      DESIRED     OBSERVED  UPSTREAM  LAG        "
            "CONVERGED  GEN  ERROR\n"
            "db1       eu-main  postgresql  master      master    -         -          "
            "yes        5/5  -\n"
            "db2-long  us-dr    postgresql  slave       slave     db1       1.5K/0.4s  "
            "no         4/3  pg_basebackup failed: connection refu...\n"
            "db3       eu-main  redis       standalone  -         -         -          "
            "no         1/0  -\n");
}

TEST(NodesTableTest, EveryRowStartsEachColumnAtTheHeaderOffset) {
  v1::ListNodesResponse nodes;
  for (int i = 0; i < 5; ++i) {
    v1::NodeStatus node = MakeNode(std::string(static_cast<size_t>(i + 1), 'n'), v1::ROLE_SLAVE,
                                   v1::ROLE_SLAVE, static_cast<uint64_t>(i * 100), 0);
    node.mutable_observed()->set_lag_bytes(int64_t{1} << (i * 9));
    node.mutable_observed()->set_lag_seconds(i * 1000.0);
    *nodes.add_nodes() = node;
  }
  std::istringstream lines(NodesTable(nodes));
  std::string header;
  std::getline(lines, header);
  std::vector<size_t> offsets;
  for (std::string column : {"NODE", "STACK", "ENGINE", "DESIRED", "OBSERVED", "UPSTREAM", "LAG",
                             "CONVERGED", "GEN", "ERROR"}) {
    size_t at = header.find(column);
    ASSERT_NE(at, std::string::npos) << column;
    offsets.push_back(at);
  }
  std::string line;
  int rows = 0;
  while (std::getline(lines, line)) {
    ++rows;
    for (size_t i = 1; i < offsets.size(); ++i) {
      ASSERT_LT(offsets[i], line.size()) << line;
      EXPECT_EQ(line[offsets[i] - 1], ' ') << line;
      EXPECT_NE(line[offsets[i]], ' ') << "column " << i << " of: " << line;
    }
  }
  EXPECT_EQ(rows, 5);
}

TEST(NodesJsonTest, StableKeysAndNulls) {
  v1::ListNodesResponse nodes;
  v1::NodeStatus node = MakeNode("db2", v1::ROLE_SLAVE, v1::ROLE_SLAVE, 4, 3);
  node.mutable_desired()->mutable_upstream()->set_id("db1");
  node.mutable_desired()->mutable_upstream()->set_host("10.0.0.5");
  node.mutable_desired()->mutable_upstream()->set_port(5432);
  node.mutable_desired()->set_resync_token("tok-123");
  (*node.mutable_desired()->mutable_env())["TANDEM_ROLE"] = "slave";
  node.mutable_observed()->set_lag_bytes(10);
  *nodes.add_nodes() = node;
  v1::NodeStatus fresh = MakeNode("db3", v1::ROLE_STANDALONE, v1::ROLE_UNSPECIFIED, 1, 0);
  fresh.set_seconds_since_report(-1);
  *nodes.add_nodes() = fresh;

  std::string text = NodesJson(nodes);
  EXPECT_EQ(text.find("tok-123"), std::string::npos) << "the resync token itself is not shown";
  nlohmann::json json = nlohmann::json::parse(text);
  ASSERT_TRUE(json.is_array());
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["id"], "db2");
  EXPECT_EQ(json[0]["engine"], "postgresql");
  EXPECT_EQ(json[0]["desired"]["role"], "slave");
  EXPECT_EQ(json[0]["desired"]["generation"], 4);
  EXPECT_EQ(json[0]["desired"]["upstream"]["id"], "db1");
  EXPECT_EQ(json[0]["desired"]["resync_token_present"], true);
  EXPECT_EQ(json[0]["desired"]["env"]["TANDEM_ROLE"], "slave");
  EXPECT_EQ(json[0]["observed"]["lag_bytes"], 10);
  EXPECT_TRUE(json[0]["observed"]["lag_seconds"].is_null());
  EXPECT_EQ(json[0]["observed"]["converged_generation"], 3);
  EXPECT_EQ(json[0]["converged"], false);
  EXPECT_EQ(json[0]["seconds_since_report"], 1.5);
  EXPECT_TRUE(json[1]["seconds_since_report"].is_null());
  EXPECT_TRUE(json[1]["desired"]["upstream"].is_null());
  EXPECT_EQ(json[1]["observed"]["role"], "");
  // Both objects carry the same keys, whatever their values.
  for (const auto& [key, value] : json[0].items()) EXPECT_TRUE(json[1].contains(key)) << key;
  for (const auto& [key, value] : json[0]["observed"].items()) {
    EXPECT_TRUE(json[1]["observed"].contains(key)) << key;
  }
}

// Values start in one column; the lines asked for are present.
TEST(StatusTextTest, DetailedView) {
  v1::NodeStatus node = MakeNode("db2", v1::ROLE_SLAVE, v1::ROLE_STANDALONE, 4, 3);
  node.set_upstream_id("db1");
  node.mutable_info()->set_address_external("203.0.113.5");
  v1::Peer* upstream = node.mutable_desired()->mutable_upstream();
  upstream->set_id("db1");
  upstream->set_stack("eu-main");
  upstream->set_host("10.0.0.4");
  upstream->set_port(5432);
  node.mutable_desired()->set_resync_token("t1");
  node.mutable_observed()->set_data_bytes(5ull << 30);
  node.mutable_observed()->mutable_bootstrap()->set_done_bytes(50);
  node.mutable_observed()->mutable_bootstrap()->set_total_bytes(200);
  node.mutable_observed()->set_current_step("restore");
  node.mutable_observed()->set_last_error("free disk 1 GiB is below twice the backup");
  node.mutable_observed()->set_error_blocks(true);
  node.set_converged(false);
  node.set_queued(true);

  std::string text = StatusText(node);
  EXPECT_EQ(text.find("t1"), std::string::npos);
  std::istringstream lines(text);
  std::string line;
  std::map<std::string, std::string> values;
  size_t value_column = 0;
  while (std::getline(lines, line)) {
    size_t colon = line.find(':');
    ASSERT_NE(colon, std::string::npos) << line;
    std::string key = line.substr(0, colon);
    size_t start = line.find_first_not_of(' ', colon + 1);
    if (start == std::string::npos) {
      values[key] = "";
      continue;
    }
    if (value_column == 0) value_column = start;
    EXPECT_EQ(start, value_column) << line;
    values[key] = line.substr(start);
  }
  EXPECT_EQ(values["node"], "db2");
  EXPECT_EQ(values["engine"], "postgresql");
  EXPECT_EQ(values["addresses"], "10.0.0.5 (internal), 203.0.113.5 (external), port 5432");
  EXPECT_EQ(values["converged"], "no");
  EXPECT_EQ(values["agent connected"], "yes");
  EXPECT_EQ(values["last report"], "1.5s ago");
  EXPECT_EQ(values["  role"], "standalone");  // the observed role comes last
  EXPECT_EQ(values["  upstream"], "-");       // observed upstream
  EXPECT_EQ(values["  generation"], "4");
  EXPECT_EQ(values["  resync token"], "present");
  EXPECT_EQ(values["  queued"], "yes, waiting for its turn to bootstrap");
  EXPECT_EQ(values["  bootstrap"], "50/200 bytes (25%)");
  EXPECT_EQ(values["  data size"], "5.0 GiB");
  EXPECT_EQ(values["  lag"], "-");
  EXPECT_EQ(values["  current step"], "restore");
  EXPECT_EQ(values["  seen generation"], "4");
  EXPECT_EQ(values["  converged generation"], "3");
  EXPECT_EQ(values["  last error"],
            "free disk 1 GiB is below twice the backup (needs an operator)");
  EXPECT_NE(text.find("  upstream:             db1 at 10.0.0.4:5432 (stack eu-main)\n"),
            std::string::npos)
      << text;
}

TEST(StatusTextTest, NeverReportedAndNoBootstrap) {
  v1::NodeStatus node = MakeNode("db3", v1::ROLE_STANDALONE, v1::ROLE_UNSPECIFIED, 1, 0);
  node.set_seconds_since_report(-1);
  node.set_agent_connected(false);
  std::string text = StatusText(node);
  EXPECT_NE(text.find("last report:"), std::string::npos);
  EXPECT_NE(text.find("never\n"), std::string::npos);
  EXPECT_NE(text.find("observed:"), std::string::npos);
  EXPECT_NE(text.find("no report from the agent yet\n"), std::string::npos);
  EXPECT_EQ(text.find("bootstrap"), std::string::npos);

  v1::NodeStatus slave = MakeNode("db2", v1::ROLE_SLAVE, v1::ROLE_SLAVE, 2, 2);
  slave.mutable_observed()->set_lag_bytes(1536);
  slave.mutable_observed()->set_lag_seconds(0.25);
  std::string slave_text = StatusText(slave);
  EXPECT_EQ(slave_text.find("bootstrap"), std::string::npos);
  EXPECT_NE(slave_text.find("1.5 KiB, 0.2s\n"), std::string::npos) << slave_text;

  nlohmann::json json = nlohmann::json::parse(StatusJson(slave));
  EXPECT_EQ(json["id"], "db2");
  EXPECT_EQ(json["observed"]["lag_bytes"], 1536);
}

TEST(EnvTextTest, SortedAndSourceable) {
  v1::NodeStatus node = MakeNode("db1", v1::ROLE_MASTER, v1::ROLE_MASTER, 1, 1);
  auto& env = *node.mutable_desired()->mutable_env();
  env["TANDEM_ROLE"] = "master";
  env["POSTGRESQL_ADDRESS"] = "10.0.0.5";
  env["POSTGRESQL_SLAVE_ADDRESSES"] = "10.0.0.6,10.0.0.7";
  env["POSTGRESQL_SLAVE_ADDRESSES_EXT"] = "";
  env["POSTGRESQL_PORT"] = "5432";
  env["ODD"] = "it's a $value";
  absl::StatusOr<std::string> text = EnvText(node);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "ODD='it'\\''s a $value'\n"
            "POSTGRESQL_ADDRESS=10.0.0.5\n"
            "POSTGRESQL_PORT=5432\n"
            "POSTGRESQL_SLAVE_ADDRESSES=10.0.0.6,10.0.0.7\n"
            "POSTGRESQL_SLAVE_ADDRESSES_EXT=\n"
            "TANDEM_ROLE=master\n");

  nlohmann::json json = nlohmann::json::parse(EnvJson(node));
  EXPECT_EQ(json["ODD"], "it's a $value");
  EXPECT_EQ(json.size(), 6u);

  v1::NodeStatus empty = MakeNode("db9", v1::ROLE_STANDALONE, v1::ROLE_STANDALONE, 1, 1);
  EXPECT_EQ(EnvText(empty).value_or("error"), "");

  (*node.mutable_desired()->mutable_env())["BAD-NAME"] = "x";
  absl::StatusOr<std::string> bad = EnvText(node);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "the env of db1 has a variable named 'BAD-NAME', which is not a valid shell "
            "variable name");
}

TEST(ChangesTest, LinesOrNothing) {
  v1::ChangeResponse none;
  EXPECT_EQ(ChangesText(none), "nothing to change\n");
  v1::ChangeResponse some;
  some.add_changes("db1: standalone -> master (generation 2)");
  some.add_changes("db2: standalone -> slave (generation 4)");
  EXPECT_EQ(ChangesText(some),
            "db1: standalone -> master (generation 2)\n"
            "db2: standalone -> slave (generation 4)\n");
  nlohmann::json json = nlohmann::json::parse(ChangesJson(some));
  EXPECT_EQ(json["changes"].size(), 2u);
  EXPECT_TRUE(nlohmann::json::parse(ChangesJson(none))["changes"].empty());
}

TEST(EventsTest, LinesLineUpWithTheHeader) {
  v1::Event step;
  step.set_seq(7);
  step.set_unix_time(1714564803.7);
  step.set_node("db2");
  step.set_kind("step");
  step.set_ok(false);
  step.set_generation(4);
  step.set_seconds(1.234);
  step.set_message("restore: not enough free disk\nneed 2 GiB");
  v1::Event desired;
  desired.set_unix_time(1714564800);
  desired.set_node("db2");
  desired.set_kind("desired");
  desired.set_ok(true);
  desired.set_generation(4);
  desired.set_message("standalone -> slave of db1");

  EXPECT_EQ(EventsHeader(),
            "TIME                  NODE        KIND     OK     GEN  SECONDS  MESSAGE\n");
  EXPECT_EQ(EventLine(step),
            "2024-05-01T12:00:03Z  db2         step     no       4     1.23  restore: not enough "
            "free disk need 2 GiB\n");
  EXPECT_EQ(EventLine(desired),
            "2024-05-01T12:00:00Z  db2         desired  -        4        -  standalone -> slave "
            "of db1\n");
  nlohmann::json json = nlohmann::json::parse(EventJsonLine(step));
  EXPECT_EQ(json["seq"], 7);
  EXPECT_EQ(json["time"], "2024-05-01T12:00:03Z");
  EXPECT_EQ(json["ok"], false);
  EXPECT_EQ(EventJsonLine(step).find('\n'), EventJsonLine(step).size() - 1);
}

// ---------------------------------------------------------- wait decision

TEST(DecideWaitTest, Table) {
  v1::NodeStatus master = MakeNode("db1", v1::ROLE_MASTER, v1::ROLE_MASTER, 3, 3);
  v1::NodeStatus converged_slave = MakeNode("db2", v1::ROLE_SLAVE, v1::ROLE_SLAVE, 4, 4);
  v1::NodeStatus pending = MakeNode("db2", v1::ROLE_SLAVE, v1::ROLE_SLAVE, 4, 3);
  v1::NodeStatus blocked = pending;
  blocked.mutable_observed()->set_last_error("not enough free disk");
  blocked.mutable_observed()->set_error_blocks(true);
  v1::NodeStatus blocked_old = blocked;  // the error is about generation 3
  blocked_old.mutable_observed()->set_seen_generation(3);
  v1::NodeStatus transient = pending;
  transient.mutable_observed()->set_last_error("connection refused");
  v1::NodeStatus blocked_but_queued = blocked;  // its old target, waiting its turn
  blocked_but_queued.set_queued(true);
  v1::NodeStatus blocked_but_converged = converged_slave;
  blocked_but_converged.mutable_observed()->set_last_error("stale");
  blocked_but_converged.mutable_observed()->set_error_blocks(true);

  struct Case {
    std::string name;
    std::vector<v1::NodeStatus> nodes;
    std::vector<std::string> names;
    WaitOutcome outcome;
    std::string message;
  };
  const Case cases[] = {
      {"all converged", {master, converged_slave}, {}, WaitOutcome::kDone, ""},
      {"no nodes at all", {}, {}, WaitOutcome::kDone, ""},
      {"not yet",
       {master, pending},
       {},
       WaitOutcome::kKeepWaiting,
       "db2 (observed slave, gen 4/3)"},
      {"only the named ones count", {master, pending}, {"db1"}, WaitOutcome::kDone, ""},
      {"blocking error on the current generation",
       {master, blocked},
       {},
       WaitOutcome::kFail,
       "db2 cannot converge to generation 4: not enough free disk"},
      {"blocking error on an older generation",
       {master, blocked_old},
       {},
       WaitOutcome::kKeepWaiting,
       "db2 (observed slave, gen 4/3, last error: not enough free disk)"},
      {"blocking error of a queued node",
       {master, blocked_but_queued},
       {},
       WaitOutcome::kKeepWaiting,
       "db2 (observed slave, gen 4/3, queued for bootstrap, last error: not enough free disk)"},
      {"transient error",
       {transient},
       {"db2"},
       WaitOutcome::kKeepWaiting,
       "db2 (observed slave, gen 4/3, last error: connection refused)"},
      {"converged wins over a stale blocking flag",
       {blocked_but_converged},
       {},
       WaitOutcome::kDone,
       ""},
      {"unknown node", {master, pending}, {"db1", "db9"}, WaitOutcome::kFail, "unknown node db9"},
      {"unknown nodes", {master}, {"db8", "db9"}, WaitOutcome::kFail, "unknown nodes db8, db9"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ListNodesResponse response;
    for (const v1::NodeStatus& node : c.nodes) *response.add_nodes() = node;
    WaitDecision decision = DecideWait(response, c.names);
    EXPECT_EQ(decision.outcome, c.outcome);
    EXPECT_EQ(decision.message, c.message);
  }
}

TEST(DecideWaitTest, PendingDescriptions) {
  v1::NodeStatus a = MakeNode("db2", v1::ROLE_SLAVE, v1::ROLE_STANDALONE, 4, 3);
  a.mutable_observed()->set_current_step("restore");
  a.set_queued(true);
  v1::NodeStatus b = MakeNode("db3", v1::ROLE_SLAVE, v1::ROLE_UNSPECIFIED, 2, 0);
  b.set_seconds_since_report(-1);
  b.set_agent_connected(false);
  v1::NodeStatus c = MakeNode("db4", v1::ROLE_SLAVE, v1::ROLE_SLAVE, 2, 1);
  c.mutable_observed()->set_engine_reachable(false);
  v1::ListNodesResponse response;
  *response.add_nodes() = a;
  *response.add_nodes() = b;
  *response.add_nodes() = c;
  WaitDecision decision = DecideWait(response, {});
  EXPECT_EQ(decision.outcome, WaitOutcome::kKeepWaiting);
  EXPECT_EQ(decision.pending, (std::vector<std::string>{"db2", "db3", "db4"}));
  EXPECT_EQ(decision.message,
            "db2 (observed standalone, gen 4/3, queued for bootstrap, step restore); "
            "db3 (no report yet, gen 2/0, agent not connected); "
            "db4 (engine unreachable, gen 2/1)");
  EXPECT_EQ(TimeoutMessage(milliseconds(120'000), decision).substr(0, 46),
            "timed out after 120s waiting for: db2 (observe");
}

TEST(DecideWaitTest, TimeoutMessage) {
  v1::NodeStatus node = MakeNode("db2", v1::ROLE_SLAVE, v1::ROLE_SLAVE, 4, 3);
  node.mutable_observed()->set_last_error("replication broken");
  v1::ListNodesResponse response;
  *response.add_nodes() = node;
  EXPECT_EQ(TimeoutMessage(milliseconds(120'000), DecideWait(response, {"db2"})),
            "timed out after 120s waiting for: db2 (observed slave, gen 4/3, last error: "
            "replication broken)");
}

}  // namespace
}  // namespace tandem::cli
