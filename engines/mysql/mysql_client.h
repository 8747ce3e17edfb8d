// A small synchronous MySQL/MariaDB client over MariaDB Connector/C (the
// `mysqlclient` API, libmariadb). Used by the MySQL engine and by the test
// harness; the only place that includes <mysql.h>.
//
// Error codes, as every method reports them (MysqlErrorStatus):
//   Unavailable         the server cannot be reached, went away, is shutting
//                       down, or has no free connection slot;
//   FailedPrecondition  the login is refused, a privilege is missing, or the
//                       server refuses the statement because it is read-only;
//   Internal            anything else (SQL errors), with the server's message
//                       and error number.
// Messages start with "while <what>: " and never contain a password: a
// caller whose statement carries a secret passes it as `redact`, and every
// occurrence in the server's message is replaced by "****".
//
// Thread-safety: a MysqlClient is used by one thread at a time; distinct
// clients may be used from distinct threads.
#ifndef TANDEM_ENGINES_MYSQL_MYSQL_CLIENT_H_
#define TANDEM_ENGINES_MYSQL_MYSQL_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

struct MysqlLogin {
  std::string host = "127.0.0.1";  // TCP, even for "localhost"
  uint32_t port = 3306;
  std::string unix_socket;         // set: connect through it instead of TCP
  std::string user;
  std::string password;            // "" = none
  // TLS (TCP only): when `tls` is set the connection is encrypted or
  // refused, and the server's certificate must be signed by tls_ca_file and
  // name `host`. tls_cert_file/tls_key_file: a client certificate ("" =
  // none).
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
};

// One result set. A NULL value is std::nullopt.
struct MysqlResult {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;

  // The value of `column` in row `row` ("" for NULL, a missing column or row).
  std::string Get(size_t row, std::string_view column) const;
  // Whether `column` is NULL (or missing) in row `row`.
  bool IsNull(size_t row, std::string_view column) const;
};

class MysqlClient {
 public:
  // Connects and logs in. `timeout` bounds the connection and each read and
  // write of later statements.
  static absl::StatusOr<std::unique_ptr<MysqlClient>> Connect(const MysqlLogin& login,
                                                              std::chrono::milliseconds timeout);
  ~MysqlClient();
  MysqlClient(const MysqlClient&) = delete;
  MysqlClient& operator=(const MysqlClient&) = delete;

  // Runs one statement and returns its result set (empty for statements
  // without one). `what` names the action for error messages.
  absl::StatusOr<MysqlResult> Query(std::string_view what, const std::string& sql,
                                    std::string_view redact = {});
  absl::Status Exec(std::string_view what, const std::string& sql, std::string_view redact = {});
  // First column of the first row ("" for NULL); Internal when the
  // statement returns no row.
  absl::StatusOr<std::string> Value(std::string_view what, const std::string& sql);

  // `text` as a quoted SQL string literal, escaped for this connection's
  // character set: 'it''s' style.
  std::string Quote(std::string_view text) const;

  // The server's version string (SELECT VERSION()), e.g. "10.11.6-MariaDB-log".
  const std::string& server_version() const { return server_version_; }
  // "host:port" or the socket path, for messages.
  const std::string& address() const { return address_; }

 private:
  MysqlClient(void* handle, std::string address, std::string version)
      : handle_(handle), address_(std::move(address)), server_version_(std::move(version)) {}

  void* handle_;  // MYSQL*
  std::string address_;
  std::string server_version_;
};

// The status for MySQL error `code` with `message` (see the table above).
absl::Status MysqlErrorStatus(unsigned int code, std::string_view message, std::string_view what);

}  // namespace tandem

#endif  // TANDEM_ENGINES_MYSQL_MYSQL_CLIENT_H_
