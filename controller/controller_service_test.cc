// The gRPC services in-process on 127.0.0.1:0, through real channels.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "controller/registry.h"
#include "controller/service.h"
#include "controller/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/files.h"
#include "proto/convert.h"
#include "security/tls.h"
#include "tests/harness/harness.h"
#include "tests/harness/pki.h"
#include "tandem.grpc.pb.h"

namespace tandem {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using ::tandem::testing::TempDir;
using ::tandem::testing::TestPki;

v1::NodeInfo ProtoNode(const std::string& id, v1::EngineType engine = v1::ENGINE_TYPE_POSTGRESQL,
                       uint32_t port = 5432) {
  v1::NodeInfo node;
  node.set_id(id);
  node.set_stack("eu");
  node.set_engine(engine);
  node.set_address_internal("127.0.0.1");
  node.set_port(port);
  return node;
}

std::chrono::system_clock::time_point In(std::chrono::milliseconds ms) {
  return std::chrono::system_clock::now() + ms;
}

// grpc.health.v1.Health/Check for the server as a whole, through the
// generic stub (the health protos are not compiled here): the request with
// an empty service name serializes to nothing; returns the response bytes
// (08 01 is status SERVING).
std::string HealthCheck(const std::shared_ptr<grpc::Channel>& channel, grpc::Status* status) {
  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  context.set_deadline(In(std::chrono::seconds(10)));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status st) {
                      std::lock_guard<std::mutex> lock(mu);
                      *status = st;
                      done = true;
                      cv.notify_all();
                    });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });  // the deadline above bounds the wait
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (status->ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  return bytes;
}

class ServiceTest : public ::testing::Test {
 public:  // the table-driven cases call the helpers
  // `tls` null: insecure mode (every caller trusted), which the tests of
  // the services' logic use; SecureServiceTest below passes credentials.
  void StartServer(std::shared_ptr<TlsCredentials> tls = nullptr) {
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(std::make_unique<MemoryStore>());
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    ServiceOptions options;
    options.tls = tls;
    options.poll = absl::Milliseconds(100);
    options.log = [this](const std::string& line) {
      absl::MutexLock lock(&log_mu_);
      log_.push_back(line);
    };
    absl::StatusOr<std::unique_ptr<ControllerServer>> server =
        ControllerServer::Start(registry_.get(), "127.0.0.1:0", options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    agents_ = v1::Agents::NewStub(channel_);
    operator_ = v1::Operator::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(2));
  }

  // A context with a deadline.
  std::unique_ptr<grpc::ClientContext> Context(
      std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(In(timeout));
    return context;
  }

  grpc::Status Enable(const std::string& master, const std::string& slave,
                      v1::ChangeResponse* response) {
    v1::EnableReplicationRequest request;
    request.set_master(master);
    request.set_slave(slave);
    return operator_->EnableReplication(Context().get(), request, response);
  }

  struct Watch {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<v1::DesiredState>> reader;
  };
  Watch OpenWatch(const v1::NodeInfo& node) {
    Watch watch;
    watch.context = Context();
    v1::WatchRequest request;
    *request.mutable_node() = node;
    watch.reader = agents_->Watch(watch.context.get(), request);
    return watch;
  }

  // Polls GetNode until `predicate` holds or 10 s pass.
  bool PollNode(const std::string& id,
                const std::function<bool(const v1::NodeStatus&)>& predicate) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      v1::GetNodeRequest request;
      request.set_node(id);
      v1::NodeStatus status;
      if (operator_->GetNode(Context().get(), request, &status).ok() && predicate(status)) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::vector<std::string> Log() {
    absl::MutexLock lock(&log_mu_);
    return log_;
  }

