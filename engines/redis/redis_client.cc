#include "engines/redis/redis_client.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tandem {
namespace {

struct timeval ToTimeval(std::chrono::milliseconds ms) {
  if (ms.count() <= 0) ms = std::chrono::milliseconds(1);
  struct timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::kNil;
      break;
  }
  return out;
}

std::string Upper(const std::string& s) { return absl::AsciiStrToUpper(s); }

// Login and permission errors; the messages come from the server and never
// echo the password.
bool IsAuthError(const std::string& message) {
  return absl::StartsWith(message, "WRONGPASS") || absl::StartsWith(message, "NOAUTH") ||
         absl::StartsWith(message, "NOPERM") ||
         absl::StrContains(message, "without any password configured") ||
         absl::StrContains(message, "invalid password") ||
         absl::StrContains(message, "invalid username-password");
}

}  // namespace

std::string DescribeCommand(const std::vector<std::string>& args) {
  if (args.empty()) return "(empty command)";
  std::string name = Upper(args[0]);
  static const char* const kWithSubcommand[] = {"CONFIG", "CLIENT", "ACL",    "DEBUG",
                                                "OBJECT", "MEMORY", "SCRIPT", "COMMAND"};
  bool has_sub = std::any_of(std::begin(kWithSubcommand), std::end(kWithSubcommand),
                             [&](const char* c) { return name == c; });
  if (!has_sub || args.size() < 2) return name;
  const std::string command = name;
  const std::string sub = Upper(args[1]);
  absl::StrAppend(&name, " ", sub);
  if (command == "CONFIG" && (sub == "SET" || sub == "GET") && args.size() >= 3) {
    absl::StrAppend(&name, " ", args[2]);
  }
  return name;
}

absl::Status RedisErrorStatus(const std::string& address, const std::string& what,
                              const std::string& message) {
  std::string text = absl::StrCat("redis at ", address, " answered ", what, " with: ", message);
  if (absl::StartsWith(message, "LOADING") || absl::StartsWith(message, "BUSY") ||
      absl::StartsWith(message, "MASTERDOWN") || absl::StartsWith(message, "TRYAGAIN")) {
    return absl::UnavailableError(text);
  }
  if (IsAuthError(message)) return absl::FailedPreconditionError(text);
  return absl::InternalError(text);
}

std::map<std::string, std::string> ParseInfo(const std::string& text) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    out[std::string(line.substr(0, colon))] = std::string(line.substr(colon + 1));
  }
  return out;
}

RedisClient::RedisClient(void* context, std::string address)
    : context_(context), address_(std::move(address)) {}

RedisClient::~RedisClient() {
  if (context_ != nullptr) redisFree(static_cast<redisContext*>(context_));
}

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Connect(
    const std::string& host, uint32_t port, const RedisLogin& login,
    std::chrono::milliseconds timeout) {
  std::string address = absl::StrCat(host, ":", port);
  if (port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("redis at ", address, ": invalid port"));
  }
  redisContext* c =
      redisConnectWithTimeout(host.c_str(), static_cast<int>(port), ToTimeval(timeout));
  if (c == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("redis at ", address, ": cannot allocate a connection"));
  }
  if (c->err != 0) {
    std::string err = c->errstr;
    redisFree(c);
    return absl::UnavailableError(absl::StrCat("redis at ", address, " is not reachable: ", err));
  }
  redisSetTimeout(c, ToTimeval(timeout));
  std::unique_ptr<RedisClient> client(new RedisClient(c, address));
  if (!login.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!login.user.empty() && login.user != "default") auth.push_back(login.user);
    auth.push_back(login.password);
    absl::StatusOr<RedisReply> reply = client->Raw(auth);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      std::string who = login.user.empty() ? "the default user" : "user " + login.user;
      absl::Status st = RedisErrorStatus(address, "AUTH as " + who, reply->str);
      return absl::Status(st.code(), absl::StrCat("while logging in: ", st.message()));
    }
  }
  return client;
}

absl::StatusOr<RedisReply> RedisClient::Raw(const std::vector<std::string>& args) {
  if (args.empty()) return absl::InvalidArgumentError("empty redis command");
  if (broken_) {
    return absl::UnavailableError(
        absl::StrCat("redis at ", address_, ": connection lost before ", DescribeCommand(args)));
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* c = static_cast<redisContext*>(context_);
  void* raw = redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
  if (raw == nullptr) {
    broken_ = true;
    std::string err = c->err == REDIS_ERR_EOF ? "connection closed by the server" : c->errstr;
    return absl::UnavailableError(
        absl::StrCat("redis at ", address_, ": ", DescribeCommand(args), ": ", err));
  }
  auto* r = static_cast<redisReply*>(raw);
  RedisReply out = Convert(r);
  freeReplyObject(r);
  return out;
}

absl::StatusOr<RedisReply> RedisClient::Command(const std::vector<std::string>& args) {
  absl::StatusOr<RedisReply> reply = Raw(args);
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return RedisErrorStatus(address_, DescribeCommand(args), reply->str);
  return reply;
}

absl::StatusOr<std::string> RedisClient::CommandText(const std::vector<std::string>& args) {
  absl::StatusOr<RedisReply> reply = Command(args);
  if (!reply.ok()) return reply.status();
  if (reply->type != RedisReply::Type::kStatus && reply->type != RedisReply::Type::kString) {
    return absl::InternalError(absl::StrCat("redis at ", address_, ": ", DescribeCommand(args),
                                            ": unexpected reply type"));
  }
  return reply->str;
}

absl::StatusOr<std::map<std::string, std::string>> RedisClient::Info(
    const std::vector<std::string>& sections) {
  std::vector<std::string> args = {"INFO"};
  args.insert(args.end(), sections.begin(), sections.end());
  absl::StatusOr<std::string> text = CommandText(args);
  if (!text.ok()) return text.status();
  return ParseInfo(*text);
}

absl::StatusOr<std::string> RedisClient::ConfigGet(const std::string& name) {
  absl::StatusOr<RedisReply> reply = Command({"CONFIG", "GET", name});
  if (!reply.ok()) return reply.status();
  if (reply->type != RedisReply::Type::kArray) {
    return absl::InternalError(
        absl::StrCat("redis at ", address_, ": CONFIG GET ", name, ": unexpected reply type"));
  }
  for (size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
    if (absl::EqualsIgnoreCase(reply->elements[i].str, name)) return reply->elements[i + 1].str;
  }
  return absl::NotFoundError(
      absl::StrCat("redis at ", address_, " has no configuration parameter ", name));
}

absl::Status RedisClient::ConfigSet(const std::string& name, const std::string& value) {
  absl::StatusOr<RedisReply> reply = Command({"CONFIG", "SET", name, value});
  return reply.status();
}

void RedisClient::SetTimeout(std::chrono::milliseconds timeout) {
  redisSetTimeout(static_cast<redisContext*>(context_), ToTimeval(timeout));
}

}  // namespace tandem
