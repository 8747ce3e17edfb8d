// The Engine interface: the only way the agent touches a database server.
//
// One implementation per database kind (engines/<kind>/), each the only place
// its client library is included; an in-memory fake for the planner and
// executor tests (tests/fake_engine.h).
//
// Every mutating method is idempotent: it returns OK when its goal already
// holds, and can be called again after a crash at any point.
//
// Status codes, as the reconcile loop reads them:
//   Unavailable         transient (server starting, master not ready yet,
//                       network): retried with backoff.
//   FailedPrecondition  needs a change of desired or observed state before a
//                       retry can help (e.g. not enough disk, settings that
//                       need a restart the config forbids); held and reported.
//   InvalidArgument     bad configuration.
//   Internal            anything else.
//
// Thread-safety: an Engine is used by one thread at a time.
#ifndef TANDEM_ENGINES_ENGINE_H_
#define TANDEM_ENGINES_ENGINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/types.h"

namespace tandem {

// What the engine says about itself. Observe() fills what it can; a server
// that is not running still reports `has_data` and whether it is configured
// as a slave (from its files).
struct EngineFacts {
  bool running = false;        // the server answers
  bool has_data = false;       // the data directory holds a database
  bool is_slave = false;       // in recovery / replicating (or configured so)
  bool writable = false;       // accepts writes (not a slave, not fenced)
  std::string upstream;        // "host:port" replication is configured to use
  bool streaming = false;      // a slave whose link to the upstream is up
  int64_t lag_bytes = -1;      // slave: received but not yet applied; -1 unknown
  double lag_seconds = -1;     // slave: age of the last applied change; -1 unknown
  uint64_t data_bytes = 0;     // size of the data set
  std::string data_id;         // identity of the data set (PostgreSQL system
                               // identifier); empty where the engine has none
  std::vector<std::string> served_slaves;  // slave ids this server is set up to serve
  std::string position;        // engine-specific replication position (LSN, GTID, offset)
  std::string link_error;      // slave: why replication stopped, in the engine's
                               // words (MySQL Last_IO_Error / Last_SQL_Error); "" if none
  // Slave: why this copy can no longer follow its upstream by itself and
  // needs a rejoin or a rebuild (PostgreSQL timeline fork, WAL removed on
  // the master, another system identifier; MySQL replication error or
  // errant GTIDs; Redis link down for longer than the configured bound).
  // "" when in sync or when the engine cannot tell. One line, no secret.
  std::string out_of_sync;

  bool operator==(const EngineFacts&) const = default;
};

// Bytes done / total, called from inside long operations.
using ProgressFn = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

// Receives a backup stream piece by piece: `chunk` is valid only during the
// call; `total_estimate` is the expected size of the whole stream (0:
// unknown). A non-OK return aborts the stream (the producer stops and
// returns that status).
using BackupSink = std::function<absl::Status(std::string_view chunk, uint64_t total_estimate)>;

// Where a slave's engine gets its master's backup from (agent to agent; the
// agent implements it with gRPC, tests with whatever they like). Given to an
// engine at construction; engines that copy data themselves ignore it.
class BackupSource {
 public:
  virtual ~BackupSource() = default;

  // Streams the backup that `upstream`'s agent makes for slave `self_id`
  // into `sink`, in order, and returns once the stream ended. Returns the
  // sink's error when the sink aborted it; Unavailable when the upstream's
  // agent cannot be reached or the stream broke; PermissionDenied /
  // Unauthenticated when it refuses this node; FailedPrecondition when the
  // upstream cannot make a backup.
  virtual absl::Status Fetch(const Peer& upstream, const std::string& self_id,
                             const BackupSink& sink) = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual EngineType type() const = 0;

  // Reads the engine's state; changes nothing. Returns OK with
  // running=false when the server is down; an error only when the facts
  // cannot be read at all (e.g. a running server refuses the agent's login).
  virtual absl::StatusOr<EngineFacts> Observe() = 0;

