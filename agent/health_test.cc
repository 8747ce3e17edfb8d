// The agent's endpoints and metrics: the answer of every endpoint for each
// role and state, lag bounds, HEAD, /status, the exposition checked by the
// strict parser and by promtool, and the systemd status line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/health_server.h"
#include "agent/metrics.h"
#include "common/files.h"
#include "common/prometheus_text.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

constexpr char kSecretToken[] = "resync-token-must-not-leak-8832";
constexpr char kSecretEnv[] = "env-value-must-not-leak-1177";

HealthView Base(Role role) {
  HealthView v;
  v.node = NodeInfo{"db2", "eu", EngineType::kPostgresql, {"10.0.0.2", ""}, 5432};
  v.desired.generation = 7;
  v.desired.role = role;
  v.desired.resync_token = kSecretToken;
  v.desired.env = {{"POSTGRESQL_SECRET_LOOKING", kSecretEnv}};
  v.observed.engine_reachable = true;
  v.observed.role = role;
  v.observed.writable = role != Role::kSlave;
  v.observed.converged_generation = 7;
  v.observed.seen_generation = 7;
  v.controller_connected = true;
  if (role == Role::kSlave) {
    v.desired.upstream = Peer{"db1", "eu", "10.0.0.1", 5432};
    v.observed.upstream = "10.0.0.1:5432";
    v.observed.streaming = true;
    v.observed.lag_bytes = 4096;
    v.observed.lag_seconds = 2.5;
  }
  if (role == Role::kMaster) v.desired.slaves = {Peer{"db3", "eu", "10.0.0.3", 5432}};
  return v;
}

struct Endpoints {
  int healthz, readyz, master, primary, replica, slave, standalone;
};

Endpoints Codes(const HealthView& view) {
  auto code = [&](const std::string& path) {
    return HandleHealthRequest(HttpRequest{"GET", path, ""}, view, nullptr).status;
  };
  return Endpoints{code("/healthz"), code("/readyz"), code("/master"),    code("/primary"),
                   code("/replica"), code("/slave"),  code("/standalone")};
}

