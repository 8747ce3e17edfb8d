// The command line of the agent, shared by `tandem-agent` (the dispatcher
// operators, scripts and units run) and each engine's agent binary
// (tandem-agent-postgresql, ...), so that both accept exactly one grammar:
//
//   tandem-agent [run] --config FILE   the reconcile loop (default command)
//   tandem-agent plan --config FILE    the steps it would take now
//   tandem-agent check-config --config FILE
//   tandem-agent role-table            the transition table
//   tandem-agent help | --help | -h
#ifndef TANDEM_AGENT_COMMAND_LINE_H_
#define TANDEM_AGENT_COMMAND_LINE_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace tandem {

inline constexpr char kAgentUsage[] =
    "usage: tandem-agent [run] --config FILE\n"
    "       tandem-agent plan --config FILE          print the steps it would take now\n"
    "       tandem-agent check-config --config FILE  validate the config and exit\n"
    "       tandem-agent role-table                  print the role transition table\n";

struct AgentArgs {
  std::string command = "run";  // run, plan, check-config, role-table, help, or unknown text
  std::string config;           // the --config FILE ("" for help and role-table)
};

// Parses argv (argv[0] is the program). The first word that is not an
// option is the command; an unknown command word is returned as is (the
// caller refuses it after loading the config, as it always did).
// InvalidArgument for an unknown option, a second command word, --config
// without a file, or a missing --config for a command that needs one.
absl::StatusOr<AgentArgs> ParseAgentArgs(int argc, const char* const* argv);

// What both binaries answer before reading any config: a usage error
// (message and usage on stderr, exit 2), help (usage, 0) and the role
// table (0). nullopt: the command needs the config.
std::optional<int> AnswerWithoutConfig(const absl::StatusOr<AgentArgs>& args);

}  // namespace tandem

#endif  // TANDEM_AGENT_COMMAND_LINE_H_
