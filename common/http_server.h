// A small HTTP/1.x server for read-only endpoints: health checks for load
// balancers and /metrics for Prometheus.
//
// GET and HEAD only (anything else: 405 with "Allow: GET, HEAD"); HEAD gets
// GET's status and headers without the body. One response per connection
// ("Connection: close"). A request head is at most 8 KiB (431 beyond); a
// request body is not read. One thread serves every connection with poll(),
// so a slow or silent client holds one connection slot until its deadline,
// never the others; past `max_connections`, new connections wait in the
// listen backlog until a slot frees.
//
// The handler runs on the server's thread: it must be quick and must not
// block on anything that waits for a request.
//
// Thread-safety: Start/Stop/port from any thread.
#ifndef TANDEM_COMMON_HTTP_SERVER_H_
#define TANDEM_COMMON_HTTP_SERVER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (the handler sees nothing else)
  std::string path;    // "/replica"
  std::string query;   // "lag=5s" (without '?'; "" when none)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // How long a connection may take to send its request and read the answer.
  std::chrono::milliseconds connection_timeout{std::chrono::seconds(5)};
  size_t max_connections = 64;
};

class HttpServer {
 public:
  // Listens on `listen` ("127.0.0.1:7401", "[::1]:7401", "0.0.0.0:7401";
  // port 0 picks a free one) and serves with `handler` on a thread of its
  // own. InvalidArgument for a malformed address, Unavailable when it
  // cannot be bound (in use, not an address of this host).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           HttpHandler handler,
                                                           HttpServerOptions options = {});
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const { return port_; }

  // Closes the listener and every connection and joins the thread.
  // Idempotent.
  void Stop();

 private:
  HttpServer() = default;
  void Serve();

  HttpHandler handler_;
  HttpServerOptions options_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Stop() wakes poll()
  uint16_t port_ = 0;
  std::thread thread_;
};

// Splits "HOST:PORT" ("[v6]:PORT" for IPv6). InvalidArgument naming the
// problem.
absl::StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(std::string_view listen);

// The value of `key` in a query string ("lag=5s&x=1"), percent-decoded;
// nullopt when absent.
std::optional<std::string> QueryValue(std::string_view query, std::string_view key);

// "OK", "Service Unavailable", ... for the status line.
std::string_view HttpReason(int status);

// Builds the bytes of a response (status line, headers, and the body unless
// `head_only`). Exposed for tests.
std::string SerializeResponse(const HttpResponse& response, bool head_only);

}  // namespace tandem

#endif  // TANDEM_COMMON_HTTP_SERVER_H_
