// Command-line parsing of tandemctl: verbs, options, durations, help texts.
//
// Pure functions (no I/O, no environment access: the caller passes the
// environment defaults in), so every rule is unit-tested without a process.
#ifndef TANDEM_TANDEMCTL_ARGS_H_
#define TANDEM_TANDEMCTL_ARGS_H_

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::cli {

inline constexpr char kDefaultController[] = "127.0.0.1:7400";
inline constexpr std::chrono::milliseconds kDefaultWaitTimeout{std::chrono::seconds(300)};

enum class Verb {
  kHelp,
  kNodes,
  kStatus,
  kReplicationEnable,
  kReplicationDisable,
  kSlaveAdd,
  kSlaveRemove,
  kResync,
  kPromote,
  kEnv,
  kWait,
  kEvents,
  kCompletion,
  // Certificates (no controller involved).
  kCertCreateCa,
  kCertCreateNode,
  kCertCreateController,
  kCertCreateClient,
  kCertList,
};

inline constexpr char kDefaultCertsDir[] = "/etc/tandem/certs";

enum class OutputFormat { kTable, kJson };

// Values taken from the environment when no option gives them
// (TANDEM_CONTROLLER, TANDEM_CERTS_DIR, TANDEM_USER). nullopt: the variable
// is unset. TANDEM_TOKEN_FILE is no longer used: set, it is an error that
// says what replaced it.
struct EnvDefaults {
  std::optional<std::string> controller;
  std::optional<std::string> certs_dir;
  std::optional<std::string> user;
  std::optional<std::string> token_file;
};

// One parsed invocation. Only the fields of the verb are meaningful.
struct Command {
  Verb verb = Verb::kHelp;
  std::string help_topic;  // kHelp: "" (general) or a verb ("replication", "status", ...)
  std::string controller = kDefaultController;  // HOST:PORT, validated
  OutputFormat output = OutputFormat::kTable;
  std::string certs_dir = kDefaultCertsDir;  // ca.crt, client.NAME.crt/.key; cert verbs write here
  std::string user;                // client.USER.crt; empty: the only client certificate there
  bool insecure = false;           // plaintext to a controller in insecure mode (loopback only)
  std::string node;                // status, env, promote
  std::string master;              // replication enable/disable, slave add
  std::string slave;               // replication enable, slave add/remove, resync
  bool force = false;              // promote
  std::optional<bool> auto_resync; // replication enable, slave add: --auto-resync on|off
  std::vector<std::string> nodes;  // wait (empty: all nodes)
  std::chrono::milliseconds timeout = kDefaultWaitTimeout;  // wait
  bool follow = false;                                      // events
  std::string node_filter;                                  // events --node (empty: all nodes)
  bool watch = false;                                       // status --watch
  std::chrono::milliseconds interval{std::chrono::seconds(1)};  // status --watch --interval
  std::string shell;                                        // completion: "bash"
  // cert verbs
  std::string cert_name;               // create-node NODE, create-client NAME,
                                       // create-controller --name (default "controller")
  std::vector<std::string> addresses;  // --address (repeatable)
  std::string role;                    // create-client --role admin|viewer
  int days = 0;                        // --days; 0: the verb's default
  std::string ca_key;                  // --ca-key; empty: <certs_dir>/ca.key
  std::string ca_name = "tandem";      // create-ca --name (the CA is "<name> CA")
};

// Parses argv without the program name. Options may come before or after
// positional arguments; `--opt value` and `--opt=value` are both accepted,
// and `--` ends the options. `-h`/`--help` anywhere asks for help on the verb.
// Returns InvalidArgument with a one-line message naming the bad argument
// (an unknown verb or option, a missing or malformed value, a missing or
// extra positional argument, an option that does not apply to the verb).
absl::StatusOr<Command> ParseArgs(const std::vector<std::string>& args,
                                  const EnvDefaults& env = {});

// "300s", "5m", "1h", "250ms", or a bare number of seconds ("300", "1.5").
// InvalidArgument for anything else, a negative value, or more than 30 days.
absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text);

// The inverse for messages: "120s", "1.5s", "0.25s".
std::string FormatDuration(std::chrono::milliseconds duration);

// Checks a HOST:PORT controller address ("127.0.0.1:7400", "ctl.example:7400",
// "[::1]:7400"). InvalidArgument naming `what` (the option or variable).
absl::Status ValidateAddress(std::string_view address, std::string_view what);

// The help text: general usage for topic "", else the usage of one verb with
// an example. nullopt for an unknown topic.
std::optional<std::string> HelpText(std::string_view topic);

// The help topic of a verb ("replication" for both replication verbs).
std::string_view HelpTopic(Verb verb);

// What shell completion needs, taken from the tables the parser uses.
struct VerbUsage {
  std::string name;                  // "status", "replication enable"
  std::vector<std::string> options;  // long options of the verb besides the global ones
  std::string operands;              // "NODE", "NODE..." (several), "SHELL", "" (none)
};
std::vector<VerbUsage> VerbUsages();
// The options every verb takes ("--controller", "--output", "-o", ...): each
// long spelling, followed by its short one when it has one.
std::vector<std::string> GlobalOptionSpellings();
// Whether the long option takes a value ("--master": yes, "--force": no).
bool OptionTakesValue(std::string_view long_name);

}  // namespace tandem::cli

#endif  // TANDEM_TANDEMCTL_ARGS_H_
