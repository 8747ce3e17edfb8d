#include "agent/dispatcher.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace tandem {
namespace {

// Set for the engine agent unless the caller's environment has them.
constexpr std::array<std::pair<const char*, const char*>, 1> kEngineAgentEnv = {{
    {"GNUTLS_NO_IMPLICIT_INIT", "1"},
}};

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::string EngineAgentName(EngineType engine) {
  const std::string_view name = EngineName(engine);
  if (name.empty()) return "";
  return absl::StrCat("tandem-agent-", std::string(name));
}

absl::StatusOr<std::string> FindEngineAgent(const std::string& self, EngineType engine) {
  const std::string name = EngineAgentName(engine);
  if (name.empty()) return absl::InvalidArgumentError("engine.type: not set");
  const std::string dir = DirName(self);
  const std::vector<std::string> candidates = {absl::StrCat(dir, "/", name),
                                               absl::StrCat(dir, "/../lib/tandem/", name)};
  for (const std::string& path : candidates) {
    if (IsExecutableFile(path)) return path;
  }
  return absl::NotFoundError(absl::StrCat("engine.type: ", std::string(EngineName(engine)),
                                          ": this installation has no agent for it (no ",
                                          absl::StrJoin(candidates, " nor "), ")"));
}

std::vector<std::string> EngineAgentEnvironment(const std::vector<std::string>& env) {
  std::vector<std::string> result = env;
  for (const auto& [name, value] : kEngineAgentEnv) {
    const std::string prefix = absl::StrCat(name, "=");
    bool present = false;
    for (const std::string& entry : env) {
      if (entry.rfind(prefix, 0) == 0) present = true;
    }
    if (!present) result.push_back(absl::StrCat(prefix, value));
  }
  return result;
}

absl::Status ExecEngineAgent(const std::string& binary, int argc, const char* const* argv) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  env = EngineAgentEnvironment(env);
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  args.push_back(const_cast<char*>(binary.c_str()));
  for (int i = 1; i < argc; ++i) args.push_back(const_cast<char*>(argv[i]));
  args.push_back(nullptr);
  execve(binary.c_str(), args.data(), envp.data());
  const int error = errno;
  return absl::InternalError(absl::StrCat("while starting ", binary, ": ", strerror(error)));
}

absl::StatusOr<std::string> SelfExecutable() {
  char buffer[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) {
    const int error = errno;
    return absl::InternalError(absl::StrCat("while reading /proc/self/exe: ", strerror(error)));
  }
  return std::string(buffer, static_cast<size_t>(n));
}

}  // namespace tandem
