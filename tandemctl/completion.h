// Shell completion for tandemctl, generated from the parser's own tables
// (args.h VerbUsages), so that it cannot drift from what the parser takes.
// `tandemctl completion bash` prints it; the build writes it to
// tandemctl.bash for the package (/usr/share/bash-completion/completions).
#ifndef TANDEM_TANDEMCTL_COMPLETION_H_
#define TANDEM_TANDEMCTL_COMPLETION_H_

#include <string>

namespace tandem::cli {

// A bash script defining _tandemctl and registering it with `complete`.
// It completes verbs (and the two-word ones), the options of the verb on
// the line, option values (-o table|json, files for --token-file), and
// node ids where a NODE is expected, asked of the controller named on the
// line (or $TANDEM_CONTROLLER) with `tandemctl nodes`.
std::string BashCompletionScript();

}  // namespace tandem::cli

#endif  // TANDEM_TANDEMCTL_COMPLETION_H_
