// Runs the real tandemctl binary against an in-process fake Operator service
// and checks exit codes, stdout and stderr.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "security/tls.h"
#include "tandem.grpc.pb.h"

extern char** environ;

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ------------------------------------------------------------ fake server

class FakeOperator final : public v1::Operator::Service {
 public:
  // Answer of the mutating RPCs: a status, or these change lines.
  struct Answer {
    grpc::Status status = grpc::Status::OK;
    std::vector<std::string> changes;
    bool switchover_pending = false;
  };

  void SetNodes(v1::ListNodesResponse nodes) {
    std::lock_guard<std::mutex> lock(mu_);
    nodes_ = std::move(nodes);
  }
  // From the `call`-th ListNodes on (1-based), every node is converged.
  void ConvergeAtCall(int call) {
    std::lock_guard<std::mutex> lock(mu_);
    converge_at_call_ = call;
  }
  void SetAnswer(const std::string& method, Answer answer) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_[method] = std::move(answer);
  }
  // GetNode of `node` answers these in turn (the last one from then on).
  void ScriptNode(const std::string& node, std::vector<v1::NodeStatus> answers) {
    std::lock_guard<std::mutex> lock(mu_);
    scripts_[node] = std::move(answers);
  }
  void SetEvents(std::vector<v1::Event> events) {
    std::lock_guard<std::mutex> lock(mu_);
    events_ = std::move(events);
  }

  int list_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return list_calls_;
  }
  // Who called last, by the certificate it showed.
  std::string last_caller() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_caller_;
  }
  // "Method: field=value ..." for every mutating or event request, in order.
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  bool stream_cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return stream_cancelled_;
  }

  grpc::Status ListNodes(grpc::ServerContext* context, const v1::ListNodesRequest*,
                         v1::ListNodesResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (grpc::Status st = CheckAuth(context); !st.ok()) return st;
    ++list_calls_;
    *response = nodes_;
    if (converge_at_call_ > 0 && list_calls_ >= converge_at_call_) {
      for (v1::NodeStatus& node : *response->mutable_nodes()) {
        node.set_converged(true);
        node.mutable_observed()->set_converged_generation(node.desired().generation());
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status GetNode(grpc::ServerContext* context, const v1::GetNodeRequest* request,
                       v1::NodeStatus* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (grpc::Status st = CheckAuth(context); !st.ok()) return st;
    if (auto it = scripts_.find(request->node()); it != scripts_.end() && !it->second.empty()) {
      *response = it->second.front();
      if (it->second.size() > 1) it->second.erase(it->second.begin());
      return grpc::Status::OK;
    }
    for (const v1::NodeStatus& node : nodes_.nodes()) {
      if (node.info().id() == request->node()) {
        *response = node;
        return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown node " + request->node());
  }

  grpc::Status EnableReplication(grpc::ServerContext* context,
                                 const v1::EnableReplicationRequest* request,
                                 v1::ChangeResponse* response) override {
    return Change(context, "EnableReplication",
                  "master=" + request->master() + " slave=" + request->slave(), response);
  }
  grpc::Status DisableReplication(grpc::ServerContext* context,
                                  const v1::DisableReplicationRequest* request,
                                  v1::ChangeResponse* response) override {
    return Change(context, "DisableReplication", "master=" + request->master(), response);
  }
  grpc::Status RemoveSlave(grpc::ServerContext* context, const v1::RemoveSlaveRequest* request,
                           v1::ChangeResponse* response) override {
    return Change(context, "RemoveSlave", "slave=" + request->slave(), response);
  }
  grpc::Status Resync(grpc::ServerContext* context, const v1::ResyncRequest* request,
                      v1::ChangeResponse* response) override {
    return Change(context, "Resync", "slave=" + request->slave(), response);
  }
  grpc::Status Promote(grpc::ServerContext* context, const v1::PromoteRequest* request,
                       v1::ChangeResponse* response) override {
    return Change(context, "Promote",
                  "node=" + request->node() + " force=" + (request->force() ? "1" : "0"), response);
  }

  grpc::Status ListEvents(grpc::ServerContext* context, const v1::ListEventsRequest* request,
                          grpc::ServerWriter<v1::Event>* writer) override {
    std::vector<v1::Event> events;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (grpc::Status st = CheckAuth(context); !st.ok()) return st;
      requests_.push_back("ListEvents: follow=" + std::string(request->follow() ? "1" : "0") +
                          " node=" + request->node());
      events = events_;
    }
    for (const v1::Event& event : events) {
      if (!request->node().empty() && event.node() != request->node()) continue;
      if (event.seq() <= request->after_seq()) continue;
      writer->Write(event);
    }
    if (!request->follow()) return grpc::Status::OK;
    // Follow: keep the stream open until the client goes away.
    Clock::time_point deadline = Clock::now() + 60s;
    while (!context->IsCancelled() && Clock::now() < deadline) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, 20ms);
    }
    std::lock_guard<std::mutex> lock(mu_);
    stream_cancelled_ = context->IsCancelled();
    return grpc::Status::OK;
  }

 private:
  grpc::Status CheckAuth(grpc::ServerContext* context) {  // mu_ held
    last_caller_ = PeerIdentity(*context, true).Describe();
    return grpc::Status::OK;
  }

  grpc::Status Change(grpc::ServerContext* context, const std::string& method,
                      const std::string& fields, v1::ChangeResponse* response) {
    std::lock_guard<std::mutex> lock(mu_);
    if (grpc::Status st = CheckAuth(context); !st.ok()) return st;
    requests_.push_back(method + ": " + fields);
    const Answer& answer = answers_[method];
    if (!answer.status.ok()) return answer.status;
    for (const std::string& line : answer.changes) response->add_changes(line);
    response->set_switchover_pending(answer.switchover_pending);
    return grpc::Status::OK;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  v1::ListNodesResponse nodes_;
  int converge_at_call_ = 0;
  int list_calls_ = 0;
  std::string last_caller_;
  std::map<std::string, Answer> answers_;
  std::vector<std::string> requests_;
  std::vector<v1::Event> events_;
  std::map<std::string, std::vector<v1::NodeStatus>> scripts_;
  bool stream_cancelled_ = false;
};

v1::NodeStatus MakeNode(const std::string& id, v1::EngineType engine, v1::Role role,
                        uint64_t generation, uint64_t converged_generation) {
  v1::NodeStatus node;
  node.mutable_info()->set_id(id);
  node.mutable_info()->set_stack("eu-main");
  node.mutable_info()->set_engine(engine);
  node.mutable_info()->set_address_internal("10.0.0." + id.substr(2));
  node.mutable_info()->set_port(engine == v1::ENGINE_TYPE_REDIS ? 6379 : 5432);
  node.mutable_desired()->set_generation(generation);
  node.mutable_desired()->set_role(role);
  node.mutable_observed()->set_engine_reachable(true);
  node.mutable_observed()->set_role(role);
  node.mutable_observed()->set_lag_bytes(-1);
  node.mutable_observed()->set_lag_seconds(-1);
  node.mutable_observed()->set_converged_generation(converged_generation);
  node.mutable_observed()->set_seen_generation(generation);
  node.set_converged(generation == converged_generation);
  node.set_agent_connected(true);
  node.set_seconds_since_report(0.8);
  return node;
}

// db1 master (converged), db2 its slave (generation 4, converged 3, a
// transient error), db3 a Redis standalone (converged).
v1::ListNodesResponse StandardNodes() {
  v1::ListNodesResponse nodes;
  v1::NodeStatus db1 = MakeNode("db1", v1::ENGINE_TYPE_POSTGRESQL, v1::ROLE_MASTER, 3, 3);
  auto& env = *db1.mutable_desired()->mutable_env();
  env["POSTGRESQL_ADDRESS"] = "10.0.0.1";
  env["POSTGRESQL_PORT"] = "5432";
  env["POSTGRESQL_SLAVE_ADDRESSES"] = "10.0.0.2";
  env["TANDEM_ROLE"] = "master";
  *nodes.add_nodes() = db1;
  v1::NodeStatus db2 = MakeNode("db2", v1::ENGINE_TYPE_POSTGRESQL, v1::ROLE_SLAVE, 4, 3);
  db2.set_upstream_id("db1");
  db2.mutable_observed()->set_lag_bytes(2048);
  db2.mutable_observed()->set_lag_seconds(1.5);
  db2.mutable_observed()->mutable_bootstrap()->set_done_bytes(50);
  db2.mutable_observed()->mutable_bootstrap()->set_total_bytes(200);
  db2.mutable_observed()->set_last_error("replication slot missing");
  *nodes.add_nodes() = db2;
  *nodes.add_nodes() = MakeNode("db3", v1::ENGINE_TYPE_REDIS, v1::ROLE_STANDALONE, 1, 1);
  return nodes;
}

// ------------------------------------------------------------ process runner

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

class TandemctlCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/tctl.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    address_ = "127.0.0.1:" + std::to_string(port_);
    fake_.SetNodes(StandardNodes());
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 2s);
    std::filesystem::remove_all(dir_);
  }

  // Starts tandemctl with `args`; the environment holds PATH and `env` only.
  void Start(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    ASSERT_EQ(pid_, -1) << "one tandemctl at a time";
    out_path_ = dir_ + "/out";
    err_path_ = dir_ + "/err";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    std::vector<std::string> argv_storage = {TANDEMCTL_BINARY};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    // The fake controller speaks plaintext on loopback (insecure mode),
    // unless the test gives certificates.
    const bool certs = std::find(args.begin(), args.end(), "--certs-dir") != args.end() ||
                       std::any_of(env.begin(), env.end(), [](const std::string& var) {
                         return var.rfind("TANDEM_CERTS_DIR=", 0) == 0;
                       });
    if (!certs) {
      argv_storage.push_back("--insecure");
    }
    std::vector<char*> argv;
    for (std::string& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_storage = {"PATH=/usr/bin:/bin"};
    env_storage.insert(env_storage.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (std::string& var : env_storage) envp.push_back(var.data());
    envp.push_back(nullptr);
    started_ = Clock::now();
    int rc = posix_spawn(&pid_, TANDEMCTL_BINARY, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0) << "posix_spawn " << TANDEMCTL_BINARY << ": " << std::strerror(rc);
  }

  // Waits for the started tandemctl (killing it after `limit`).
  CliResult Finish(std::chrono::seconds limit = 60s) {
    CliResult result;
    int status = 0;
    Clock::time_point deadline = Clock::now() + limit;
    while (true) {
      pid_t done = waitpid(pid_, &status, WNOHANG);
      if (done == pid_) break;
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        ADD_FAILURE() << "tandemctl still running after " << limit.count() << "s";
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
    result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
    if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) result.exit_code = 128 + WTERMSIG(status);
    result.out = Slurp(out_path_);
    result.err = Slurp(err_path_);
    return result;
  }

  CliResult Run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    Start(args, env);
    if (pid_ <= 0) return CliResult{};
    return Finish();
  }

  // Runs against the fake controller (--controller prepended).
  CliResult RunCtl(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), {"--controller", address_});
    return Run(args, env);
  }

  FakeOperator fake_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  std::string dir_;
  std::string out_path_;
  std::string err_path_;
  pid_t pid_ = -1;
  Clock::time_point started_;
};

