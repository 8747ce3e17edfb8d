// Running Tandem as a service, end to end:
//   - the .deb that `cpack -G DEB` builds: its files, control data and
//     maintainer scripts; tandemctl --help run from the extracted package;
//     its systemd units checked by `systemd-analyze verify` and `security`;
//     the packaged example configs accepted by the binaries;
//   - the real tandem-controller and tandem-agents with real PostgreSQL and
//     Redis servers: the health endpoints' status codes for each role (GET
//     and HEAD), /status, /metrics checked by promtool, no secret in any
//     answer, READY/STATUS/WATCHDOG/STOPPING seen on a fake NOTIFY_SOCKET,
//     and `tandemctl status --watch`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "common/prometheus_text.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/harness.h"
#include "tests/harness/pg_server.h"
#include "tests/harness/pki.h"
#include "tests/harness/redis_server.h"

namespace tandem::testing {
namespace {

using ::tandem::testing::TestPki;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kReplicationPassword[] = "svc-repl-secret-5521";

// ------------------------------------------------------------- helpers

RunResult MustRun(const std::vector<std::string>& argv, const std::string& cwd = "",
                  seconds timeout = seconds(300)) {
  RunOptions options;
  options.cwd = cwd;
  options.timeout = timeout;
  absl::StatusOr<RunResult> r = Run(argv, options);
  EXPECT_TRUE(r.ok()) << absl::StrJoin(argv, " ") << ": " << r.status();
  return r.ok() ? *r : RunResult{-1, std::string(r.status().message())};
}

RunResult Shell(const std::string& command) {
  absl::StatusOr<RunResult> r = RunShell(command);
  EXPECT_TRUE(r.ok()) << command << ": " << r.status();
  return r.ok() ? *r : RunResult{-1, std::string(r.status().message())};
}

// A unix datagram socket in the abstract namespace standing in for
// systemd's notification socket; collects what the service sends.
class NotifySocket {
 public:
  NotifySocket() {
    static int counter = 0;
    name_ = absl::StrCat("@tandem-svc-e2e-", ::getpid(), "-", ++counter);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, name_.data(), name_.size());
    address.sun_path[0] = '\0';
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), length), 0) << name_;
  }
  ~NotifySocket() { ::close(fd_); }

  const std::string& name() const { return name_; }

  // Reads what arrived (waiting up to `wait` for the first datagram).
  void Drain(milliseconds wait = milliseconds(0)) {
    char buffer[4096];
    for (int timeout = static_cast<int>(wait.count());; timeout = 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout) != 1) return;
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n > 0) messages_.emplace_back(buffer, static_cast<size_t>(n));
    }
  }

  // Polls until a message contains every one of `parts` (in one datagram).
  bool WaitFor(const std::vector<std::string>& parts, milliseconds timeout = milliseconds(30000)) {
    return PollUntil(
        [&] {
          Drain(milliseconds(100));
          for (const std::string& m : messages_) {
            bool all = true;
            for (const std::string& part : parts) all = all && absl::StrContains(m, part);
            if (all) return true;
          }
          return false;
        },
        timeout, milliseconds(10));
  }

  int Count(const std::string& part) {
    Drain();
    int n = 0;
    for (const std::string& m : messages_) n += absl::StrContains(m, part) ? 1 : 0;
    return n;
  }

  std::string All() {
    Drain();
    return absl::StrJoin(messages_, "\n---\n");
  }

 private:
  std::string name_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

absl::StatusOr<std::vector<prom::ParsedFamily>> ParseMetrics(const std::string& text) {
  return prom::ParseText(text);
}

// promtool (Debian's prometheus package) checks the exposition: exit 0 and
// no lint complaint.
void ExpectPromtoolClean(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string file = dir.Sub(name + ".metrics");
  ASSERT_TRUE(WriteFileAtomic(file, text).ok());
  RunResult check = Shell(absl::StrCat("promtool check metrics < '", file, "'"));
  EXPECT_EQ(check.exit_code, 0) << name << ": " << check.output;
  EXPECT_EQ(check.output, "") << name << ": promtool says:\n" << check.output;
}

// ----------------------------------------------------------- the package

class PackageTest : public ::testing::Test {
 protected:
  TempDir dir_{"tdpkg"};
};

