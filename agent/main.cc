// tandem-agent-ENGINE: keeps one database engine instance in its desired
// role; `tandem-agent` (agent/dispatcher.h) becomes the binary of the
// engine agent.yaml names. Built once per engine, each with only that
// engine's client library; the command line is `tandem-agent`'s:
//
//   tandem-agent [run] --config agent.yaml   the reconcile loop (default)
//   tandem-agent plan --config agent.yaml    the steps it would take now; changes nothing
//   tandem-agent check-config --config agent.yaml
//   tandem-agent role-table                  the transition table
#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/clock.h"
#include "agent/command_line.h"
#include "agent/config.h"
#include "agent/controller_link.h"
#include "agent/desired_store.h"
#include "agent/engine_factory.h"
#include "agent/health_server.h"
#include "agent/host.h"
#include "agent/metrics.h"
#include "agent/planner.h"
#include "agent/reconciler.h"
#include "agent/transfer_client.h"
#include "agent/transfer_server.h"
#include "common/files.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/sd_notify.h"
#include "common/address.h"
#include "absl/strings/str_join.h"
#include "security/tls.h"

namespace tandem {
namespace {

// How long a starting agent waits for the controller to know it before it
// tells systemd it is ready.
constexpr std::chrono::seconds kRegisterBeforeReady(5);

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "tandem-agent: %s\n", message.c_str());
  return code;
}

int RunPlan(const AgentConfig& config) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeEngine(config.engine);
  if (!engine.ok()) return Fail(std::string(engine.status().message()), 2);
  LocalHost host(config.state_dir, config.env_file, config.env_hook);
  DesiredStateStore store(config.state_dir + "/desired.pb");
  if (absl::Status st = store.Load(); !st.ok()) return Fail(std::string(st.message()));
  const DesiredState desired = store.Current();
  absl::StatusOr<EngineFacts> facts = (*engine)->Observe();
  if (!facts.ok()) return Fail(absl::StrCat("observing the engine: ", facts.status().message()));
  absl::StatusOr<HostFacts> host_facts = host.Observe();
  if (!host_facts.ok()) return Fail(absl::StrCat("observing the host: ", host_facts.status().message()));
  Plan plan = PlanSteps(Observation{*facts, *host_facts}, desired);
  std::printf("node: %s\ndesired: %s (generation %llu, as last received from the controller)\n",
              config.node.c_str(), std::string(RoleName(desired.role)).c_str(),
              static_cast<unsigned long long>(desired.generation));
  std::printf("observed: %s%s\n", std::string(RoleName(plan.from)).c_str(),
              facts->running ? "" : " (engine not running)");
  if (!plan.status.ok()) {
    std::printf("plan: refused: %s\n", std::string(plan.status.message()).c_str());
    return 1;
  }
  if (plan.Converged()) {
    std::printf("plan: nothing to do (converged)\n");
    return 0;
  }
  std::printf("reason: %s\nsteps:\n", plan.reason.c_str());
  int n = 0;
  for (StepKind kind : plan.steps) std::printf("  %d. %s\n", ++n, std::string(StepName(kind)).c_str());
  return 0;
}

// This node's TLS credentials (null in insecure mode). Beyond the checks of
// TlsCredentials::Load, the certificate must name the addresses this node
// registers: the controller would refuse the registration otherwise.
absl::StatusOr<std::shared_ptr<TlsCredentials>> LoadNodeTls(const AgentConfig& config) {
  if (config.insecure) return std::shared_ptr<TlsCredentials>();
  absl::StatusOr<std::shared_ptr<TlsCredentials>> tls = TlsCredentials::Load(
      {config.CaFile(), config.CertFile(), config.KeyFile()}, IdentityKind::kNode, config.node);
  if (!tls.ok()) return tls.status();
  const CertificateInfo info = (*tls)->info();
  for (const auto& [field, address] :
       {std::pair<const char*, std::string>{"addresses.internal", config.addresses.internal},
        {"addresses.external", config.addresses.external}}) {
    if (address.empty()) continue;
    bool named = false;
    for (const std::string& a : info.addresses) named = named || SameHostAddress(a, address);
    if (!named) {
      return absl::InvalidArgumentError(absl::StrCat(
          config.CertFile(), ": it names ", absl::StrJoin(info.addresses, ", "), ", not ", field,
          " ", address, " (the controller accepts only addresses a node's certificate names: "
          "tandemctl cert create-node ", config.node, " --address ", address, " ...)"));
    }
  }
  return tls;
}

