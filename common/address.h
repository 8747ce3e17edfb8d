// Host addresses as Tandem accepts them: what a node registers, what a
// certificate names, what ends up in access rules (pg_hba.conf, MariaDB
// account hosts), env files and comma-separated lists. Pure functions.
#ifndef TANDEM_COMMON_ADDRESS_H_
#define TANDEM_COMMON_ADDRESS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace tandem {

// OK for an IPv4 literal (dotted quad), an IPv6 literal (no brackets, no
// zone id) or a DNS host name (labels of letters, digits and '-', at most
// 253 characters). Everything else is InvalidArgument naming `what` and
// why, in particular what an access rule would read as more than one
// host: keywords (all, samehost, samenet, samerole, sameuser, replication),
// wildcards ('%', '_', '*'), CIDR ranges ("10.0.0.0/8") and masks.
absl::Status CheckHostAddress(std::string_view what, std::string_view address);

bool IsIpLiteral(std::string_view address);

// Whether two addresses name the same host as written: IP literals compare
// by value ("::1" == "0:0:0:0:0:0:0:1"), host names case-insensitively.
bool SameHostAddress(std::string_view a, std::string_view b);

// Whether `host` is a loopback address: 127.0.0.0/8, ::1 or "localhost".
bool IsLoopbackHost(std::string_view host);

// The host part of "HOST:PORT" / "[V6]:PORT" (brackets removed); the whole
// text when it has no port.
std::string HostOfHostPort(std::string_view host_port);

// Insecure mode (no TLS) is an explicit opt-out allowed only when every
// address the process listens on is loopback. `listens`: (field, HOST:PORT)
// pairs; empty addresses (not listening) are skipped. InvalidArgument
// naming the first field that is not loopback.
absl::Status CheckInsecureListen(
    const std::vector<std::pair<std::string, std::string>>& listens);

}  // namespace tandem

#endif  // TANDEM_COMMON_ADDRESS_H_
