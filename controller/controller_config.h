// The configuration of tandem-controller: controller.yaml and the command
// line (flags override the file).
//
//   listen: 127.0.0.1:7400               # HOST:PORT of the gRPC server
//   data_dir: /var/lib/tandem-controller # where state.json lives
//   auth_token_file: ""                  # shared secret; empty: no auth
//   events_keep: 2000                    # events kept in the history
//   metrics_listen: ""                   # HOST:PORT of /metrics and /healthz; empty: off
//   bootstraps_per_group: 1              # slaves of one master copying at once (0: no limit)
//   auto_resync: false                   # resync out-of-sync slaves without an operator
//   auto_resync_interval: 300            # seconds between two automatic resyncs of a node
//   switchover_timeout: 30               # seconds a switchover waits for the old master's fence
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

namespace tandem {

struct ControllerConfig {
  std::string listen = "127.0.0.1:7400";
  std::string data_dir = "/var/lib/tandem-controller";
  std::string auth_token_file;  // empty: every client is accepted
  size_t events_keep = 2000;
  size_t bootstraps_per_group = 1;
  bool auto_resync = false;
  int auto_resync_interval_seconds = 300;
  int switchover_timeout_seconds = 30;
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

// The command line: tandem-controller [--config FILE] [--listen HOST:PORT]
// [--data-dir DIR] [--metrics-listen HOST:PORT] [--help]. Both "--flag value" and "--flag=value".
struct CommandLine {
  std::optional<std::string> config;
  std::optional<std::string> listen;
  std::optional<std::string> data_dir;
  std::optional<std::string> metrics_listen;
  bool help = false;
};
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

// The usage text for --help.
std::string Usage();

// The effective configuration: defaults, then the file (when given), then
// the flags; validated.
absl::StatusOr<ControllerConfig> ResolveConfig(const CommandLine& command_line);

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_CONTROLLER_CONFIG_H_
