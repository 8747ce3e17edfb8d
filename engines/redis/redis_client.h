// A small synchronous Redis client (RESP2 over TCP), the only wrapper around
// hiredis: the rest of the project, tests included, talks to Redis through it.
//
// Errors, as absl::Status codes:
//   Unavailable         the server cannot be reached, closed the connection,
//                       timed out, or answered LOADING / BUSY / MASTERDOWN.
//   FailedPrecondition  the server refused the login (WRONGPASS, NOAUTH, or a
//                       password was sent to a server that has none) or the
//                       command (NOPERM).
//   Internal            any other error reply.
// Messages name the server and the command (its name and, for CONFIG, the
// parameter), never an argument value: a password never appears in them.
//
// Thread-safety: a RedisClient is used by one thread at a time.
#ifndef TANDEM_ENGINES_REDIS_REDIS_CLIENT_H_
#define TANDEM_ENGINES_REDIS_REDIS_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

// One reply, copied out of hiredis.
struct RedisReply {
  enum class Type { kNil, kString, kStatus, kInteger, kArray, kError };
  Type type = Type::kNil;
  std::string str;                   // kString, kStatus, kError
  int64_t integer = 0;               // kInteger
  std::vector<RedisReply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
};

// Who to log in as. An empty password sends no AUTH; an empty user or
// "default" sends AUTH <password> (the requirepass form).
struct RedisLogin {
  std::string user;
  std::string password;
};

class RedisClient {
 public:
  // Connects over TCP within `timeout`, which also bounds every later
  // command (see SetTimeout), and logs in. Errors as described above, with
  // the message starting "redis at host:port".
  static absl::StatusOr<std::unique_ptr<RedisClient>> Connect(const std::string& host,
                                                              uint32_t port,
                                                              const RedisLogin& login,
                                                              std::chrono::milliseconds timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command and returns its reply. An error reply is returned as a
  // RedisReply of type kError; a status only for transport failures
  // (Unavailable). After a transport failure the client is unusable.
  absl::StatusOr<RedisReply> Raw(const std::vector<std::string>& args);

  // Raw(), with error replies turned into a status (codes as above).
  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& args);

  // Command() expecting a status or string reply; returns its text.
  absl::StatusOr<std::string> CommandText(const std::vector<std::string>& args);

  // INFO <sections...> parsed into key -> value (see ParseInfo).
  absl::StatusOr<std::map<std::string, std::string>> Info(const std::vector<std::string>& sections);

  // CONFIG GET of one parameter; NotFound when the server has no such one.
  absl::StatusOr<std::string> ConfigGet(const std::string& name);

  // CONFIG SET; the value never appears in an error message.
  absl::Status ConfigSet(const std::string& name, const std::string& value);

  // Bounds the time each later command may take.
  void SetTimeout(std::chrono::milliseconds timeout);

  // "host:port" of the server, for messages.
  const std::string& address() const { return address_; }

 private:
  RedisClient(void* context, std::string address);

  void* context_;  // redisContext*, kept out of this header
  std::string address_;
  bool broken_ = false;
};

// Parses INFO output ("key:value" lines, "# Section" headers, CRLF or LF).
std::map<std::string, std::string> ParseInfo(const std::string& text);

// The status for an error reply `message` to `what` ("CONFIG SET masterauth")
// sent to `address`, with the code described at the top of this file.
absl::Status RedisErrorStatus(const std::string& address, const std::string& what,
                              const std::string& message);

// The command's name for messages: the command, plus the subcommand and, for
// CONFIG, the parameter name. Never an argument value.
std::string DescribeCommand(const std::vector<std::string>& args);

}  // namespace tandem

#endif  // TANDEM_ENGINES_REDIS_REDIS_CLIENT_H_
