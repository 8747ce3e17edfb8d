#include "agent/config.h"

#include <sys/stat.h>

#include "common/files.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace tandem {
namespace {

constexpr char kValid[] = R"(
node: db1
stack: eu-main
controller: 127.0.0.1:7400
addresses: {internal: 10.0.0.5, external: 203.0.113.5}
engine:
  type: postgresql
  port: 5433
  data_dir: /var/lib/postgresql/15/main
  user: postgres
  server_args: ["-c", "shared_buffers=16MB"]
env_file: /etc/tandem/env
state_dir: /var/lib/tandem
)";

TEST(ConfigTest, ParsesAValidFile) {
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(kValid, "agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node, "db1");
  EXPECT_EQ(c->engine.type, EngineType::kPostgresql);
  EXPECT_EQ(c->engine.port, 5433u);
  EXPECT_EQ(c->addresses.external, "203.0.113.5");
  EXPECT_EQ(c->engine.server_args, (std::vector<std::string>{"-c", "shared_buffers=16MB"}));
  EXPECT_EQ(c->Info().port, 5433u);
  EXPECT_EQ(c->Self().host, "10.0.0.5");
  EXPECT_EQ(c->Info().tls_port, 0u);
  EXPECT_EQ(c->engine.host, "");  // the local server (engines/engine_config.h)
  EXPECT_EQ(c->engine.systemd_unit, "");
  std::string with_unit = kValid;
  with_unit.replace(with_unit.find("  server_args:"), 0, "  systemd_unit: postgresql@15-main\n");
  with_unit.replace(with_unit.find("  server_args:"),
                    with_unit.find("env_file") - with_unit.find("  server_args:"), "");
  absl::StatusOr<AgentConfig> u = ParseAgentConfig(with_unit, "agent.yaml");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->engine.systemd_unit, "postgresql@15-main");
  std::string with_tls = kValid;
  with_tls.replace(with_tls.find("  port: 5433\n"), 13, "  port: 5433\n  tls_port: 6380\n");
  absl::StatusOr<AgentConfig> t = ParseAgentConfig(with_tls, "agent.yaml");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->Info().tls_port, 6380u);
  EXPECT_EQ(t->Self().tls_port, 6380u);
}

TEST(ConfigTest, DefaultsThePortPerEngine) {
  std::string text = kValid;
  text.replace(text.find("  port: 5433\n"), 13, "");
  text.replace(text.find("postgresql"), 10, "redis");
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(text, "agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.port, 6379u);
}

struct BadCase {
  std::string from;
  std::string to;
  std::string expected;  // file: field: reason
};

TEST(ConfigTest, ErrorsNameTheFileAndField) {
  const std::vector<BadCase> cases = {
      {"node: db1\n", "", "agent.yaml: node: missing"},
      {"node: db1", "node: 'bad id!'", "agent.yaml: node: must be"},
      {"stack: eu-main\n", "", "agent.yaml: stack: missing"},
      {"port: 5433", "port: 70000", "agent.yaml: engine.port: must be 1..65535"},
      {"port: 5433", "port: five", "agent.yaml: engine.port: must be an integer"},
      {"type: postgresql", "type: oracle", "agent.yaml: engine.type: unknown engine 'oracle'"},
      {"data_dir: /var/lib/postgresql/15/main", "data_dir: relative/dir",
       "agent.yaml: engine.data_dir: must be an absolute path"},
      {"user: postgres", "usr: postgres", "agent.yaml: engine.usr: unknown field"},
      {"controller: 127.0.0.1:7400", "controller: nowhere",
       "agent.yaml: controller: must be HOST:PORT"},
      {"addresses: {internal: 10.0.0.5, external: 203.0.113.5}", "addresses: {external: 1.2.3.4}",
       "agent.yaml: addresses.internal: missing"},
      {"server_args: [\"-c\", \"shared_buffers=16MB\"]", "server_args: -c",
       "agent.yaml: engine.server_args: must be a list"},
      {"node: db1", "node: [db1", "agent.yaml: not valid YAML"},
      {"user: postgres\n", "user: postgres\n  tls_mode: sometimes\n",
       "agent.yaml: engine.tls_mode: unknown mode \"sometimes\""},
      {"user: postgres\n", "user: postgres\n  tls_mode: between-stacks\n",
       "agent.yaml: engine.tls_ca_file: required with tls_mode between-stacks"},
      {"user: postgres\n", "user: postgres\n  tls_mode: always\n  tls_ca_file: ca.pem\n",
       "agent.yaml: engine.tls_ca_file: must be an absolute path"},
      {"user: postgres\n", "user: postgres\n  tls_cert_file: /c.pem\n",
       "agent.yaml: engine.tls_key_file: tls_cert_file and tls_key_file go together"},
      {"user: postgres\n", "user: postgres\n  out_of_sync_after: 0\n",
       "agent.yaml: engine.out_of_sync_after: must be 1..86400"},
      // The unit starts the server with its own configuration's options.
      {"user: postgres\n", "user: postgres\n  systemd_unit: postgresql@15-main\n",
       "agent.yaml: engine.server_args: not used with engine.systemd_unit"},
      {"server_args: [\"-c\", \"shared_buffers=16MB\"]", "systemd_unit: postgresql main",
       "agent.yaml: engine.systemd_unit: \"postgresql main\" is not a systemd unit name"},
  };
  for (const BadCase& c : cases) {
    std::string text = kValid;
    size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    text.replace(at, c.from.size(), c.to);
    absl::StatusOr<AgentConfig> config = ParseAgentConfig(text, "agent.yaml");
    ASSERT_FALSE(config.ok()) << c.to;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(config.status().message().substr(0, c.expected.size()), c.expected)
        << config.status();
  }
}

TEST(ConfigTest, SecretFilesMustBePrivate) {
  ::tandem::testing::TempDir dir("tandem-config");
  std::string pw = dir.Sub("pw");
  ASSERT_TRUE(WriteFileAtomic(pw, "hunter2\n", 0644).ok());
  std::string text = kValid;
  text.replace(text.find("  user: postgres\n"), 17, "  user: postgres\n  password_file: " + pw + "\n");
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(text, "agent.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("engine.password_file"), std::string::npos);
  EXPECT_NE(c.status().message().find("chmod 600"), std::string::npos);
  EXPECT_EQ(c.status().message().find("hunter2"), std::string::npos);
  ASSERT_EQ(::chmod(pw.c_str(), 0600), 0);
  EXPECT_TRUE(ParseAgentConfig(text, "agent.yaml").ok());
}

}  // namespace
}  // namespace tandem
