// tandem-controller: holds the desired role of every database node and
// publishes it to the agents over gRPC.
//
// Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT), 2 for a usage or
// configuration error (the message names the file, field and reason), 1 for
// any other start-up error (state file unreadable, address in use, ...).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/http_server.h"
#include "common/sd_notify.h"
#include "controller/controller_config.h"
#include "controller/metrics.h"
#include "controller/registry.h"
#include "controller/service.h"
#include "controller/store.h"
#include "security/tls.h"

namespace tandem {
namespace {

constexpr int kExitStartup = 1;
constexpr int kExitConfig = 2;

void Log(const std::string& line) {
  const std::string stamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3S%Ez", absl::Now(), absl::LocalTimeZone());
  std::fprintf(stderr, "%s %s\n", stamp.c_str(), line.c_str());
  std::fflush(stderr);
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "tandem-controller: %s\n", message.c_str());
  return code;
}

// "127.0.0.1:0" with bound port 43210 -> "127.0.0.1:43210".
std::string BoundAddress(const std::string& listen, int port) {
  return absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<CommandLine> command_line = ParseCommandLine(args);
  if (!command_line.ok()) {
    std::fprintf(stderr, "tandem-controller: %s\n%s",
                 std::string(command_line.status().message()).c_str(), Usage().c_str());
    return kExitConfig;
  }
  if (command_line->help) {
    std::fputs(Usage().c_str(), stdout);
    return 0;
  }
  absl::StatusOr<ControllerConfig> config = ResolveConfig(*command_line);
  if (!config.ok()) return Fail(kExitConfig, std::string(config.status().message()));

  // Block the shutdown and reload signals before any thread starts (gRPC's
  // included), so that only the signal thread below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Mutual TLS unless insecure mode was asked for (ResolveConfig already
  // refused it on a non-loopback address).
  std::shared_ptr<TlsCredentials> tls;
  if (!config->insecure) {
    absl::StatusOr<std::shared_ptr<TlsCredentials>> loaded =
        TlsCredentials::Load(ControllerTlsFiles(*config), IdentityKind::kController, "");
    if (!loaded.ok()) return Fail(kExitConfig, std::string(loaded.status().message()));
    tls = *std::move(loaded);
  }

  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(config->data_dir);
  if (!store.ok()) return Fail(kExitStartup, std::string(store.status().message()));
  const std::string location = (*store)->Location();
  RegistryOptions registry_options;
  registry_options.events_keep = config->events_keep;
  registry_options.policy.bootstraps_per_group = config->bootstraps_per_group;
  registry_options.auto_resync = config->auto_resync;
  registry_options.auto_resync_interval = absl::Seconds(config->auto_resync_interval_seconds);
  absl::StatusOr<std::unique_ptr<Registry>> registry =
      Registry::Open(*std::move(store), registry_options);
  if (!registry.ok()) return Fail(kExitStartup, std::string(registry.status().message()));
  Log(absl::StrCat("state ", location, ": ", (*registry)->Snapshot().nodes.size(), " nodes"));

  ControllerMetrics metrics;
  ServiceOptions service_options;
  service_options.tls = tls;
  if (tls) metrics.set_certificate_expiry([tls] { return tls->info().not_after; });
  service_options.log = Log;
  service_options.metrics = &metrics;
  absl::StatusOr<std::unique_ptr<ControllerServer>> server =
      ControllerServer::Start(registry->get(), config->listen, service_options);
  if (!server.ok()) return Fail(kExitStartup, std::string(server.status().message()));
  Log(absl::StrCat("listening on ", BoundAddress(config->listen, (*server)->port()),
                   tls ? absl::StrCat(" (mutual TLS; certificate ", tls->info().common_name,
                                      " expires ",
                                      absl::FormatTime("%Y-%m-%d", tls->info().not_after,
                                                       absl::UTCTimeZone()),
                                      ")")
                       : std::string(" (INSECURE: no TLS, every local caller trusted)")));

  const Registry& nodes = **registry;
  std::unique_ptr<HttpServer> http;
  if (!config->metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(
        config->metrics_listen, [&metrics, &nodes](const HttpRequest& request) {
          return HandleControllerHttp(request, metrics, nodes);
        });
    if (!started.ok()) {
      return Fail(kExitStartup, absl::StrCat("metrics_listen: ", started.status().message()));
    }
    http = *std::move(started);
    Log(absl::StrCat("metrics on http://", BoundAddress(config->metrics_listen, http->port()),
                     "/metrics"));
  }
  // systemd (Type=notify): READY once serving, then STATUS and watchdog
  // pings; reading the registry doubles as its liveness check.
  SdNotifier notifier([&nodes] { return ControllerStatusLine(nodes.ListNodes()); });
  notifier.Start();

  ControllerServer* running = server->get();
  std::thread signal_thread([&signals, &notifier, running, tls] {
    int signal = 0;
    for (;;) {
      sigwait(&signals, &signal);
      if (signal != SIGHUP) break;
      // Certificates are reloaded in place: no connection is dropped and
      // no role changes; new handshakes use the new certificate.
      if (!tls) {
        Log("received SIGHUP: insecure mode, no certificates to reload");
      } else if (absl::Status st = tls->Reload(); !st.ok()) {
        Log(absl::StrCat("received SIGHUP: certificates NOT reloaded, the old ones stay: ",
                         st.message()));
      } else {
        Log(absl::StrCat("received SIGHUP: certificates reloaded (serial ", tls->info().serial,
                         ", expires ",
                         absl::FormatTime("%Y-%m-%d", tls->info().not_after, absl::UTCTimeZone()),
                         ")"));
      }
    }
    Log(absl::StrCat("received ", signal == SIGTERM ? "SIGTERM" : "SIGINT", ", shutting down"));
    notifier.Stopping("shutting down");
    running->Shutdown(absl::Seconds(5));
  });
  running->Wait();
  signal_thread.join();
  notifier.Stop();
  if (http) http->Stop();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) { return tandem::Main(argc, argv); }
