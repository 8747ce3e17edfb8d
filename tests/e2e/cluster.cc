#include "tests/e2e/cluster.h"

#include <signal.h>

#include <algorithm>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace tandem::testing {

Cluster::Cluster() : dir_("tde2e"), controller_port_(FreePort()) {
  Cert({"create-ca"});
  Cert({"create-controller", "--address", "127.0.0.1"});
  Cert({"create-client", "admin", "--role", "admin"});
}

void Cluster::Cert(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {TANDEM_CTL_BIN, "cert"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--certs-dir", certs_dir()});
  absl::StatusOr<RunResult> result = Run(argv, RunOptions{});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->exit_code, 0) << absl::StrJoin(argv, " ") << ": " << result->output;
}

Cluster::~Cluster() {
  for (auto& [id, node] : nodes_) {
    if (node.agent) {
      (void)node.agent->Signal(SIGTERM);
      (void)node.agent->Wait(std::chrono::seconds(10));
    }
  }
  if (controller_) {
    (void)controller_->Signal(SIGTERM);
    (void)controller_->Wait(std::chrono::seconds(10));
  }
  if (::testing::Test::HasFailure()) {
    for (auto& [id, node] : nodes_) {
      if (node.agent) std::cerr << "--- agent " << id << " log:\n" << FileTail(node.agent->log_file(), 6000);
    }
    if (controller_) std::cerr << "--- controller log:\n" << FileTail(controller_->log_file(), 4000);
  }
}

std::string Cluster::controller_address() const { return absl::StrCat("127.0.0.1:", controller_port_); }

void Cluster::StartController(const std::string& controller_yaml) {
  if (!controller_yaml.empty()) controller_yaml_ = controller_yaml;
  ChildOptions options;
  options.log_file = dir_.Sub("controller.log");
  std::vector<std::string> argv = {TANDEM_CONTROLLER_BIN, "--listen", controller_address(),
                                   "--data-dir", dir_.Sub("controller"), "--certs-dir",
                                   certs_dir()};
  if (!controller_yaml_.empty()) {
    const std::string path = dir_.Sub("controller.yaml");
    ASSERT_TRUE(WriteFileAtomic(path, controller_yaml_, 0600).ok());
    argv.push_back("--config");
    argv.push_back(path);
  }
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(argv, options);
  ASSERT_TRUE(child.ok()) << child.status();
  controller_ = *std::move(child);
  ASSERT_TRUE(PollUntil([&] { return Ctl({"nodes"}).exit_code == 0; }, std::chrono::seconds(20)))
      << FileTail(options.log_file);
}

void Cluster::KillController() {
  ASSERT_TRUE(controller_->Signal(SIGKILL).ok());
  ASSERT_TRUE(controller_->Wait(std::chrono::seconds(10)).ok());
}

E2eNode& Cluster::AddNode(const std::string& id, const std::string& stack,
                          const std::string& yaml_body) {
  E2eNode node;
  node.id = id;
  node.config_path = dir_.Sub(id + ".yaml");
  node.env_file = dir_.Sub(id + ".env");
  node.hook_log = dir_.Sub(id + ".hook");
  node.state_dir = dir_.Sub(id + "-state");
  const std::string yaml = absl::StrCat(
      "node: ", id, "\nstack: ", stack, "\ncontroller: ", controller_address(),
      "\nenv_file: ", node.env_file, "\nenv_hook: \"echo ran >> ", node.hook_log, "\"",
      "\nstate_dir: ", node.state_dir, "\nhealth_listen: \"\"\nreconcile_interval: 2\ncerts_dir: ",
      certs_dir(), "\n", yaml_body);
  EXPECT_TRUE(WriteFileAtomic(node.config_path, yaml, 0600).ok());
  // The node's certificate names the addresses it registers.
  std::vector<std::string> cert = {"create-node", id};
  const YAML::Node addresses = YAML::Load(yaml)["addresses"];
  for (const char* key : {"internal", "external"}) {
    if (addresses && addresses[key] && !addresses[key].as<std::string>().empty()) {
      cert.insert(cert.end(), {"--address", addresses[key].as<std::string>()});
    }
  }
  Cert(cert);
  nodes_[id] = std::move(node);
  StartAgent(id);
  return nodes_[id];
}

void Cluster::StartAgent(const std::string& id) {
  E2eNode& node = nodes_.at(id);
  ChildOptions options;
  options.log_file = dir_.Sub(id + "-agent.log");
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start({TANDEM_AGENT_BIN, "--config", node.config_path}, options);
  ASSERT_TRUE(child.ok()) << child.status();
  node.agent = *std::move(child);
}

void Cluster::KillAgent(const std::string& id) {
  E2eNode& node = nodes_.at(id);
  ASSERT_TRUE(node.agent->Signal(SIGKILL).ok());
  ASSERT_TRUE(node.agent->Wait(std::chrono::seconds(10)).ok());
}