// Exactly one "tandemctl: ..." line.
void ExpectOneErrorLine(const CliResult& result, const std::string& expected) {
  EXPECT_EQ(result.err, "tandemctl: " + expected + "\n");
  EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;
}

TEST_F(TandemctlCliTest, NodesTable) {
  CliResult result = RunCtl({"nodes"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err, "");
  std::vector<std::string> lines = Lines(result.out);
  ASSERT_EQ(lines.size(), 4u) << result.out;
  EXPECT_EQ(
      lines[0],
      "NODE  STACK    ENGINE      DESIRED     OBSERVED    UPSTREAM  LAG        CONVERGED  GEN  "
      "ERROR");
  EXPECT_EQ(
      lines[2],
      "db2   eu-main  postgresql  slave       slave       db1       2.0K/1.5s  no         4/3  "
      "replication slot missing")
      << result.out;
}

TEST_F(TandemctlCliTest, NodesJson) {
  CliResult result = RunCtl({"nodes", "-o", "json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  nlohmann::json json = nlohmann::json::parse(result.out);
  ASSERT_TRUE(json.is_array());
  ASSERT_EQ(json.size(), 3u);
  EXPECT_EQ(json[1]["id"], "db2");
  EXPECT_EQ(json[1]["desired"]["role"], "slave");
  EXPECT_EQ(json[1]["observed"]["lag_bytes"], 2048);
  EXPECT_EQ(json[1]["converged"], false);
  EXPECT_EQ(json[2]["engine"], "redis");
}

TEST_F(TandemctlCliTest, Status) {
  CliResult result = RunCtl({"status", "db2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("\nconverged:              no\n"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("  bootstrap:            50/200 bytes (25%)\n"), std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("  last error:           replication slot missing (transient, "
                            "retrying)\n"),
            std::string::npos)
      << result.out;

  CliResult json = RunCtl({"-o", "json", "status", "db2"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["observed"]["bootstrap"]["total_bytes"], 200);

  CliResult unknown = RunCtl({"status", "db9"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.out, "");
  ExpectOneErrorLine(unknown, "unknown node db9");
}

TEST_F(TandemctlCliTest, RefusedEnablePrintsTheControllersMessage) {
  fake_.SetAnswer("EnableReplication",
                  {grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                "engines differ: db1 is postgresql, db3 is redis"),
                   {}});
  CliResult result = RunCtl({"replication", "enable", "--master", "db1", "--slave", "db3"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out, "");
  ExpectOneErrorLine(result, "engines differ: db1 is postgresql, db3 is redis");
  EXPECT_EQ(fake_.requests(), std::vector<std::string>{"EnableReplication: master=db1 slave=db3"});
}

TEST_F(TandemctlCliTest, MultiLineControllerMessageStaysOneLine) {
  fake_.SetAnswer("Resync", {grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "db1 is not a slave\nresync needs a slave"),
                             {}});
  CliResult result = RunCtl({"resync", "db1"});
  EXPECT_EQ(result.exit_code, 1);
  ExpectOneErrorLine(result, "db1 is not a slave resync needs a slave");
}

TEST_F(TandemctlCliTest, MutatingVerbsSendTheirRequestAndPrintChanges) {
  struct Case {
    std::vector<std::string> args;
    std::string method;
    std::string request;
  };
  const Case cases[] = {
      {{"replication", "enable", "--slave", "db2", "--master", "db1"},
       "EnableReplication",
       "EnableReplication: master=db1 slave=db2"},
      {{"slave", "add", "db2", "--master", "db1"},
       "EnableReplication",
       "EnableReplication: master=db1 slave=db2"},
      {{"replication", "disable", "--master", "db1"},
       "DisableReplication",
       "DisableReplication: master=db1"},
      {{"slave", "remove", "db2"}, "RemoveSlave", "RemoveSlave: slave=db2"},
      {{"resync", "db2"}, "Resync", "Resync: slave=db2"},
      {{"promote", "db2"}, "Promote", "Promote: node=db2 force=0"},
      {{"promote", "--force", "db2"}, "Promote", "Promote: node=db2 force=1"},
  };
  size_t seen = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request);
    fake_.SetAnswer(c.method, {grpc::Status::OK,
                               {"db2: slave -> standalone (generation 5)",
                                "db1: master -> standalone (generation 4)"}});
    CliResult result = RunCtl(c.args);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.err, "");
    EXPECT_EQ(result.out,
              "db2: slave -> standalone (generation 5)\n"
              "db1: master -> standalone (generation 4)\n");
    std::vector<std::string> requests = fake_.requests();
    ASSERT_EQ(requests.size(), seen + 1);
    EXPECT_EQ(requests.back(), c.request);
    ++seen;
  }

  fake_.SetAnswer("RemoveSlave", {grpc::Status::OK, {}});
  CliResult nothing = RunCtl({"slave", "remove", "db2"});
  EXPECT_EQ(nothing.exit_code, 0) << nothing.err;
  EXPECT_EQ(nothing.out, "nothing to change\n");

  CliResult json = RunCtl({"slave", "remove", "db2", "-o", "json"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(nlohmann::json::parse(json.out)["changes"].empty());
}

// promote returns once the switchover is over: its changes when it is
// done, the controller's reason (exit 1) when it was aborted.
TEST_F(TandemctlCliTest, PromoteWaitsForTheSwitchoverAndFailsWhenItIsAborted) {
  fake_.SetAnswer("Promote", {grpc::Status::OK, {"db1: master of db2 -> fenced master (generation 5)"},
                              /*switchover_pending=*/true});
  v1::NodeStatus running = MakeNode("db2", v1::ENGINE_TYPE_POSTGRESQL, v1::ROLE_SLAVE, 4, 4);
  running.set_switchover("promote db2: fencing db1 for 1 s (aborted after 30 s)");
  v1::NodeStatus done = MakeNode("db2", v1::ENGINE_TYPE_POSTGRESQL, v1::ROLE_MASTER, 5, 4);
  v1::NodeStatus aborted = MakeNode("db2", v1::ENGINE_TYPE_POSTGRESQL, v1::ROLE_SLAVE, 4, 4);
  aborted.set_switchover_aborted(
      "promote db2 aborted: db1 did not report its fence within 30s; db1 is unfenced");

  fake_.ScriptNode("db2", {running, running, done});
  CliResult ok = RunCtl({"promote", "db2"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out,
            "db1: master of db2 -> fenced master (generation 5)\n"
            "db2: the switchover is done\n");

  fake_.ScriptNode("db2", {running, aborted});
  CliResult failed = RunCtl({"promote", "db2"});
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_EQ(failed.out, "");
  EXPECT_EQ(failed.err,
            "tandemctl: promote db2 aborted: db1 did not report its fence within 30s; db1 is "
            "unfenced\n");
}

TEST_F(TandemctlCliTest, Env) {
  CliResult result = RunCtl({"env", "db1"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "POSTGRESQL_ADDRESS=10.0.0.1\n"
            "POSTGRESQL_PORT=5432\n"
            "POSTGRESQL_SLAVE_ADDRESSES=10.0.0.2\n"
            "TANDEM_ROLE=master\n");
  CliResult json = RunCtl({"env", "db1", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["TANDEM_ROLE"], "master");
}

TEST_F(TandemctlCliTest, WaitSucceedsOnceTheNodesConverge) {
  fake_.ConvergeAtCall(3);
  CliResult result = RunCtl({"wait", "--timeout", "30s"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(fake_.list_calls(), 3);
  // Two 200 ms pauses between three polls.
  EXPECT_GE(result.elapsed, 400ms);
}

TEST_F(TandemctlCliTest, WaitJsonPrintsTheAwaitedNodes) {
  CliResult result = RunCtl({"wait", "db3", "db1", "-o", "json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  nlohmann::json json = nlohmann::json::parse(result.out);
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["id"], "db3");
  EXPECT_EQ(json[1]["id"], "db1");
  EXPECT_EQ(fake_.list_calls(), 1);
}

TEST_F(TandemctlCliTest, WaitTimesOut) {
  CliResult result = RunCtl({"wait", "db1", "db2", "--timeout", "1s"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out, "");
  ExpectOneErrorLine(result,
                     "timed out after 1s waiting for: db2 (observed slave, gen 4/3, last error: "
                     "replication slot missing)");
  EXPECT_GE(result.elapsed, 1s);
  EXPECT_LT(result.elapsed, 10s);
  // Polled every 200 ms for one second: about six polls, not a busy loop.
  EXPECT_GE(fake_.list_calls(), 3);
  EXPECT_LE(fake_.list_calls(), 8);
}

TEST_F(TandemctlCliTest, WaitFailsAtOnceOnABlockingErrorOrAnUnknownNode) {
  v1::ListNodesResponse nodes = StandardNodes();
  nodes.mutable_nodes(1)->mutable_observed()->set_error_blocks(true);
  nodes.mutable_nodes(1)->mutable_observed()->set_last_error("not enough free disk: need 2 GiB");
  fake_.SetNodes(nodes);
  CliResult blocked = RunCtl({"wait", "--timeout", "60s"});
  EXPECT_EQ(blocked.exit_code, 1);
  ExpectOneErrorLine(blocked,
                     "db2 cannot converge to generation 4: not enough free disk: need 2 GiB");
  EXPECT_LT(blocked.elapsed, 10s);

  CliResult unknown = RunCtl({"wait", "db1", "db9", "--timeout", "60s"});
  EXPECT_EQ(unknown.exit_code, 1);
  ExpectOneErrorLine(unknown, "unknown node db9");
  EXPECT_LT(unknown.elapsed, 10s);
}

// Once the controller has answered, losing it (a restart) is waited out
// until the timeout, and the timeout message says what the last poll saw.
TEST_F(TandemctlCliTest, WaitRidesOutALostControllerUntilTheTimeout) {
  Start({"--controller", address_, "wait", "db2", "--timeout", "2s"});
  ASSERT_GT(pid_, 0);
  Clock::time_point deadline = Clock::now() + 30s;
  while (fake_.list_calls() < 1 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_GE(fake_.list_calls(), 1);
  server_->Shutdown(std::chrono::system_clock::now() + 1s);
  server_.reset();
  CliResult result = Finish(30s);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err.rfind("tandemctl: timed out after 2s waiting for: db2 (observed slave, gen "
                             "4/3, last error: replication slot missing) (last poll: cannot reach "
                             "the controller at " +
                                 address_ + ": ",
                             0),
            0u)
      << result.err;
  EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;
  EXPECT_GE(result.elapsed, 2s);
}

// A port nobody listens on: bind, read the port, close.
int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return -1;
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST_F(TandemctlCliTest, ControllerDown) {
  int port = UnusedPort();
  ASSERT_GT(port, 0);
  std::string address = "127.0.0.1:" + std::to_string(port);
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> env;
  };
  const Case cases[] = {
      {{"--controller", address, "nodes"}, {}},
      {{"status", "db1"}, {"TANDEM_CONTROLLER=" + address}},
      {{"replication", "enable", "--master", "db1", "--slave", "db2", "--controller", address}, {}},
      {{"wait", "--controller", address}, {}},
      {{"events", "--controller", address}, {}},
      {{"events", "--follow", "--controller", address}, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    CliResult result = Run(c.args, c.env);
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_EQ(result.err.rfind("tandemctl: cannot reach the controller at " + address + ": ", 0),
              0u)
        << result.err;
    EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;
    EXPECT_EQ(result.out, "");
    EXPECT_LT(result.elapsed, 10s);
  }
}

// A peer that accepts TCP connections (in the kernel backlog) but never
// speaks HTTP/2: each call ends at its deadline, within about 5 s.
TEST_F(TandemctlCliTest, SilentControllerHitsTheShortDeadline) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  CliResult result = Run({"--controller", address, "status", "db1"});
  close(fd);
  EXPECT_EQ(result.exit_code, 1);
  ExpectOneErrorLine(
      result, "cannot reach the controller at " + address + ": no answer to GetNode within 5s");
  EXPECT_GE(result.elapsed, 4500ms);
  EXPECT_LT(result.elapsed, 15s);
}

TEST_F(TandemctlCliTest, CertificatesMadeByCertVerbsLetItIn) {
  const std::string certs = dir_ + "/certs";
  CliResult ca = Run({"cert", "create-ca", "--certs-dir", certs});
  ASSERT_EQ(ca.exit_code, 0) << ca.err;
  EXPECT_NE(ca.out.find("wrote " + certs + "/ca.crt"), std::string::npos) << ca.out;
  CliResult again = Run({"cert", "create-ca", "--certs-dir", certs});
  EXPECT_EQ(again.exit_code, 1);
  ExpectOneErrorLine(again, certs + "/ca.crt exists: a new CA would leave every certificate of "
                                    "the old one untrusted; move it away first if that is what "
                                    "you want");
  ASSERT_EQ(Run({"cert", "create-controller", "--address", "127.0.0.1", "--certs-dir", certs})
                .exit_code,
            0);
  // No client certificate yet: the error says how to make one.
  CliResult none = Run({"--controller", address_, "nodes", "--certs-dir", certs});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("no client certificate (client.NAME.crt) in " + certs +
                          ": tandemctl speaks to the controller with a certificate of the "
                          "cluster's CA; create one with 'tandemctl cert create-client NAME "
                          "--role admin|viewer'"),
            std::string::npos)
      << none.err;
  ASSERT_EQ(Run({"cert", "create-client", "alice", "--role", "admin", "--certs-dir", certs})
                .exit_code,
            0);
  struct stat key_stat {};
  ASSERT_EQ(stat((certs + "/client.alice.key").c_str(), &key_stat), 0);
  EXPECT_EQ(key_stat.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((certs + "/ca.key").c_str(), &key_stat), 0);
  EXPECT_EQ(key_stat.st_mode & 0777, 0600u);

  // A controller with the certificate made above.
  absl::StatusOr<std::shared_ptr<TlsCredentials>> server_tls = TlsCredentials::Load(
      {certs + "/ca.crt", certs + "/controller.crt", certs + "/controller.key"},
      IdentityKind::kController, "");
  ASSERT_TRUE(server_tls.ok()) << server_tls.status();
  FakeOperator secure;
  secure.SetNodes(StandardNodes());
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", (*server_tls)->Server(), &port);
  builder.RegisterService(&secure);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(port);

  CliResult nodes = Run({"--controller", address, "nodes", "--certs-dir", certs});
  EXPECT_EQ(nodes.exit_code, 0) << nodes.err;
  EXPECT_EQ(secure.last_caller(), "operator alice (admin)");
  CliResult from_env = Run({"--controller", address, "status", "db1"},
                           {"TANDEM_CERTS_DIR=" + certs, "TANDEM_USER=alice"});
  EXPECT_EQ(from_env.exit_code, 0) << from_env.err;
  EXPECT_EQ(secure.last_caller(), "operator alice (admin)");
  ASSERT_EQ(Run({"cert", "create-client", "bob", "--role", "viewer", "--certs-dir", certs})
                .exit_code,
            0);
  CliResult two = Run({"--controller", address, "nodes", "--certs-dir", certs});
  EXPECT_EQ(two.exit_code, 1);
  ExpectOneErrorLine(two, "several client certificates in " + certs +
                              " (alice, bob): choose one with --user NAME or TANDEM_USER");
  CliResult bob = Run({"--controller", address, "nodes", "--certs-dir", certs, "--user", "bob"});
  EXPECT_EQ(bob.exit_code, 0) << bob.err;
  EXPECT_EQ(secure.last_caller(), "operator bob (viewer)");

  // The listing shows what each certificate is.
  CliResult list = Run({"cert", "list", "--certs-dir", certs});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("client.bob.crt"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("operator bob"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("viewer"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("controller controller"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("CA tandem CA"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("PRIVATE KEY"), std::string::npos);

  // A CA of another cluster: the handshake fails, and the message says so.
  const std::string other = dir_ + "/other";
  ASSERT_EQ(Run({"cert", "create-ca", "--certs-dir", other}).exit_code, 0);
  ASSERT_EQ(Run({"cert", "create-client", "mallory", "--role", "admin", "--certs-dir", other})
                .exit_code,
            0);
  CliResult foreign = Run({"--controller", address, "nodes", "--certs-dir", other});
  EXPECT_EQ(foreign.exit_code, 1);
  EXPECT_NE(foreign.err.find("the TLS handshake failed"), std::string::npos) << foreign.err;
  EXPECT_EQ(secure.list_calls(), 2) << "nodes by alice and by bob; status uses GetNode";
  server->Shutdown(std::chrono::system_clock::now() + 2s);
}

// The controller's key belongs to the user it runs as; a renewal by root
// keeps that owner, so that the controller's reload can read the new key.
TEST_F(TandemctlCliTest, RenewedCertificateKeepsTheOwnerOfTheOneItReplaces) {
  ASSERT_EQ(geteuid(), 0u) << "the tests run as root (scripts/test)";
  const std::string certs = dir_ + "/certs";
  ASSERT_EQ(Run({"cert", "create-ca", "--certs-dir", certs}).exit_code, 0);
  CliResult first =
      Run({"cert", "create-controller", "--address", "127.0.0.1", "--certs-dir", certs});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out.find("kept"), std::string::npos) << first.out;
  const std::string key = certs + "/controller.key";
  const std::string cert = certs + "/controller.crt";
  constexpr uid_t kUid = 54321;
  constexpr gid_t kGid = 54322;
  ASSERT_EQ(chown(key.c_str(), kUid, kGid), 0) << std::strerror(errno);
  const std::string before = Slurp(key);

  CliResult renewed =
      Run({"cert", "create-controller", "--address", "127.0.0.1", "--certs-dir", certs});
  ASSERT_EQ(renewed.exit_code, 0) << renewed.err;
  EXPECT_NE(renewed.out.find("renewed " + cert), std::string::npos) << renewed.out;
  EXPECT_NE(renewed.out.find("; owner uid 54321 kept)"), std::string::npos) << renewed.out;
  EXPECT_NE(Slurp(key), before) << "a new key";
  struct stat st {};
  ASSERT_EQ(stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kUid);
  EXPECT_EQ(st.st_gid, kGid);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The certificate was root's, and stays root's.
  ASSERT_EQ(stat(cert.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST_F(TandemctlCliTest, InsecureOnlyToLoopbackAndTheTokenIsGone) {
  CliResult remote = Run({"--controller", "10.1.2.3:7400", "nodes"});
  EXPECT_EQ(remote.exit_code, 2);
  ExpectOneErrorLine(remote, "--insecure speaks plaintext, so only to a controller on loopback, "
                             "not 10.1.2.3:7400");
  CliResult token = RunCtl({"nodes", "--token-file", "/etc/t"});
  EXPECT_EQ(token.exit_code, 2);
  EXPECT_NE(token.err.find("option '--token-file' is no longer used"), std::string::npos);
  EXPECT_EQ(fake_.list_calls(), 0);
}

std::vector<v1::Event> SomeEvents() {
  std::vector<v1::Event> events;
  v1::Event desired;
  desired.set_seq(1);
  desired.set_unix_time(1714564800);
  desired.set_node("db2");
  desired.set_kind("desired");
  desired.set_ok(true);
  desired.set_generation(4);
  desired.set_message("standalone -> slave of db1");
  events.push_back(desired);
  v1::Event step;
  step.set_seq(2);
  step.set_unix_time(1714564803.5);
  step.set_node("db2");
  step.set_kind("step");
  step.set_ok(true);
  step.set_generation(4);
  step.set_seconds(2.5);
  step.set_message("restore from db1");
  events.push_back(step);
  v1::Event other = step;
  other.set_seq(3);
  other.set_node("db3");
  other.set_message("fence read-only");
  events.push_back(other);
  return events;
}

TEST_F(TandemctlCliTest, Events) {
  fake_.SetEvents(SomeEvents());
  CliResult result = RunCtl({"events", "--node", "db2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "TIME                  NODE        KIND     OK     GEN  SECONDS  MESSAGE\n"
            "2024-05-01T12:00:00Z  db2         desired  -        4        -  standalone -> slave "
            "of db1\n"
            "2024-05-01T12:00:03Z  db2         step     yes      4     2.50  restore from db1\n");
  EXPECT_EQ(fake_.requests().front(), "ListEvents: follow=0 node=db2");

  CliResult empty = RunCtl({"events", "--node", "db9"});
  ASSERT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(empty.out, "TIME                  NODE        KIND     OK     GEN  SECONDS  MESSAGE\n");

  CliResult json = RunCtl({"events", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  std::vector<std::string> lines = Lines(json.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[2])["node"], "db3");
}

TEST_F(TandemctlCliTest, EventsFollowExitsZeroOnSigint) {
  fake_.SetEvents(SomeEvents());
  Start({"--controller", address_, "events", "--follow"});
  ASSERT_GT(pid_, 0);
  // Wait until the history is printed (the stream is then open and idle).
  Clock::time_point deadline = Clock::now() + 30s;
  while (Lines(Slurp(out_path_)).size() < 4 && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(Lines(Slurp(out_path_)).size(), 4u) << Slurp(out_path_) << Slurp(err_path_);
  ASSERT_EQ(kill(pid_, SIGINT), 0);
  CliResult result = Finish(30s);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(fake_.requests(), std::vector<std::string>{"ListEvents: follow=1 node="});
  // The server saw the stream end.
  deadline = Clock::now() + 10s;
  while (!fake_.stream_cancelled() && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(fake_.stream_cancelled());
}

TEST_F(TandemctlCliTest, UsageErrorsExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"frobnicate"}, "unknown verb 'frobnicate' (try 'tandemctl help')"},
      {{}, "missing verb (try 'tandemctl help')"},
      {{"wait", "--timeout", "soon"},
       "option '--timeout': invalid duration 'soon' (expected e.g. 300s, 5m, 1h, 250ms or a "
       "number of seconds)"},
      {{"replication", "enable", "--master", "db1"}, "'replication enable' needs --slave"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    CliResult result = RunCtl(c.args);
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_EQ(result.out, "");
    ExpectOneErrorLine(result, c.message);
  }
  CliResult bad_env = Run({"nodes"}, {"TANDEM_CONTROLLER=nowhere"});
  EXPECT_EQ(bad_env.exit_code, 2);
  ExpectOneErrorLine(bad_env, "TANDEM_CONTROLLER expects HOST:PORT, not 'nowhere'");
  EXPECT_EQ(fake_.requests().size(), 0u);
  EXPECT_EQ(fake_.list_calls(), 0);
}

TEST_F(TandemctlCliTest, Help) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"help"}, {"--help"}, {"wait", "--help"}, {"help", "promote"}}) {
    CliResult result = Run(args);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out.rfind("Usage: tandemctl", 0), 0u) << result.out;
    EXPECT_EQ(result.err, "");
  }
}

}  // namespace
}  // namespace tandem
