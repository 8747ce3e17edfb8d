// tandemctl: the operator CLI. Parses the command line, calls the
// controller's Operator service, prints the answer.
//
// Exit status: 0 success, 1 the request failed or was refused, 2 usage error.
// Every failure is one line on stderr: "tandemctl: <reason>".
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/address.h"
#include "security/tls.h"
#include "tandemctl/args.h"
#include "tandemctl/cert.h"
#include "tandemctl/client.h"
#include "tandemctl/completion.h"
#include "tandemctl/format.h"
#include "tandemctl/wait.h"
#include "tandemctl/watch.h"

namespace tandem::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

constexpr std::chrono::milliseconds kWaitPollInterval{200};

int Fail(int code, absl::string_view reason) {
  std::string line =
      absl::StrCat("tandemctl: ", OneLine(std::string_view(reason.data(), reason.size())), "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
  return code;
}

int Fail(const absl::Status& status) { return Fail(kExitFailed, status.message()); }

// Writes to stdout; a broken stdout is a failure (a script must not read a
// truncated answer as a success).
bool Print(std::string_view text) {
  return std::fwrite(text.data(), 1, text.size(), stdout) == text.size() &&
         std::fflush(stdout) == 0;
}

int Done(std::string_view text) {
  if (!Print(text))
    return Fail(kExitFailed, absl::StrCat("writing output: ", std::strerror(errno)));
  return kExitOk;
}

int Changes(const Command& command, const absl::StatusOr<v1::ChangeResponse>& response) {
  if (!response.ok()) return Fail(response.status());
  return Done(command.output == OutputFormat::kJson ? ChangesJson(*response)
                                                    : ChangesText(*response));
}

// The nodes `names` (all when empty) of `all`, in the order named.
v1::ListNodesResponse Select(const v1::ListNodesResponse& all,
                             const std::vector<std::string>& names) {
  if (names.empty()) return all;
  v1::ListNodesResponse selected;
  for (const std::string& name : names) {
    for (const v1::NodeStatus& node : all.nodes()) {
      if (node.info().id() == name) *selected.add_nodes() = node;
    }
  }
  return selected;
}

// Polls ListNodes until DecideWait says done or fail, or the timeout. Once
// the controller has answered, a poll that cannot reach it (a controller
// restart) is retried until the timeout; a first poll that fails ends the
// wait at once.
int Wait(const Command& command, OperatorClient& client) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + command.timeout;
  bool answered = false;
  WaitDecision last;
  absl::Status last_error;
  while (true) {
    absl::StatusOr<v1::ListNodesResponse> nodes = client.ListNodes();
    if (!nodes.ok()) {
      bool transient =
          absl::IsUnavailable(nodes.status()) || absl::IsDeadlineExceeded(nodes.status());
      if (!answered || !transient) return Fail(nodes.status());
      last_error = nodes.status();
    } else {
      answered = true;
      last_error = absl::OkStatus();
      last = DecideWait(*nodes, command.nodes);
      if (last.outcome == WaitOutcome::kFail) return Fail(kExitFailed, last.message);
      if (last.outcome == WaitOutcome::kDone) {
        if (command.output != OutputFormat::kJson) return kExitOk;
        return Done(NodesJson(Select(*nodes, command.nodes)));
      }
    }
    Clock::time_point now = Clock::now();
    if (now >= deadline) {
      std::string message = TimeoutMessage(command.timeout, last);
      if (!last_error.ok()) absl::StrAppend(&message, " (last poll: ", last_error.message(), ")");
      return Fail(kExitFailed, message);
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(kWaitPollInterval, deadline - now));
  }
}

