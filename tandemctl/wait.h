// The decision behind `tandemctl wait`: from one ListNodes answer, are the
// awaited nodes converged, is waiting pointless, or should it poll again?
//
// Pure: the polling loop, its clock and its timeout live in the caller.
#ifndef TANDEM_TANDEMCTL_WAIT_H_
#define TANDEM_TANDEMCTL_WAIT_H_

#include <chrono>
#include <string>
#include <vector>

#include "tandem.pb.h"

namespace tandem::cli {

enum class WaitOutcome {
  kDone,         // every awaited node is converged
  kFail,         // waiting cannot succeed: an unknown node, or a blocking error
  kKeepWaiting,  // some nodes are not converged yet
};

struct WaitDecision {
  WaitOutcome outcome = WaitOutcome::kKeepWaiting;
  // kFail: the reason, one line ("unknown node db9", "db2 cannot converge
  // to generation 4: <error>"). kKeepWaiting: the pending nodes described,
  // "db2 (observed slave, gen 4/3, last error: ...); db3 (...)".
  std::string message;
  std::vector<std::string> pending;  // kKeepWaiting: ids of the nodes not converged
};

// `names` empty means every node in `nodes`. Rules, in this order:
//  - a named node missing from `nodes` -> kFail ("unknown node X");
//  - a node whose agent holds its role against the controller
//    (observed.hold_reason) and the generation it holds is not older than
//    the desired one (not since adopted) -> kFail naming it;
//  - a node whose group's last switchover was aborted (switchover_aborted)
//    -> kFail with that reason;
//  - a node not converged whose observed.error_blocks is set and whose
//    observed.seen_generation equals desired.generation (the error is about
//    the current target and needs an operator) -> kFail naming the node and
//    its error; a blocking error about an older generation, or a transient
//    one, is waited out;
//  - any node not converged -> kKeepWaiting;
//  - otherwise kDone (also when there are no nodes at all).
WaitDecision DecideWait(const v1::ListNodesResponse& nodes, const std::vector<std::string>& names);

// The end of `tandemctl promote NODE` from one GetNode answer of NODE:
// kKeepWaiting while its group's switchover is in progress, kFail with the
// reason when it was aborted, kDone otherwise.
WaitDecision DecideSwitchover(const v1::NodeStatus& node);

// One pending node for messages: "db2 (observed slave, gen 4/3, step restore,
// last error: ...)". Parts that do not apply are left out.
std::string PendingDescription(const v1::NodeStatus& node);

// "timed out after 120s waiting for: <last.message>".
std::string TimeoutMessage(std::chrono::milliseconds timeout, const WaitDecision& last);

}  // namespace tandem::cli

#endif  // TANDEM_TANDEMCTL_WAIT_H_