  std::unique_ptr<Registry> registry_;
  std::unique_ptr<ControllerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Agents::Stub> agents_;
  std::unique_ptr<v1::Operator::Stub> operator_;
  absl::Mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(ServiceTest, WatchGetsGenerationOneThenTheNextOnEnableReplication) {
  StartServer();
  Watch db1 = OpenWatch(ProtoNode("db1"));
  Watch db2 = OpenWatch(ProtoNode("db2", v1::ENGINE_TYPE_POSTGRESQL, 5433));
  v1::DesiredState desired;
  ASSERT_TRUE(db1.reader->Read(&desired));
  EXPECT_EQ(desired.generation(), 1u);
  EXPECT_EQ(desired.role(), v1::ROLE_STANDALONE);
  EXPECT_EQ(desired.env().at("TANDEM_ROLE"), "standalone");
  ASSERT_TRUE(db2.reader->Read(&desired));
  EXPECT_EQ(desired.generation(), 1u);
  EXPECT_TRUE(PollNode("db2", [](const v1::NodeStatus& s) { return s.agent_connected(); }));

  // The master reports its size: the slave's desired state carries it.
  v1::ReportRequest report;
  *report.mutable_node() = ProtoNode("db1");
  report.mutable_observed()->set_data_bytes(4242);
  report.mutable_observed()->set_converged_generation(1);
  v1::ReportResponse report_response;
  ASSERT_TRUE(agents_->Report(Context().get(), report, &report_response).ok());

  v1::ChangeResponse change;
  grpc::Status st = Enable("db1", "db2", &change);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_THAT(change.changes(), ElementsAre("db1: standalone -> master of db2 (generation 2)",
                                            "db2: standalone -> slave of db1 (generation 2)"));

  ASSERT_TRUE(db2.reader->Read(&desired));
  EXPECT_EQ(desired.generation(), 2u);
  EXPECT_EQ(desired.role(), v1::ROLE_SLAVE);
  EXPECT_EQ(desired.upstream().id(), "db1");
  EXPECT_EQ(desired.upstream().host(), "127.0.0.1");
  EXPECT_EQ(desired.upstream().port(), 5432u);
  EXPECT_EQ(desired.upstream_data_bytes(), 4242u);
  EXPECT_FALSE(desired.resync_token().empty());
  ASSERT_TRUE(db1.reader->Read(&desired));
  EXPECT_EQ(desired.generation(), 2u);
  EXPECT_EQ(desired.role(), v1::ROLE_MASTER);
  ASSERT_EQ(desired.slaves_size(), 1);
  EXPECT_EQ(desired.slaves(0).port(), 5433u);

  // Nothing to change: an OK with no lines, and no new generation.
  st = Enable("db1", "db2", &change);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(change.changes_size(), 0);

  v1::ListNodesResponse nodes;
  ASSERT_TRUE(operator_->ListNodes(Context().get(), v1::ListNodesRequest(), &nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 2);
  EXPECT_EQ(nodes.nodes(0).info().id(), "db1");
  EXPECT_FALSE(nodes.nodes(0).converged());  // converged on 1, desired 2
  EXPECT_EQ(nodes.nodes(0).observed().data_bytes(), 4242u);
  EXPECT_GE(nodes.nodes(0).seconds_since_report(), 0);
  EXPECT_EQ(nodes.nodes(1).upstream_id(), "db1");
  EXPECT_EQ(nodes.nodes(1).seconds_since_report(), -1);
  EXPECT_EQ(nodes.nodes(1).observed().lag_bytes(), -1);  // never reported: unknown

  // The master's size changes: the slave learns it from its report's
  // response, without a new generation.
  report.mutable_observed()->set_data_bytes(5000);
  ASSERT_TRUE(agents_->Report(Context().get(), report, &report_response).ok());
  EXPECT_EQ(report_response.upstream_data_bytes(), 0u) << "a master has no upstream";
  v1::ReportRequest slave_report;
  *slave_report.mutable_node() = ProtoNode("db2", v1::ENGINE_TYPE_POSTGRESQL, 5433);
  ASSERT_TRUE(agents_->Report(Context().get(), slave_report, &report_response).ok());
  EXPECT_EQ(report_response.upstream_data_bytes(), 5000u);

  // Closing the stream marks the agent disconnected.
  db2.context->TryCancel();
  EXPECT_FALSE(db2.reader->Read(&desired));
  EXPECT_EQ(db2.reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(PollNode("db2", [](const v1::NodeStatus& s) { return !s.agent_connected(); }));
}

struct CodeCase {
  std::string name;
  std::function<grpc::Status(ServiceTest&)> call;
  grpc::StatusCode code;
  std::string message;
};

TEST_F(ServiceTest, RefusalsKeepTheirCodeAndMessage) {
  StartServer();
  Watch db1 = OpenWatch(ProtoNode("db1"));
  Watch db2 = OpenWatch(ProtoNode("db2"));
  Watch r1 = OpenWatch(ProtoNode("r1", v1::ENGINE_TYPE_REDIS));
  v1::DesiredState desired;
  ASSERT_TRUE(db1.reader->Read(&desired));
  ASSERT_TRUE(db2.reader->Read(&desired));
  ASSERT_TRUE(r1.reader->Read(&desired));

  const std::vector<CodeCase> cases = {
      {"unknown node",
       [](ServiceTest& t) {
         v1::ChangeResponse r;
         return t.Enable("db9", "db1", &r);
       },
       grpc::StatusCode::NOT_FOUND, "unknown node db9"},
      {"own upstream",
       [](ServiceTest& t) {
         v1::ChangeResponse r;
         return t.Enable("db1", "db1", &r);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "a node cannot be its own upstream"},
      {"engines differ",
       [](ServiceTest& t) {
         v1::ChangeResponse r;
         return t.Enable("db1", "r1", &r);
       },
       grpc::StatusCode::FAILED_PRECONDITION, "engines differ: db1 is postgresql, r1 is redis"},
      {"disable standalone",
       [](ServiceTest& t) {
         v1::DisableReplicationRequest q;
         q.set_master("db1");
         v1::ChangeResponse r;
         return t.operator_->DisableReplication(t.Context().get(), q, &r);
       },
       grpc::StatusCode::FAILED_PRECONDITION, "db1 is not a master"},
      {"remove standalone",
       [](ServiceTest& t) {
         v1::RemoveSlaveRequest q;
         q.set_slave("db2");
         v1::ChangeResponse r;
         return t.operator_->RemoveSlave(t.Context().get(), q, &r);
       },
       grpc::StatusCode::FAILED_PRECONDITION, "db2 is not a slave"},
      {"resync unknown",
       [](ServiceTest& t) {
         v1::ResyncRequest q;
         q.set_slave("nope");
         v1::ChangeResponse r;
         return t.operator_->Resync(t.Context().get(), q, &r);
       },
       grpc::StatusCode::NOT_FOUND, "unknown node nope"},
      {"promote",
       [](ServiceTest& t) {
         v1::PromoteRequest q;
         q.set_node("db2");
         v1::ChangeResponse r;
         return t.operator_->Promote(t.Context().get(), q, &r);
       },
       grpc::StatusCode::FAILED_PRECONDITION, "db2 is not a slave: it is standalone"},
      {"get unknown",
       [](ServiceTest& t) {
         v1::GetNodeRequest q;
         q.set_node("db9");
         v1::NodeStatus r;
         return t.operator_->GetNode(t.Context().get(), q, &r);
       },
       grpc::StatusCode::NOT_FOUND, "unknown node db9"},
      {"report without node",
       [](ServiceTest& t) {
         v1::ReportResponse r;
         return t.agents_->Report(t.Context().get(), v1::ReportRequest(), &r);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "names no node"},
      {"report by id of an unknown node",
       [](ServiceTest& t) {
         v1::ReportRequest q;
         q.mutable_node()->set_id("ghost");
         v1::ReportResponse r;
         return t.agents_->Report(t.Context().get(), q, &r);
       },
       grpc::StatusCode::NOT_FOUND, "unknown node ghost"},
      {"report with a changed engine in a group",
       [](ServiceTest& t) {
         v1::ChangeResponse change;
         grpc::Status st = t.Enable("db1", "db2", &change);
         if (!st.ok()) return st;
         v1::ReportRequest q;
         *q.mutable_node() = ProtoNode("db2", v1::ENGINE_TYPE_REDIS);
         v1::ReportResponse r;
         return t.agents_->Report(t.Context().get(), q, &r);
       },
       grpc::StatusCode::FAILED_PRECONDITION, "cannot re-register as redis"},
      {"watch with a bad port",
       [](ServiceTest& t) {
         Watch w = t.OpenWatch(ProtoNode("db7", v1::ENGINE_TYPE_POSTGRESQL, 70000));
         v1::DesiredState d;
         while (w.reader->Read(&d)) {
         }
         return w.reader->Finish();
       },
       grpc::StatusCode::INVALID_ARGUMENT, "port 70000 is not in 1..65535"},
      {"events of unknown node",
       [](ServiceTest& t) {
         auto context = t.Context();
         v1::ListEventsRequest q;
         q.set_node("db9");
         auto reader = t.operator_->ListEvents(context.get(), q);
         v1::Event e;
         while (reader->Read(&e)) {
         }
         return reader->Finish();
       },
       grpc::StatusCode::NOT_FOUND, "unknown node db9"},
  };
  for (const CodeCase& c : cases) {
    SCOPED_TRACE(c.name);
    grpc::Status st = c.call(*this);
    EXPECT_EQ(st.error_code(), c.code) << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr(c.message));
  }
}

TEST_F(ServiceTest, EventsListAndFollow) {
  StartServer();
  Watch db1 = OpenWatch(ProtoNode("db1"));
  Watch db2 = OpenWatch(ProtoNode("db2"));
  v1::DesiredState desired;
  ASSERT_TRUE(db1.reader->Read(&desired));
  ASSERT_TRUE(db2.reader->Read(&desired));

  // Without follow: the history so far, then the end of the stream.
  {
    auto context = Context();
    auto reader = operator_->ListEvents(context.get(), v1::ListEventsRequest());
    std::vector<v1::Event> events;
    v1::Event event;
    while (reader->Read(&event)) events.push_back(event);
    ASSERT_TRUE(reader->Finish().ok());
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].seq(), 1u);
    EXPECT_EQ(events[0].kind(), "desired");
  }

  // With follow, filtered on db2: the history, then each new event.
  auto context = Context();
  v1::ListEventsRequest request;
  request.set_follow(true);
  request.set_node("db2");
  auto reader = operator_->ListEvents(context.get(), request);
  v1::Event event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.node(), "db2");
  EXPECT_EQ(event.generation(), 1u);

  v1::ChangeResponse change;
  ASSERT_TRUE(Enable("db1", "db2", &change).ok());
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.node(), "db2");
  EXPECT_EQ(event.kind(), "desired");
  EXPECT_EQ(event.generation(), 2u);
  EXPECT_THAT(event.message(), HasSubstr("replication enable --master db1 --slave db2"));

