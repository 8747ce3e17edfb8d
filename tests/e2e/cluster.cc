#include "tests/e2e/cluster.h"

#include <signal.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"

namespace tandem::testing {

Cluster::Cluster() : dir_("tde2e"), controller_port_(FreePort()) {}

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
                                   "--data-dir", dir_.Sub("controller")};
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
      "\nstate_dir: ", node.state_dir, "\nhealth_listen: \"\"\nreconcile_interval: 2\n", yaml_body);
  EXPECT_TRUE(WriteFileAtomic(node.config_path, yaml, 0600).ok());
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

CtlResult Cluster::Ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {TANDEM_CTL_BIN, "--controller", controller_address()};
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

}  // namespace tandem::testing
