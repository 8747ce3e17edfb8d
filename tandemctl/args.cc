#include "tandemctl/args.h"

#include <cmath>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem::cli {
namespace {

// The options tandemctl knows, whatever the verb. Which verb accepts which
// is decided after the verb is known, so that an option out of place gets a
// precise message instead of "unknown option".
struct OptionSpec {
  std::string_view long_name;  // "--master"
  char short_name;             // 'o', or 0
  bool takes_value;
  bool repeatable = false;     // may be given several times (--address)
};

constexpr OptionSpec kOptions[] = {
    {"--controller", 0, true}, {"--output", 'o', true},     {"--token-file", 0, true},
    {"--help", 'h', false},    {"--master", 0, true},       {"--slave", 0, true},
    {"--force", 0, false},     {"--timeout", 0, true},      {"--follow", 'f', false},
    {"--node", 0, true},       {"--watch", 'w', false},     {"--interval", 0, true},
    {"--auto-resync", 0, true}, {"--certs-dir", 0, true},   {"--user", 0, true},
    {"--insecure", 0, false},  {"--address", 0, true, true}, {"--role", 0, true},
    {"--days", 0, true},       {"--ca-key", 0, true},       {"--name", 0, true},
};

const OptionSpec* FindLong(std::string_view name) {
  for (const OptionSpec& spec : kOptions) {
    if (spec.long_name == name) return &spec;
  }
  return nullptr;
}

const OptionSpec* FindShort(char c) {
  for (const OptionSpec& spec : kOptions) {
    if (spec.short_name != 0 && spec.short_name == c) return &spec;
  }
  return nullptr;
}

struct OptionValue {
  std::string spelling;  // as the user wrote it, for messages: "-o", "--master"
  std::string value;
  std::vector<std::string> all;  // every value of a repeatable option, in order
};

struct Tokens {
  std::map<std::string, OptionValue, std::less<>> options;  // by long name
  std::vector<std::string> positionals;
};

absl::Status Usage(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

absl::StatusOr<Tokens> Tokenize(const std::vector<std::string>& args) {
  Tokens tokens;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      tokens.positionals.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    const OptionSpec* spec = nullptr;
    std::string spelling;
    std::optional<std::string> inline_value;
    if (arg[1] == '-') {
      size_t eq = arg.find('=');
      spelling = arg.substr(0, eq);
      if (eq != std::string::npos) inline_value = arg.substr(eq + 1);
      spec = FindLong(spelling);
    } else {
      spelling = arg.substr(0, 2);
      spec = FindShort(arg[1]);
      if (arg.size() > 2) {
        // -ojson and -o=json; a flag cannot carry anything.
        if (spec == nullptr || !spec->takes_value) {
          return Usage(absl::StrCat("unknown option '", arg, "'"));
        }
        inline_value = arg.substr(arg[2] == '=' ? 3 : 2);
      }
    }
    if (spec == nullptr) return Usage(absl::StrCat("unknown option '", spelling, "'"));
    OptionValue value{spelling, ""};
    if (spec->takes_value) {
      if (inline_value.has_value()) {
        value.value = *inline_value;
      } else if (i + 1 < args.size()) {
        value.value = args[++i];
      } else {
        return Usage(absl::StrCat("option '", spelling, "' needs a value"));
      }
    } else if (inline_value.has_value()) {
      return Usage(absl::StrCat("option '", spelling, "' takes no value"));
    }
    if (auto it = tokens.options.find(spec->long_name); it != tokens.options.end()) {
      if (!spec->repeatable) {
        return Usage(absl::StrCat("option '", spelling, "' given more than once"));
      }
      it->second.all.push_back(value.value);
      continue;
    }
    value.all.push_back(value.value);
    tokens.options.emplace(spec->long_name, std::move(value));
  }
  return tokens;
}

struct VerbSpec {
  Verb verb;
  absl::string_view name;  // as printed in messages: "replication enable"
  std::set<std::string, std::less<>> options;
};

// Options every verb accepts.
const std::set<std::string, std::less<>> kGlobalOptions = {
    "--controller", "--output", "--help", "--certs-dir", "--user", "--insecure"};

const VerbSpec kVerbs[] = {
    {Verb::kNodes, "nodes", {}},
    {Verb::kStatus, "status", {"--watch", "--interval"}},
    {Verb::kReplicationEnable, "replication enable", {"--master", "--slave", "--auto-resync"}},
    {Verb::kReplicationDisable, "replication disable", {"--master"}},
    {Verb::kSlaveAdd, "slave add", {"--master", "--auto-resync"}},
    {Verb::kSlaveRemove, "slave remove", {}},
    {Verb::kResync, "resync", {}},
    {Verb::kPromote, "promote", {"--force"}},
    {Verb::kAdopt, "adopt", {}},
    {Verb::kEnv, "env", {}},
    {Verb::kWait, "wait", {"--timeout"}},
    {Verb::kEvents, "events", {"--follow", "--node"}},
    {Verb::kCompletion, "completion", {}},
    {Verb::kCertCreateCa, "cert create-ca", {"--days", "--ca-key", "--name"}},
    {Verb::kCertCreateNode, "cert create-node", {"--address", "--days", "--ca-key"}},
    {Verb::kCertCreateController, "cert create-controller", {"--address", "--days", "--ca-key", "--name"}},
    {Verb::kCertCreateClient, "cert create-client", {"--role", "--days", "--ca-key"}},
    {Verb::kCertList, "cert list", {}},
};

const VerbSpec& SpecOf(Verb verb) {
  for (const VerbSpec& spec : kVerbs) {
    if (spec.verb == verb) return spec;
  }
  return kVerbs[0];  // unreachable: every verb but kHelp has a row
}

// Resolves the verb from the leading positionals and removes them.
// Returns the verb, or an error naming what is wrong.
absl::StatusOr<Verb> TakeVerb(std::vector<std::string>& positionals) {
  if (positionals.empty()) return Usage("missing verb (try 'tandemctl help')");
  std::string word = positionals.front();
  positionals.erase(positionals.begin());
  auto sub = [&](absl::string_view group, Verb first, absl::string_view first_name, Verb second,
                 absl::string_view second_name) -> absl::StatusOr<Verb> {
    if (positionals.empty()) {
      return Usage(absl::StrCat("'", group, "' needs '", first_name, "' or '", second_name, "'"));
    }
    std::string next = positionals.front();
    positionals.erase(positionals.begin());
    if (next == first_name) return first;
    if (next == second_name) return second;
    return Usage(absl::StrCat("unknown '", group, "' action '", next, "' (expected '", first_name,
                              "' or '", second_name, "')"));
  };
  if (word == "help") return Verb::kHelp;
  if (word == "nodes") return Verb::kNodes;
  if (word == "status") return Verb::kStatus;
  if (word == "replication") {
    return sub("replication", Verb::kReplicationEnable, "enable", Verb::kReplicationDisable,
               "disable");
  }
  if (word == "slave") return sub("slave", Verb::kSlaveAdd, "add", Verb::kSlaveRemove, "remove");
  if (word == "resync") return Verb::kResync;
  if (word == "promote") return Verb::kPromote;
  if (word == "adopt") return Verb::kAdopt;
  if (word == "env") return Verb::kEnv;
  if (word == "wait") return Verb::kWait;
  if (word == "events") return Verb::kEvents;
  if (word == "completion") return Verb::kCompletion;
  if (word == "cert") {
    static const std::pair<std::string_view, Verb> kCertActions[] = {
        {"create-ca", Verb::kCertCreateCa},
        {"create-node", Verb::kCertCreateNode},
        {"create-controller", Verb::kCertCreateController},
        {"create-client", Verb::kCertCreateClient},
        {"list", Verb::kCertList}};
    const std::string expected =
        "expected 'create-ca', 'create-node', 'create-controller', 'create-client' or 'list'";
    if (positionals.empty()) return Usage(absl::StrCat("'cert' needs an action (", expected, ")"));
    std::string next = positionals.front();
    positionals.erase(positionals.begin());
    for (const auto& [name, verb] : kCertActions) {
      if (next == name) return verb;
    }
    return Usage(absl::StrCat("unknown 'cert' action '", next, "' (", expected, ")"));
  }
  return Usage(absl::StrCat("unknown verb '", word, "' (try 'tandemctl help')"));
}

bool IsHelpTopic(std::string_view word) { return HelpText(word).has_value() && !word.empty(); }

// Exactly one NODE positional, non-empty.
absl::StatusOr<std::string> OneNode(std::vector<std::string>& positionals, absl::string_view verb,
                                    absl::string_view what) {
  if (positionals.empty()) return Usage(absl::StrCat("'", verb, "' needs ", what));
  if (positionals.size() > 1) {
    return Usage(absl::StrCat("unexpected argument '", positionals[1], "' for '", verb, "'"));
  }
  if (positionals[0].empty()) return Usage(absl::StrCat("'", verb, "': ", what, " is empty"));
  return positionals[0];
}

absl::Status NoPositionals(const std::vector<std::string>& positionals, absl::string_view verb) {
  if (!positionals.empty()) {
    return Usage(absl::StrCat("unexpected argument '", positionals[0], "' for '", verb, "'"));
  }
  return absl::OkStatus();
}

// The value of a required node option such as --master.
absl::StatusOr<std::string> RequiredNodeOption(const Tokens& tokens, const std::string& name,
                                               absl::string_view verb) {
  auto it = tokens.options.find(name);
  if (it == tokens.options.end()) return Usage(absl::StrCat("'", verb, "' needs ", name));
  if (it->second.value.empty()) {
    return Usage(absl::StrCat("option '", it->second.spelling, "' needs a node id"));
  }
  return it->second.value;
}

// --auto-resync on|off (also true/false, yes/no); nullopt when absent.
absl::StatusOr<std::optional<bool>> AutoResyncOption(const Tokens& tokens) {
  auto it = tokens.options.find("--auto-resync");
  if (it == tokens.options.end()) return std::optional<bool>();
  const std::string& v = it->second.value;
  if (v == "on" || v == "true" || v == "yes") return std::optional<bool>(true);
  if (v == "off" || v == "false" || v == "no") return std::optional<bool>(false);
  return Usage(absl::StrCat("option '", it->second.spelling, "' takes on or off, not '", v, "'"));
}

}  // namespace

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  auto invalid = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration '", std::string(text),
                     "' (expected e.g. 300s, 5m, 1h, 250ms or a number of seconds)"));
  };
  size_t digits_end = 0;
  bool seen_digit = false;
  bool seen_dot = false;
  while (digits_end < text.size()) {
    char c = text[digits_end];
    if (c >= '0' && c <= '9') {
      seen_digit = true;
    } else if (c == '.' && !seen_dot) {
      seen_dot = true;
    } else {
      break;
    }
    ++digits_end;
  }
  if (!seen_digit) return invalid();
  std::string_view unit = text.substr(digits_end);
  double factor_ms = 0;
  if (unit.empty() || unit == "s") {
    factor_ms = 1000;
  } else if (unit == "ms") {
    factor_ms = 1;
  } else if (unit == "m") {
    factor_ms = 60'000;
  } else if (unit == "h") {
    factor_ms = 3'600'000;
  } else {
    return invalid();
  }
  double number = 0;
  if (!absl::SimpleAtod(absl::string_view(text.data(), digits_end), &number)) return invalid();
  double ms = number * factor_ms;
  constexpr double kMaxMs = 30.0 * 24 * 3'600'000;
  if (!std::isfinite(ms) || ms > kMaxMs) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration '", std::string(text), "' is longer than 30 days"));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