int RunAgent(const AgentConfig& config) {
  // Signals are taken by a thread of our own (sigwait), so block them in
  // every thread before any is started.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::Status st = MakeDirs(config.state_dir); !st.ok()) return Fail(std::string(st.message()));
  absl::StatusOr<std::shared_ptr<TlsCredentials>> loaded_tls = LoadNodeTls(config);
  if (!loaded_tls.ok()) return Fail(std::string(loaded_tls.status().message()), 2);
  const std::shared_ptr<TlsCredentials> tls = *std::move(loaded_tls);
  // A slave's engine fetches its seeding backup from the master's agent
  // (agent to agent, mutual TLS with this node's certificate).
  GrpcBackupSource backup_source(tls, config.engine.type);
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeEngine(config.engine, &backup_source);
  if (!engine.ok()) return Fail(std::string(engine.status().message()), 2);
  DesiredStateStore store(config.state_dir + "/desired.pb");
  if (absl::Status st = store.Load(); !st.ok()) return Fail(std::string(st.message()));
  // The master side: backups for this node's slaves, on an Engine of its
  // own (the reconcile loop's is used by one thread at a time).
  std::unique_ptr<TransferServer> transfer;
  if (!config.transfer_listen.empty()) {
    absl::StatusOr<std::unique_ptr<Engine>> transfer_engine = MakeEngine(config.engine);
    if (!transfer_engine.ok()) return Fail(std::string(transfer_engine.status().message()), 2);
    TransferServerOptions transfer_options;
    transfer_options.listen = config.transfer_listen;
    transfer_options.tls = tls;
    transfer_options.engine = config.engine.type;
    // Only to the slave the controller has copying this master's data now.
    transfer_options.serves = [&store](const std::string& slave_id) {
      const DesiredState desired = store.Current();
      if (desired.role != Role::kMaster) return false;
      for (const Peer& slave : desired.slaves) {
        if (slave.id == slave_id) return slave.bootstrapping;
      }
      return false;
    };
    absl::StatusOr<std::unique_ptr<TransferServer>> started =
        TransferServer::Start(std::move(transfer_options), *std::move(transfer_engine));
    if (!started.ok()) return Fail(std::string(started.status().message()));
    transfer = *std::move(started);
  }
  LocalHost host(config.state_dir, config.env_file, config.env_hook);
  RealClock clock;
  ReconcilerOptions options;
  options.interval = std::chrono::seconds(config.reconcile_interval_seconds);
  options.executor.streaming_timeout = std::chrono::seconds(config.engine.timeout_seconds);
  // Idle from here on: give back what start-up or the last transition used
  // once (freed heap, code and constants of the TLS handshake, a bootstrap's
  // tools' glue); the idle loop maps back the little it uses.
  options.settled = [] {
    malloc_trim(0);
    ReleaseReadOnlySegments();
  };

  std::unique_ptr<Reconciler> reconciler;
  ControllerLink link(config.controller, tls, config.Info(), &store,
                      [&reconciler] { reconciler->Wake(); });
  // Everything the loop publishes goes through the metrics on its way to
  // the controller.
  AgentMetrics metrics;
  MeteredSink metered(&metrics, &link);
  reconciler = std::make_unique<Reconciler>(config.Self(), engine->get(), &host, &clock, &store,
                                            &metered, options);
  auto health_view = [&] {
    return HealthView{config.Info(), reconciler->LastObserved(), store.Current(), link.Connected(),
                      tls ? absl::ToDoubleSeconds(tls->info().not_after - absl::UnixEpoch()) : 0};
  };
  std::unique_ptr<HealthServer> health;
  if (!config.health_listen.empty()) {
    absl::StatusOr<std::unique_ptr<HealthServer>> started =
        HealthServer::Start(config.health_listen, health_view, &metrics);
    if (!started.ok()) return Fail(std::string(started.status().message()));
    health = *std::move(started);
  }
  // systemd (Type=notify): READY once serving, then STATUS and watchdog
  // pings. Pings stop when the loop's state cannot be read (a deadlock) or
  // when no pass ended for long while no step runs (a hung pass): systemd
  // then restarts the agent. Long steps (a bootstrap) keep it alive.
  const auto stalled_after = std::max<std::chrono::milliseconds>(
      4 * options.interval, std::chrono::minutes(2));
  SdNotifier notifier([&] { return StatusLine(health_view()); },
                      [&] {
                        return !reconciler->LastObserved().current_step.empty() ||
                               metrics.SinceLastPublish() < stalled_after;
                      });
  LogInfo(absl::StrCat("tandem-agent starting: node=", config.node, " engine=",
                       std::string(EngineName(config.engine.type)), " controller=", config.controller,
                       " held generation=", store.Current().generation));
  link.Start();
  // READY once the controller knows this node, when it answers within a
  // few seconds: `systemctl start tandem-agent@X` then returns with X
  // registered, and a `tandemctl wait X` right after it finds X. Without
  // the controller the agent is ready anyway (with the state it persisted).
  // The loop runs meanwhile.
  std::atomic<bool> loop_ended{false};
  std::thread ready_thread([&] {
    for (const auto deadline = std::chrono::steady_clock::now() + kRegisterBeforeReady;
         !link.Connected() && !loop_ended && std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    notifier.Start();
  });
  std::thread signal_thread([&] {
    int sig = 0;
    for (;;) {
      sigwait(&signals, &sig);
      if (sig != SIGHUP) break;
      // Certificates are reloaded in place: the role and the connections
      // stay; new handshakes use the new certificate.
      if (!tls) {
        LogInfo("SIGHUP: insecure mode, no certificates to reload");
      } else if (absl::Status st = tls->Reload(); !st.ok()) {
        LogError(absl::StrCat("SIGHUP: certificates NOT reloaded, the old ones stay: ",
                              st.message()));
      } else {
        LogInfo(absl::StrCat("SIGHUP: certificates reloaded (serial ", tls->info().serial, ")"));
      }
    }
    LogInfo(absl::StrCat("signal ", sig, ": stopping"));
    notifier.Stopping("stopping: finishing the current pass");
    reconciler->Stop();
  });
  reconciler->Run();
  loop_ended = true;
  ready_thread.join();
  notifier.Stop();
  if (health) health->Stop();
  if (transfer) transfer->Stop();
  link.Stop();
  signal_thread.detach();
  LogInfo("tandem-agent stopped");
  return 0;
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  using namespace tandem;
  // glibc gives each thread that allocates an arena of its own (up to 8 per
  // core), each holding free memory apart; one arena serves this mostly
  // idle process's dozen threads (about 0.3 MiB less resident memory).
  mallopt(M_ARENA_MAX, 1);
  absl::StatusOr<AgentArgs> args = ParseAgentArgs(argc, argv);
  if (std::optional<int> answered = AnswerWithoutConfig(args)) return *answered;
  absl::StatusOr<AgentConfig> config = LoadAgentConfig(args->config);
  if (!config.ok()) return Fail(std::string(config.status().message()), 2);
  if (args->command == "check-config") {
    absl::StatusOr<std::shared_ptr<TlsCredentials>> tls = LoadNodeTls(*config);
    if (!tls.ok()) return Fail(std::string(tls.status().message()), 2);
    std::printf("%s: ok (node %s, %s on port %u; %s)\n", args->config.c_str(),
                config->node.c_str(), std::string(EngineName(config->engine.type)).c_str(),
                config->engine.port,
                *tls ? absl::StrCat("certificate ", config->CertFile(), " expires ",
                                    absl::FormatTime("%Y-%m-%d", (*tls)->info().not_after,
                                                     absl::UTCTimeZone()))
                           .c_str()
                     : "INSECURE: no TLS");
    return 0;
  }
  if (args->command == "plan") return RunPlan(*config);
  if (args->command == "run") return RunAgent(*config);
  std::fprintf(stderr, "tandem-agent: unknown command '%s'\n%s", args->command.c_str(),
               kAgentUsage);
  return 2;
}