TEST(HealthEndpointsTest, StatusCodesForEachRoleAndState) {
  struct Case {
    std::string name;
    HealthView view;
    Endpoints want;
  };
  std::vector<Case> cases;
  cases.push_back({"healthy master", Base(Role::kMaster), {200, 200, 200, 200, 503, 503, 503}});
  cases.push_back({"healthy slave", Base(Role::kSlave), {200, 200, 503, 503, 200, 200, 503}});
  cases.push_back(
      {"healthy standalone", Base(Role::kStandalone), {200, 200, 503, 503, 503, 503, 200}});
  {
    HealthView v = Base(Role::kMaster);
    v.observed.engine_reachable = false;
    cases.push_back({"master, engine down", v, {200, 503, 503, 503, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kMaster);
    v.observed.writable = false;  // fenced
    cases.push_back({"master, fenced", v, {200, 200, 503, 503, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kMaster);
    v.desired.role = Role::kSlave;  // told to step down; not fenced yet
    v.desired.generation = 8;
    cases.push_back({"master told to step down", v, {200, 503, 503, 503, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kMaster);
    v.observed.last_error = "serve-slaves: max_wal_senders needs a restart";
    v.observed.error_blocks = true;
    cases.push_back({"master, blocked", v, {200, 503, 503, 503, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kMaster);
    v.observed.last_error = "serve-slaves: connection refused";  // transient: retried
    cases.push_back({"master, retrying", v, {200, 503, 200, 200, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kSlave);
    v.observed.streaming = false;
    cases.push_back({"slave, not streaming", v, {200, 200, 503, 503, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kSlave);
    v.observed.current_step = "bootstrap";  // being rebuilt (resync)
    v.desired.generation = 8;
    cases.push_back({"slave, resync running", v, {200, 503, 503, 503, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kStandalone);
    v.desired.role = Role::kSlave;
    v.desired.generation = 8;
    v.observed.current_step = "bootstrap";
    cases.push_back({"standalone becoming slave", v, {200, 503, 503, 503, 503, 503, 503}});
  }
  {
    HealthView v = Base(Role::kStandalone);
    v.desired = DesiredState{};  // nothing received yet
    v.observed.converged_generation = 0;
    cases.push_back({"no desired state", v, {200, 503, 503, 503, 503, 503, 503}});
  }
  for (const Case& c : cases) {
    Endpoints got = Codes(c.view);
    EXPECT_EQ(got.healthz, c.want.healthz) << c.name << " /healthz";
    EXPECT_EQ(got.readyz, c.want.readyz) << c.name << " /readyz";
    EXPECT_EQ(got.master, c.want.master) << c.name << " /master";
    EXPECT_EQ(got.primary, c.want.primary) << c.name << " /primary";
    EXPECT_EQ(got.replica, c.want.replica) << c.name << " /replica";
    EXPECT_EQ(got.slave, c.want.slave) << c.name << " /slave";
    EXPECT_EQ(got.standalone, c.want.standalone) << c.name << " /standalone";
  }
}

TEST(HealthEndpointsTest, ReplicaLagBounds) {
  HealthView slave = Base(Role::kSlave);  // lag 4096 bytes, 2.5 s
  HealthView unknown = Base(Role::kSlave);
  unknown.observed.lag_bytes = -1;
  unknown.observed.lag_seconds = -1;
  struct Case {
    const HealthView* view;
    std::string query;
    int want;
  };
  const std::vector<Case> cases = {
      {&slave, "lag=1048576", 200}, {&slave, "lag=4096", 200},
      {&slave, "lag=4095", 503},    {&slave, "lag=5s", 200},
      {&slave, "lag=2s", 503},      {&slave, "lag=2500ms", 200},
      {&slave, "lag=1m", 200},      {&slave, "lag=0.5s", 503},
      {&slave, "x=1&lag=3s", 200},  {&slave, "", 200},
      {&unknown, "", 200},          {&unknown, "lag=1048576", 503},
      {&unknown, "lag=60s", 503},   {&slave, "lag=abc", 400},
      {&slave, "lag=-1", 400},      {&slave, "lag=5h", 400},
      {&slave, "lag=", 400},        {&slave, "lag=1.5", 400},
  };
  for (const Case& c : cases) {
    for (const char* path : {"/replica", "/slave"}) {
      HttpResponse r = HandleHealthRequest(HttpRequest{"GET", path, c.query}, *c.view, nullptr);
      EXPECT_EQ(r.status, c.want) << path << "?" << c.query << ": " << r.body;
    }
  }
  // The bound is ignored where it does not apply.
  EXPECT_EQ(
      HandleHealthRequest(HttpRequest{"GET", "/master", "lag=abc"}, Base(Role::kMaster), nullptr)
          .status,
      200);
}

TEST(HealthEndpointsTest, ParseLagBound) {
  auto bytes = ParseLagBound("1048576");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->bytes, 1048576);
  EXPECT_EQ(bytes->seconds, std::nullopt);
  auto seconds = ParseLagBound("1.5s");
  ASSERT_TRUE(seconds.ok());
  EXPECT_EQ(seconds->seconds, 1.5);
  EXPECT_EQ(seconds->bytes, std::nullopt);
  EXPECT_EQ(ParseLagBound("250ms")->seconds, 0.25);
  EXPECT_EQ(ParseLagBound("2m")->seconds, 120);
  for (const char* bad : {"", "s", "-5", "5 s", "5S", "1e3", "5sec", "99999999999999999999"}) {
    auto r = ParseLagBound(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(HealthEndpointsTest, ReasonsAndUnknownPaths) {
  HealthView v = Base(Role::kMaster);
  v.desired.role = Role::kSlave;
  HttpResponse r = HandleHealthRequest(HttpRequest{"GET", "/master", ""}, v, nullptr);
  EXPECT_EQ(r.body, "no: desired slave (generation 7)\n");
  r = HandleHealthRequest(HttpRequest{"GET", "/replica", ""}, Base(Role::kSlave), nullptr);
  EXPECT_EQ(r.body, "yes: slave of 10.0.0.1:5432, streaming, lag 4.1 kB / 2.5 s\n");
  EXPECT_EQ(HandleHealthRequest(HttpRequest{"GET", "/nope", ""}, v, nullptr).status, 404);
  EXPECT_EQ(HandleHealthRequest(HttpRequest{"GET", "/metrics", ""}, v, nullptr).status, 404);
  EXPECT_EQ(HandleHealthRequest(HttpRequest{"GET", "/Master", ""}, v, nullptr).status, 404);
}

TEST(HealthEndpointsTest, StatusDocument) {
  HealthView v = Base(Role::kSlave);
  v.observed.current_step = "bootstrap";
  v.observed.bootstrap = Progress{1000, 5000};
  v.observed.last_error = "";
  v.observed.out_of_sync = "timeline fork: new timeline 2 forked off";
  HttpResponse r = HandleHealthRequest(HttpRequest{"GET", "/status", ""}, v, nullptr);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json");
  nlohmann::json doc = nlohmann::json::parse(r.body);
  EXPECT_EQ(doc["node"]["id"], "db2");
  EXPECT_EQ(doc["desired"]["role"], "slave");
  EXPECT_EQ(doc["desired"]["generation"], 7);
  EXPECT_EQ(doc["desired"]["upstream"]["id"], "db1");
  EXPECT_EQ(doc["observed"]["role"], "slave");
  EXPECT_EQ(doc["observed"]["lag_bytes"], 4096);
  EXPECT_EQ(doc["observed"]["converged_generation"], 7);
  EXPECT_EQ(doc["observed"]["out_of_sync"], "timeline fork: new timeline 2 forked off");
  EXPECT_EQ(doc["current_step"], "bootstrap");
  EXPECT_EQ(doc["bootstrap"]["done_bytes"], 1000);
  EXPECT_EQ(doc["bootstrap"]["total_bytes"], 5000);
  EXPECT_EQ(doc["last_error"], "");
  EXPECT_EQ(doc["healthy"], true);
  EXPECT_EQ(doc["ready"], false);  // a step runs
  EXPECT_EQ(doc["controller_connected"], true);
  HealthView master = Base(Role::kStandalone);
  master.observed.lag_bytes = -1;
  doc = nlohmann::json::parse(StatusJson(master));
  EXPECT_TRUE(doc["observed"]["lag_bytes"].is_null());
  EXPECT_TRUE(doc["desired"]["upstream"].is_null());
}

TEST(HealthEndpointsTest, StatusLine) {
  struct Case {
    HealthView view;
    std::string want;
  };
  std::vector<Case> cases;
  cases.push_back({Base(Role::kMaster), "master, converged at generation 7"});
  cases.push_back({Base(Role::kSlave),
                   "slave of 10.0.0.1:5432, converged at generation 7, lag 4.1 kB / 2.5 s"});
  {
    HealthView v = Base(Role::kStandalone);
    v.desired.role = Role::kSlave;
    v.desired.generation = 8;
    v.observed.current_step = "bootstrap";
    v.observed.bootstrap = Progress{1200000000, 3400000000};
    cases.push_back({v, "standalone -> slave (generation 8): bootstrap 1.2 GB of 3.4 GB"});
  }
  {
    HealthView v = Base(Role::kStandalone);
    v.desired.role = Role::kSlave;
    v.desired.generation = 8;
    v.observed.last_error = "not enough free disk";
    v.observed.error_blocks = true;
    cases.push_back({v, "standalone, desired slave (generation 8): blocked: not enough free disk"});
  }
  {
    HealthView v = Base(Role::kMaster);
    v.observed.engine_reachable = false;
    v.observed.last_error = "observing: connection refused";
    cases.push_back({v,
                     "engine not reachable; master, desired master (generation 7): retrying: "
                     "observing: connection refused"});
  }
  cases.push_back({HealthView{}, "waiting for a desired state from the controller"});
  for (const Case& c : cases) EXPECT_EQ(StatusLine(c.view), c.want);
}

// ---------------------------------------------------------------- Metrics

TEST(AgentMetricsTest, CountsStepsAndPassesAndRendersStrictly) {
  double now = 1712345678.5;
  AgentMetrics metrics([&now] { return now; });
  ObservedState running;
  running.current_step = "bootstrap";
  metrics.Record(running, {});  // a step started: not a pass
  ObservedState failed;
  failed.last_error = "bootstrap: connection refused";
  metrics.Record(failed, {StepEvent{8, "fence", "r", true, "", 0.02},
                          StepEvent{8, "bootstrap", "r", false, "connection refused", 3.5}});
  ObservedState ok;
  metrics.Record(ok, {StepEvent{8, "bootstrap", "r", true, "", 42},
                      StepEvent{8, "some-new-step", "r", true, "", 0.5}});
  EXPECT_EQ(metrics.passes(true), 1u);
  EXPECT_EQ(metrics.passes(false), 1u);

  HealthView view = Base(Role::kSlave);
  const std::string text = metrics.Render(view);
  auto parsed = prom::ParseText(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  auto value = [&](const std::string& name, const prom::Labels& labels = {}) {
    absl::StatusOr<double> v = prom::FindValue(*parsed, name, labels);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.value_or(-12345);
  };
  EXPECT_EQ(value("tandem_agent_info", {{"node", "db2"}, {"engine", "postgresql"}}), 1);
  EXPECT_EQ(value("tandem_agent_desired_role", {{"role", "slave"}}), 1);
  EXPECT_EQ(value("tandem_agent_desired_role", {{"role", "master"}}), 0);
  EXPECT_EQ(value("tandem_agent_observed_role", {{"role", "slave"}}), 1);
  EXPECT_EQ(value("tandem_agent_replication_out_of_sync"), 0);
  HealthView broken = view;
  broken.observed.out_of_sync = "WAL it needs was already removed on the master";
  auto broken_parsed = prom::ParseText(metrics.Render(broken));
  ASSERT_TRUE(broken_parsed.ok()) << broken_parsed.status();
  EXPECT_EQ(*prom::FindValue(*broken_parsed, "tandem_agent_replication_out_of_sync", {}), 1);
  EXPECT_EQ(value("tandem_agent_converged"), 1);
  EXPECT_EQ(value("tandem_agent_desired_generation"), 7);
  EXPECT_EQ(value("tandem_agent_converged_generation"), 7);
  EXPECT_EQ(value("tandem_agent_replication_lag_bytes"), 4096);
  EXPECT_EQ(value("tandem_agent_replication_lag_seconds"), 2.5);
  EXPECT_EQ(value("tandem_agent_controller_connected"), 1);
  EXPECT_EQ(value("tandem_agent_healthy"), 1);
  EXPECT_EQ(value("tandem_agent_step_failures_total", {{"step", "bootstrap"}}), 1);
  EXPECT_EQ(value("tandem_agent_step_failures_total", {{"step", "fence"}}), 0);
  EXPECT_EQ(value("tandem_agent_step_failures_total", {{"step", "write-env"}}), 0);  // never ran
  EXPECT_EQ(value("tandem_agent_step_duration_seconds_count", {{"step", "bootstrap"}}), 2);
  EXPECT_EQ(value("tandem_agent_step_duration_seconds_sum", {{"step", "bootstrap"}}), 45.5);
  EXPECT_EQ(
      value("tandem_agent_step_duration_seconds_bucket", {{"step", "bootstrap"}, {"le", "5"}}), 1);
  EXPECT_EQ(value("tandem_agent_step_duration_seconds_count", {{"step", "some-new-step"}}), 1);
  EXPECT_EQ(value("tandem_agent_reconcile_passes_total", {{"result", "ok"}}), 1);
  EXPECT_EQ(value("tandem_agent_reconcile_passes_total", {{"result", "error"}}), 1);
  EXPECT_EQ(value("tandem_agent_last_successful_reconcile_timestamp_seconds"), 1712345678.5);
  EXPECT_GT(value("process_resident_memory_bytes"), 0);

  // No secret in the exposition.
  EXPECT_EQ(text.find(kSecretToken), std::string::npos);
  EXPECT_EQ(text.find(kSecretEnv), std::string::npos);

  // promtool (Debian's prometheus package) finds nothing to complain about
  // either, naming conventions included.
  char dir[] = "/tmp/tandem-agent-metrics.XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = absl::StrCat(dir, "/metrics");
  ASSERT_TRUE(WriteFileAtomic(file, text).ok());
  absl::StatusOr<RunResult> check = RunShell(absl::StrCat("promtool check metrics < ", file));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->exit_code, 0) << check->output;
  EXPECT_EQ(check->output, "") << "promtool warnings:\n" << check->output;
  ::unlink(file.c_str());
  ::rmdir(dir);
}

TEST(AgentMetricsTest, UnknownValuesAreLeftOut) {
  AgentMetrics metrics;
  HealthView view = Base(Role::kStandalone);
  view.observed.lag_bytes = -1;
  view.observed.lag_seconds = -1;
  auto parsed = prom::ParseText(metrics.Render(view));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(prom::FindValue(*parsed, "tandem_agent_replication_lag_bytes").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(prom::FindValue(*parsed, "tandem_agent_replication_lag_seconds").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(prom::FindValue(*parsed, "tandem_agent_last_successful_reconcile_timestamp_seconds")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(prom::FindValue(*parsed, "tandem_agent_step_running").status().code(),
            absl::StatusCode::kNotFound);
}

class RecordingSink : public ObservedSink {
 public:
  void Publish(const ObservedState& observed, std::vector<StepEvent> events) override {
    last = observed;
    count += events.size();
  }
  ObservedState last;
  size_t count = 0;
};

TEST(AgentMetricsTest, TimeSinceLastPublish) {
  auto now = std::chrono::steady_clock::time_point(std::chrono::hours(1));
  AgentMetrics metrics(nullptr, [&now] { return now; });
  EXPECT_EQ(metrics.SinceLastPublish(), std::chrono::seconds(0));  // counted from construction
  now += std::chrono::seconds(90);
  EXPECT_EQ(metrics.SinceLastPublish(), std::chrono::seconds(90));
  ObservedState running;
  running.current_step = "bootstrap";
  metrics.Record(running, {});  // any publish counts, a step's too
  EXPECT_EQ(metrics.SinceLastPublish(), std::chrono::seconds(0));
  now += std::chrono::seconds(3);
  metrics.Record(ObservedState{}, {});
  now += std::chrono::seconds(1);
  EXPECT_EQ(metrics.SinceLastPublish(), std::chrono::seconds(1));
}

TEST(AgentMetricsTest, MeteredSinkPassesEverythingOn) {
  AgentMetrics metrics;
  RecordingSink next;
  MeteredSink sink(&metrics, &next);
  ObservedState o;
  o.role = Role::kMaster;
  sink.Publish(o, {StepEvent{1, "fence", "", true, "", 0.1}});
  EXPECT_EQ(next.last.role, Role::kMaster);
  EXPECT_EQ(next.count, 1u);
  EXPECT_EQ(metrics.passes(true), 1u);
  MeteredSink alone(&metrics, nullptr);
  alone.Publish(o, {});
  EXPECT_EQ(metrics.passes(true), 2u);
}

// ------------------------------------------------------- Over a socket

struct Reply {
  int status = -1;
  std::string head;
  std::string body;
};

Reply Request(uint16_t port, const std::string& method, const std::string& target) {
  Reply reply;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return reply;
  }
  const std::string raw = absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: test\r\n\r\n");
  (void)::send(fd, raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string out;
  char buffer[8192];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) break;
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t end = out.find("\r\n\r\n");
  if (out.size() < 12 || end == std::string::npos) return reply;
  reply.status = std::atoi(out.substr(9, 3).c_str());
  reply.head = out.substr(0, end);
  reply.body = out.substr(end + 4);
  return reply;
}

TEST(HealthServerTest, ServesGetAndHeadAndRefusesWrites) {
  AgentMetrics metrics;
  HealthView view = Base(Role::kMaster);
  absl::StatusOr<std::unique_ptr<HealthServer>> server = HealthServer::Start(
      "127.0.0.1:0", [&view] { return view; }, &metrics);
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t port = (*server)->port();
  struct Case {
    std::string path;
    int status;
  };
  const std::vector<Case> cases = {
      {"/healthz", 200}, {"/readyz", 200},         {"/master", 200},     {"/primary", 200},
      {"/replica", 503}, {"/slave", 503},          {"/standalone", 503}, {"/status", 200},
      {"/metrics", 200}, {"/replica?lag=5s", 503}, {"/missing", 404},
  };
  for (const Case& c : cases) {
    Reply get = Request(port, "GET", c.path);
    Reply head = Request(port, "HEAD", c.path);
    EXPECT_EQ(get.status, c.status) << "GET " << c.path;
    EXPECT_EQ(head.status, c.status) << "HEAD " << c.path;
    EXPECT_FALSE(get.body.empty()) << c.path;
    EXPECT_EQ(head.body, "") << c.path;
    if (c.path == "/metrics") {
      // process_* samples (CPU time, resident bytes) move between the two
      // requests, and so may the length by a digit.
      EXPECT_NE(head.head.find("Content-Length: "), std::string::npos) << head.head;
    } else {
      EXPECT_NE(head.head.find(absl::StrCat("Content-Length: ", get.body.size())),
                std::string::npos)
          << c.path << ": " << head.head;
    }
    EXPECT_EQ(get.body.find(kSecretToken), std::string::npos) << c.path;
    EXPECT_EQ(get.body.find(kSecretEnv), std::string::npos) << c.path;
  }
  EXPECT_NE(Request(port, "GET", "/metrics").head.find("text/plain; version=0.0.4"),
            std::string::npos);
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    EXPECT_EQ(Request(port, method, "/master").status, 405) << method;
  }
  // The view is read at each request: the controller tells this master to
  // step down, and /master says no at once.
  view.desired.role = Role::kSlave;
  view.desired.generation = 8;
  EXPECT_EQ(Request(port, "GET", "/master").status, 503);
  EXPECT_EQ(Request(port, "GET", "/readyz").status, 503);
}

TEST(HealthServerTest, BadListenAddressNamesTheField) {
  auto server = HealthServer::Start(
      "127.0.0.1", [] { return HealthView{}; }, nullptr);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("health_listen"), std::string::npos) << server.status();
}

}  // namespace
}  // namespace tandem
