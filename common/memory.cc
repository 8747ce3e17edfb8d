#include "common/memory.h"

#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace tandem {
namespace {

bool HasTextRelocations(const dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_DYNAMIC) continue;
    const auto* dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + ph.p_vaddr);
    for (; dyn->d_tag != DT_NULL; ++dyn) {
      if (dyn->d_tag == DT_TEXTREL) return true;
      if (dyn->d_tag == DT_FLAGS && (dyn->d_un.d_val & DF_TEXTREL) != 0) return true;
    }
  }
  return false;
}

int ReleaseObject(dl_phdr_info* info, size_t, void* data) {
  auto* released = static_cast<uint64_t*>(data);
  const char* name = info->dlpi_name == nullptr ? "" : info->dlpi_name;
  // The kernel's vDSO is not a file mapping.
  if (std::strstr(name, "linux-vdso") != nullptr || std::strstr(name, "linux-gate") != nullptr) {
    return 0;
  }
  if (HasTextRelocations(info)) return 0;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) != 0 || ph.p_memsz == 0) continue;
    // Whole pages inside the segment only: a page it shares with a
    // writable neighbour stays.
    const uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
    const uintptr_t start = (begin + page - 1) & ~(page - 1);
    const uintptr_t end = (begin + ph.p_memsz) & ~(page - 1);
    if (end <= start) continue;
    if (::madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED) == 0) {
      *released += end - start;
    }
  }
  return 0;
}

}  // namespace

uint64_t ReleaseReadOnlySegments() {
  uint64_t released = 0;
  dl_iterate_phdr(ReleaseObject, &released);
  return released;
}

uint64_t ResidentBytes() {
  std::FILE* status = std::fopen("/proc/self/status", "re");
  if (status == nullptr) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, status) != nullptr) {
    if (std::sscanf(line, "VmRSS: %llu kB", &kb) == 1) break;
  }
  std::fclose(status);
  return kb * 1024;
}

}  // namespace tandem
