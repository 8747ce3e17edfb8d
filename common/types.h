// Domain types shared by the controller, the agent and the engines.
//
// Plain structs with value semantics; protobuf types stay at the edges
// (proto/convert.h). Nothing here does I/O.
#ifndef TANDEM_COMMON_TYPES_H_
#define TANDEM_COMMON_TYPES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

// The replication role of a node. kUnspecified only appears for "no desired
// state yet" and is never a valid target.
enum class Role { kUnspecified = 0, kStandalone, kMaster, kSlave };

enum class EngineType { kUnspecified = 0, kPostgresql, kMysql, kRedis, kMongodb };

// "master", "slave", "standalone" ("" for kUnspecified).
std::string_view RoleName(Role role);
// Accepts master/primary, slave/replica, standalone (case-insensitive).
std::optional<Role> ParseRole(std::string_view text);

// "postgresql", "mysql", "redis", "mongodb".
std::string_view EngineName(EngineType engine);
// Accepts the names above plus "postgres", "mariadb".
std::optional<EngineType> ParseEngine(std::string_view text);
// The env-var prefix of an engine: POSTGRESQL, MYSQL, REDIS, MONGODB.
std::string_view EnvPrefix(EngineType engine);

struct Addresses {
  std::string internal;
  std::string external;  // empty when the node has no external address

  bool operator==(const Addresses&) const = default;
};

// What a node is, as its agent registers it with the controller.
struct NodeInfo {
  std::string id;
  std::string stack;
  EngineType engine = EngineType::kUnspecified;
  Addresses addresses;
  uint32_t port = 0;
  // Port of the agent's backup transfer service (agent.yaml transfer_listen);
  // 0 when it serves none.
  uint32_t transfer_port = 0;
  // The server's TLS port where it differs from `port` (Redis tls-port);
  // 0 when it has none. Slaves in other stacks replicate over it.
  uint32_t tls_port = 0;

  bool operator==(const NodeInfo&) const = default;
};

// Another node as seen from this one: the upstream of a slave, or one of the
// slaves of a master. `host` is the address to use from this node's stack
// (internal within a stack, external between stacks).
struct Peer {
  std::string id;
  std::string stack;
  std::string host;
  uint32_t port = 0;
  // The peer's agent transfer service at `host` (0: none), from which a
  // slave fetches its seeding backup.
  uint32_t transfer_port = 0;
  // The peer's server TLS port (NodeInfo::tls_port; 0: none).
  uint32_t tls_port = 0;
  // In a master's list of slaves: the controller has this slave copying the
  // master's data right now, so the master's agent streams it a backup
  // (to it alone) when asked.
  bool bootstrapping = false;

  bool operator==(const Peer&) const = default;
};

using EnvMap = std::map<std::string, std::string>;

// Controller -> agent. A higher generation always supersedes a lower one.
struct DesiredState {
  uint64_t generation = 0;
  Role role = Role::kUnspecified;
  Peer upstream;              // set for a slave
  std::vector<Peer> slaves;   // set for a master, sorted by id
  EnvMap env;                 // the env file to write
  std::string resync_token;   // a new token asks for a rebuild of a slave
  // A master that must refuse writes (the first phase of a switchover).
  bool fenced = false;
  // A slave being promoted: replay at least this far (an engine position,
  // e.g. a PostgreSQL LSN) before becoming writable. Empty: no wait.
  std::string catch_up_position;
  // With a new resync_token: try the engine's cheap path (Engine::Rejoin:
  // pg_rewind, GTID re-point) before a full copy. Set for the followers of
  // a switchover and for automatic resyncs; an operator's resync makes a
  // full copy.
  bool rejoin_first = false;
  // Informational, not part of the generation: the upstream's data size as
  // last reported, for the free-disk check before a bootstrap (0: unknown).
  uint64_t upstream_data_bytes = 0;

  // Equality on the parts that define the desired state (generation and the
  // informational size excluded).
  bool SameTarget(const DesiredState& other) const {
    return role == other.role && upstream == other.upstream && slaves == other.slaves &&
           env == other.env && resync_token == other.resync_token && fenced == other.fenced &&
           catch_up_position == other.catch_up_position && rejoin_first == other.rejoin_first;
  }
};

struct Progress {
  uint64_t done_bytes = 0;
  uint64_t total_bytes = 0;

  bool operator==(const Progress&) const = default;
};

// Agent -> controller: what the agent saw on its last pass.
struct ObservedState {
  bool engine_reachable = false;
  Role role = Role::kUnspecified;   // actual role
  std::string upstream;             // "host:port" a slave streams from
  bool streaming = false;
  bool writable = false;
  int64_t lag_bytes = -1;           // -1: unknown / not applicable
  double lag_seconds = -1;
  uint64_t data_bytes = 0;
  Progress bootstrap;
  uint64_t converged_generation = 0;
  uint64_t seen_generation = 0;     // newest desired generation the agent holds
  std::string position;             // engine replication position (LSN, offset, GTID)
  std::string current_step;         // empty when idle
  std::string last_error;           // empty when the last pass succeeded
  bool error_blocks = false;        // the error needs a change (not a retry)
  std::string out_of_sync;          // slave: why it cannot follow by itself ("" in sync)

  bool operator==(const ObservedState&) const = default;
};

// One step outcome, as the agent reports it for `tandemctl events`.
struct StepEvent {
  uint64_t generation = 0;
  std::string step;
  std::string reason;
  bool ok = true;
  std::string error;
  double seconds = 0;
};

}  // namespace tandem

#endif  // TANDEM_COMMON_TYPES_H_
