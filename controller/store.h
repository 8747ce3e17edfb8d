// Persistence of the controller's state (state.h).
//
// The state is a small JSON document. FileStore keeps it in
// <data_dir>/state.json, replaced atomically on every save (temporary file,
// fsync, rename, fsync of the directory), so a controller killed at any
// point restarts with the last saved state. A file that cannot be read or
// parsed is an error naming the file, never a silent reset.
#ifndef TANDEM_CONTROLLER_STORE_H_
#define TANDEM_CONTROLLER_STORE_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/state.h"

namespace tandem {

// The JSON document of a state. Deterministic.
std::string SerializeState(const ControllerState& state);

// Parses and validates a document written by SerializeState. DataLoss when
// it is not valid JSON, misses a field, has an unknown format version or is
// inconsistent (a slave whose master is unknown or not a master, a node
// without a generation, events out of order, ...); the message says what.
absl::StatusOr<ControllerState> ParseState(const std::string& text);

// Where the registry keeps its state. Implementations need not be
// thread-safe: the registry calls them under its lock.
class Store {
 public:
  virtual ~Store() = default;

  // The saved state; std::nullopt when nothing was ever saved. DataLoss (or
  // the I/O error) when the saved state cannot be read; the message names
  // where it lives.
  virtual absl::StatusOr<std::optional<ControllerState>> Load() = 0;

  // Persists `state` durably before returning OK. On error the previously
  // saved state is still the one Load() returns.
  virtual absl::Status Save(const ControllerState& state) = 0;

  // Where the state lives, for messages ("/var/lib/tandem-controller/state.json").
  virtual std::string Location() const = 0;
};

class FileStore : public Store {
 public:
  static constexpr char kStateFile[] = "state.json";
  static constexpr char kLockFile[] = "lock";

  // Creates `data_dir` (and its parents) when missing and takes an exclusive
  // lock on <data_dir>/lock for the life of the object, so two controllers
  // never share a data dir: FailedPrecondition when another process (or
  // another FileStore in this one) holds it. The lock goes away with the
  // process, also on kill -9.
  static absl::StatusOr<std::unique_ptr<FileStore>> Open(const std::string& data_dir);

  ~FileStore() override;
  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  absl::StatusOr<std::optional<ControllerState>> Load() override;
  absl::Status Save(const ControllerState& state) override;
  std::string Location() const override { return path_; }

 private:
  FileStore(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}

  std::string path_;
  int lock_fd_;
};

// In memory, for tests: keeps the serialized document (so round trips go
// through the same code as the file), and can be told to fail saves. Copies
// share the same content, which lets a test "restart" a registry on it.
class MemoryStore : public Store {
 public:
  MemoryStore();

  absl::StatusOr<std::optional<ControllerState>> Load() override;
  absl::Status Save(const ControllerState& state) override;
  std::string Location() const override { return "memory"; }

  // The next `count` saves fail with `status` and keep the old content.
  void FailSaves(int count, absl::Status status);
  // Replaces the content with raw text (e.g. a corrupt document).
  void SetContent(std::string text);
  int save_count() const;

 private:
  struct Content {
    std::optional<std::string> text;
    int save_count = 0;
    int fail_count = 0;
    absl::Status fail_status;
  };
  std::shared_ptr<Content> content_;
};

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_STORE_H_
