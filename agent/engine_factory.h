// Creates the Engine for `config.type`; the one place that knows every
// engine implementation. Each engine's agent binary (tandem-agent-ENGINE)
// compiles it with only its own engine (TANDEM_WITH_ENGINE), so that it
// links only that engine's client library. Unimplemented for an engine this
// binary lacks.
#ifndef TANDEM_AGENT_ENGINE_FACTORY_H_
#define TANDEM_AGENT_ENGINE_FACTORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engines/engine.h"
#include "engines/engine_config.h"

namespace tandem {

// `source` (not owned, may be null) is where an engine that seeds its
// slaves from a streamed backup (MySQL) fetches it.
absl::StatusOr<std::unique_ptr<Engine>> MakeEngine(const EngineConfig& config,
                                                   BackupSource* source = nullptr);

}  // namespace tandem

#endif  // TANDEM_AGENT_ENGINE_FACTORY_H_