  v1::ReportRequest report;
  *report.mutable_node() = ProtoNode("db2");
  v1::StepEvent* step = report.add_events();
  step->set_generation(2);
  step->set_step("bootstrap");
  step->set_ok(false);
  step->set_error("no space left");
  step->set_seconds(0.5);
  v1::ReportResponse report_response;
  ASSERT_TRUE(agents_->Report(Context().get(), report, &report_response).ok());
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), "step");
  EXPECT_FALSE(event.ok());
  EXPECT_EQ(event.message(), "bootstrap failed: no space left");
  EXPECT_EQ(event.seconds(), 0.5);

  context->TryCancel();
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// Mutual TLS: every caller is known by its certificate, and may do only
// what its identity allows.
class SecureServiceTest : public ServiceTest {
 protected:
  void SetUp() override {
    absl::StatusOr<std::shared_ptr<TlsCredentials>> tls =
        TlsCredentials::Load(pki_.Controller(), IdentityKind::kController, "");
    ASSERT_TRUE(tls.ok()) << tls.status();
    StartServer(*tls);
  }

  // Stubs speaking with the certificate `files`.
  std::shared_ptr<grpc::Channel> ChannelAs(const TlsFiles& files, IdentityKind kind) {
    absl::StatusOr<std::shared_ptr<TlsCredentials>> creds = TlsCredentials::Load(files, kind, "");
    EXPECT_TRUE(creds.ok()) << creds.status();
    keep_.push_back(*creds);
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                               (*creds)->Channel(Identity::Controller("")));
  }

  grpc::Status Report(const std::shared_ptr<grpc::Channel>& channel, const v1::NodeInfo& node) {
    v1::ReportRequest request;
    *request.mutable_node() = node;
    v1::ReportResponse response;
    return v1::Agents::NewStub(channel)->Report(Context().get(), request, &response);
  }

  TempDir dir_{"tdsvc"};
  TestPki pki_{dir_.path()};
  std::vector<std::shared_ptr<TlsCredentials>> keep_;
};

