#include "common/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tandem {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr size_t kMaxHostName = 253;
constexpr size_t kMaxLabel = 63;

// Words that pg_hba.conf reads as something other than one host, or that
// name a group of hosts elsewhere.
constexpr std::array<std::string_view, 6> kKeywords = {"all",      "samehost", "samenet",
                                                       "samerole", "sameuser", "replication"};

bool ParseIp(std::string_view text, unsigned char out[16], int* family) {
  if (text.empty() || text.size() > 45) return false;
  char buf[64];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (inet_pton(AF_INET, buf, out) == 1) {
    *family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, buf, out) == 1) {
    *family = AF_INET6;
    return true;
  }
  return false;
}

bool IsLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

}  // namespace

bool IsIpLiteral(std::string_view address) {
  unsigned char bytes[16];
  int family = 0;
  return ParseIp(address, bytes, &family);
}

absl::Status CheckHostAddress(std::string_view what, std::string_view address) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("the ", AV(what), " \"", AV(address),
                                                   "\" is not an address: ", AV(why)));
  };
  if (address.empty()) return absl::InvalidArgumentError(absl::StrCat("the ", AV(what), " is empty"));
  if (IsIpLiteral(address)) return absl::OkStatus();
  const std::string lower = absl::AsciiStrToLower(AV(address));
  for (std::string_view keyword : kKeywords) {
    if (lower == keyword) {
      return bad("it is a keyword of access rules; use an IP address or a host name");
    }
  }
  for (char c : address) {
    if (c == '%' || c == '_' || c == '*' || c == '?') {
      return bad(absl::StrCat("'", std::string(1, c),
                              "' is a wildcard in access rules; use an IP address or a host name"));
    }
    if (c == '/') return bad("an address range; use a single IP address or host name");
    if (c == ':') return bad("not a valid IPv6 address (no brackets, port or zone id)");
  }
  if (address.size() > kMaxHostName) return bad("longer than 253 characters");
  bool all_digits_and_dots = true;
  size_t start = 0;
  while (start <= address.size()) {
    size_t dot = address.find('.', start);
    if (dot == std::string_view::npos) dot = address.size();
    std::string_view label = address.substr(start, dot - start);
    if (label.empty()) return bad("an empty label (two dots, or a dot at either end)");
    if (label.size() > kMaxLabel) return bad("a label longer than 63 characters");
    if (label.front() == '-' || label.back() == '-') return bad("a label starts or ends with '-'");
    for (char c : label) {
      if (!IsLabelChar(c)) {
        const unsigned char u = static_cast<unsigned char>(c);
        return bad(u < 0x20 || u >= 0x7f
                       ? absl::StrCat("a control or non-ASCII byte 0x", absl::Hex(u))
                       : absl::StrCat("'", std::string(1, c),
                                      "' is not allowed in a host name (letters, digits, '-', '.')"));
      }
      if (c < '0' || c > '9') all_digits_and_dots = false;
    }
    start = dot + 1;
  }
  if (all_digits_and_dots) return bad("not a valid IPv4 address");
  return absl::OkStatus();
}

bool SameHostAddress(std::string_view a, std::string_view b) {
  unsigned char ba[16] = {}, bb[16] = {};
  int fa = 0, fb = 0;
  if (ParseIp(a, ba, &fa) && ParseIp(b, bb, &fb)) {
    return fa == fb && std::memcmp(ba, bb, fa == AF_INET ? 4 : 16) == 0;
  }
  return absl::AsciiStrToLower(AV(a)) == absl::AsciiStrToLower(AV(b));
}

bool IsLoopbackHost(std::string_view host) {
  if (absl::AsciiStrToLower(AV(host)) == "localhost") return true;
  unsigned char bytes[16] = {};
  int family = 0;
  if (!ParseIp(host, bytes, &family)) return false;
  if (family == AF_INET) return bytes[0] == 127;
  static const unsigned char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(bytes, kV6Loopback, 16) == 0;
}

std::string HostOfHostPort(std::string_view host_port) {
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close != std::string_view::npos) return std::string(host_port.substr(1, close - 1));
  }
  const size_t colon = host_port.rfind(':');
  // More than one colon and no brackets: a bare IPv6 address.
  if (colon == std::string_view::npos || host_port.find(':') != colon) {
    return std::string(host_port);
  }
  return std::string(host_port.substr(0, colon));
}

absl::Status CheckInsecureListen(
    const std::vector<std::pair<std::string, std::string>>& listens) {
  for (const auto& [field, address] : listens) {
    if (address.empty() || IsLoopbackHost(HostOfHostPort(address))) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        "insecure is allowed only when every address this process listens on is loopback, and ",
        field, " is ", address,
        ": remove insecure and give it certificates (tandemctl cert create-ca, then a "
        "certificate for each process), or listen on 127.0.0.1"));
  }
  return absl::OkStatus();
}

}  // namespace tandem