  // Starts the server and waits until it answers. OK if already running.
  virtual absl::Status Start() = 0;

  // Stops the server (fast shutdown). OK if already stopped.
  virtual absl::Status Stop() = 0;

  // Makes a running server refuse writes from applications and ends the
  // sessions that could still write. OK if already read-only or a slave.
  virtual absl::Status Fence() = 0;

  // Master side: sets the server up to serve exactly `slaves` (accounts,
  // access rules, slots) and removes what it kept for slaves not listed.
  // An empty list removes everything. Never restarts the server unless the
  // engine's config allows it; returns FailedPrecondition naming the setting
  // otherwise.
  virtual absl::Status ServeSlaves(const std::vector<Peer>& slaves) = 0;

  // Slave side: replaces the local data with a fresh copy of `upstream`'s.
  // The copy is made beside the data directory first; the old data directory
  // is then moved aside (never deleted) and the copy swapped in. Leaves the
  // server stopped or started (Follow/Start fix that) and returns the
  // identity of the new data set (EngineFacts::data_id).
  // `self` is this node (the upstream knows it by its id).
  virtual absl::StatusOr<std::string> Bootstrap(const Peer& self, const Peer& upstream,
                                                const ProgressFn& progress) = 0;

  // Slave side: configures replication from `upstream` (restarting the
  // server only where the engine needs it). OK if already configured.
  virtual absl::Status Follow(const Peer& self, const Peer& upstream) = 0;

  // Ends replication (if any) and makes the server writable.
  // OK if it already is. Callers fence every other member of the group
  // first: this is the step that can create a second writable node.
  virtual absl::Status MakeWritable() = 0;

  // Directory whose filesystem receives a bootstrap copy (for the free-disk
  // check the executor does before Bootstrap).
  virtual std::string DataParentDir() const = 0;

  // Master side of a streamed bootstrap: makes a consistent backup of the
  // running server for slave `slave_id` and hands it to `write` in order, in
  // pieces of bounded size (the memory used does not grow with the data:
  // while `write` blocks, so does the backup tool). Returns write's error
  // when it aborted the stream (the tool is stopped and its leftovers
  // removed). Engines whose slaves copy data themselves keep this default.
  virtual absl::Status StreamBackup(const std::string& slave_id, const BackupSink& write) {
    (void)slave_id;
    (void)write;
    return absl::UnimplementedError("this engine does not stream backups to its slaves");
  }

  // Slave side, the cheap path before a full copy (a follower after a
  // switchover, an automatic resync): makes the existing local data follow
  // `upstream` without copying the whole data set (PostgreSQL pg_rewind;
  // MySQL re-point by GTID; ...) and returns the identity of the data set
  // (EngineFacts::data_id) once the server streams from `upstream`.
  // Never touches a writable server (the caller fences first). Returns
  // FailedPrecondition (saying why) when the data cannot rejoin (diverged
  // beyond what the engine can repair, WAL gone, errant transactions, ...)
  // and Unimplemented where the engine has no cheap path: the caller then
  // makes a full copy with Bootstrap. Idempotent like every step.
  virtual absl::StatusOr<std::string> Rejoin(const Peer& self, const Peer& upstream) {
    (void)self;
    (void)upstream;
    return absl::UnimplementedError("this engine has no cheap rejoin path; a full copy is made");
  }

  // Slave side of a switchover: whether this server has applied everything
  // up to `position` (an EngineFacts::position its old master reported
  // after it was fenced). Changes nothing. InvalidArgument for a position
  // the engine cannot read; Unimplemented where promotion is not supported.
  virtual absl::StatusOr<bool> HasReplayed(const std::string& position) {
    (void)position;
    return absl::UnimplementedError("promotion is not supported for this engine yet");
  }
};

}  // namespace tandem

#endif  // TANDEM_ENGINES_ENGINE_H_
