// The controller's metrics: calls counted by the interceptor of a real
// in-process server, nodes by state from a real registry, the exposition
// checked by the strict parser and by promtool, the systemd status line.
#include "controller/metrics.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/prometheus_text.h"
#include "common/subprocess.h"
#include "controller/registry.h"
#include "controller/service.h"
#include "controller/store.h"
#include "gtest/gtest.h"
#include "tandem.grpc.pb.h"

namespace tandem {
namespace {

NodeView View(const std::string& id, bool converged, std::optional<ObservedState> observed,
              bool queued = false, bool connected = true) {
  NodeView v;
  v.info = NodeInfo{id, "eu", EngineType::kPostgresql, {"127.0.0.1", ""}, 5432};
  v.desired.role = Role::kStandalone;
  v.desired.generation = 2;
  v.converged = converged;
  v.observed = observed;
  v.queued = queued;
  v.agent_connected = connected;
  v.seconds_since_report = observed ? 1.5 : -1;
  return v;
}

ObservedState WithError(bool blocks) {
  ObservedState o;
  o.last_error = "bootstrap: not enough free disk";
  o.error_blocks = blocks;
  return o;
}

TEST(ControllerMetricsTest, NodeStates) {
  struct Case {
    NodeView view;
    std::string want;
  };
  const std::vector<Case> cases = {
      {View("a", true, ObservedState{}), "converged"},
      {View("b", false, ObservedState{}), "converging"},
      {View("c", false, WithError(false)), "converging"},  // retried by the agent
      {View("d", false, WithError(true)), "blocked"},
      {View("e", false, std::nullopt), "unreported"},
      {View("f", false, ObservedState{}, /*queued=*/true), "queued"},
      {View("g", false, ObservedState{}, false, /*connected=*/false), "disconnected"},
  };
  for (const Case& c : cases) EXPECT_EQ(NodeState(c.view), c.want) << c.view.info.id;
  std::vector<NodeView> nodes;
  for (const Case& c : cases) nodes.push_back(c.view);
  nodes.back().agent_connected = false;
  EXPECT_EQ(ControllerStatusLine(nodes),
            "7 nodes: 1 converged, 2 converging, 1 queued, 1 blocked, 1 disconnected, "
            "1 unreported; 6 agents connected");
  EXPECT_EQ(ControllerStatusLine({}), "0 nodes; 0 agents connected");
}

class ControllerMetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(std::make_unique<MemoryStore>());
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    ServiceOptions options;
    options.poll = absl::Milliseconds(100);
    options.log = [](const std::string&) {};
    options.metrics = &metrics_;
    absl::StatusOr<std::unique_ptr<ControllerServer>> server =
        ControllerServer::Start(registry_.get(), "127.0.0.1:0", options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
  }

  absl::StatusOr<std::vector<prom::ParsedFamily>> Scrape() {
    HttpResponse r = HandleControllerHttp(HttpRequest{"GET", "/metrics", ""}, metrics_, *registry_);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.content_type, prom::kContentType);
    last_text_ = r.body;
    return prom::ParseText(r.body);
  }

  double Value(const std::vector<prom::ParsedFamily>& families, const std::string& name,
               const prom::Labels& labels) {
    absl::StatusOr<double> v = prom::FindValue(families, name, labels);
    EXPECT_TRUE(v.ok()) << v.status() << "\n" << last_text_;
    return v.value_or(-1);
  }

  ControllerMetrics metrics_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<ControllerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string last_text_;
};

