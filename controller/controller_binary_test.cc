// Runs the real tandem-controller binary: state survives kill -9, SIGTERM
// shuts down gracefully, start-up and configuration errors exit non-zero
// with a reason.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "security/tls.h"
#include "tandem.grpc.pb.h"
#include "tests/harness/pki.h"

#ifndef TANDEM_CONTROLLER_BIN
#error "TANDEM_CONTROLLER_BIN must name the tandem-controller binary"
#endif

extern char** environ;

namespace tandem {
namespace {

using ::tandem::testing::TestPki;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr char kBinary[] = TANDEM_CONTROLLER_BIN;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/ctlbin.XXXXXX";
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

// A free loopback port (bound then released: the controller binds it next).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The controller as a child process, its output appended to a log file.
class Controller {
 public:
  Controller(std::vector<std::string> args, std::string log) : log_(std::move(log)) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> raw;
    for (std::string& arg : argv) raw.push_back(arg.data());
    raw.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, kBinary, &actions, nullptr, raw.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0) << "spawning " << kBinary;
    if (rc != 0) pid_ = -1;
  }

  ~Controller() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }

  void Signal(int signal) const {
    if (pid_ > 0) ::kill(pid_, signal);
  }

  // Waits for the process to exit (at most `timeout`); its wait status, or
  // -1 when it is still running.
  int Wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        return status;
      }
      if (Clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  std::string Log() const {
    absl::StatusOr<std::string> text = ReadFile(log_);
    return text.ok() ? *text : "";
  }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

std::chrono::system_clock::time_point In(std::chrono::milliseconds ms) {
  return std::chrono::system_clock::now() + ms;
}

// The controller restarts within the test: reconnect quickly.
grpc::ChannelArguments FastReconnect() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return args;
}

// A client speaking with one certificate of `pki` (mutual TLS).
struct Client {
  Client(int port, const TlsFiles& files, IdentityKind kind)
      : creds(*TlsCredentials::Load(files, kind, "")),
        channel(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                          creds->Channel(Identity::Controller("")),
                                          FastReconnect())),
        agents(v1::Agents::NewStub(channel)),
        operator_(v1::Operator::NewStub(channel)) {}

  std::unique_ptr<grpc::ClientContext> Context(
      std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(In(timeout));
    return context;
  }

  grpc::Status ListNodes(v1::ListNodesResponse* response) const {
    return operator_->ListNodes(Context().get(), v1::ListNodesRequest(), response);
  }

  std::shared_ptr<TlsCredentials> creds;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Agents::Stub> agents;
  std::unique_ptr<v1::Operator::Stub> operator_;
};

bool PortOpen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool open = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return open;
}