std::string FormatDuration(std::chrono::milliseconds duration) {
  int64_t ms = duration.count();
  if (ms % 1000 == 0) return absl::StrCat(ms / 1000, "s");
  std::string text = absl::StrFormat("%.3f", static_cast<double>(ms) / 1000.0);
  while (text.back() == '0') text.pop_back();
  return text + "s";
}

absl::Status ValidateAddress(std::string_view address, std::string_view what) {
  auto invalid = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " expects HOST:PORT, not '", std::string(address), "'"));
  };
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return invalid();
  std::string_view host = address.substr(0, colon);
  std::string_view port = address.substr(colon + 1);
  for (char c : address) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '/') return invalid();
  }
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return invalid();
  } else if (host.find(':') != std::string_view::npos) {
    return invalid();  // an IPv6 literal needs brackets
  }
  uint32_t port_number = 0;
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(port.data(), port.size()), &port_number) ||
      port_number == 0 || port_number > 65535) {
    return invalid();
  }
  return absl::OkStatus();
}

absl::StatusOr<Command> ParseArgs(const std::vector<std::string>& args, const EnvDefaults& env) {
  absl::StatusOr<Tokens> tokenized = Tokenize(args);
  if (!tokenized.ok()) return tokenized.status();
  Tokens& tokens = *tokenized;

  Command command;
  if (tokens.options.count("--help") > 0) {
    // "tandemctl --help", "tandemctl status --help", "tandemctl replication --help".
    command.verb = Verb::kHelp;
    if (tokens.positionals.empty()) return command;
    if (IsHelpTopic(tokens.positionals[0])) {
      command.help_topic = tokens.positionals[0];
      return command;
    }
  }
  absl::StatusOr<Verb> verb = TakeVerb(tokens.positionals);
  if (!verb.ok()) return verb.status();
  if (*verb == Verb::kHelp) {
    if (tokens.positionals.size() > 1) {
      return Usage(absl::StrCat("unexpected argument '", tokens.positionals[1], "' for 'help'"));
    }
    if (!tokens.positionals.empty()) {
      if (!IsHelpTopic(tokens.positionals[0])) {
        return Usage(absl::StrCat("no help for '", tokens.positionals[0],
                                  "': not a verb (try 'tandemctl help')"));
      }
      command.help_topic = tokens.positionals[0];
    }
    return command;
  }

  // The shared token was replaced by client certificates.
  constexpr char kTokenGone[] =
      " is no longer used: tandemctl authenticates with a client certificate of the "
      "cluster's CA (--certs-dir DIR with ca.crt and client.NAME.crt/.key; create one with "
      "'tandemctl cert create-client NAME --role admin|viewer')";
  if (auto it = tokens.options.find("--token-file"); it != tokens.options.end()) {
    return Usage(absl::StrCat("option '", it->second.spelling, "'", kTokenGone));
  }
  if (env.token_file.has_value()) return Usage(absl::StrCat("TANDEM_TOKEN_FILE", kTokenGone));

  command.verb = *verb;
  const VerbSpec& spec = SpecOf(*verb);
  for (const auto& [name, value] : tokens.options) {
    if (kGlobalOptions.count(name) == 0 && spec.options.count(name) == 0) {
      return Usage(
          absl::StrCat("option '", value.spelling, "' does not apply to '", spec.name, "'"));
    }
  }

  // Positionals and required options, verb by verb.
  std::vector<std::string>& pos = tokens.positionals;
  switch (command.verb) {
    case Verb::kHelp:
      break;
    case Verb::kNodes:
      if (absl::Status st = NoPositionals(pos, spec.name); !st.ok()) return st;
      break;
    case Verb::kStatus:
      command.watch = tokens.options.count("--watch") > 0;
      if (auto it = tokens.options.find("--interval"); it != tokens.options.end()) {
        if (!command.watch) return Usage("option '--interval' needs --watch");
        absl::StatusOr<std::chrono::milliseconds> interval = ParseDuration(it->second.value);
        if (!interval.ok()) {
          return Usage(
              absl::StrCat("option '", it->second.spelling, "': ", interval.status().message()));
        }
        if (*interval < std::chrono::milliseconds(100)) {
          return Usage(absl::StrCat("option '", it->second.spelling, "': at least 100ms"));
        }
        command.interval = *interval;
      }
      [[fallthrough]];
    case Verb::kEnv:
    case Verb::kAdopt:
    case Verb::kPromote: {
      absl::StatusOr<std::string> node = OneNode(pos, spec.name, "a NODE");
      if (!node.ok()) return node.status();
      command.node = *node;
      command.force = tokens.options.count("--force") > 0;
      break;
    }
    case Verb::kResync:
    case Verb::kSlaveRemove: {
      absl::StatusOr<std::string> node = OneNode(pos, spec.name, "a slave NODE");
      if (!node.ok()) return node.status();
      command.slave = *node;
      break;
    }
    case Verb::kSlaveAdd: {
      // Several slaves at once: the controller bootstraps them one by one.
      if (pos.empty()) return Usage("'slave add' needs a slave NODE");
      std::set<std::string> seen;
      for (const std::string& node : pos) {
        if (node.empty()) return Usage("'slave add': a NODE is empty");
        if (seen.insert(node).second) command.nodes.push_back(node);
      }
      command.slave = command.nodes.front();
      absl::StatusOr<std::string> master = RequiredNodeOption(tokens, "--master", spec.name);
      if (!master.ok()) return master.status();
      command.master = *master;
      absl::StatusOr<std::optional<bool>> auto_resync = AutoResyncOption(tokens);
      if (!auto_resync.ok()) return auto_resync.status();
      command.auto_resync = *auto_resync;
      break;
    }
    case Verb::kReplicationEnable: {
      if (absl::Status st = NoPositionals(pos, spec.name); !st.ok()) return st;
      absl::StatusOr<std::string> master = RequiredNodeOption(tokens, "--master", spec.name);
      if (!master.ok()) return master.status();
      absl::StatusOr<std::string> slave = RequiredNodeOption(tokens, "--slave", spec.name);
      if (!slave.ok()) return slave.status();
      command.master = *master;
      command.slave = *slave;
      absl::StatusOr<std::optional<bool>> auto_resync = AutoResyncOption(tokens);
      if (!auto_resync.ok()) return auto_resync.status();
      command.auto_resync = *auto_resync;
      break;
    }
    case Verb::kReplicationDisable: {
      if (absl::Status st = NoPositionals(pos, spec.name); !st.ok()) return st;
      absl::StatusOr<std::string> master = RequiredNodeOption(tokens, "--master", spec.name);
      if (!master.ok()) return master.status();
      command.master = *master;
      break;
    }
    case Verb::kWait: {
      std::set<std::string> seen;
      for (const std::string& node : pos) {
        if (node.empty()) return Usage("'wait': a NODE is empty");
        if (seen.insert(node).second) command.nodes.push_back(node);
      }
      if (auto it = tokens.options.find("--timeout"); it != tokens.options.end()) {
        absl::StatusOr<std::chrono::milliseconds> timeout = ParseDuration(it->second.value);
        if (!timeout.ok()) {
          return Usage(
              absl::StrCat("option '", it->second.spelling, "': ", timeout.status().message()));
        }
        command.timeout = *timeout;
      }
      break;
    }
    case Verb::kCompletion: {
      absl::StatusOr<std::string> shell = OneNode(pos, spec.name, "a SHELL (bash)");
      if (!shell.ok()) return shell.status();
      if (*shell != "bash") {
        return Usage(absl::StrCat("'completion': no completion for '", *shell, "' (only bash)"));
      }
      command.shell = *shell;
      break;
    }
    case Verb::kCertCreateCa:
    case Verb::kCertList:
    case Verb::kCertCreateController:
      if (absl::Status st = NoPositionals(pos, spec.name); !st.ok()) return st;
      [[fallthrough]];
    case Verb::kCertCreateNode:
    case Verb::kCertCreateClient: {
      if (command.verb == Verb::kCertCreateNode || command.verb == Verb::kCertCreateClient) {
        absl::StatusOr<std::string> name = OneNode(
            pos, spec.name, command.verb == Verb::kCertCreateNode ? "a NODE" : "a NAME");
        if (!name.ok()) return name.status();
        command.cert_name = *name;
      }
      if (auto it = tokens.options.find("--address"); it != tokens.options.end()) {
        command.addresses = it->second.all;
      }
      if ((command.verb == Verb::kCertCreateNode || command.verb == Verb::kCertCreateController) &&
          command.addresses.empty()) {
        return Usage(absl::StrCat("'", spec.name,
                                  "' needs --address (each address peers connect to; repeat it "
                                  "for several)"));
      }
      if (command.verb == Verb::kCertCreateClient) {
        auto it = tokens.options.find("--role");
        if (it == tokens.options.end()) return Usage("'cert create-client' needs --role admin|viewer");
        if (it->second.value != "admin" && it->second.value != "viewer") {
          return Usage(absl::StrCat("option '", it->second.spelling,
                                    "' takes admin or viewer, not '", it->second.value, "'"));
        }
        command.role = it->second.value;
      }
      if (auto it = tokens.options.find("--days"); it != tokens.options.end()) {
        if (!absl::SimpleAtoi(it->second.value, &command.days) || command.days < 1 ||
            command.days > 36500) {
          return Usage(absl::StrCat("option '", it->second.spelling,
                                    "' takes a number of days in 1..36500, not '",
                                    it->second.value, "'"));
        }
      }
      if (auto it = tokens.options.find("--ca-key"); it != tokens.options.end()) {
        if (it->second.value.empty()) return Usage("option '--ca-key' needs a file name");
        command.ca_key = it->second.value;
      }
      if (auto it = tokens.options.find("--name"); it != tokens.options.end()) {
        if (it->second.value.empty()) return Usage("option '--name' needs a name");
        (command.verb == Verb::kCertCreateController ? command.cert_name : command.ca_name) =
            it->second.value;
      } else if (command.verb == Verb::kCertCreateController) {
        command.cert_name = "controller";
      }
      break;
    }
    case Verb::kEvents: {
      if (absl::Status st = NoPositionals(pos, spec.name); !st.ok()) return st;
      command.follow = tokens.options.count("--follow") > 0;
      if (auto it = tokens.options.find("--node"); it != tokens.options.end()) {
        if (it->second.value.empty()) {
          return Usage(absl::StrCat("option '", it->second.spelling, "' needs a node id"));
        }
        command.node_filter = it->second.value;
      }
      break;
    }
  }

  // Global options.
  if (auto it = tokens.options.find("--output"); it != tokens.options.end()) {
    const std::string& value = it->second.value;
    if (value == "table") {
      command.output = OutputFormat::kTable;
    } else if (value == "json") {
      command.output = OutputFormat::kJson;
    } else {
      return Usage(absl::StrCat("option '", it->second.spelling, "' expects table or json, not '",
                                value, "'"));
    }
  }
  if (auto it = tokens.options.find("--controller"); it != tokens.options.end()) {
    if (absl::Status st =
            ValidateAddress(it->second.value, absl::StrCat("option '", it->second.spelling, "'"));
        !st.ok()) {
      return st;
    }
    command.controller = it->second.value;
  } else if (env.controller.has_value() && !env.controller->empty()) {
    if (absl::Status st = ValidateAddress(*env.controller, "TANDEM_CONTROLLER"); !st.ok()) {
      return st;
    }
    command.controller = *env.controller;
  }
  if (auto it = tokens.options.find("--certs-dir"); it != tokens.options.end()) {
    if (it->second.value.empty()) return Usage("option '--certs-dir' needs a directory");
    command.certs_dir = it->second.value;
  } else if (env.certs_dir.has_value() && !env.certs_dir->empty()) {
    command.certs_dir = *env.certs_dir;
  }
  if (auto it = tokens.options.find("--user"); it != tokens.options.end()) {
    if (it->second.value.empty()) return Usage("option '--user' needs a name");
    command.user = it->second.value;
  } else if (env.user.has_value()) {
    command.user = *env.user;
  }
  command.insecure = tokens.options.count("--insecure") > 0;
  if (command.watch && command.output == OutputFormat::kJson) {
    return Usage("'status --watch' draws the table view; use 'status -o json' without --watch");
  }
  return command;
}

