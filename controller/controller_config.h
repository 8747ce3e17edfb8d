// The configuration of tandem-controller: controller.yaml and the command
// line (flags override the file).
//
//   listen: 127.0.0.1:7400               # HOST:PORT of the gRPC server
//   data_dir: /var/lib/tandem-controller # where state.json lives
//   certs_dir: /etc/tandem/certs         # ca.crt, controller.crt, controller.key
//   tls_ca_file / tls_cert_file / tls_key_file   # override one file of certs_dir
//   insecure: false                      # no TLS; allowed only on loopback
//   events_keep: 2000                    # events kept in the history
//   metrics_listen: ""                   # HOST:PORT of /metrics and /healthz; empty: off
//   bootstraps_per_group: 1              # slaves of one master copying at once (0: no limit)
//   auto_resync: false                   # resync out-of-sync slaves without an operator
//   auto_resync_interval: 300            # seconds between two automatic resyncs of a node
//
// Errors are InvalidArgument (NotFound / PermissionDenied for an unreadable
// file) and name the file, the field and the reason:
//   "controller.yaml: field 'listen': port 99999 is not in 0..65535".
#ifndef TANDEM_CONTROLLER_CONTROLLER_CONFIG_H_
#define TANDEM_CONTROLLER_CONTROLLER_CONFIG_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "security/certs.h"

namespace tandem {

struct ControllerConfig {
  std::string listen = "127.0.0.1:7400";
  std::string data_dir = "/var/lib/tandem-controller";
  // Mutual TLS (security/tls.h): the cluster's CA and this controller's
  // certificate and key. Empty file fields come from certs_dir.
  std::string certs_dir = "/etc/tandem/certs";
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // No TLS and no identities: every caller is trusted. Refused unless every
  // listen address is loopback (CheckInsecureListen).
  bool insecure = false;
  size_t events_keep = 2000;
  size_t bootstraps_per_group = 1;
  bool auto_resync = false;
  int auto_resync_interval_seconds = 300;
  std::string metrics_listen;  // HTTP /metrics and /healthz; empty: not served
};

// Checks HOST:PORT ("127.0.0.1:7400", "[::1]:7400", "0.0.0.0:0"); port 0
// asks for any free port.
absl::Status ValidateListenAddress(const std::string& listen);

// Parses controller.yaml text. Unknown fields are refused (a typo must not
// silently fall back to a default). `source` names the file in errors.
absl::StatusOr<ControllerConfig> ParseControllerConfig(const std::string& yaml,
                                                       const std::string& source);

// Reads and parses a file.
absl::StatusOr<ControllerConfig> LoadControllerConfig(const std::string& path);

// The TLS files of `config`: the explicit ones, else certs_dir's ca.crt,
// controller.crt and controller.key.
TlsFiles ControllerTlsFiles(const ControllerConfig& config);

// The command line: tandem-controller [--config FILE] [--listen HOST:PORT]
// [--data-dir DIR] [--metrics-listen HOST:PORT] [--certs-dir DIR]
// [--insecure] [--help]. Both "--flag value" and "--flag=value".
struct CommandLine {
  std::optional<std::string> config;
  std::optional<std::string> listen;
  std::optional<std::string> data_dir;
  std::optional<std::string> metrics_listen;
  std::optional<std::string> certs_dir;
  bool insecure = false;
  bool help = false;
};
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

// The usage text for --help.
std::string Usage();

// The effective configuration: defaults, then the file (when given), then
// the flags; validated, including that insecure mode listens on loopback
// only.
absl::StatusOr<ControllerConfig> ResolveConfig(const CommandLine& command_line);

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_CONTROLLER_CONFIG_H_