int Events(const Command& command, OperatorClient& client) {
  v1::ListEventsRequest request;
  request.set_follow(command.follow);
  request.set_node(command.node_filter);
  bool json = command.output == OutputFormat::kJson;
  // The table header goes out with the first event (or at the end of an
  // empty history), so that a failed call prints nothing on stdout.
  bool header_due = !json;
  bool output_ok = true;
  auto on_event = [&](const v1::Event& event) {
    if (output_ok && header_due) {
      output_ok = Print(EventsHeader());
      header_due = false;
    }
    if (output_ok) output_ok = Print(json ? EventJsonLine(event) : EventLine(event));
    if (!output_ok) client.Cancel();
  };
  if (!command.follow) {
    absl::Status status = client.ListEvents(request, on_event);
    if (!output_ok) return Fail(kExitFailed, "writing output failed");
    if (!status.ok()) return Fail(status);
    return header_due ? Done(EventsHeader()) : kExitOk;
  }

  // Follow until interrupted: SIGINT/SIGTERM end the stream and exit 0. The
  // signals are taken by a sigwait thread (blocked everywhere else, gRPC's
  // threads included, since they inherit the mask of this thread).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // our own "stream is over" wake-up
  std::thread waiter([&signals, &client] {
    int signal = 0;
    if (sigwait(&signals, &signal) == 0 && signal != SIGUSR1) client.Cancel();
  });
  absl::Status status = client.ListEvents(request, on_event);
  pthread_kill(waiter.native_handle(), SIGUSR1);
  waiter.join();
  if (!output_ok) return Fail(kExitFailed, "writing output failed");
  return status.ok() ? kExitOk : Fail(status);
}

// `status NODE --watch`: redraws the view every interval (in place on a
// terminal, one frame after the other otherwise) until SIGINT/SIGTERM, which
// main() blocked before any thread started and which are taken here between
// refreshes. A first refresh that fails ends it (exit 1); later failures are
// shown above the last view and retried.
int Watch(const Command& command, OperatorClient& client) {
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  ProgressRate rate;
  std::optional<v1::NodeStatus> last;
  int drawn_lines = 0;
  for (;;) {
    absl::StatusOr<v1::NodeStatus> node = client.GetNode(command.node);
    std::string error;
    if (node.ok()) {
      last = *std::move(node);
      rate.Add(std::chrono::steady_clock::now(), last->observed().bootstrap().done_bytes(),
               last->observed().bootstrap().total_bytes());
    } else if (!last) {
      return Fail(node.status());
    } else {
      error = std::string(node.status().message());
    }
    const std::string frame = WatchFrame(*last, rate, command.interval, error);
    if (!Print(tty ? RedrawPrefix(drawn_lines) + frame : frame + "\n")) {
      return Fail(kExitFailed, absl::StrCat("writing output: ", std::strerror(errno)));
    }
    drawn_lines = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
    const auto interval = command.interval;
    timespec wait{static_cast<time_t>(interval.count() / 1000),
                  static_cast<long>((interval.count() % 1000) * 1000000)};
    const int signal = sigtimedwait(&signals, nullptr, &wait);
    if (signal == SIGINT || signal == SIGTERM) return kExitOk;
  }
}

