// Output formatting of tandemctl: tables, the status view, env lines, event
// lines and their JSON forms.
//
// Pure functions of the controller's messages: no I/O, no clock (times come
// in the messages). Every text output ends with a newline.
//
// JSON shapes (keys are stable; absent values are null, never omitted):
//   node    {"id","stack","engine","address_internal","address_external","port",
//            "converged","upstream_id","agent_connected","seconds_since_report"
//            (null: never reported),"queued",
//            "desired":{"generation","role","upstream" ({"id","stack","host","port"} or
//                       null),"slaves":[peer...],"env":{...},"resync_token_present",
//                       "upstream_data_bytes"},
//            "observed":{"engine_reachable","role","upstream","streaming","writable",
//                        "lag_bytes" (null: unknown),"lag_seconds" (null: unknown),
//                        "data_bytes","bootstrap":{"done_bytes","total_bytes"},
//                        "converged_generation","seen_generation","current_step",
//                        "last_error","error_blocks"}}
//   nodes / wait: [node...]   status: node   env: {"KEY":"value",...}
//   mutating verbs: {"changes":[line...]}
//   events: one object per line {"seq","time" (RFC 3339 UTC),"unix_time","node","kind",
//           "ok","generation","seconds","message"}
// Roles are "master", "slave", "standalone" or "" (none); engines are
// "postgresql", "mysql", "redis", "mongodb" or "".
#ifndef TANDEM_TANDEMCTL_FORMAT_H_
#define TANDEM_TANDEMCTL_FORMAT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem.pb.h"

namespace tandem::cli {

// Left-aligned columns separated by two spaces, a header row first, no
// trailing spaces. Rows shorter than the header are padded with "".
std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// "0 B", "512 B", "1.5 KiB", "3.2 GiB" (binary units, one decimal).
std::string HumanBytes(uint64_t bytes);
// Compact forms for table cells: "512B", "1.5K", "12M"; "0s", "0.4s", "42s", "3m12s", "2h05m".
std::string CompactBytes(uint64_t bytes);
std::string CompactSeconds(double seconds);
// The LAG cell: "bytes/seconds" ("1.5K/0.4s"), "?" for an unknown part, "-"
// when the node is not observed as a slave.
std::string LagCell(const v1::ObservedState& observed);

// `text` on one line (newlines and tabs become spaces, runs collapsed),
// cut to `max_chars` bytes with "..." when longer (0: no limit).
std::string OneLine(std::string_view text, size_t max_chars = 0);

// UTC RFC 3339 with seconds: "2024-05-01T12:00:03Z".
std::string Rfc3339Utc(double unix_time);

// What the ERROR column of `nodes` shows for a node: why its agent holds
// its role against the controller, its group's switchover in progress or
// the reason it was aborted, a second agent refused as the node, else the
// agent's last error.
std::string NodeNote(const v1::NodeStatus& node);

// `tandemctl nodes`: columns NODE STACK ENGINE DESIRED OBSERVED UPSTREAM LAG
// CONVERGED GEN ERROR, one row per node in the order given.
std::string NodesTable(const v1::ListNodesResponse& nodes);
std::string NodesJson(const v1::ListNodesResponse& nodes);

// `tandemctl status NODE`: "key: value" lines, aligned.
std::string StatusText(const v1::NodeStatus& node);
std::string StatusJson(const v1::NodeStatus& node);

// `tandemctl env NODE`: the desired env as KEY=value lines sorted by key,
// values single-quoted for sh when they hold anything but
// [A-Za-z0-9_.,:/@%+=-]. InvalidArgument (naming the node and the variable)
// when a name is not a valid sh variable name: such a file cannot be sourced.
absl::StatusOr<std::string> EnvText(const v1::NodeStatus& node);
std::string EnvJson(const v1::NodeStatus& node);

// Mutating verbs: the change lines, or "nothing to change".
std::string ChangesText(const v1::ChangeResponse& response);
std::string ChangesJson(const v1::ChangeResponse& response);

// `tandemctl events`: a header, then one line per event with the same
// column widths, so that followed events line up with the header.
std::string EventsHeader();
std::string EventLine(const v1::Event& event);
std::string EventJsonLine(const v1::Event& event);

}  // namespace tandem::cli

#endif  // TANDEM_TANDEMCTL_FORMAT_H_
