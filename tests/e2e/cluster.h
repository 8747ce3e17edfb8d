// End-to-end test fixture: the real tandem-controller, one real tandem-agent
// per node and real database servers, driven through the real tandemctl.
// Secure like a real deployment: the cluster's CA and every certificate
// are made with `tandemctl cert` in <dir>/certs (the controller's, an
// admin's, and one per node naming the addresses its agent.yaml gives).
#ifndef TANDEM_TESTS_E2E_CLUSTER_H_
#define TANDEM_TESTS_E2E_CLUSTER_H_

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tests/harness/harness.h"

namespace tandem::testing {

struct CtlResult {
  int exit_code = -1;
  std::string out;  // stdout + stderr
};

// One node: its agent's config, env file, hook log and process.
struct E2eNode {
  std::string id;
  std::string config_path;
  std::string env_file;
  std::string hook_log;
  std::string state_dir;
  std::unique_ptr<ChildProcess> agent;
};

class Cluster {
 public:
  Cluster();
  ~Cluster();

  const TempDir& dir() const { return dir_; }
  std::string controller_address() const;

  // Starts (or restarts) the controller on its data dir and waits until
  // tandemctl reaches it.
  // `controller_yaml`: extra controller.yaml fields (e.g. "auto_resync: true\n"),
  // kept for later restarts.
  void StartController(const std::string& controller_yaml = "");
  // kill -9.
  void KillController();

  // Writes the agent config `yaml_body` (everything but node/stack/
  // controller/env/state fields, which the cluster adds) and starts the agent.
  E2eNode& AddNode(const std::string& id, const std::string& stack, const std::string& yaml_body);
  void StartAgent(const std::string& id);
  void KillAgent(const std::string& id);  // kill -9
  E2eNode& node(const std::string& id) { return nodes_.at(id); }

  // Runs tandemctl with `args` against the controller, as operator `user`
  // (client.<user>.crt; "admin" is made at start-up).
  CtlResult Ctl(const std::vector<std::string>& args, const std::string& user = "admin") const;
  // Runs `tandemctl cert ...` on the cluster's certs dir; asserts exit 0.
  void Cert(const std::vector<std::string>& args) const;
  std::string certs_dir() const { return dir_.Sub("certs"); }
  // tandemctl nodes -o json, by node id (empty on failure).
  std::map<std::string, nlohmann::json> Nodes() const;
  // tandemctl wait NODES --timeout; asserts exit 0 with the output in the message.
  void Wait(const std::vector<std::string>& nodes, const std::string& timeout = "120s") const;

  // The env file of `id` parsed ({} if missing).
  std::map<std::string, std::string> Env(const std::string& id) const;
  // Lines in the hook log of `id` (how often the hook ran).
  int HookRuns(const std::string& id) const;

  // The controller's history (tandemctl events -o json), oldest first.
  std::vector<nlohmann::json> Events() const;
  // The messages of the events about `node`, oldest first.
  std::vector<std::string> EventMessages(const std::string& node) const;

  // Scaling one by one, right after `slave add` of `slaves` (with a master
  // big enough that a copy takes a while): at least one shows queued; then,
  // sampled every 50 ms until all converge, never two in their bootstrap
  // step at once; and in the events, one successful bootstrap step per
  // slave, none overlapping another.
  void ExpectBootstrapsOneAtATime(const std::vector<std::string>& slaves) const;

 private:
  TempDir dir_;
  uint16_t controller_port_;
  std::string controller_yaml_;
  std::unique_ptr<ChildProcess> controller_;
  std::map<std::string, E2eNode> nodes_;
};

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_E2E_CLUSTER_H_
