// Switches that undo one safety fix, for the simulation to show it catches
// the bug the fix removed (tests/sim). They exist only in code compiled with
// TANDEM_TEST_HOOKS, which only test targets define: a release build has no
// such switch and no call to one.
#ifndef TANDEM_COMMON_TEST_HOOKS_H_
#define TANDEM_COMMON_TEST_HOOKS_H_

#ifdef TANDEM_TEST_HOOKS
namespace tandem::test_hooks {

// Undoes the fix of "promote --force leaves two writable masters": a node
// waiting in the bootstrap queue keeps the target it was last published
// (an old master stays an unfenced master), and no target is marked
// superseded, so a re-sent one confirms the role it names.
inline bool revert_queued_revocation = false;

}  // namespace tandem::test_hooks
#endif  // TANDEM_TEST_HOOKS

#endif  // TANDEM_COMMON_TEST_HOOKS_H_
