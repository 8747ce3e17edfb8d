// The planner: a pure function from (observed, desired) to the ordered steps
// that converge the node. No I/O, no clock, no logging; deterministic.
//
// An empty plan with an OK status means converged. A plan whose status is
// FailedPrecondition must not be executed: the transition is not allowed
// (or has no row), and the agent holds until the desired or observed state
// changes, reporting the status.
#ifndef TANDEM_AGENT_PLANNER_H_
#define TANDEM_AGENT_PLANNER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "agent/host.h"
#include "common/types.h"
#include "engines/engine.h"

namespace tandem {

enum class StepKind {
  kStartEngine,     // the server runs
  kFence,           // the server refuses application writes
  kBootstrap,       // the data is a fresh copy of the upstream's
  kFollowUpstream,  // replication is configured to the desired upstream
  kWaitStreaming,   // the slave streams from its upstream
  kCatchUp,         // a promoted slave replayed its fenced master's last position
  kServeSlaves,     // the server serves exactly the desired slaves
  kMakeWritable,    // replication ended, the server accepts writes
  kRecordRole,      // the agent's record says the desired role
  kWriteEnv,        // the env file says the desired env (and its hook ran)
};

std::string_view StepName(StepKind kind);

// Everything the planner looks at.
struct Observation {
  EngineFacts engine;
  HostFacts host;
};

struct Plan {
  Role from = Role::kUnspecified;  // observed role
  Role to = Role::kUnspecified;    // desired role
  std::string reason;              // the role-table row's one-line reason
  std::vector<StepKind> steps;
  absl::Status status;             // OK, or FailedPrecondition: do not execute

  bool Converged() const { return status.ok() && steps.empty(); }
};

// The role the node actually has: a slave when the engine replicates (or is
// configured to); otherwise master when the agent recorded reaching master,
// else standalone. (A writable engine cannot tell master from standalone
// by itself: the difference is whom it serves.)
Role ObservedRole(const Observation& observed);

Plan PlanSteps(const Observation& observed, const DesiredState& desired);

// One row of the role table: (observed role, desired role) -> ordered step
// kinds and a one-line reason. A pair with no row is refused with
// FailedPrecondition.
struct RoleTableRow {
  Role from;
  Role to;
  std::vector<StepKind> steps;
  std::string_view reason;
};

const std::vector<RoleTableRow>& RoleTable();

// The table as text, one row per line, for `tandem-agent role-table`.
std::string FormatRoleTable();

}  // namespace tandem

#endif  // TANDEM_AGENT_PLANNER_H_