// Polls until the controller's port accepts connections and it answers
// ListNodes (or it died, or 20 s pass).
::testing::AssertionResult WaitReady(Controller& controller, const Client& client, int port) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (!controller.Running()) {
      return ::testing::AssertionFailure() << "the controller exited:\n" << controller.Log();
    }
    if (PortOpen(port)) {
      auto context = client.Context(std::chrono::seconds(10));
      context->set_wait_for_ready(true);
      v1::ListNodesResponse nodes;
      grpc::Status st = client.operator_->ListNodes(context.get(), v1::ListNodesRequest(), &nodes);
      if (st.ok() || st.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
        return ::testing::AssertionSuccess();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return ::testing::AssertionFailure() << "the controller is not ready after 20 s:\n"
                                       << controller.Log();
}

// Runs the binary to completion (it is expected to exit by itself).
absl::StatusOr<RunResult> RunToExit(const std::vector<std::string>& argv) {
  RunOptions options;
  options.timeout = std::chrono::seconds(30);
  return ::tandem::Run(argv, options);
}

v1::NodeInfo ProtoNode(const std::string& id, uint32_t port) {
  v1::NodeInfo node;
  node.set_id(id);
  node.set_stack("eu");
  node.set_engine(v1::ENGINE_TYPE_REDIS);
  node.set_address_internal("127.0.0.1");
  node.set_port(port);
  return node;
}

struct WatchStream {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::DesiredState>> reader;
};

WatchStream OpenWatch(const Client& client, const v1::NodeInfo& node) {
  WatchStream watch;
  watch.context = client.Context();
  v1::WatchRequest request;
  *request.mutable_node() = node;
  watch.reader = client.agents->Watch(watch.context.get(), request);
  return watch;
}

// What must survive a restart: per node, the whole desired state.
std::map<std::string, std::string> DesiredByNode(const v1::ListNodesResponse& nodes) {
  std::map<std::string, std::string> out;
  for (const v1::NodeStatus& node : nodes.nodes()) {
    v1::DesiredState desired = node.desired();
    desired.clear_upstream_data_bytes();  // informational, from live reports
    out[node.info().id()] = desired.ShortDebugString();
  }
  return out;
}

TEST(ControllerBinaryTest, StateSurvivesKillNineAndSigtermIsGraceful) {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  const int port = FreePort();
  TestPki pki(dir.path() + "/certs");
  pki.Controller();
  const std::vector<std::string> args = {"--listen", "127.0.0.1:" + std::to_string(port),
                                         "--data-dir", data_dir, "--certs-dir", pki.dir()};
  Client client(port, pki.Client("admin"), IdentityKind::kOperator);
  Client agent1(port, pki.Node("db1"), IdentityKind::kNode);
  Client agent2(port, pki.Node("db2"), IdentityKind::kNode);
  std::map<std::string, std::string> before;
  {
    Controller controller(args, dir.path() + "/controller.log");
    ASSERT_TRUE(WaitReady(controller, client, port));
    WatchStream db1 = OpenWatch(agent1, ProtoNode("db1", 6379));
    WatchStream db2 = OpenWatch(agent2, ProtoNode("db2", 6380));
    v1::DesiredState desired;
    ASSERT_TRUE(db1.reader->Read(&desired));
    EXPECT_EQ(desired.generation(), 1u);
    ASSERT_TRUE(db2.reader->Read(&desired));
    EXPECT_EQ(desired.generation(), 1u);

    v1::EnableReplicationRequest enable;
    enable.set_master("db1");
    enable.set_slave("db2");
    v1::ChangeResponse change;
    grpc::Status st = client.operator_->EnableReplication(client.Context().get(), enable, &change);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(change.changes_size(), 2);
    // Acknowledged means saved: the slave's stream gets it too.
    ASSERT_TRUE(db2.reader->Read(&desired));
    EXPECT_EQ(desired.generation(), 2u);
    EXPECT_EQ(desired.role(), v1::ROLE_SLAVE);
    v1::ResyncRequest resync;
    resync.set_slave("db2");
    st = client.operator_->Resync(client.Context().get(), resync, &change);
    ASSERT_TRUE(st.ok()) << st.error_message();

    v1::ListNodesResponse nodes;
    ASSERT_TRUE(client.ListNodes(&nodes).ok());
    before = DesiredByNode(nodes);
    ASSERT_EQ(before.size(), 2u);

    controller.Signal(SIGKILL);
    const int status = controller.Wait(std::chrono::seconds(10));
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
  }

  Controller controller(args, dir.path() + "/controller2.log");
  ASSERT_TRUE(WaitReady(controller, client, port));
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(client.ListNodes(&nodes).ok());
  EXPECT_EQ(DesiredByNode(nodes), before);
  ASSERT_EQ(nodes.nodes_size(), 2);
  EXPECT_EQ(nodes.nodes(1).desired().generation(), 3u);  // enable, then resync
  EXPECT_EQ(nodes.nodes(1).upstream_id(), "db1");
  EXPECT_FALSE(nodes.nodes(1).agent_connected());

  // The agent reconnects: the same generation, not a new one.
  WatchStream db2 = OpenWatch(agent2, ProtoNode("db2", 6380));
  v1::DesiredState desired;
  ASSERT_TRUE(db2.reader->Read(&desired));
  EXPECT_EQ(desired.generation(), 3u);
  EXPECT_EQ(desired.role(), v1::ROLE_SLAVE);

  // A second controller on the same data dir refuses to start.
  absl::StatusOr<RunResult> second =
      RunToExit({kBinary, "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--certs-dir",
                 pki.dir()});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->exit_code, 1);
  EXPECT_THAT(second->output, HasSubstr("in use by another tandem-controller"));
  // And so does one on the same port.
  absl::StatusOr<RunResult> same_port =
      RunToExit({kBinary, "--listen", "127.0.0.1:" + std::to_string(port), "--data-dir",
                 dir.path() + "/other", "--certs-dir", pki.dir()});
  ASSERT_TRUE(same_port.ok()) << same_port.status();
  EXPECT_EQ(same_port->exit_code, 1);
  EXPECT_THAT(same_port->output, HasSubstr("cannot listen on 127.0.0.1:" + std::to_string(port)));

  // SIGTERM with a stream open: the stream ends, the process exits 0.
  const auto start = Clock::now();
  controller.Signal(SIGTERM);
  EXPECT_FALSE(db2.reader->Read(&desired));
  EXPECT_EQ(db2.reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  const int status = controller.Wait(std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(status)) << status << "\n" << controller.Log();
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4));
}

