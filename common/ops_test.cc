// Tests of the service helpers: the HTTP server over real sockets, the
// Prometheus text writer and strict parser, and sd_notify through a fake
// NOTIFY_SOCKET.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/http_server.h"
#include "common/prometheus_text.h"
#include "common/sd_notify.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace tandem {
namespace {

using std::chrono::milliseconds;

// ------------------------------------------------------------------ HTTP

using testing::ConnectLoopback;

// Sends `raw` and reads until the server closes (at most `timeout`).
std::string Exchange(uint16_t port, const std::string& raw,
                     milliseconds timeout = milliseconds(5000)) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return "connect failed";
  size_t sent = 0;
  while (sent < raw.size()) {
    ssize_t n = ::send(fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

int StatusOf(const std::string& response) {
  if (response.size() < 12 || response.substr(0, 9) != "HTTP/1.1 ") return -1;
  return std::atoi(response.substr(9, 3).c_str());
}

std::string BodyOf(const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.connection_timeout = milliseconds(1500);
    options.max_connections = 8;
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(
        "127.0.0.1:0",
        [this](const HttpRequest& request) {
          ++calls_;
          HttpResponse response;
          if (request.path == "/fixed") {
            response.body = "the same for GET and HEAD\n";
          } else if (request.path == "/yes") {
            response.body = absl::StrCat("method=", request.method, " query=", request.query, "\n");
          } else {
            response.status = 404;
            response.body = "no such endpoint\n";
          }
          return response;
        },
        options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_NE(server_->port(), 0);
  }

  std::atomic<int> calls_{0};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, AnswersRequests) {
  struct Case {
    std::string request;
    int status;
    std::string body;  // "" = do not check
  };
  const std::vector<Case> cases = {
      {"GET /yes HTTP/1.1\r\nHost: x\r\n\r\n", 200, "method=GET query=\n"},
      {"GET /yes?lag=5s&a=b HTTP/1.0\r\n\r\n", 200, "method=GET query=lag=5s&a=b\n"},
      {"GET /nope HTTP/1.1\r\n\r\n", 404, "no such endpoint\n"},
      {"POST /yes HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405, ""},
      {"DELETE /yes HTTP/1.1\r\n\r\n", 405, ""},
      {"GET yes HTTP/1.1\r\n\r\n", 400, ""},
      {"GET /yes FTP/1.0\r\n\r\n", 400, ""},
      {"garbage\r\n\r\n", 400, ""},
      {"GET /yes HTTP/1.1\n\n", 200, "method=GET query=\n"},  // bare newlines
  };
  for (const Case& c : cases) {
    std::string response = Exchange(server_->port(), c.request);
    EXPECT_EQ(StatusOf(response), c.status) << c.request << "\n--- got:\n" << response;
    if (!c.body.empty()) {
      EXPECT_EQ(BodyOf(response), c.body) << c.request;
    }
    EXPECT_NE(response.find("Connection: close\r\n"), std::string::npos) << response;
  }
  std::string post = Exchange(server_->port(), "PUT /yes HTTP/1.1\r\n\r\n");
  EXPECT_NE(post.find("Allow: GET, HEAD\r\n"), std::string::npos) << post;
}

TEST_F(HttpServerTest, HeadHasGetsHeadersWithoutBody) {
  std::string get = Exchange(server_->port(), "GET /fixed HTTP/1.1\r\n\r\n");
  std::string head = Exchange(server_->port(), "HEAD /fixed HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(head), 200);
  EXPECT_EQ(BodyOf(head), "");
  EXPECT_EQ(BodyOf(get), "the same for GET and HEAD\n");
  // Same headers (Content-Length of GET's body included).
  EXPECT_EQ(head, get.substr(0, get.find("\r\n\r\n") + 4));
  EXPECT_NE(head.find("Content-Length: 26\r\n"), std::string::npos) << head;
  // The handler is told it is a HEAD request.
  EXPECT_NE(Exchange(server_->port(), "HEAD /yes HTTP/1.1\r\n\r\n").find("Content-Length: 19\r\n"),
            std::string::npos);
  std::string head404 = Exchange(server_->port(), "HEAD /nope HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(head404), 404);
  EXPECT_EQ(BodyOf(head404), "");
}

TEST_F(HttpServerTest, OversizedHeadIs431) {
  std::string request = "GET /yes HTTP/1.1\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n";
  EXPECT_EQ(StatusOf(Exchange(server_->port(), request)), 431);
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, SilentClientsDoNotBlockOthers) {
  // Silent connections hold slots but not the server: a normal request is
  // still answered at once, and the silent ones are closed at their deadline.
  std::vector<int> silent;
  for (int i = 0; i < 3; ++i) silent.push_back(ConnectLoopback(server_->port()));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(StatusOf(Exchange(server_->port(), "GET /yes HTTP/1.1\r\n\r\n")), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  for (int fd : silent) {
    ASSERT_GE(fd, 0);
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the silent connection was never closed";
    char c;
    EXPECT_EQ(::recv(fd, &c, 1, 0), 0);  // closed by the server, nothing sent
    ::close(fd);
  }
}

TEST_F(HttpServerTest, PastTheLimitClientsWaitForASlot) {
  // Every slot (8) taken by a silent client: the next request waits in the
  // backlog and is answered once the silent ones reach their deadline.
  std::vector<int> silent;
  for (int i = 0; i < 8; ++i) silent.push_back(ConnectLoopback(server_->port()));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(StatusOf(Exchange(server_->port(), "GET /yes HTTP/1.1\r\n\r\n")), 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(1000));
  for (int fd : silent) ::close(fd);
}

TEST_F(HttpServerTest, RequestSentInPiecesAndManyClients) {
  int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  for (const char* piece : {"GE", "T /y", "es?x=1 HTTP/1.1\r\n", "Host: a\r\n", "\r\n"}) {
    ASSERT_GT(::send(fd, piece, std::strlen(piece), MSG_NOSIGNAL), 0);
  }
  std::string out;
  char buffer[1024];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0)
    out.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_EQ(BodyOf(out), "method=GET query=x=1\n");

  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      if (StatusOf(Exchange(server_->port(), "GET /yes HTTP/1.1\r\n\r\n")) == 200) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 16);
}

TEST(HttpServerStartTest, RefusesBadAndBusyAddresses) {
  struct Case {
    std::string listen;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"", absl::StatusCode::kInvalidArgument},
      {"127.0.0.1", absl::StatusCode::kInvalidArgument},
      {":80", absl::StatusCode::kInvalidArgument},
      {"127.0.0.1:99999", absl::StatusCode::kInvalidArgument},
      {"127.0.0.1:http", absl::StatusCode::kInvalidArgument},
      {"::1:80", absl::StatusCode::kInvalidArgument},
      {"192.0.2.1:7401", absl::StatusCode::kUnavailable},  // not an address of this host
  };
  for (const Case& c : cases) {
    auto server = HttpServer::Start(c.listen, [](const HttpRequest&) { return HttpResponse{}; });
    EXPECT_EQ(server.status().code(), c.code) << c.listen << ": " << server.status();
  }
  auto first = HttpServer::Start("127.0.0.1:0", [](const HttpRequest&) { return HttpResponse{}; });
  ASSERT_TRUE(first.ok());
  auto second = HttpServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()),
                                  [](const HttpRequest&) { return HttpResponse{}; });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
  // After Stop() the port is closed.
  const uint16_t port = (*first)->port();
  (*first)->Stop();
  EXPECT_EQ(ConnectLoopback(port), -1);
}

TEST(HttpHelpersTest, SplitHostPortAndQuery) {
  auto v6 = SplitHostPort("[::1]:7401");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 7401);
  EXPECT_EQ(QueryValue("lag=5s&x=1", "lag"), "5s");
  EXPECT_EQ(QueryValue("x=1&lag=1048576", "lag"), "1048576");
  EXPECT_EQ(QueryValue("x=1", "lag"), std::nullopt);
  EXPECT_EQ(QueryValue("lag", "lag"), "");
  EXPECT_EQ(QueryValue("lag=5%73", "lag"), "5s");
  EXPECT_EQ(QueryValue("", "lag"), std::nullopt);
}

// ------------------------------------------------------------ Prometheus

TEST(PromTextTest, WriterOutputParsesStrictly) {
  prom::TextWriter w;
  w.Family("tandem_test_requests_total", prom::MetricType::kCounter,
           "Requests, with a \\ backslash\nand a newline.");
  w.Sample({{"code", "200"}}, 3);
  w.Sample({{"code", "503"}}, 0);
  w.Family("tandem_test_lag_seconds", prom::MetricType::kGauge, "Lag.");
  w.Sample({{"node", "db\"1\\\n"}}, 0.25);
  w.Family("tandem_test_step_duration_seconds", prom::MetricType::kHistogram, "Durations.");
  prom::Histogram h({0.1, 1, 10});
  for (double v : {0.05, 0.5, 0.5, 5.0, 50.0}) h.Observe(v);
  w.HistogramSample({{"step", "bootstrap"}}, h);
  w.HistogramSample({{"step", "fence"}}, prom::Histogram({0.1, 1, 10}));
  prom::AppendProcessMetrics(&w);
  const std::string text = w.Take();

  absl::StatusOr<std::vector<prom::ParsedFamily>> parsed = prom::ParseText(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  EXPECT_EQ(*prom::FindValue(*parsed, "tandem_test_requests_total", {{"code", "200"}}), 3);
  EXPECT_EQ(*prom::FindValue(*parsed, "tandem_test_lag_seconds", {{"node", "db\"1\\\n"}}), 0.25);
  EXPECT_EQ(*prom::FindValue(*parsed, "tandem_test_step_duration_seconds_bucket",
                             {{"step", "bootstrap"}, {"le", "1"}}),
            3);
  EXPECT_EQ(*prom::FindValue(*parsed, "tandem_test_step_duration_seconds_bucket",
                             {{"step", "bootstrap"}, {"le", "+Inf"}}),
            5);
  EXPECT_EQ(
      *prom::FindValue(*parsed, "tandem_test_step_duration_seconds_count", {{"step", "bootstrap"}}),
      5);
  EXPECT_DOUBLE_EQ(
      *prom::FindValue(*parsed, "tandem_test_step_duration_seconds_sum", {{"step", "bootstrap"}}),
      56.05);
  EXPECT_GT(*prom::FindValue(*parsed, "process_resident_memory_bytes"), 100000);
  EXPECT_GT(*prom::FindValue(*parsed, "process_start_time_seconds"), 1.6e9);
  EXPECT_GE(*prom::FindValue(*parsed, "process_open_fds"), 3);
  EXPECT_EQ(prom::FindValue(*parsed, "tandem_test_missing").status().code(),
            absl::StatusCode::kNotFound);

  // promtool (Debian's prometheus package) agrees.
  char tmpl[] = "/tmp/tandem-prom.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string file = absl::StrCat(tmpl, "/metrics");
  ASSERT_TRUE(WriteFileAtomic(file, text).ok());
  absl::StatusOr<RunResult> check = RunShell(absl::StrCat("promtool check metrics < ", file));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->exit_code, 0) << check->output << "\n" << text;
  ::unlink(file.c_str());
  ::rmdir(tmpl);
}

TEST(PromTextTest, FormatsValues) {
  EXPECT_EQ(prom::FormatValue(0), "0");
  EXPECT_EQ(prom::FormatValue(3), "3");
  EXPECT_EQ(prom::FormatValue(-42), "-42");
  EXPECT_EQ(prom::FormatValue(1712345678), "1712345678");
  EXPECT_EQ(prom::FormatValue(0.25), "0.25");
  EXPECT_EQ(prom::FormatValue(1712345678.125), "1712345678.125");
  EXPECT_EQ(prom::FormatValue(1e300), "1e+300");
  EXPECT_EQ(prom::FormatValue(HUGE_VAL), "+Inf");
  EXPECT_EQ(prom::FormatValue(-HUGE_VAL), "-Inf");
  EXPECT_EQ(prom::FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(prom::EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(PromTextTest, ParserRejectsWhatPrometheusWouldNot) {
  const std::string head = "# HELP x_total X.\n# TYPE x_total counter\n";
  const std::string hist = "# HELP h_seconds H.\n# TYPE h_seconds histogram\n";
  struct Case {
    std::string text;
    std::string why;  // a word the error must contain
  };
  const std::vector<Case> cases = {
      {head + "x_total 1", "newline"},
      {"x_total 1\n", "outside a family"},
      {head + "x_total{a=\"1\"} 1\nx_total{a=\"1\"} 2\n", "twice"},
      {head + "x_total{a=\"1\",a=\"2\"} 1\n", "twice"},
      {head + "x_total -1\n", "counter"},
      {"# HELP x X.\n# TYPE x counter\nx 1\n", "_total"},
      {head + "y_total 1\n", "outside a family"},
      {head + "x_total 1\n# HELP y Y.\n# TYPE y gauge\ny 1\n# HELP x_total X.\n", "second time"},
      {head + "x_total{1a=\"1\"} 1\n", "label name"},
      {head + "x_total{__a=\"1\"} 1\n", "label name"},
      {head + "x_total{a=\"\\t\"} 1\n", "escape"},
      {head + "x_total{a=\"1} 1\n", "unterminated"},
      {head + "x_total one\n", "value"},
      {head + "x_total 1 2 3\n", "timestamp"},
      {"# TYPE g gauge\ng 1\n", "HELP"},
      {"# HELP g G.\ng 1\n", "outside a family"},
      {"# HELP g G.\n# TYPE g gauge\ng 1\n# TYPE g gauge\n", "second TYPE"},
      {"# HELP g G.\n# TYPE g sometype\n", "unknown type"},
      {hist + "h_seconds_bucket{le=\"1\"} 1\nh_seconds_sum 1\nh_seconds_count 1\n", "+Inf"},
      {hist + "h_seconds_bucket{le=\"1\"} 2\nh_seconds_bucket{le=\"+Inf\"} 1\n"
              "h_seconds_sum 1\nh_seconds_count 1\n",
       "decreases"},
      {hist + "h_seconds_bucket{le=\"2\"} 1\nh_seconds_bucket{le=\"1\"} 1\n"
              "h_seconds_bucket{le=\"+Inf\"} 1\nh_seconds_sum 1\nh_seconds_count 1\n",
       "increasing"},
      {hist + "h_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 1\nh_seconds_count 1\n", "_count"},
      {hist + "h_seconds_bucket{le=\"+Inf\"} 1\nh_seconds_count 1\n", "_sum"},
      {hist + "h_seconds 1\n", "outside a family"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<prom::ParsedFamily>> parsed = prom::ParseText(c.text);
    EXPECT_FALSE(parsed.ok()) << c.text;
    EXPECT_NE(parsed.status().message().find(c.why), std::string::npos)
        << "want \"" << c.why << "\" in: " << parsed.status() << "\n"
        << c.text;
  }
  // And accepts what it should: comments, blank lines, timestamps, NaN gauges.
  absl::StatusOr<std::vector<prom::ParsedFamily>> ok = prom::ParseText(
      "# a comment\n\n# HELP g G.\n# TYPE g gauge\ng{a=\"x\",} NaN 1712345678000\ng 2\n");
  EXPECT_TRUE(ok.ok()) << ok.status();
}

// -------------------------------------------------------------- sd_notify

// A unix datagram socket standing in for systemd's notification socket.
class FakeNotifySocket {
 public:
  explicit FakeNotifySocket(bool abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    name_ = abstract ? absl::StrCat("@tandem-notify-test-", ::getpid())
                     : absl::StrCat("/tmp/tandem-notify-", ::getpid(), ".sock");
    if (!abstract) ::unlink(name_.c_str());
    std::memcpy(address.sun_path, name_.data(), name_.size());
    if (abstract) address.sun_path[0] = '\0';
    socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&address), length) == 0;
    abstract_ = abstract;
  }
  ~FakeNotifySocket() {
    ::close(fd_);
    if (!abstract_) ::unlink(name_.c_str());
  }
  bool bound() const { return bound_; }
  const std::string& name() const { return name_; }

  // The next datagram, or "" after `timeout`.
  std::string Receive(milliseconds timeout = milliseconds(5000)) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "";
    char buffer[4096];
    ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }

 private:
  int fd_ = -1;
  std::string name_;
  bool bound_ = false;
  bool abstract_ = false;
};

TEST(SdNotifyTest, SendsToPathAndAbstractSockets) {
  for (bool abstract : {false, true}) {
    FakeNotifySocket socket(abstract);
    ASSERT_TRUE(socket.bound()) << socket.name();
    ASSERT_TRUE(SdNotifyTo(socket.name(), "READY=1\nSTATUS=hello").ok());
    EXPECT_EQ(socket.Receive(), "READY=1\nSTATUS=hello");
  }
  EXPECT_EQ(SdNotifyTo("/tmp/tandem-no-such-socket", "READY=1").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(SdNotifyTo("", "READY=1").code(), absl::StatusCode::kInvalidArgument);
}

TEST(SdNotifyTest, NoSocketIsANoOp) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(SdNotify("READY=1").ok());
  SdNotifier notifier([] { return std::string("status"); });
  notifier.Start();  // no thread, nothing sent
  notifier.Stop();
}

TEST(SdNotifyTest, WatchdogInterval) {
  ::unsetenv("WATCHDOG_PID");
  ::setenv("WATCHDOG_USEC", "30000000", 1);
  EXPECT_EQ(SdWatchdogInterval(), std::chrono::seconds(30));
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  EXPECT_EQ(SdWatchdogInterval(), std::chrono::seconds(30));
  ::setenv("WATCHDOG_PID", "1", 1);  // meant for another process
  EXPECT_EQ(SdWatchdogInterval(), std::nullopt);
  ::unsetenv("WATCHDOG_PID");
  ::setenv("WATCHDOG_USEC", "0", 1);
  EXPECT_EQ(SdWatchdogInterval(), std::nullopt);
  ::unsetenv("WATCHDOG_USEC");
  EXPECT_EQ(SdWatchdogInterval(), std::nullopt);
}

TEST(SdNotifyTest, NotifierSendsReadyStatusWatchdogAndStopping) {
  FakeNotifySocket socket(/*abstract=*/true);
  ASSERT_TRUE(socket.bound());
  ::setenv("NOTIFY_SOCKET", socket.name().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "100000", 1);  // 100 ms: pings every 50 ms
  ::unsetenv("WATCHDOG_PID");
  std::atomic<int> n{0};
  SdNotifier notifier([&n] { return absl::StrCat("pass ", n++, "\nsecond line"); });
  notifier.Start();
  EXPECT_EQ(socket.Receive(), "READY=1\nSTATUS=pass 0 second line\nWATCHDOG=1");
  int pings = 0;
  for (int i = 0; i < 3; ++i) {
    std::string message = socket.Receive();
    EXPECT_NE(message.find("STATUS=pass "), std::string::npos) << message;
    if (message.find("\nWATCHDOG=1") != std::string::npos) ++pings;
  }
  EXPECT_EQ(pings, 3);
  notifier.Stop();
  std::string last;
  for (std::string m = socket.Receive(milliseconds(1000)); !m.empty();
       m = socket.Receive(milliseconds(200))) {
    last = m;
  }
  EXPECT_EQ(last.substr(0, 11), "STOPPING=1\n") << last;
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
}

TEST(SdNotifyTest, NoWatchdogPingWhileNotAlive) {
  FakeNotifySocket socket(/*abstract=*/true);
  ASSERT_TRUE(socket.bound());
  ::setenv("NOTIFY_SOCKET", socket.name().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "100000", 1);
  ::unsetenv("WATCHDOG_PID");
  std::atomic<bool> alive{false};
  SdNotifier notifier([] { return std::string("stuck?"); }, [&alive] { return alive.load(); });
  notifier.Start();
  EXPECT_NE(socket.Receive().find("READY=1"), std::string::npos);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(socket.Receive(), "STATUS=stuck?");  // status, no ping
  alive = true;
  bool pinged = false;
  for (int i = 0; i < 5 && !pinged; ++i) pinged = socket.Receive() == "STATUS=stuck?\nWATCHDOG=1";
  EXPECT_TRUE(pinged);
  notifier.Stop();
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
}

}  // namespace
}  // namespace tandem
