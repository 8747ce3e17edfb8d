// tandem-agent: the command operators, scripts and units run. It reads
// agent.yaml and becomes the agent of its engine (see agent/dispatcher.h);
// help, role-table and check-config it answers itself.
#include <cstdio>
#include <string>

#include "agent/command_line.h"
#include "agent/config.h"
#include "agent/dispatcher.h"
#include "agent/planner.h"

int main(int argc, char** argv) {
  using namespace tandem;
  absl::StatusOr<AgentArgs> args = ParseAgentArgs(argc, argv);
  if (std::optional<int> answered = AnswerWithoutConfig(args)) return *answered;
  absl::StatusOr<AgentConfig> config = LoadAgentConfig(args->config);
  if (!config.ok()) {
    std::fprintf(stderr, "tandem-agent: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (args->command != "run" && args->command != "plan" && args->command != "check-config") {
    std::fprintf(stderr, "tandem-agent: unknown command '%s'\n%s", args->command.c_str(),
                 kAgentUsage);
    return 2;
  }
  absl::StatusOr<std::string> self = SelfExecutable();
  if (!self.ok()) {
    std::fprintf(stderr, "tandem-agent: %s\n", std::string(self.status().message()).c_str());
    return 1;
  }
  // Exit 2, as for a config error (systemd does not retry it): no restart
  // brings an agent this installation lacks.
  absl::StatusOr<std::string> engine_agent = FindEngineAgent(*self, config->engine.type);
  if (!engine_agent.ok()) {
    std::fprintf(stderr, "tandem-agent: %s: %s\n", args->config.c_str(),
                 std::string(engine_agent.status().message()).c_str());
    return 2;
  }
  if (args->command == "check-config") {
    std::printf("%s: ok (node %s, %s on port %u)\n", args->config.c_str(), config->node.c_str(),
                std::string(EngineName(config->engine.type)).c_str(), config->engine.port);
    return 0;
  }
  // run and plan: the engine's agent does them, in this process.
  absl::Status exec = ExecEngineAgent(*engine_agent, argc, argv);
  std::fprintf(stderr, "tandem-agent: %s\n", std::string(exec.message()).c_str());
  return 1;
}