int Run(const Command& command) {
  if (command.verb == Verb::kHelp) {
    std::optional<std::string> text = HelpText(command.help_topic);
    return Done(text.value_or(""));
  }
  if (command.verb == Verb::kCompletion) return Done(BashCompletionScript());

  switch (command.verb) {
    case Verb::kCertCreateCa:
    case Verb::kCertCreateNode:
    case Verb::kCertCreateController:
    case Verb::kCertCreateClient:
    case Verb::kCertList: {
      absl::StatusOr<std::string> out = RunCert(command, absl::Now());
      if (!out.ok()) return Fail(out.status());
      return Done(*out);
    }
    default:
      break;
  }

  ClientOptions options;
  options.address = command.controller;
  if (command.insecure) {
    // Plaintext only to a controller on this host (one in insecure mode
    // listens on loopback only).
    const std::string host = HostOfHostPort(command.controller);
    if (!IsLoopbackHost(host)) {
      return Fail(kExitUsage,
                  absl::StrCat("--insecure speaks plaintext, so only to a controller on "
                               "loopback, not ", command.controller));
    }
  } else {
    absl::StatusOr<std::string> user = FindClientUser(command.certs_dir, command.user);
    if (!user.ok()) return Fail(user.status());
    absl::StatusOr<std::shared_ptr<TlsCredentials>> tls = TlsCredentials::Load(
        {command.certs_dir + "/ca.crt", command.certs_dir + "/client." + *user + ".crt",
         command.certs_dir + "/client." + *user + ".key"},
        IdentityKind::kOperator, *user);
    if (!tls.ok()) return Fail(tls.status());
    options.tls = *std::move(tls);
  }
  OperatorClient client(std::move(options));
  bool json = command.output == OutputFormat::kJson;

  switch (command.verb) {
    case Verb::kHelp:
      break;
    case Verb::kNodes: {
      absl::StatusOr<v1::ListNodesResponse> nodes = client.ListNodes();
      if (!nodes.ok()) return Fail(nodes.status());
      return Done(json ? NodesJson(*nodes) : NodesTable(*nodes));
    }
    case Verb::kStatus: {
      if (command.watch) return Watch(command, client);
      absl::StatusOr<v1::NodeStatus> node = client.GetNode(command.node);
      if (!node.ok()) return Fail(node.status());
      return Done(json ? StatusJson(*node) : StatusText(*node));
    }
    case Verb::kEnv: {
      absl::StatusOr<v1::NodeStatus> node = client.GetNode(command.node);
      if (!node.ok()) return Fail(node.status());
      if (json) return Done(EnvJson(*node));
      absl::StatusOr<std::string> text = EnvText(*node);
      if (!text.ok()) return Fail(text.status());
      return Done(*text);
    }
    case Verb::kReplicationEnable:
      return Changes(command,
                     client.EnableReplication(command.master, command.slave, command.auto_resync));
    case Verb::kSlaveAdd: {
      // One request per slave, in the order given; the first refusal stops
      // and names the slaves already added.
      v1::ChangeResponse all;
      std::vector<std::string> added;
      for (const std::string& slave : command.nodes) {
        absl::StatusOr<v1::ChangeResponse> one =
            client.EnableReplication(command.master, slave, command.auto_resync);
        if (!one.ok()) {
          if (added.empty()) return Fail(one.status());
          return Fail(absl::Status(one.status().code(),
                                   absl::StrCat(one.status().message(), " (already added: ",
                                                absl::StrJoin(added, ", "), ")")));
        }
        added.push_back(slave);
        for (const std::string& line : one->changes()) all.add_changes(line);
      }
      return Changes(command, all);
    }
    case Verb::kReplicationDisable:
      return Changes(command, client.DisableReplication(command.master));
    case Verb::kSlaveRemove:
      return Changes(command, client.RemoveSlave(command.slave));
    case Verb::kResync:
      return Changes(command, client.Resync(command.slave));
    case Verb::kPromote:
      return Changes(command, client.Promote(command.node, command.force));
    case Verb::kWait:
      return Wait(command, client);
    case Verb::kEvents:
      return Events(command, client);
    default:
      break;
  }
  return Fail(kExitFailed, "internal error: unhandled verb");
}

}  // namespace
}  // namespace tandem::cli

int main(int argc, char** argv) {
  using namespace tandem::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  EnvDefaults env;
  if (const char* value = std::getenv("TANDEM_CONTROLLER")) env.controller = value;
  if (const char* value = std::getenv("TANDEM_TOKEN_FILE")) env.token_file = value;
  if (const char* value = std::getenv("TANDEM_CERTS_DIR")) env.certs_dir = value;
  if (const char* value = std::getenv("TANDEM_USER")) env.user = value;
  absl::StatusOr<Command> command = ParseArgs(args, env);
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  if ((command->verb == Verb::kEvents && command->follow) ||
      (command->verb == Verb::kStatus && command->watch)) {
    // Block the signals Events() and Watch() wait for before any thread
    // exists, so that every thread (gRPC's too) inherits the mask. Other
    // verbs keep the default: Ctrl-C simply ends them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  }
  return Run(*command);
}
