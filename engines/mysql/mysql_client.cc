#include "engines/mysql/mysql_client.h"

#include <mysql.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace tandem {
namespace {

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

MYSQL* Handle(void* handle) { return static_cast<MYSQL*>(handle); }

// mysql_library_init is not thread-safe: run it once before any mysql_init.
void LibraryInit() {
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

std::string Redacted(std::string message, std::string_view secret) {
  if (secret.empty()) return message;
  return absl::StrReplaceAll(message, {{AbslView(secret), "****"}});
}

}  // namespace

std::string MysqlResult::Get(size_t row, std::string_view column) const {
  if (row >= rows.size()) return "";
  auto it = std::find(columns.begin(), columns.end(), column);
  if (it == columns.end()) return "";
  const std::optional<std::string>& v = rows[row][static_cast<size_t>(it - columns.begin())];
  return v.value_or("");
}

bool MysqlResult::IsNull(size_t row, std::string_view column) const {
  if (row >= rows.size()) return true;
  auto it = std::find(columns.begin(), columns.end(), column);
  if (it == columns.end()) return true;
  return !rows[row][static_cast<size_t>(it - columns.begin())].has_value();
}

absl::Status MysqlErrorStatus(unsigned int code, std::string_view message, std::string_view what) {
  absl::StatusCode status = absl::StatusCode::kInternal;
  switch (code) {
    case 2002:  // CR_CONNECTION_ERROR (socket)
    case 2003:  // CR_CONN_HOST_ERROR
    case 2005:  // CR_UNKNOWN_HOST
    case 2006:  // CR_SERVER_GONE_ERROR
    case 2013:  // CR_SERVER_LOST
    case 2026:  // CR_SSL_CONNECTION_ERROR
    case 2055:  // CR_SERVER_LOST_EXTENDED
    case 1040:  // ER_CON_COUNT_ERROR
    case 1053:  // ER_SERVER_SHUTDOWN
    case 1077:  // ER_NORMAL_SHUTDOWN
    case 1152:  // ER_ABORTING_CONNECTION
    case 1158:  // ER_NET_READ_ERROR
    case 1159:  // ER_NET_READ_INTERRUPTED
    case 1160:  // ER_NET_ERROR_ON_WRITE
    case 1161:  // ER_NET_WRITE_INTERRUPTED
    case 1927:  // ER_CONNECTION_KILLED
      status = absl::StatusCode::kUnavailable;
      break;
    case 1044:  // ER_DBACCESS_DENIED_ERROR
    case 1045:  // ER_ACCESS_DENIED_ERROR
    case 1142:  // ER_TABLEACCESS_DENIED_ERROR
    case 1227:  // ER_SPECIFIC_ACCESS_DENIED_ERROR
    case 1290:  // ER_OPTION_PREVENTS_STATEMENT (--read-only)
    case 1698:  // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    case 1836:  // ER_READ_ONLY_MODE
      status = absl::StatusCode::kFailedPrecondition;
      break;
    default:
      break;
  }
  return absl::Status(status, absl::StrCat("while ", AbslView(what), ": ", AbslView(message),
                                           " (MySQL error ", code, ")"));
}

absl::StatusOr<std::unique_ptr<MysqlClient>> MysqlClient::Connect(
    const MysqlLogin& login, std::chrono::milliseconds timeout) {
  LibraryInit();
  MYSQL* m = mysql_init(nullptr);
  if (m == nullptr) return absl::ResourceExhaustedError("mysql_init: out of memory");
  const unsigned int seconds =
      static_cast<unsigned int>(std::max<int64_t>(1, (timeout.count() + 999) / 1000));
  mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &seconds);
  mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &seconds);
  mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &seconds);
  const bool use_socket = !login.unix_socket.empty();
  unsigned int protocol = use_socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
  mysql_options(m, MYSQL_OPT_PROTOCOL, &protocol);
  mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  if (login.tls && !use_socket) {
    auto file = [](const std::string& path) { return path.empty() ? nullptr : path.c_str(); };
    mysql_ssl_set(m, file(login.tls_key_file), file(login.tls_cert_file), file(login.tls_ca_file),
                  nullptr, nullptr);
    const my_bool on = 1;
    mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &on);
    mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
  }
  const std::string address =
      use_socket ? login.unix_socket : absl::StrCat(login.host, ":", login.port);
  MYSQL* ok = mysql_real_connect(
      m, use_socket ? nullptr : login.host.c_str(), login.user.c_str(),
      login.password.empty() ? nullptr : login.password.c_str(), nullptr,
      use_socket ? 0 : login.port, use_socket ? login.unix_socket.c_str() : nullptr, 0);
  if (ok == nullptr) {
    absl::Status st = MysqlErrorStatus(mysql_errno(m), Redacted(mysql_error(m), login.password),
                                       absl::StrCat("connecting to ", address, " as ", login.user));
    mysql_close(m);
    return st;
  }
  const char* version = mysql_get_server_info(m);
  return std::unique_ptr<MysqlClient>(
      new MysqlClient(m, address, version == nullptr ? "" : version));
}