TEST_F(SecureServiceTest, AnAgentActsOnlyAsItsOwnNode) {
  auto db1 = ChannelAs(pki_.Node("db1"), IdentityKind::kNode);
  auto db2 = ChannelAs(pki_.Node("db2"), IdentityKind::kNode);
  ASSERT_TRUE(Report(db1, ProtoNode("db1")).ok());
  ASSERT_TRUE(Report(db2, ProtoNode("db2")).ok());

  // db2's certificate can neither report nor register (nor move) db1.
  v1::NodeInfo moved = ProtoNode("db1");
  moved.set_address_internal("127.0.0.1");
  moved.set_port(6543);
  grpc::Status st = Report(db2, moved);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("node db2 may not report as node db1"));
  {
    auto context = Context();
    v1::WatchRequest request;
    *request.mutable_node() = ProtoNode("db1");
    auto reader = v1::Agents::NewStub(db2)->Watch(context.get(), request);
    v1::DesiredState desired;
    EXPECT_FALSE(reader->Read(&desired));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // A node that does not exist yet cannot be registered by another one.
  EXPECT_EQ(Report(db2, ProtoNode("db3")).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // An operator certificate is no agent.
  auto admin = ChannelAs(pki_.Client("alice"), IdentityKind::kOperator);
  EXPECT_EQ(Report(admin, ProtoNode("db1")).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  absl::StatusOr<NodeView> view = registry_->GetNode("db1");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->info.port, 5432u) << "a denied call changes nothing";
  EXPECT_FALSE(registry_->GetNode("db3").ok());
  bool logged = false;
  for (const std::string& line : Log()) logged = logged || absl::StrContains(line, "denied: node db2");
  EXPECT_TRUE(logged);
}

TEST_F(SecureServiceTest, ANodeRegistersOnlyAddressesItsCertificateNames) {
  auto db1 = ChannelAs(pki_.Node("db1", {"127.0.0.1", "db1.example"}), IdentityKind::kNode);
  v1::NodeInfo node = ProtoNode("db1");
  node.set_address_external("db1.example");
  ASSERT_TRUE(Report(db1, node).ok());
  node.set_address_external("203.0.113.9");
  grpc::Status st = Report(db1, node);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("may not register the address 203.0.113.9"));
  EXPECT_THAT(st.error_message(), HasSubstr("127.0.0.1, db1.example"));
  EXPECT_EQ(registry_->GetNode("db1")->info.addresses.external, "db1.example");
  // Keywords are refused whatever the certificate says.
  node.set_address_external("samenet");
  EXPECT_NE(Report(db1, node).error_code(), grpc::StatusCode::OK);
}

