#include "common/files.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem {
namespace fs = std::filesystem;

namespace {

absl::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    case ENOSPC: return absl::ResourceExhaustedError(msg);
    default: return absl::InternalError(msg);
  }
}

absl::Status WriteAll(int fd, const std::string& content, const std::string& path) {
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "writing " + path);
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "opening directory " + dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "fsync of directory " + dir);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!PathExists(path)) return absl::NotFoundError(absl::StrCat("no such file: ", path));
    return absl::PermissionDeniedError(absl::StrCat("cannot read ", path));
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& content,
                             unsigned mode) {
  fs::path target(path);
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  std::string tmp = absl::StrCat(dir, "/.", target.filename().string(), ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(errno, "creating " + tmp);
  absl::Status st = WriteAll(fd, content, tmp);
  if (st.ok() && ::fchmod(fd, mode) != 0) st = ErrnoStatus(errno, "chmod " + tmp);
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoStatus(errno, "fsync " + tmp);
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = ErrnoStatus(errno, "renaming " + tmp + " to " + path);
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(dir);
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0) return ErrnoStatus(errno, "secret file " + path);
  if ((sb.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "secret file %s has mode %04o: group and others must have no access (chmod 600)", path,
        sb.st_mode & 07777));
  }
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) return content.status();
  std::string secret = *std::move(content);
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  return secret;
}

absl::Status MakeDirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating directory ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& path) {
  struct statvfs sv;
  if (::statvfs(path.c_str(), &sv) != 0) return ErrnoStatus(errno, "statvfs " + path);
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

uint64_t DirectorySize(const std::string& path) {
  std::error_code ec;
  uint64_t total = 0;
  fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      uint64_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

uint64_t FileSize(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0 ? static_cast<uint64_t>(sb.st_size) : 0;
}

std::string ReadTail(const std::string& path, size_t max_bytes, uint64_t from_offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size <= 0) return "";
  const std::streamoff start =
      std::max<std::streamoff>(static_cast<std::streamoff>(from_offset),
                               size - static_cast<std::streamoff>(max_bytes));
  if (start >= size) return "";
  in.seekg(start);
  std::string out(static_cast<size_t>(size - start), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

absl::Status SyncFilesystem(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "opening " + path);
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "syncfs of " + path);
  return absl::OkStatus();
}

std::string UtcStamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

absl::StatusOr<std::string> SwapInDirectory(const std::string& new_dir, const std::string& dir,
                                            const std::string& aside_infix) {
  std::string aside;
  if (PathExists(dir)) {
    aside = absl::StrCat(dir, aside_infix, UtcStamp());
    for (int n = 1; PathExists(aside); ++n) aside = absl::StrCat(dir, aside_infix, UtcStamp(), "-", n);
    if (::rename(dir.c_str(), aside.c_str()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("moving ", dir, " aside to ", aside));
    }
  }
  if (::rename(new_dir.c_str(), dir.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("renaming ", new_dir, " to ", dir));
  }
  fs::path parent = fs::path(dir).parent_path();
  if (absl::Status st = FsyncDir(parent.empty() ? "." : parent.string()); !st.ok()) return st;
  return aside;
}

bool PathExists(const std::string& path) {
  struct stat sb;
  return ::lstat(path.c_str(), &sb) == 0;
}

absl::StatusOr<UserIds> LookupUser(const std::string& name) {
  struct passwd pw;
  struct passwd* result = nullptr;
  char buf[4096];
  if (::getpwnam_r(name.c_str(), &pw, buf, sizeof buf, &result) != 0 || result == nullptr) {
    return absl::NotFoundError(absl::StrCat("no such OS user: ", name));
  }
  return UserIds{pw.pw_uid, pw.pw_gid};
}

absl::Status ChownTree(const std::string& path, UserIds ids) {
  if (::lchown(path.c_str(), ids.uid, ids.gid) != 0) return ErrnoStatus(errno, "chown " + path);
  std::error_code ec;
  fs::recursive_directory_iterator it(path, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (::lchown(it->path().c_str(), ids.uid, ids.gid) != 0) {
      return ErrnoStatus(errno, "chown " + it->path().string());
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("walking ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status WithThreadIdentity(const UserIds& ids, const std::function<void()>& fn) {
  if (::geteuid() != 0 || ids.uid == 0) {
    fn();
    return absl::OkStatus();
  }
  // Raw system calls: they change this thread only. The real and saved ids
  // stay root, which is what allows the way back.
  const long unchanged = -1;
  if (::syscall(SYS_setresgid, unchanged, static_cast<long>(ids.gid), unchanged) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setting this thread's group to ", ids.gid));
  }
  if (::syscall(SYS_setresuid, unchanged, static_cast<long>(ids.uid), unchanged) != 0) {
    const int saved = errno;
    (void)::syscall(SYS_setresgid, unchanged, 0L, unchanged);
    return ErrnoStatus(saved, absl::StrCat("setting this thread's user to ", ids.uid));
  }
  fn();
  // Back to root; if this failed the thread could no longer act as root,
  // which every later step needs: better stop here than run on wrongly.
  if (::syscall(SYS_setresuid, unchanged, 0L, unchanged) != 0 ||
      ::syscall(SYS_setresgid, unchanged, 0L, unchanged) != 0) {
    std::abort();
  }
  return absl::OkStatus();
}

}  // namespace tandem
