// netns.cc — see netns.h.
#include "base/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <utility>

namespace ctmon {
namespace {

const char* file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFIFO:
      return "a FIFO";
    case S_IFSOCK:
      return "a socket";
    case S_IFDIR:
      return "a directory";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    default:
      return nullptr;  // a regular file: maybe a namespace
  }
}

const char* namespace_kind(int type) {
  switch (type) {
    case CLONE_NEWNS:
      return "a mount namespace";
    case CLONE_NEWUTS:
      return "a UTS namespace";
    case CLONE_NEWIPC:
      return "an IPC namespace";
    case CLONE_NEWUSER:
      return "a user namespace";
    case CLONE_NEWPID:
      return "a PID namespace";
    case CLONE_NEWCGROUP:
      return "a cgroup namespace";
#ifdef CLONE_NEWTIME
    case CLONE_NEWTIME:
      return "a time namespace";
#endif
    default:
      return "another kind of namespace";
  }
}

}  // namespace

Status open_network_namespace(const char* path, Fd& out, const char** what) {
  *what = nullptr;
  struct stat st;
  if (::stat(path, &st) != 0) return Status::from_errno("open");
  if ((*what = file_kind(st.st_mode)) != nullptr) return Status{EINVAL, "open"};
  Fd fd(::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) return Status::from_errno("open");
  // The file may have been replaced since the stat(): look at what was opened.
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno("fstat");
  if ((*what = file_kind(st.st_mode)) != nullptr) return Status{EINVAL, "open"};
  struct statfs fs;
  if (::fstatfs(fd.get(), &fs) != 0) return Status::from_errno("fstatfs");
  if (fs.f_type != NSFS_MAGIC) {
    *what = "a regular file";
    return Status{EINVAL, "fstatfs"};
  }
  const int type = ::ioctl(fd.get(), NS_GET_NSTYPE);
  if (type >= 0 && type != CLONE_NEWNET) {
    *what = namespace_kind(type);
    return Status{EINVAL, "ioctl"};
  }
  out = std::move(fd);
  return Status{};
}

}  // namespace ctmon