TEST(ControllerBinaryTest, SecureByDefaultAndCertificatesReloadOnSighup) {
  TempDir dir;
  const int port = FreePort();
  TestPki pki(dir.path() + "/certs");
  pki.Controller();
  const std::string config = dir.path() + "/controller.yaml";
  ASSERT_TRUE(WriteFileAtomic(config, "listen: 127.0.0.1:" + std::to_string(port) +
                                          "\ndata_dir: " + dir.path() + "/data\ncerts_dir: " +
                                          pki.dir() + "\n")
                  .ok());
  Controller controller({"--config", config}, dir.path() + "/controller.log");
  Client admin(port, pki.Client("admin"), IdentityKind::kOperator);
  ASSERT_TRUE(WaitReady(controller, admin, port));
  EXPECT_THAT(controller.Log(), HasSubstr("mutual TLS"));

  // No certificate, no call.
  auto plain = v1::Operator::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                         grpc::InsecureChannelCredentials()));
  v1::ListNodesResponse nodes;
  grpc::ClientContext plain_context;
  plain_context.set_deadline(In(std::chrono::seconds(5)));
  EXPECT_FALSE(plain->ListNodes(&plain_context, v1::ListNodesRequest(), &nodes).ok());

  // A real TLS client: TLS 1.3 is negotiated, 1.2 accepted, 1.1 refused.
  const std::string target = "127.0.0.1:" + std::to_string(port);
  const TlsFiles operator_files = pki.Client("admin");
  RunOptions bounded;
  bounded.timeout = std::chrono::seconds(20);
  auto modern = ::tandem::Run({"openssl", "s_client", "-connect", target, "-CAfile", pki.ca_file(), "-cert",
                     operator_files.cert_file, "-key", operator_files.key_file, "-verify_return_error",
                     "-brief", "-alpn", "h2"},
                    bounded);
  ASSERT_TRUE(modern.ok()) << modern.status();
  EXPECT_THAT(modern->output, HasSubstr("Protocol version: TLSv1.3")) << modern->output;
  EXPECT_THAT(modern->output, HasSubstr("Verification: OK")) << modern->output;
  auto floor = ::tandem::Run({"openssl", "s_client", "-connect", target, "-CAfile", pki.ca_file(),
                              "-cert", operator_files.cert_file, "-key", operator_files.key_file,
                              "-tls1_2", "-brief", "-alpn", "h2"},
                             bounded);
  ASSERT_TRUE(floor.ok()) << floor.status();
  EXPECT_THAT(floor->output, HasSubstr("Protocol version: TLSv1.2")) << floor->output;
  auto old_protocol = ::tandem::Run({"openssl", "s_client", "-connect", target, "-CAfile", pki.ca_file(),
                           "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-brief"},
                          bounded);
  ASSERT_TRUE(old_protocol.ok()) << old_protocol.status();
  EXPECT_NE(old_protocol->exit_code, 0) << old_protocol->output;
  // The client offers TLS 1.1 (its own floor lowered): the server ends the
  // handshake.
  EXPECT_THAT(old_protocol->output, ::testing::Not(HasSubstr("Protocol version")))
      << old_protocol->output;

  // An agent holds its watch across a reload; new handshakes get the new
  // certificate.
  Client agent(port, pki.Node("db1"), IdentityKind::kNode);
  WatchStream db1 = OpenWatch(agent, ProtoNode("db1", 6379));
  v1::DesiredState desired;
  ASSERT_TRUE(db1.reader->Read(&desired));
  const std::string old_serial = InspectCertificate(*ReadFile(pki.dir() + "/controller.crt"))->serial;
  const std::string new_serial = InspectCertificate(*ReadFile(pki.Controller().cert_file))->serial;
  ASSERT_NE(old_serial, new_serial);
  controller.Signal(SIGHUP);
  auto served_serial = [&] {
    Client fresh(port, pki.Client("admin"), IdentityKind::kOperator);
    auto context = fresh.Context(std::chrono::seconds(5));
    v1::ListNodesResponse response;
    if (!fresh.operator_->ListNodes(context.get(), v1::ListNodesRequest(), &response).ok()) {
      return std::string();
    }
    for (const auto& pem : context->auth_context()->FindPropertyValues("x509_pem_cert")) {
      return InspectCertificate(std::string(pem.data(), pem.size()))->serial;
    }
    return std::string();
  };
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (served_serial() != new_serial && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(served_serial(), new_serial) << controller.Log();
  EXPECT_THAT(controller.Log(), HasSubstr("certificates reloaded"));
  v1::ListNodesResponse after;
  ASSERT_TRUE(admin.ListNodes(&after).ok());
  ASSERT_EQ(after.nodes_size(), 1);
  EXPECT_TRUE(after.nodes(0).agent_connected()) << "the watch survived the reload";

  // A broken file on SIGHUP is refused; the controller keeps serving.
  ASSERT_TRUE(WriteFileAtomic(pki.dir() + "/controller.key", "not a key", 0600).ok());
  controller.Signal(SIGHUP);
  const auto refused_by = Clock::now() + std::chrono::seconds(10);
  while (controller.Log().find("NOT reloaded") == std::string::npos && Clock::now() < refused_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_THAT(controller.Log(), HasSubstr("certificates NOT reloaded"));
  EXPECT_EQ(served_serial(), new_serial);

  controller.Signal(SIGTERM);
  const int status = controller.Wait(std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_THAT(controller.Log(), ::testing::Not(HasSubstr("PRIVATE KEY")));
}

struct StartupErrorCase {
  std::string name;
  std::string config;  // controller.yaml content ("": no --config)
  std::vector<std::string> extra_args;
  std::function<void(const std::string& dir)> prepare;
  int exit_code;
  std::string message;
};

TEST(ControllerBinaryTest, StartupErrorsExitNonZeroWithTheReason) {
  const std::vector<StartupErrorCase> cases = {
      {"unknown field",
       "listen: 127.0.0.1:0\nlisne: x\n",
       {},
       nullptr,
       2,
       "controller.yaml: field 'lisne': unknown field"},
      {"bad listen",
       "listen: 127.0.0.1:70000\n",
       {},
       nullptr,
       2,
       "controller.yaml: field 'listen': port \"70000\" is not in 0..65535"},
      {"bad flag", "", {"--listen", "nohost"}, nullptr, 2, "--listen: \"nohost\" has no port"},
      {"unknown flag", "", {"--frobnicate"}, nullptr, 2, "unknown argument \"--frobnicate\""},
      {"missing config",
       "",
       {"--config", "/nonexistent/controller.yaml"},
       nullptr,
       2,
       "/nonexistent/controller.yaml"},
      {"token file of old",
       "listen: 127.0.0.1:0\nauth_token_file: TOKEN\n",
       {},
       nullptr,
       2,
       "field 'auth_token_file': the shared token is gone"},
      {"no certificates",
       "listen: 127.0.0.1:0\ncerts_dir: /nonexistent/certs\n",
       {},
       nullptr,
       2,
       "(create the cluster's certificates with tandemctl cert create-ca, then tandemctl cert "
       "create-controller --address ADDRESS"},
      {"insecure beyond loopback",
       "",
       {"--insecure", "--listen", "0.0.0.0:0"},
       nullptr,
       2,
       "insecure is allowed only when every address this process listens on is loopback, and "
       "listen is 0.0.0.0:0"},
      {"insecure metrics beyond loopback",
       "listen: 127.0.0.1:0\ninsecure: true\nmetrics_listen: 10.1.2.3:9100\n",
       {},
       nullptr,
       2,
       "metrics_listen is 10.1.2.3:9100"},
      {"corrupt state",
       "listen: 127.0.0.1:0\ninsecure: true\n",
       {},
       [](const std::string& dir) {
         EXPECT_TRUE(MakeDirs(dir + "/data").ok());
         EXPECT_TRUE(WriteFileAtomic(dir + "/data/state.json", "{\"format\": \"tandem-contr").ok());
       },
       1,
       "/data/state.json is unreadable"},
  };
  for (const StartupErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    if (c.prepare) c.prepare(dir.path());
    std::vector<std::string> argv = {kBinary, "--data-dir", dir.path() + "/data"};
    if (!c.config.empty()) {
      std::string text = c.config;
      if (const size_t at = text.find("TOKEN"); at != std::string::npos) {
        text.replace(at, 5, dir.path() + "/token");
      }
      ASSERT_TRUE(WriteFileAtomic(dir.path() + "/controller.yaml", text).ok());
      argv.push_back("--config");
      argv.push_back(dir.path() + "/controller.yaml");
    }
    argv.insert(argv.end(), c.extra_args.begin(), c.extra_args.end());
    absl::StatusOr<RunResult> result = RunToExit(argv);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->exit_code, c.exit_code) << result->output;
    EXPECT_THAT(result->output, HasSubstr(c.message));
    EXPECT_THAT(result->output, ::testing::Not(HasSubstr("secret\n")));
  }
}

}  // namespace
}  // namespace tandem