TEST_F(PackageTest, DebInstallsBinariesUnitsConfigsAndTandemctlRuns) {
  // Build the package from the built tree into a temp dir.
  RunResult cpack =
      MustRun({"cpack", "-G", "DEB", "-B", dir_.Sub("out")}, TANDEM_BUILD_DIR, seconds(600));
  ASSERT_EQ(cpack.exit_code, 0) << cpack.output;
  std::vector<std::string> debs = Glob(dir_.Sub("out/tandem_*.deb"));
  ASSERT_EQ(debs.size(), 1u) << cpack.output;
  const std::string deb = debs[0];

  // Control data.
  RunResult fields =
      MustRun({"dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends"});
  ASSERT_EQ(fields.exit_code, 0) << fields.output;
  EXPECT_NE(fields.output.find("Package: tandem\n"), std::string::npos) << fields.output;
  EXPECT_NE(fields.output.find("Architecture: amd64"), std::string::npos) << fields.output;
  for (const char* dependency :
       {"adduser", "procps", "libgrpc++1.51", "libpq5", "libprotobuf32"}) {
    EXPECT_NE(fields.output.find(dependency), std::string::npos) << dependency << "\n"
                                                                 << fields.output;
  }
  RunResult conffiles = MustRun({"dpkg-deb", "-I", deb, "conffiles"});
  EXPECT_EQ(conffiles.output, "/etc/tandem/controller.yaml\n/etc/tandem/agent.yaml.example\n");

  // Files.
  RunResult list = MustRun({"dpkg-deb", "-c", deb});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  for (const char* path :
       {"./usr/bin/tandem-agent", "./usr/bin/tandem-controller", "./usr/bin/tandemctl",
        "./lib/systemd/system/tandem-agent@.service",
        "./lib/systemd/system/tandem-controller.service", "./etc/tandem/controller.yaml",
        "./etc/tandem/agent.yaml.example", "./usr/share/bash-completion/completions/tandemctl",
        "./usr/share/doc/tandem/README.md", "./usr/share/doc/tandem/examples/haproxy.cfg"}) {
    EXPECT_NE(list.output.find(absl::StrCat(" ", path, "\n")), std::string::npos) << path;
  }

  // Extracted into a throwaway root, the binaries run.
  const std::string root = dir_.Sub("root");
  ASSERT_EQ(MustRun({"dpkg-deb", "-x", deb, root}).exit_code, 0);
  RunResult help = MustRun({root + "/usr/bin/tandemctl", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_NE(help.output.find("Usage: tandemctl"), std::string::npos) << help.output;
  EXPECT_NE(help.output.find("Examples:"), std::string::npos) << help.output;
  RunResult status_help = MustRun({root + "/usr/bin/tandemctl", "status", "--help"});
  EXPECT_EQ(status_help.exit_code, 0);
  EXPECT_NE(status_help.output.find("--watch"), std::string::npos) << status_help.output;
  EXPECT_EQ(MustRun({root + "/usr/bin/tandem-agent", "--help"}).exit_code, 0);
  EXPECT_EQ(MustRun({root + "/usr/bin/tandem-controller", "--help"}).exit_code, 0);

  // The packaged example agent config passes the agent's own check, once
  // the secret file it names exists.
  const std::string secret = dir_.Sub("replication.password");
  ASSERT_TRUE(WriteFileAtomic(secret, "example-secret\n", 0600).ok());
  // ... and the certificate the example's addresses need, made with the
  // packaged tandemctl.
  const std::string certs = dir_.Sub("certs");
  for (std::vector<std::string> args :
       {std::vector<std::string>{"create-ca"},
        {"create-node", "db1", "--address", "10.0.0.5", "--address", "203.0.113.5"}}) {
    args.insert(args.begin(), {root + "/usr/bin/tandemctl", "cert"});
    args.insert(args.end(), {"--certs-dir", certs});
    RunResult made = MustRun(args);
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
  absl::StatusOr<std::string> example = ReadFile(root + "/etc/tandem/agent.yaml.example");
  ASSERT_TRUE(example.ok()) << example.status();
  const std::string config = dir_.Sub("agent-db1.yaml");
  ASSERT_TRUE(WriteFileAtomic(config, absl::StrReplaceAll(
                                          *example, {{"/etc/tandem/replication.password", secret},
                                                     {"/etc/tandem/certs", certs}}))
                  .ok());
  RunResult check = MustRun({root + "/usr/bin/tandem-agent", "check-config", "--config", config});
  EXPECT_EQ(check.exit_code, 0) << check.output;

  // The completion script loads and registers itself.
  RunResult completion = MustRun(
      {"bash", "-c",
       absl::StrCat("source '", root,
                    "/usr/share/bash-completion/completions/tandemctl' && complete -p tandemctl")});
  EXPECT_EQ(completion.output, "complete -F _tandemctl tandemctl\n") << completion.output;

  // Maintainer scripts are valid sh.
  const std::string control = dir_.Sub("control");
  ASSERT_EQ(MustRun({"dpkg-deb", "-e", deb, control}).exit_code, 0);
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    RunResult syntax = MustRun({"sh", "-n", absl::StrCat(control, "/", script)});
    EXPECT_EQ(syntax.exit_code, 0) << script << ": " << syntax.output;
  }
  absl::StatusOr<std::string> postinst = ReadFile(control + "/postinst");
  ASSERT_TRUE(postinst.ok());
  EXPECT_NE(postinst->find("adduser --system"), std::string::npos);

  // The units as installed: systemd-analyze verify (against the host's own
  // units for the targets they name) finds nothing, not even a warning, and
  // the sandbox keeps the exposure score low.
  // /bin/kill (ExecReload) comes from procps, a dependency of the package.
  ASSERT_EQ(
      Shell(absl::StrCat("mkdir -p '", root, "/usr/lib/systemd' && cp -a /usr/lib/systemd/system '",
                         root, "/usr/lib/systemd/' && install -D /bin/kill '", root, "/bin/kill'"))
          .exit_code,
      0);
  RunResult verify = MustRun({"systemd-analyze", "verify", "--man=no", "--root=" + root,
                              "tandem-controller.service", "tandem-agent@db1.service"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_EQ(verify.output, "") << verify.output;
  struct Exposure {
    std::string unit;
    std::string threshold;  // tenths of systemd-analyze's 0 (best) .. 10 (worst) scale
  };
  for (const Exposure& e :
       {Exposure{"tandem-controller.service", "20"}, Exposure{"tandem-agent@db1.service", "40"}}) {
    RunResult security = MustRun({"systemd-analyze", "security", "--offline=true", "--root=" + root,
                                  "--threshold=" + e.threshold, e.unit});
    EXPECT_EQ(security.exit_code, 0) << e.unit << " exposure above " << e.threshold << ":\n"
                                     << security.output;
    EXPECT_NE(security.output.find("Overall exposure level for " + e.unit), std::string::npos)
        << security.output;
  }
  // verify really reads the units: a broken copy fails.
  const std::string broken = root + "/lib/systemd/system/tandem-controller.service";
  ASSERT_EQ(Shell(absl::StrCat("sed -i 's/^Type=notify/Type=notifyy/' '", broken, "'")).exit_code,
            0);
  RunResult bad = MustRun(
      {"systemd-analyze", "verify", "--man=no", "--root=" + root, "tandem-controller.service"});
  EXPECT_NE(bad.output.find("notifyy"), std::string::npos) << bad.output;
}

TEST(HaproxyExampleTest, IsValidAndChecksTheAgents) {
  const std::string config = std::string(TANDEM_SOURCE_DIR) + "/config/haproxy.cfg";
  RunResult check = MustRun({"haproxy", "-c", "-f", config});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  absl::StatusOr<std::string> text = ReadFile(config);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("uri /master"), std::string::npos);
  EXPECT_NE(text->find("uri /replica?lag="), std::string::npos);
}

// ------------------------------------------------------ the real services

struct Node {
  std::string id;
  uint16_t health_port = 0;
  std::string config;
  std::unique_ptr<NotifySocket> notify;
  std::unique_ptr<ChildProcess> agent;
};

class ServiceE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    password_file_ = dir_.Sub("replication.password");
    ASSERT_TRUE(
        WriteFileAtomic(password_file_, std::string(kReplicationPassword) + "\n", 0600).ok());
    pki_.Controller();
    pki_.Client("admin");
    StartController();
  }

  void TearDown() override {
    for (auto& [id, node] : nodes_) {
      if (node.agent && node.agent->Running()) {
        (void)node.agent->Signal(SIGTERM);
        (void)node.agent->Wait(seconds(30));
      }
    }
    if (controller_ && controller_->Running()) {
      (void)controller_->Signal(SIGTERM);
      (void)controller_->Wait(seconds(30));
    }
    if (HasFailure()) {
      for (auto& [id, node] : nodes_) {
        if (node.agent)
          std::cerr << "--- agent " << id << ":\n" << FileTail(node.agent->log_file(), 6000);
      }
      if (controller_) std::cerr << "--- controller:\n" << FileTail(controller_->log_file(), 4000);
    }
  }

  void StartController() {
    controller_port_ = FreePort();
    metrics_port_ = FreePort();
    ChildOptions options;
    options.log_file = dir_.Sub("controller.log");
    options.env = {{"NOTIFY_SOCKET", controller_notify_.name()}, {"WATCHDOG_USEC", "1000000"}};
    // The packaged example config, with the addresses of this test.
    absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(
        {TANDEM_CONTROLLER_BIN, "--config",
         std::string(TANDEM_SOURCE_DIR) + "/config/controller.yaml", "--listen",
         absl::StrCat("127.0.0.1:", controller_port_), "--data-dir", dir_.Sub("controller"),
         "--metrics-listen", absl::StrCat("127.0.0.1:", metrics_port_), "--certs-dir", pki_.dir()},
        options);
    ASSERT_TRUE(child.ok()) << child.status();
    controller_ = *std::move(child);
    ASSERT_TRUE(controller_notify_.WaitFor({"READY=1", "STATUS=0 nodes"}))
        << controller_notify_.All() << FileTail(options.log_file);
  }

  Node& StartAgent(const std::string& id, const std::string& engine_yaml) {
    Node& node = nodes_[id];
    node.id = id;
    node.health_port = FreePort();
    node.config = dir_.Sub(id + ".yaml");
    node.notify = std::make_unique<NotifySocket>();
    pki_.Node(id);
    const std::string yaml = absl::StrCat(
        "node: ", id, "\nstack: main\ncontroller: 127.0.0.1:", controller_port_,
        "\naddresses: {internal: 127.0.0.1}\nenv_file: ", dir_.Sub(id + ".env"),
        "\nstate_dir: ", dir_.Sub(id + "-state"), "\nhealth_listen: 127.0.0.1:", node.health_port,
        "\nreconcile_interval: 2\ncerts_dir: ", pki_.dir(), "\n", engine_yaml);
    EXPECT_TRUE(WriteFileAtomic(node.config, yaml, 0600).ok());
    ChildOptions options;
    options.log_file = dir_.Sub(id + "-agent.log");
    // Watchdog of 1 s: the agent pings every 0.5 s.
    options.env = {{"NOTIFY_SOCKET", node.notify->name()}, {"WATCHDOG_USEC", "1000000"}};
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Start({TANDEM_AGENT_BIN, "--config", node.config}, options);
    EXPECT_TRUE(child.ok()) << child.status();
    if (child.ok()) node.agent = *std::move(child);
    return node;
  }

  Node& AddPgNode(const std::string& id) {
    PgServerOptions options;
    options.name = id;
    options.start = false;
    absl::StatusOr<std::unique_ptr<PgServer>> pg = PgServer::Create(options);
    EXPECT_TRUE(pg.ok()) << pg.status();
    PgServer& server = *pg_.emplace_back(*std::move(pg));
    std::vector<std::string> quoted;
    for (const std::string& arg : server.server_args())
      quoted.push_back(absl::StrCat("\"", arg, "\""));
    return StartAgent(
        id, absl::StrCat("engine:\n  type: postgresql\n  port: ", server.port(), "\n  data_dir: ",
                         server.data_dir(), "\n  user: postgres\n  os_user: ", server.os_user(),
                         "\n  bin_dir: ", server.bin_dir(), "\n  server_args: [",
                         absl::StrJoin(quoted, ", "),
                         "]\n  replication_password_file: ", password_file_, "\n  timeout: 60\n"));
  }

  Node& AddRedisNode(const std::string& id) {
    RedisServerOptions options;
    options.name = id;
    options.persistence = true;
    options.password = kReplicationPassword;
    absl::StatusOr<std::unique_ptr<RedisServer>> created = RedisServer::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    RedisServer& server = *redis_.emplace_back(*std::move(created));
    EXPECT_TRUE(server.Stop().ok());
    std::vector<std::string> quoted;
    for (const std::string& arg : server.server_args())
      quoted.push_back(absl::StrCat("\"", arg, "\""));
    return StartAgent(id, absl::StrCat("engine:\n  type: redis\n  port: ", server.port(),
                                       "\n  data_dir: ", server.data_dir(),
                                       "\n  password_file: ", server.password_file(),
                                       "\n  replication_password_file: ", server.password_file(),
                                       "\n  log_file: ", server.log_file(), "\n  server_args: [",
                                       absl::StrJoin(quoted, ", "), "]\n  timeout: 60\n"));
  }

  RunResult Ctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {TANDEM_CTL_BIN, "--controller",
                                     absl::StrCat("127.0.0.1:", controller_port_), "--certs-dir",
                                     pki_.dir()};
    argv.insert(argv.end(), args.begin(), args.end());
    return MustRun(argv);
  }

  void WaitConverged(const std::vector<std::string>& ids) {
    std::vector<std::string> args = {"wait"};
    args.insert(args.end(), ids.begin(), ids.end());
    args.insert(args.end(), {"--timeout", "120s"});
    RunResult r = Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << Ctl({"nodes"}).output;
  }

  // Status codes of every role endpoint of `node`, GET and HEAD alike.
  void ExpectRoleCodes(const Node& node, int master, int replica, int standalone) {
    struct Case {
      std::string target;
      int want;
    };
    const std::vector<Case> cases = {
        {"/healthz", 200},           {"/readyz", 200},      {"/master", master},
        {"/primary", master},        {"/replica", replica}, {"/slave", replica},
        {"/standalone", standalone},
    };
    for (const Case& c : cases) {
      HttpReply get = HttpCall(node.health_port, c.target);
      HttpReply head = HttpCall(node.health_port, c.target, "HEAD");
      EXPECT_EQ(get.status, c.want) << node.id << " GET " << c.target << ": " << get.body;
      EXPECT_EQ(head.status, c.want) << node.id << " HEAD " << c.target;
      EXPECT_EQ(head.body, "") << node.id << " HEAD " << c.target;
    }
  }

  // Every answer of the agents and the controller's /metrics: none holds
  // the replication password.
  // The first line of a PEM key's body (base64 of the key itself).
  static std::string KeyLine(const std::string& pem) {
    std::vector<std::string> lines = absl::StrSplit(pem, '\n');
    return lines.size() > 1 ? lines[1].substr(0, 40) : pem;
  }

  // Secrets: the replication password, and the key material of every
  // certificate (its PEM header and the first line of each key's body).
  std::vector<std::string> Secrets() const {
    std::vector<std::string> secrets = {kReplicationPassword, "PRIVATE KEY"};
    for (const std::string& name : {std::string("controller"), std::string("client.admin")}) {
      absl::StatusOr<std::string> key = ReadFile(pki_.dir() + "/" + name + ".key");
      if (key.ok()) secrets.push_back(KeyLine(*key));
    }
    for (const auto& [id, node] : nodes_) {
      absl::StatusOr<std::string> key = ReadFile(pki_.dir() + "/node." + id + ".key");
      if (key.ok()) secrets.push_back(KeyLine(*key));
    }
    return secrets;
  }

  void ExpectNoSecretAnywhere() {
    const std::vector<std::string> secrets = Secrets();
    ASSERT_GE(secrets.size(), 4u);
    auto expect_none = [&](const std::string& text, const std::string& where) {
      for (const std::string& secret : secrets) {
        EXPECT_EQ(text.find(secret), std::string::npos) << where << " holds " << secret;
      }
    };
    for (auto& [id, node] : nodes_) {
      for (const char* target :
           {"/status", "/metrics", "/master", "/replica", "/standalone", "/readyz", "/healthz"}) {
        HttpReply r = HttpCall(node.health_port, target);
        EXPECT_NE(r.status, -1) << id << target;
        expect_none(r.body, id + target);
      }
      expect_none(node.notify->All(), id + " notify");
      expect_none(FileTail(node.agent->log_file(), 1 << 20), id + " log");
    }
    expect_none(HttpCall(metrics_port_, "/metrics").body, "controller /metrics");
    expect_none(FileTail(controller_->log_file(), 1 << 20), "controller log");
    expect_none(Ctl({"events", "-o", "json"}).output, "events");
    expect_none(Ctl({"nodes", "-o", "json"}).output, "nodes");
  }

  TempDir dir_{"tdsvc"};
  TestPki pki_{dir_.Sub("certs")};
  std::string password_file_;
  uint16_t controller_port_ = 0;
  uint16_t metrics_port_ = 0;
  NotifySocket controller_notify_;
  std::unique_ptr<ChildProcess> controller_;
  std::vector<std::unique_ptr<PgServer>> pg_;
  std::vector<std::unique_ptr<RedisServer>> redis_;
  std::map<std::string, Node> nodes_;  // destroyed (agents killed) before the servers
};

