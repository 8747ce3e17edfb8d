#include "common/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHead = 8192;
// After the answer is sent, how long to read and discard what the client
// still sends before closing (closing with unread data would reset the
// connection and could destroy the answer in flight).
constexpr std::chrono::milliseconds kLinger{500};

enum class Phase { kReading, kWriting, kDraining };

struct Connection {
  int fd = -1;
  Phase phase = Phase::kReading;
  std::string in;
  std::string out;
  size_t written = 0;
  Clock::time_point deadline;
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && HexDigit(text[i + 1]) >= 0 &&
               HexDigit(text[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(text[i + 1]) * 16 + HexDigit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

HttpResponse Plain(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

bool IsToken(std::string_view word) {
  return !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '!' || c == '~' || c == '*' || c == '+';
  });
}

// The answer to one request head (without the final blank line).
std::string Answer(std::string_view head, const HttpHandler& handler) {
  const size_t eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::vector<std::string_view> parts;
  for (absl::string_view p : absl::StrSplit(absl::string_view(line.data(), line.size()), ' ')) {
    parts.emplace_back(p.data(), p.size());
  }
  if (parts.size() != 3 || !IsToken(parts[0]) || parts[1].empty() || parts[1][0] != '/' ||
      parts[2].substr(0, 7) != "HTTP/1.") {
    return SerializeResponse(Plain(400, "bad request line\n"), false);
  }
  const bool head_only = parts[0] == "HEAD";
  if (parts[0] != "GET" && !head_only) {
    HttpResponse response = Plain(405, "read-only: only GET and HEAD are served\n");
    response.headers.emplace_back("Allow", "GET, HEAD");
    return SerializeResponse(response, false);
  }
  HttpRequest request;
  request.method = std::string(parts[0]);
  const std::string_view target = parts[1];
  const size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
  return SerializeResponse(handler(request), head_only);
}

}  // namespace

std::string_view HttpReason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string SerializeResponse(const HttpResponse& response, bool head_only) {
  std::string out = absl::StrCat(
      "HTTP/1.1 ", response.status, " ", std::string(HttpReason(response.status)),
      "\r\nContent-Type: ", response.content_type, "\r\nContent-Length: ", response.body.size(),
      "\r\nCache-Control: no-store\r\nConnection: close\r\n");
  for (const auto& [name, value] : response.headers)
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  out += "\r\n";
  if (!head_only) out += response.body;
  return out;
}

absl::StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(std::string_view listen) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", std::string(listen), "\": ", std::string(why), " (want HOST:PORT)"));
  };
  std::string host;
  std::string_view port;
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string_view::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return bad("an IPv6 host needs [brackets] and a port");
    }
    host = std::string(listen.substr(1, close - 1));
    port = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    host = std::string(listen.substr(0, colon));
    if (host.find(':') != std::string::npos) return bad("write an IPv6 host in [brackets]");
    port = listen.substr(colon + 1);
  }
  if (host.empty()) return bad("no host");
  uint32_t number = 0;
  if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(port.data(), port.size()), &number) || number > 65535) {
    return bad("the port is not a number in 0..65535");
  }
  return std::make_pair(host, static_cast<uint16_t>(number));
}

std::optional<std::string> QueryValue(std::string_view query, std::string_view key) {
  for (absl::string_view pair :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&')) {
    const size_t eq = pair.find('=');
    const std::string name =
        PercentDecode(std::string_view(pair.data(), std::min(eq, pair.size())));
    if (name != key) continue;
    if (eq == absl::string_view::npos) return std::string();
    return PercentDecode(std::string_view(pair.data() + eq + 1, pair.size() - eq - 1));
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              HttpHandler handler,
                                                              HttpServerOptions options) {
  absl::StatusOr<std::pair<std::string, uint16_t>> address = SplitHostPort(listen);
  if (!address.ok()) return address.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address->second);
  if (int rc = ::getaddrinfo(address->first.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ", ::gai_strerror(rc)));
  }
  std::unique_ptr<HttpServer> server(new HttpServer());
  std::string error = "no address";
  for (addrinfo* ai = found; ai != nullptr && server->listen_fd_ < 0; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    server->listen_fd_ = fd;
  }
  ::freeaddrinfo(found);
  if (server->listen_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": ", error));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length);
  server->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  server->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (server->wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  server->handler_ = std::move(handler);
  server->options_ = options;
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
    (void)ignored;
    thread_.join();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  listen_fd_ = -1;
  wake_fd_ = -1;
}

void HttpServer::Serve() {
  std::vector<Connection> connections;
  std::vector<pollfd> fds;
  char buffer[4096];
  for (;;) {
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    // At the connection limit, new clients wait in the listen backlog.
    const bool accepting = connections.size() < options_.max_connections;
    fds.push_back({listen_fd_, static_cast<short>(accepting ? POLLIN : 0), 0});
    Clock::time_point next_deadline = Clock::time_point::max();
    for (const Connection& c : connections) {
      fds.push_back({c.fd, static_cast<short>(c.phase == Phase::kWriting ? POLLOUT : POLLIN), 0});
      next_deadline = std::min(next_deadline, c.deadline);
    }
    int timeout_ms = -1;
    if (!connections.empty()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline - Clock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count() + 1));
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;  // Stop()

    const Clock::time_point now = Clock::now();
    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& c = connections[i];
      const short events = fds[i + 2].revents;
      if (events == 0) continue;
      if (c.phase == Phase::kWriting) {
        const ssize_t n =
            ::send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          c.deadline = now;  // the client is gone
        } else if (n > 0) {
          c.written += static_cast<size_t>(n);
        }
        if (c.written == c.out.size()) {
          ::shutdown(c.fd, SHUT_WR);
          c.phase = Phase::kDraining;
          c.deadline = std::min(c.deadline, now + kLinger);
        }
        continue;
      }
      const ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        c.deadline = now;  // closed (or reset) by the client
        continue;
      }
      if (n < 0 || c.phase == Phase::kDraining) continue;
      c.in.append(buffer, static_cast<size_t>(n));
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) end = c.in.find("\n\n");
      if (end != std::string::npos && end <= kMaxHead) {
        c.out = Answer(std::string_view(c.in).substr(0, end), handler_);
      } else if (c.in.size() > kMaxHead) {
        c.out = SerializeResponse(Plain(431, "request head larger than 8 KiB\n"), false);
      } else {
        continue;
      }
      c.in.clear();
      c.phase = Phase::kWriting;
    }
    // Close what is done or late.
    auto finished = [&](const Connection& c) {
      if (now < c.deadline) return false;
      ::close(c.fd);
      return true;
    };
    connections.erase(std::remove_if(connections.begin(), connections.end(), finished),
                      connections.end());

    if (fds[1].revents != 0) {
      while (connections.size() < options_.max_connections) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        Connection c;
        c.fd = fd;
        c.deadline = Clock::now() + options_.connection_timeout;
        connections.push_back(std::move(c));
      }
    }
  }
  for (const Connection& c : connections) ::close(c.fd);
}

}  // namespace tandem