TEST_F(SecureServiceTest, OperatorVerbsFollowTheRole) {
  auto db1 = ChannelAs(pki_.Node("db1"), IdentityKind::kNode);
  auto db2 = ChannelAs(pki_.Node("db2"), IdentityKind::kNode);
  ASSERT_TRUE(Report(db1, ProtoNode("db1")).ok());
  ASSERT_TRUE(Report(db2, ProtoNode("db2")).ok());
  auto viewer = v1::Operator::NewStub(
      ChannelAs(pki_.Client("bob", OperatorRole::kViewer), IdentityKind::kOperator));
  auto admin = v1::Operator::NewStub(ChannelAs(pki_.Client("alice"), IdentityKind::kOperator));

  v1::ListNodesResponse nodes;
  EXPECT_TRUE(viewer->ListNodes(Context().get(), v1::ListNodesRequest(), &nodes).ok());
  EXPECT_EQ(nodes.nodes_size(), 2);
  v1::EnableReplicationRequest enable;
  enable.set_master("db1");
  enable.set_slave("db2");
  v1::ChangeResponse response;
  grpc::Status st = viewer->EnableReplication(Context().get(), enable, &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message(),
            "operator bob (viewer) may not enable replication: it needs an admin certificate");
  EXPECT_EQ(registry_->GetNode("db2")->desired.role, Role::kStandalone);
  v1::PromoteRequest promote;
  promote.set_node("db2");
  EXPECT_EQ(viewer->Promote(Context().get(), promote, &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // A node's certificate is no operator, not even to read.
  st = v1::Operator::NewStub(db1)->ListNodes(Context().get(), v1::ListNodesRequest(), &nodes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("node db1 may not list nodes"));

  ASSERT_TRUE(admin->EnableReplication(Context().get(), enable, &response).ok());
  EXPECT_EQ(registry_->GetNode("db2")->desired.role, Role::kSlave);
  bool logged = false;
  for (const std::string& line : Log()) {
    logged = logged || absl::StrContains(line, "by operator alice (admin): OK");
  }
  EXPECT_TRUE(logged) << "changes are logged with who made them";
}

TEST_F(SecureServiceTest, PlaintextAndCertificatelessClientsAreRefused) {
  for (auto creds : {grpc::InsecureChannelCredentials(),
                     grpc::SslCredentials({*ReadFile(pki_.ca_file()), "", ""})}) {
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), creds);
    v1::ListNodesResponse nodes;
    grpc::Status st = v1::Operator::NewStub(channel)->ListNodes(
        Context(std::chrono::seconds(5)).get(), v1::ListNodesRequest(), &nodes);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  EXPECT_TRUE(registry_->ListNodes().empty());
}

TEST_F(ServiceTest, ShutdownEndsOpenStreams) {
  StartServer();
  Watch db1 = OpenWatch(ProtoNode("db1"));
  v1::DesiredState desired;
  ASSERT_TRUE(db1.reader->Read(&desired));
  auto context = Context();
  v1::ListEventsRequest request;
  request.set_follow(true);
  auto events = operator_->ListEvents(context.get(), request);
  v1::Event event;
  ASSERT_TRUE(events->Read(&event));

  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown(absl::Seconds(10));
  EXPECT_FALSE(db1.reader->Read(&desired));
  EXPECT_EQ(db1.reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(events->Read(&event));
  EXPECT_EQ(events->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  // Streams end at once, not after the grace period.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(CallTrackerTest, DrainWaitsForCallsInFlightAndRefusesNewOnes) {
  CallTracker tracker;
  ASSERT_TRUE(tracker.Begin());
  EXPECT_FALSE(tracker.Drain(absl::Now() + absl::Milliseconds(20)));  // one in flight
  EXPECT_FALSE(tracker.Begin());                                      // draining
  std::thread finisher([&] { tracker.End(); });
  EXPECT_TRUE(tracker.Drain(absl::Now() + absl::Seconds(30)));
  finisher.join();
  EXPECT_FALSE(tracker.Begin());
}

}  // namespace
}  // namespace tandem