TEST_F(ServiceE2eTest, PostgresqlEndpointsMetricsNotifyAndWatch) {
  const absl::Time start = absl::Now();
  Node& db1 = AddPgNode("db1");
  Node& db2 = AddPgNode("db2");
  ASSERT_FALSE(HasFailure());

  // Standalone: ready and standalone, nothing else.
  ASSERT_TRUE(PollUntil(
      [&] {
        return HttpCall(db1.health_port, "/readyz").status == 200 &&
               HttpCall(db2.health_port, "/readyz").status == 200;
      },
      seconds(60)))
      << Ctl({"nodes"}).output;
  ExpectRoleCodes(db1, 503, 503, 200);
  ExpectRoleCodes(db2, 503, 503, 200);

  // systemd saw READY with the role, then watchdog pings with the status.
  EXPECT_TRUE(db1.notify->WaitFor({"READY=1", "STATUS="})) << db1.notify->All();
  EXPECT_TRUE(db1.notify->WaitFor({"STATUS=standalone, converged at generation", "WATCHDOG=1"}))
      << db1.notify->All();
  EXPECT_TRUE(PollUntil([&] { return db1.notify->Count("WATCHDOG=1") >= 3; }, seconds(10)))
      << db1.notify->All();

  ASSERT_EQ(Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code, 0);
  WaitConverged({"db1", "db2"});

  // Roles.
  ExpectRoleCodes(db1, 200, 503, 503);
  ExpectRoleCodes(db2, 503, 200, 503);
  struct LagCase {
    std::string query;
    int want;
  };
  for (const LagCase& c : std::vector<LagCase>{{"?lag=1048576", 200},
                                               {"?lag=60s", 200},
                                               {"?lag=60000ms", 200},
                                               {"?lag=abc", 400},
                                               {"?lag=-5", 400}}) {
    EXPECT_EQ(HttpCall(db2.health_port, "/replica" + c.query).status, c.want) << c.query;
    EXPECT_EQ(HttpCall(db2.health_port, "/slave" + c.query).status, c.want) << c.query;
  }
  EXPECT_EQ(HttpCall(db1.health_port, "/replica?lag=1048576").status, 503);
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    HttpReply r = HttpCall(db1.health_port, "/master", method);
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_NE(r.headers.find("Allow: GET, HEAD"), std::string::npos) << r.headers;
  }
  EXPECT_EQ(HttpCall(db1.health_port, "/nope").status, 404);

  // /status.
  HttpReply status = HttpCall(db2.health_port, "/status");
  ASSERT_EQ(status.status, 200);
  nlohmann::json doc = nlohmann::json::parse(status.body, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << status.body;
  EXPECT_EQ(doc["node"]["id"], "db2");
  EXPECT_EQ(doc["desired"]["role"], "slave");
  EXPECT_EQ(doc["desired"]["upstream"]["id"], "db1");
  EXPECT_EQ(doc["observed"]["role"], "slave");
  EXPECT_EQ(doc["observed"]["streaming"], true);
  EXPECT_EQ(doc["converged"], true);
  EXPECT_EQ(doc["ready"], true);
  EXPECT_EQ(doc["controller_connected"], true);
  EXPECT_EQ(doc["last_error"], "");
  EXPECT_EQ(doc["current_step"], "");

  // Agent metrics: promtool-clean, and they say what happened.
  for (Node* node : {&db1, &db2}) {
    HttpReply metrics = HttpCall(node->health_port, "/metrics");
    ASSERT_EQ(metrics.status, 200);
    EXPECT_NE(metrics.headers.find("text/plain; version=0.0.4"), std::string::npos);
    ExpectPromtoolClean(dir_, node->id, metrics.body);
  }
  {
    auto parsed = ParseMetrics(HttpCall(db2.health_port, "/metrics").body);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    auto value = [&](const std::string& name, const prom::Labels& labels = {}) {
      absl::StatusOr<double> v = prom::FindValue(*parsed, name, labels);
      EXPECT_TRUE(v.ok()) << v.status();
      return v.value_or(-1);
    };
    EXPECT_EQ(value("tandem_agent_observed_role", {{"role", "slave"}}), 1);
    EXPECT_EQ(value("tandem_agent_desired_role", {{"role", "slave"}}), 1);
    EXPECT_EQ(value("tandem_agent_converged"), 1);
    EXPECT_EQ(value("tandem_agent_controller_connected"), 1);
    EXPECT_EQ(value("tandem_agent_replication_streaming"), 1);
    EXPECT_EQ(value("tandem_agent_replication_out_of_sync"), 0);
    EXPECT_GE(value("tandem_agent_replication_lag_bytes"), 0);
    EXPECT_GE(value("tandem_agent_step_duration_seconds_count", {{"step", "bootstrap"}}), 1);
    EXPECT_GE(value("tandem_agent_reconcile_passes_total", {{"result", "ok"}}), 1);
    EXPECT_GE(value("tandem_agent_last_successful_reconcile_timestamp_seconds"),
              absl::ToDoubleSeconds(start - absl::UnixEpoch()));
    EXPECT_EQ(value("tandem_agent_desired_generation"), value("tandem_agent_converged_generation"));
    // The node's certificate is valid for 10 days (TestPki): renewal alerts
    // read this.
    const double expiry = value("tandem_agent_certificate_expiry_seconds");
    EXPECT_GT(expiry, 9 * 86400);
    EXPECT_LE(expiry, 10 * 86400);
  }
  EXPECT_TRUE(db2.notify->WaitFor({"STATUS=slave of 127.0.0.1:", "converged at generation"}))
      << db2.notify->All();
  EXPECT_TRUE(db1.notify->WaitFor({"STATUS=master, converged at generation"})) << db1.notify->All();

  // Controller metrics.
  {
    HttpReply metrics = HttpCall(metrics_port_, "/metrics");
    ASSERT_EQ(metrics.status, 200);
    ExpectPromtoolClean(dir_, "controller", metrics.body);
    auto parsed = ParseMetrics(metrics.body);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    auto value = [&](const std::string& name, const prom::Labels& labels) {
      absl::StatusOr<double> v = prom::FindValue(*parsed, name, labels);
      EXPECT_TRUE(v.ok()) << v.status();
      return v.value_or(-1);
    };
    EXPECT_EQ(value("tandem_controller_nodes", {{"state", "converged"}}), 2);
    EXPECT_GT(value("tandem_controller_certificate_expiry_seconds", {}), 9 * 86400);
    EXPECT_EQ(value("tandem_controller_agents_connected", {}), 2);
    EXPECT_EQ(value("tandem_controller_streams_open", {{"method", "Watch"}}), 2);
    EXPECT_EQ(
        value("tandem_controller_rpcs_total", {{"method", "EnableReplication"}, {"code", "OK"}}),
        1);
    EXPECT_GE(value("tandem_controller_rpcs_total", {{"method", "Report"}, {"code", "OK"}}), 2);
    EXPECT_EQ(value("tandem_controller_nodes_desired_role", {{"role", "master"}}), 1);
    EXPECT_EQ(HttpCall(metrics_port_, "/healthz").status, 200);
  }
  EXPECT_TRUE(
      controller_notify_.WaitFor({"STATUS=2 nodes: 2 converged; 2 agents connected", "WATCHDOG=1"}))
      << controller_notify_.All();

  ExpectNoSecretAnywhere();

  // tandemctl status --watch refreshes until Ctrl-C, then exits 0.
  {
    ChildOptions options;
    options.log_file = dir_.Sub("watch.out");
    absl::StatusOr<std::unique_ptr<ChildProcess>> watch = ChildProcess::Start(
        {TANDEM_CTL_BIN, "--controller", absl::StrCat("127.0.0.1:", controller_port_),
         "--certs-dir", pki_.dir(), "status", "db2", "--watch", "--interval", "200ms"},
        options);
    ASSERT_TRUE(watch.ok()) << watch.status();
    auto frames = [&] {
      absl::StatusOr<std::string> out = ReadFile(options.log_file);
      if (!out.ok()) return 0;
      int n = 0;
      for (size_t at = out->find("Ctrl-C to stop"); at != std::string::npos;
           at = out->find("Ctrl-C to stop", at + 1)) {
        ++n;
      }
      return n;
    };
    EXPECT_TRUE(PollUntil([&] { return frames() >= 3; }, seconds(20)))
        << FileTail(options.log_file);
    ASSERT_TRUE((*watch)->Signal(SIGINT).ok());
    absl::StatusOr<int> exit = (*watch)->Wait(seconds(10));
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(*exit, 0) << FileTail(options.log_file);
    absl::StatusOr<std::string> out = ReadFile(options.log_file);
    ASSERT_TRUE(out.ok());
    EXPECT_NE(out->find("db2"), std::string::npos);
    EXPECT_NE(out->find("slave"), std::string::npos);
  }

  // A stopping agent says so, and exits 0.
  ASSERT_TRUE(db2.agent->Signal(SIGTERM).ok());
  absl::StatusOr<int> exit = db2.agent->Wait(seconds(60));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
  EXPECT_TRUE(db2.notify->WaitFor({"STOPPING=1"}, seconds(5))) << db2.notify->All();
  // ... and the controller too.
  ASSERT_TRUE(controller_->Signal(SIGTERM).ok());
  exit = controller_->Wait(seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
  EXPECT_TRUE(controller_notify_.WaitFor({"STOPPING=1"}, seconds(5))) << controller_notify_.All();
}

TEST_F(ServiceE2eTest, RedisEndpointsPerRole) {
  Node& r1 = AddRedisNode("r1");
  Node& r2 = AddRedisNode("r2");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(PollUntil(
      [&] {
        return HttpCall(r1.health_port, "/readyz").status == 200 &&
               HttpCall(r2.health_port, "/readyz").status == 200;
      },
      seconds(60)))
      << Ctl({"nodes"}).output;
  ExpectRoleCodes(r1, 503, 503, 200);
  ASSERT_EQ(Ctl({"replication", "enable", "--master", "r1", "--slave", "r2"}).exit_code, 0);
  WaitConverged({"r1", "r2"});
  ExpectRoleCodes(r1, 200, 503, 503);
  ExpectRoleCodes(r2, 503, 200, 503);
  EXPECT_EQ(HttpCall(r2.health_port, "/replica?lag=1048576").status, 200);
  EXPECT_EQ(HttpCall(r2.health_port, "/replica?lag=60s").status, 200)
      << HttpCall(r2.health_port, "/replica?lag=60s").body;
  for (Node* node : {&r1, &r2}) {
    HttpReply metrics = HttpCall(node->health_port, "/metrics");
    ASSERT_EQ(metrics.status, 200);
    ExpectPromtoolClean(dir_, node->id, metrics.body);
  }
  ExpectNoSecretAnywhere();

  // Replication disabled: both standalone again, and the endpoints follow.
  ASSERT_EQ(Ctl({"replication", "disable", "--master", "r1"}).exit_code, 0);
  WaitConverged({"r1", "r2"});
  ExpectRoleCodes(r1, 503, 503, 200);
  ExpectRoleCodes(r2, 503, 503, 200);
}

}  // namespace
}  // namespace tandem::testing