TEST_F(ControllerMetricsServerTest, CountsCallsStreamsAndNodes) {
  v1::Operator::Stub operator_stub(channel_);
  v1::Agents::Stub agents_stub(channel_);
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    v1::ListNodesResponse response;
    ASSERT_TRUE(operator_stub.ListNodes(&context, v1::ListNodesRequest{}, &response).ok());
  }
  {
    grpc::ClientContext context;
    v1::GetNodeRequest request;
    request.set_node("db9");
    v1::NodeStatus response;
    EXPECT_EQ(operator_stub.GetNode(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  // An agent's Watch stream: the node registers and the stream stays open.
  grpc::ClientContext watch_context;
  v1::WatchRequest watch;
  watch.mutable_node()->set_id("db1");
  watch.mutable_node()->set_stack("eu");
  watch.mutable_node()->set_engine(v1::ENGINE_TYPE_POSTGRESQL);
  watch.mutable_node()->set_address_internal("127.0.0.1");
  watch.mutable_node()->set_port(5432);
  std::unique_ptr<grpc::ClientReader<v1::DesiredState>> reader =
      agents_stub.Watch(&watch_context, watch);
  v1::DesiredState first;
  ASSERT_TRUE(reader->Read(&first));  // registered, first desired state sent

  absl::StatusOr<std::vector<prom::ParsedFamily>> parsed = Scrape();
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << last_text_;
  const prom::Labels list = {{"service", "tandem.v1.Operator"}, {"method", "ListNodes"}};
  EXPECT_EQ(Value(*parsed, "tandem_controller_rpcs_total",
                  {{"service", "tandem.v1.Operator"}, {"method", "ListNodes"}, {"code", "OK"}}),
            3);
  EXPECT_EQ(Value(*parsed, "tandem_controller_rpcs_total",
                  {{"method", "GetNode"}, {"code", "NOT_FOUND"}}),
            1);
  EXPECT_EQ(Value(*parsed, "tandem_controller_rpc_duration_seconds_count", list), 3);
  EXPECT_EQ(Value(*parsed, "tandem_controller_streams_open",
                  {{"service", "tandem.v1.Agents"}, {"method", "Watch"}}),
            1);
  EXPECT_EQ(Value(*parsed, "tandem_controller_agents_connected", {}), 1);
  EXPECT_EQ(Value(*parsed, "tandem_controller_nodes", {{"state", "unreported"}}), 1);
  EXPECT_EQ(Value(*parsed, "tandem_controller_nodes", {{"state", "converged"}}), 0);
  EXPECT_EQ(Value(*parsed, "tandem_controller_nodes_desired_role", {{"role", "standalone"}}), 1);
  EXPECT_EQ(Value(*parsed, "tandem_controller_node_converged", {{"node", "db1"}}), 0);

  // The agent reports convergence.
  {
    grpc::ClientContext context;
    v1::ReportRequest report;
    report.mutable_node()->set_id("db1");
    report.mutable_observed()->set_engine_reachable(true);
    report.mutable_observed()->set_converged_generation(first.generation());
    v1::ReportResponse response;
    ASSERT_TRUE(agents_stub.Report(&context, report, &response).ok());
  }
  parsed = Scrape();
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(Value(*parsed, "tandem_controller_nodes", {{"state", "converged"}}), 1);
  EXPECT_EQ(Value(*parsed, "tandem_controller_node_converged", {{"node", "db1"}}), 1);
  EXPECT_GE(Value(*parsed, "tandem_controller_node_report_age_seconds", {{"node", "db1"}}), 0);

  // The agent goes away.
  watch_context.TryCancel();
  v1::DesiredState ignored;
  while (reader->Read(&ignored)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server sees the cancellation on its next poll.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  double open = 1;
  while (open != 0 && std::chrono::steady_clock::now() < deadline) {
    parsed = Scrape();
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    open = Value(*parsed, "tandem_controller_streams_open", {{"method", "Watch"}});
    if (open != 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(open, 0);
  EXPECT_EQ(
      Value(*parsed, "tandem_controller_rpcs_total", {{"method", "Watch"}, {"code", "CANCELLED"}}),
      1);
  EXPECT_EQ(Value(*parsed, "tandem_controller_agents_connected", {}), 0);
  EXPECT_EQ(Value(*parsed, "tandem_controller_nodes", {{"state", "disconnected"}}), 1);

  // promtool agrees with the strict parser, naming conventions included.
  char dir[] = "/tmp/tandem-ctl-metrics.XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = absl::StrCat(dir, "/metrics");
  ASSERT_TRUE(WriteFileAtomic(file, last_text_).ok());
  absl::StatusOr<RunResult> check = RunShell(absl::StrCat("promtool check metrics < ", file));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->exit_code, 0) << check->output;
  EXPECT_EQ(check->output, "") << "promtool warnings:\n" << check->output;
  ::unlink(file.c_str());
  ::rmdir(dir);
}

TEST_F(ControllerMetricsServerTest, HttpEndpoints) {
  EXPECT_EQ(HandleControllerHttp(HttpRequest{"GET", "/healthz", ""}, metrics_, *registry_).status,
            200);
  EXPECT_EQ(HandleControllerHttp(HttpRequest{"GET", "/nodes", ""}, metrics_, *registry_).status,
            404);
  absl::StatusOr<std::vector<prom::ParsedFamily>> parsed = Scrape();
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  for (const char* state :
       {"converged", "converging", "queued", "blocked", "disconnected", "unreported"}) {
    EXPECT_EQ(Value(*parsed, "tandem_controller_nodes", {{"state", state}}), 0) << state;
  }
}

}  // namespace
}  // namespace tandem
