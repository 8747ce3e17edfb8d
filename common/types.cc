#include "common/types.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace tandem {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kStandalone: return "standalone";
    case Role::kMaster: return "master";
    case Role::kSlave: return "slave";
    case Role::kUnspecified: break;
  }
  return "";
}

std::optional<Role> ParseRole(std::string_view text) {
  const std::string word = Lower(text);
  if (word == "standalone") return Role::kStandalone;
  if (word == "master" || word == "primary") return Role::kMaster;
  if (word == "slave" || word == "replica") return Role::kSlave;
  return std::nullopt;
}

std::string_view EngineName(EngineType engine) {
  switch (engine) {
    case EngineType::kPostgresql: return "postgresql";
    case EngineType::kMysql: return "mysql";
    case EngineType::kRedis: return "redis";
    case EngineType::kMongodb: return "mongodb";
    case EngineType::kUnspecified: break;
  }
  return "";
}

std::optional<EngineType> ParseEngine(std::string_view text) {
  const std::string word = Lower(text);
  if (word == "postgresql" || word == "postgres") return EngineType::kPostgresql;
  if (word == "mysql" || word == "mariadb") return EngineType::kMysql;
  if (word == "redis") return EngineType::kRedis;
  if (word == "mongodb") return EngineType::kMongodb;
  return std::nullopt;
}

std::string_view EnvPrefix(EngineType engine) {
  switch (engine) {
    case EngineType::kPostgresql: return "POSTGRESQL";
    case EngineType::kMysql: return "MYSQL";
    case EngineType::kRedis: return "REDIS";
    case EngineType::kMongodb: return "MONGODB";
    case EngineType::kUnspecified: break;
  }
  return "";
}

}  // namespace tandem