std::string_view HelpTopic(Verb verb) {
  switch (verb) {
    case Verb::kHelp:
      return "";
    case Verb::kNodes:
      return "nodes";
    case Verb::kStatus:
      return "status";
    case Verb::kReplicationEnable:
    case Verb::kReplicationDisable:
      return "replication";
    case Verb::kSlaveAdd:
    case Verb::kSlaveRemove:
      return "slave";
    case Verb::kResync:
      return "resync";
    case Verb::kPromote:
      return "promote";
    case Verb::kAdopt:
      return "adopt";
    case Verb::kEnv:
      return "env";
    case Verb::kWait:
      return "wait";
    case Verb::kEvents:
      return "events";
    case Verb::kCompletion:
      return "completion";
    case Verb::kCertCreateCa:
    case Verb::kCertCreateNode:
    case Verb::kCertCreateController:
    case Verb::kCertCreateClient:
    case Verb::kCertList:
      return "cert";
  }
  return "";
}

std::vector<VerbUsage> VerbUsages() {
  std::vector<VerbUsage> out;
  for (const VerbSpec& spec : kVerbs) {
    VerbUsage usage;
    usage.name = std::string(spec.name);
    usage.options.assign(spec.options.begin(), spec.options.end());
    switch (spec.verb) {
      case Verb::kStatus:
      case Verb::kEnv:
      case Verb::kPromote:
      case Verb::kAdopt:
      case Verb::kResync:
      case Verb::kSlaveRemove:
        usage.operands = "NODE";
        break;
      case Verb::kSlaveAdd:
      case Verb::kWait:
        usage.operands = "NODE...";
        break;
      case Verb::kCompletion:
        usage.operands = "SHELL";
        break;
      case Verb::kCertCreateNode:
        usage.operands = "NODE";
        break;
      case Verb::kCertCreateClient:
        usage.operands = "NAME";
        break;
      default:
        break;
    }
    out.push_back(std::move(usage));
  }
  out.push_back(VerbUsage{"help", {}, "VERB"});
  return out;
}

