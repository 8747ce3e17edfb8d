#include "agent/engine_factory.h"

#include "absl/strings/str_cat.h"
#ifdef TANDEM_WITH_POSTGRESQL
#include "engines/postgresql/postgresql_engine.h"
#endif
#ifdef TANDEM_WITH_REDIS
#include "engines/redis/redis_engine.h"
#endif
#ifdef TANDEM_WITH_MYSQL
#include "engines/mysql/mysql_engine.h"
#endif

namespace tandem {

absl::StatusOr<std::unique_ptr<Engine>> MakeEngine(const EngineConfig& config,
                                                   BackupSource* source) {
  (void)source;  // used only by the engines that stream their seeding backup
  switch (config.type) {
#ifdef TANDEM_WITH_POSTGRESQL
    case EngineType::kPostgresql:
      return MakePostgresqlEngine(config);
#endif
#ifdef TANDEM_WITH_REDIS
    case EngineType::kRedis:
      return MakeRedisEngine(config);
#endif
#ifdef TANDEM_WITH_MYSQL
    case EngineType::kMysql:
      return MakeMysqlEngine(config, source);
#endif
    default:
      break;
  }
  return absl::UnimplementedError(
      absl::StrCat("engine.type: ", std::string(EngineName(config.type)), " is not supported by this build"));
}

}  // namespace tandem
