#include "agent/command_line.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "agent/planner.h"

namespace tandem {

absl::StatusOr<AgentArgs> ParseAgentArgs(int argc, const char* const* argv) {
  AgentArgs args;
  bool have_command = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" || arg == "-c") {
      if (i + 1 >= argc) return absl::InvalidArgumentError("--config needs a file");
      args.config = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      args.config = arg.substr(9);
    } else if (arg == "--help" || arg == "-h") {
      args.command = "help";
      have_command = true;
    } else if (!have_command && !arg.empty() && arg[0] != '-') {
      args.command = arg;
      have_command = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument: ", arg));
    }
  }
  if (args.command != "help" && args.command != "role-table" && args.config.empty()) {
    return absl::InvalidArgumentError("--config FILE is required");
  }
  return args;
}

std::optional<int> AnswerWithoutConfig(const absl::StatusOr<AgentArgs>& args) {
  if (!args.ok()) {
    std::fprintf(stderr, "tandem-agent: %s\n%s", std::string(args.status().message()).c_str(),
                 kAgentUsage);
    return 2;
  }
  if (args->command == "help") {
    std::fputs(kAgentUsage, stdout);
    return 0;
  }
  if (args->command == "role-table") {
    std::fputs(FormatRoleTable().c_str(), stdout);
    return 0;
  }
  return std::nullopt;
}

}  // namespace tandem
