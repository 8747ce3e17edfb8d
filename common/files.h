// Small filesystem helpers with absl::Status results.
#ifndef TANDEM_COMMON_FILES_H_
#define TANDEM_COMMON_FILES_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

// Reads a whole file. NotFound when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `content` to `path` atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory. A reader sees the old or
// the new content, never a mix, even after a crash. `mode` applies to the new
// file. Idempotent.
absl::Status WriteFileAtomic(const std::string& path, const std::string& content,
                             unsigned mode = 0644);

// Reads a secret (password, token) from `path`, without its trailing newline.
// Refuses (PermissionDenied) a file that group or others can read or write,
// naming the file and its mode; the error never contains the content.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path);

// Creates `path` and its parents (mode 0755 for new ones). OK if it exists.
absl::Status MakeDirs(const std::string& path);

// Free bytes available to unprivileged users on the filesystem of `path`.
absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& path);

// Total size of the regular files under `path` (0 when it does not exist).
uint64_t DirectorySize(const std::string& path);

bool PathExists(const std::string& path);

// Size of a regular file (0 when it cannot be read).
uint64_t FileSize(const std::string& path);

// The end of a file from `from_offset` on, at most its last `max_bytes`;
// "" when unreadable. For the tail of a tool's log in an error message.
std::string ReadTail(const std::string& path, size_t max_bytes, uint64_t from_offset = 0);

// syncfs(2) of the filesystem holding `path`: one call that makes a whole
// copied tree durable (instead of an fsync per file).
absl::Status SyncFilesystem(const std::string& path);

// The current UTC time as 20261126T174702Z (for names of kept copies).
std::string UtcStamp();

// Replaces directory `dir` by `new_dir` without destroying anything: `dir`
// (when it exists) is renamed to `<dir><aside_infix><UtcStamp()>[-N]`, then
// `new_dir` is renamed to `dir` and the parent directory is synced. Both
// must be on one filesystem. Returns the path `dir` was moved to ("" when
// there was none). A crash between the renames leaves `dir` missing and
// `new_dir` in place: calling again finishes the swap.
absl::StatusOr<std::string> SwapInDirectory(const std::string& new_dir, const std::string& dir,
                                            const std::string& aside_infix);

// Looks up a user name: uid and gid. NotFound when there is no such user.
struct UserIds {
  unsigned uid = 0;
  unsigned gid = 0;
};
absl::StatusOr<UserIds> LookupUser(const std::string& name);

// chown -R path to `ids`. Idempotent.
absl::Status ChownTree(const std::string& path, UserIds ids);

// Runs `fn` with the calling thread's effective user and group set to `ids`,
// then puts them back; the process's other threads keep theirs (the kernel
// keeps credentials per thread; glibc's seteuid would change them all). For
// logins a server checks by the peer's credentials on a Unix socket
// (PostgreSQL peer, MariaDB unix_socket), made by an agent that runs as root
// on behalf of the engine's OS user. `fn` must not start threads or
// processes. Runs `fn` unchanged when the process is not root or `ids` is
// root. PermissionDenied (and `fn` not run) when the switch is refused.
absl::Status WithThreadIdentity(const UserIds& ids, const std::function<void()>& fn);

}  // namespace tandem

#endif  // TANDEM_COMMON_FILES_H_