CtlResult Cluster::Ctl(const std::vector<std::string>& args, const std::string& user) const {
  std::vector<std::string> argv = {TANDEM_CTL_BIN, "--controller", controller_address(),
                                   "--certs-dir", certs_dir(), "--user", user};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions options;
  options.timeout = std::chrono::seconds(300);
  absl::StatusOr<RunResult> result = Run(argv, options);
  if (!result.ok()) return CtlResult{-1, std::string(result.status().message())};
  return CtlResult{result->exit_code, result->output};
}

std::map<std::string, nlohmann::json> Cluster::Nodes() const {
  std::map<std::string, nlohmann::json> out;
  CtlResult r = Ctl({"nodes", "-o", "json"});
  if (r.exit_code != 0) return out;
  nlohmann::json doc = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_array()) return out;
  for (const auto& n : doc) out[n.value("id", "")] = n;
  return out;
}

void Cluster::Wait(const std::vector<std::string>& nodes, const std::string& timeout) const {
  std::vector<std::string> args = {"wait"};
  args.insert(args.end(), nodes.begin(), nodes.end());
  args.insert(args.end(), {"--timeout", timeout});
  CtlResult r = Ctl(args);
  ASSERT_EQ(r.exit_code, 0) << "tandemctl wait " << absl::StrJoin(nodes, " ") << ": " << r.out
                            << "\nnodes: " << Ctl({"nodes"}).out;
}

std::map<std::string, std::string> Cluster::Env(const std::string& id) const {
  std::map<std::string, std::string> env;
  absl::StatusOr<std::string> text = ReadFile(nodes_.at(id).env_file);
  if (!text.ok()) return env;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  return env;
}

int Cluster::HookRuns(const std::string& id) const {
  absl::StatusOr<std::string> text = ReadFile(nodes_.at(id).hook_log);
  if (!text.ok()) return 0;
  return static_cast<int>(std::count(text->begin(), text->end(), '\n'));
}

std::vector<nlohmann::json> Cluster::Events() const {
  std::vector<nlohmann::json> out;
  CtlResult events = Ctl({"events", "-o", "json"});
  EXPECT_EQ(events.exit_code, 0) << events.out;
  for (absl::string_view line : absl::StrSplit(events.out, '\n')) {
    nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
    if (e.is_object()) out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> Cluster::EventMessages(const std::string& node) const {
  std::vector<std::string> out;
  for (const nlohmann::json& e : Events()) {
    if (e.value("node", "") == node) out.push_back(e.value("message", ""));
  }
  return out;
}

void Cluster::ExpectBootstrapsOneAtATime(const std::vector<std::string>& slaves) const {
  {
    auto nodes = Nodes();
    int queued = 0;
    for (const std::string& id : slaves) queued += nodes[id].value("queued", false);
    EXPECT_GE(queued, 1) << "right after slave add, at least one waits its turn";
    EXPECT_NE(Ctl({"nodes"}).out.find("queued"), std::string::npos);
  }
  int max_bootstrapping = 0;
  const bool converged = PollUntil(
      [&] {
        auto nodes = Nodes();
        int bootstrapping = 0;
        bool all_done = true;
        for (const std::string& id : slaves) {
          bootstrapping += nodes[id]["observed"]["current_step"] == "bootstrap";
          all_done = all_done && nodes[id].value("converged", false);
        }
        max_bootstrapping = std::max(max_bootstrapping, bootstrapping);
        return all_done;
      },
      std::chrono::seconds(180), std::chrono::milliseconds(50));
  EXPECT_TRUE(converged) << Ctl({"nodes"}).out;
  EXPECT_LE(max_bootstrapping, 1) << "two slaves bootstrapping at once";

  // The controller's history: each slave's bootstrap step ended before the
  // next one started.
  std::vector<std::pair<double, double>> intervals;  // [start, end]
  std::set<std::string> bootstrapped;
  for (const nlohmann::json& e : Events()) {
    if (e.value("kind", "") != "step" || !e.value("ok", false)) continue;
    if (e.value("message", "").rfind("bootstrap:", 0) != 0) continue;
    const double end = e.value("unix_time", 0.0);
    intervals.emplace_back(end - e.value("seconds", 0.0), end);
    bootstrapped.insert(e.value("node", ""));
  }
  EXPECT_EQ(bootstrapped, std::set<std::string>(slaves.begin(), slaves.end()))
      << Ctl({"events"}).out;
  EXPECT_EQ(intervals.size(), slaves.size()) << Ctl({"events"}).out;
  std::sort(intervals.begin(), intervals.end());
  for (size_t i = 1; i < intervals.size(); ++i) {
    EXPECT_GE(intervals[i].first, intervals[i - 1].second)
        << "bootstraps " << i - 1 << " and " << i << " overlap";
  }
}

}  // namespace tandem::testing