std::vector<std::string> GlobalOptionSpellings() {
  std::vector<std::string> out;
  for (const OptionSpec& spec : kOptions) {
    if (kGlobalOptions.count(spec.long_name) == 0) continue;
    out.emplace_back(spec.long_name);
    if (spec.short_name != 0) out.push_back(absl::StrCat("-", std::string(1, spec.short_name)));
  }
  return out;
}

bool OptionTakesValue(std::string_view long_name) {
  const OptionSpec* spec = FindLong(long_name);
  return spec != nullptr && spec->takes_value;
}

std::optional<std::string> HelpText(std::string_view topic) {
  static const std::map<std::string_view, std::string_view> kTexts = {
      {"",
       R"(Usage: tandemctl [--controller HOST:PORT] [-o table|json] [--certs-dir DIR] [--user NAME] VERB ...

The operator CLI of Tandem: asks the controller for the replication roles of
the database nodes and shows what the agents report.

Verbs:
  nodes                                      one row per node
  status NODE [--watch]                      one node in detail (--watch: refresh in place)
  replication enable --master A --slave B    A masters a group, B becomes its slave
  replication disable --master A             every member of A's group becomes standalone
  slave add B [C ...] --master A             add slaves to A's group, one at a time
  slave remove B                             B leaves its group and becomes standalone
  resync B                                   rebuild slave B from a fresh backup of its master
  promote B [--force]                        slave B becomes master; the others follow B
  adopt NODE                                 NODE's agent, holding its role, takes this controller's state
  env NODE                                   the environment variables NODE's agent writes
  wait [NODE...] [--timeout 300s]            block until the nodes are converged
  events [--follow] [--node N]               desired-state changes and step outcomes
  completion bash                            the bash completion script
  cert create-ca | create-node NODE | create-controller | create-client NAME | list
                                             the cluster's certificates (see help cert)
  help [VERB]                                this text, or the usage of one verb

Options (anywhere on the line):
  --controller HOST:PORT   the controller (default: $TANDEM_CONTROLLER, else 127.0.0.1:7400)
  -o, --output table|json  output format (default: table)
  --certs-dir DIR          the cluster's ca.crt and your client.NAME.crt/.key
                           (default: $TANDEM_CERTS_DIR, else /etc/tandem/certs)
  --user NAME              use client.NAME.crt (default: $TANDEM_USER, else the only
                           client certificate in the directory)
  --insecure               plaintext, to a controller in insecure mode on loopback
  -h, --help               help on the verb

Exit status: 0 on success, 1 when the request failed or was refused, 2 on a
usage error. Errors are one line on stderr: "tandemctl: <reason>".

Examples:
  tandemctl nodes
  tandemctl replication enable --master db1 --slave db2 && tandemctl wait db1 db2
  tandemctl status db2 --watch
  tandemctl help replication
)"},
      {"nodes",
       R"(Usage: tandemctl nodes [-o table|json]

One row per node: NODE, STACK, ENGINE, DESIRED and OBSERVED role, UPSTREAM
(desired), LAG (bytes/seconds, "-" when not a slave), CONVERGED, GEN
(desired/converged generation) and the last ERROR (truncated).

Example:
  tandemctl nodes
)"},
      {"status",
       R"(Usage: tandemctl status NODE [-o table|json]
       tandemctl status NODE --watch [--interval DURATION]

One node in detail: desired state, observed state, bootstrap progress
(bytes done/total), current step, last error, agent connection.

-w, --watch          redraw the view in place every interval (default 1s)
                     until Ctrl-C, with the bootstrap's rate and ETA
--interval DURATION  how often to refresh (250ms, 2s, ...; at least 100ms)

Examples:
  tandemctl status db2
  tandemctl status db2 --watch
  tandemctl status db2 -o json | jq .observed.bootstrap
)"},
      {"replication",
       R"(Usage: tandemctl replication enable --master A --slave B [--auto-resync on|off]
       tandemctl replication disable --master A

enable:  A becomes (or stays) the master of a group and B its slave. B's data
         is replaced by a copy of A's. A and B may be in the same stack or in
         different stacks (not for MongoDB).
         --auto-resync on: the group's policy: a slave out of sync (timeline
         fork, WAL gone, replication error, link down too long) is resynced
         without an operator, the cheap way first (pg_rewind, GTID
         re-point). Without the option the group keeps its policy (a new
         group follows controller.yaml's auto_resync). Run again on an
         existing pair to change only the policy.
disable: every member of A's group becomes standalone.

Prints one line per node whose desired state changed, or "nothing to change".

Examples:
  tandemctl replication enable --master db1 --slave db2
  tandemctl replication enable --master db1 --slave db2 --auto-resync on
  tandemctl replication disable --master db1
)"},
      {"slave",
       R"(Usage: tandemctl slave add B [C ...] --master A [--auto-resync on|off]
       tandemctl slave remove B

add:    B becomes one more slave of A (same request as 'replication enable').
        With several nodes, each is added; the controller bootstraps them one
        at a time (the others show "queued" until their turn).
remove: B leaves its group and becomes standalone.

Examples:
  tandemctl slave add db3 --master db1
  tandemctl slave add db3 db4 db5 --master db1
  tandemctl slave remove db3
)"},
      {"resync",
       R"(Usage: tandemctl resync B

Rebuilds slave B from a fresh backup of its master (B's data is replaced; its
old data directory is moved aside).

Example:
  tandemctl resync db2
)"},
      {"promote",
       R"(Usage: tandemctl promote B [--force]

Slave B becomes the master of its group; the old master and the other slaves
follow B. The old master is fenced first and B replays what it holds before
it becomes writable; promote returns once that is done. A fence that does not
come within the controller's switchover_timeout aborts the switchover (the
old master stays the master) and promote exits 1 with the reason.

--force is for an old master that is gone: if its agent was heard lately it
is still fenced first, and B takes over without the fence once that agent has
been silent for 15 s (writes that had not reached B are then lost; the old
master is rebuilt as a slave, its data kept aside). --force also overrides a
switchover in progress, and ends a catch-up that cannot finish.

Example:
  tandemctl promote db2
)"},
      {"adopt",
       R"(Usage: tandemctl adopt NODE

An agent holds its role (and says why in 'tandemctl nodes' and status) when
the controller's desired state comes from another cluster id (its data dir
was lost or replaced) or is older than the one it holds (restored from an
older backup). After checking what the controller wants for NODE ('tandemctl
status NODE'; re-create its group first if the data dir was lost), adopt
makes NODE's agent take the controller's desired state.

Example:
  tandemctl adopt db2
)"},
      {"env",
       R"txt(Usage: tandemctl env NODE [-o table|json]

Prints the environment variables NODE's agent writes, as sorted KEY=value
lines that a shell can source (values quoted when needed).

Example:
  eval "$(tandemctl env db1)"; echo "$POSTGRESQL_ADDRESS"
)txt"},
      {"wait",
       R"(Usage: tandemctl wait [NODE...] [--timeout DURATION]

Blocks until every named node (default: all nodes) is converged. Fails at
once for an unknown node, or when a node reports an error about its current
target that needs an operator; transient errors are waited out. DURATION is
300s, 5m, 1h or a number of seconds (default 300s). Prints nothing on
success (the nodes as JSON with -o json).

Example:
  tandemctl replication enable --master db1 --slave db2 && tandemctl wait db1 db2 --timeout 10m
)"},
      {"events",
       R"(Usage: tandemctl events [--follow] [--node NODE] [-o table|json]

The history of desired-state changes and agent step outcomes, one per line:
TIME (UTC) NODE KIND OK GEN SECONDS MESSAGE. --follow keeps printing new
events until interrupted (Ctrl-C exits 0). With -o json, one JSON object per
line.

Example:
  tandemctl events --follow --node db2
)"},
      {"completion",
       R"(Usage: tandemctl completion bash

Prints the bash completion script: verbs, options, and node ids (asked of
the controller when a NODE is expected). The package installs it in
/usr/share/bash-completion/completions/tandemctl.

Example:
  source <(tandemctl completion bash)
)"},
      {"cert",
       R"(Usage: tandemctl cert create-ca [--name CLUSTER] [--days 3650]
       tandemctl cert create-controller --address A [--address B ...] [--days 365]
       tandemctl cert create-node NODE --address A [--address B ...] [--days 365]
       tandemctl cert create-client NAME --role admin|viewer [--days 365]
       tandemctl cert list

The cluster's certificates, in --certs-dir (default /etc/tandem/certs):
  create-ca          ca.crt and ca.key: the CA every Tandem link trusts. Keep
                     ca.key off the database hosts (--ca-key FILE to keep it
                     elsewhere; the other verbs read it from there).
  create-controller  controller.crt/.key, naming each address agents and
                     tandemctl use to reach the controller.
  create-node        node.NODE.crt/.key for the agent of NODE: it may act as
                     NODE only, and register only the addresses named here
                     (internal and external).
  create-client      client.NAME.crt/.key for an operator: admin (every verb)
                     or viewer (nodes, status, env, wait, events).
  list               subject, identity, role, addresses and expiry of each
                     certificate in the directory.
Keys are ECDSA P-256, written with mode 0600; the CA is never overwritten.
A process reloads its certificate on SIGHUP: renew by creating a new one in
a temporary directory, moving it over the old, or by running the same verb
again in place (the new key keeps the owner of the one it replaces: the
controller's belongs to the tandem user), then
'systemctl reload tandem-agent@NODE' (or kill -HUP).

Examples:
  tandemctl cert create-ca
  tandemctl cert create-controller --address 10.0.0.2 --address ctl.example
  tandemctl cert create-node db1 --address 10.0.0.5 --address 203.0.113.5
  tandemctl cert create-client alice --role admin
  tandemctl cert list
)"},
      {"help",
       R"(Usage: tandemctl help [VERB]

Prints the general usage, or the usage of VERB with an example.

Example:
  tandemctl help wait
)"},
  };
  auto it = kTexts.find(topic);
  if (it == kTexts.end()) return std::nullopt;
  return std::string(it->second);
}

}  // namespace tandem::cli