MysqlClient::~MysqlClient() { mysql_close(Handle(handle_)); }

absl::StatusOr<MysqlResult> MysqlClient::Query(std::string_view what, const std::string& sql,
                                               std::string_view redact) {
  MYSQL* m = Handle(handle_);
  auto redacted = [&](std::string message) {
    if (redact.empty()) return message;
    // The secret may appear as written in the statement (escaped) too.
    const std::string quoted = Quote(redact);
    message = Redacted(std::move(message), std::string_view(quoted).substr(1, quoted.size() - 2));
    return Redacted(std::move(message), redact);
  };
  if (mysql_real_query(m, sql.data(), sql.size()) != 0) {
    return MysqlErrorStatus(mysql_errno(m), redacted(mysql_error(m)), what);
  }
  MysqlResult result;
  MYSQL_RES* res = mysql_store_result(m);
  if (res == nullptr) {
    if (mysql_field_count(m) != 0) {
      return MysqlErrorStatus(mysql_errno(m), redacted(mysql_error(m)), what);
    }
    return result;  // a statement without a result set
  }
  const unsigned int n = mysql_num_fields(res);
  MYSQL_FIELD* fields = mysql_fetch_fields(res);
  for (unsigned int i = 0; i < n; ++i) result.columns.emplace_back(fields[i].name);
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    unsigned long* lengths = mysql_fetch_lengths(res);
    std::vector<std::optional<std::string>> out;
    out.reserve(n);
    for (unsigned int i = 0; i < n; ++i) {
      if (row[i] == nullptr) {
        out.emplace_back(std::nullopt);
      } else {
        out.emplace_back(std::string(row[i], lengths[i]));
      }
    }
    result.rows.push_back(std::move(out));
  }
  mysql_free_result(res);
  return result;
}

absl::Status MysqlClient::Exec(std::string_view what, const std::string& sql,
                               std::string_view redact) {
  return Query(what, sql, redact).status();
}

absl::StatusOr<std::string> MysqlClient::Value(std::string_view what, const std::string& sql) {
  absl::StatusOr<MysqlResult> result = Query(what, sql);
  if (!result.ok()) return result.status();
  if (result->rows.empty() || result->rows[0].empty()) {
    return absl::InternalError(absl::StrCat("while ", AbslView(what), ": no row returned"));
  }
  return result->rows[0][0].value_or("");
}

std::string MysqlClient::Quote(std::string_view text) const {
  std::string out(text.size() * 2 + 1, '\0');
  unsigned long n = mysql_real_escape_string(Handle(handle_), out.data(), text.data(),
                                             static_cast<unsigned long>(text.size()));
  out.resize(n);
  return absl::StrCat("'", out, "'");
}

}  // namespace tandem
