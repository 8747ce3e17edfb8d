// The resident memory of a long-lived, mostly idle process.
#ifndef TANDEM_COMMON_MEMORY_H_
#define TANDEM_COMMON_MEMORY_H_

#include <cstdint>

namespace tandem {

// Unmaps from this process the pages of the read-only segments (code and
// constants) of its binary and its loaded shared libraries, so that its
// resident set holds what it keeps using rather than everything start-up or
// a finished step touched. The pages stay in the page cache: the next access
// maps them again, without I/O. Segments that can be written (data,
// relocated tables) are not touched, nor a page shared with one, nor a
// library with text relocations. Runs under the dynamic loader's lock, so no
// library is loaded or unloaded meanwhile; safe to call from any thread.
// Returns how many bytes of address range it released.
uint64_t ReleaseReadOnlySegments();

// Resident bytes of this process (VmRSS), 0 when unknown.
uint64_t ResidentBytes();

}  // namespace tandem

#endif  // TANDEM_COMMON_MEMORY_H_
