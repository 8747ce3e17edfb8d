#include "controller/controller_config.h"

#include <cstdlib>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "common/files.h"
#include "security/certs.h"
#include "yaml-cpp/yaml.h"

namespace tandem {
namespace {

constexpr size_t kMaxEventsKeep = 1000000;

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& reason) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": field '", field, "': ", reason));
}

// A scalar field as a string; yaml-cpp's exceptions stay in this file.
absl::StatusOr<std::string> Scalar(const YAML::Node& node, const std::string& source,
                                   const std::string& field) {
  if (!node.IsScalar()) {
    if (node.IsNull()) return std::string();
    return FieldError(source, field, "must be a single value");
  }
  return node.Scalar();
}

}  // namespace

absl::Status ValidateListenAddress(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (listen.empty()) return absl::InvalidArgumentError("the address is empty (want HOST:PORT)");
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", listen, "\" has no port (want HOST:PORT)"));
  }
  const std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", listen, "\" has no host (want HOST:PORT)"));
  }
  if (host.find(':') != std::string::npos && (host.front() != '[' || host.back() != ']')) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", listen, "\": write an IPv6 host in brackets ([::1]:7400)"));
  }
  int value = 0;
  if (port.empty() || !absl::SimpleAtoi(port, &value) || value < 0 || value > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port \"", port, "\" is not in 0..65535"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ControllerConfig> ParseControllerConfig(const std::string& yaml,
                                                       const std::string& source) {
  ControllerConfig config;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  if (root.IsNull()) return config;  // an empty file: every default
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": must be a map of fields"));
  }
  static const std::set<std::string> kKnown = {
      "listen",        "data_dir",          "events_keep",   "bootstraps_per_group",
      "metrics_listen", "auto_resync",      "auto_resync_interval", "certs_dir",
      "tls_ca_file",   "tls_cert_file",     "tls_key_file",  "insecure"};
  try {
    for (const auto& entry : root) {
      const std::string field = entry.first.as<std::string>();
      if (field == "auth_token_file") {
        return FieldError(source, field,
                          "the shared token is gone: every caller now authenticates with a "
                          "certificate of the cluster's CA (mutual TLS). Remove this field, "
                          "create the certificates (tandemctl cert create-ca; tandemctl cert "
                          "create-controller --address ADDRESS; create-node and create-client "
                          "for agents and operators) and set certs_dir");
      }
      if (kKnown.count(field) == 0) {
        return FieldError(source, field,
                          absl::StrCat("unknown field (known: ", absl::StrJoin(kKnown, ", "), ")"));
      }
      absl::StatusOr<std::string> value = Scalar(entry.second, source, field);
      if (!value.ok()) return value.status();
      if (field == "listen") {
        if (absl::Status st = ValidateListenAddress(*value); !st.ok()) {
          return FieldError(source, field, std::string(st.message()));
        }
        config.listen = *value;
      } else if (field == "data_dir") {
        if (value->empty()) return FieldError(source, field, "must not be empty");
        config.data_dir = *value;
      } else if (field == "certs_dir" || field == "tls_ca_file" || field == "tls_cert_file" ||
                 field == "tls_key_file") {
        if (field == "certs_dir" && value->empty()) {
          return FieldError(source, field, "must not be empty");
        }
        std::string* target = field == "certs_dir"       ? &config.certs_dir
                              : field == "tls_ca_file"   ? &config.tls_ca_file
                              : field == "tls_cert_file" ? &config.tls_cert_file
                                                         : &config.tls_key_file;
        *target = *value;
      } else if (field == "insecure") {
        if (*value != "true" && *value != "false") {
          return FieldError(source, field, absl::StrCat("\"", *value, "\" is not true or false"));
        }
        config.insecure = *value == "true";
      } else if (field == "events_keep") {
        uint64_t keep = 0;
        if (!absl::SimpleAtoi(*value, &keep) || keep < 1 || keep > kMaxEventsKeep) {
          return FieldError(
              source, field,
              absl::StrCat("\"", *value, "\" is not a number in 1..", kMaxEventsKeep));
        }
        config.events_keep = static_cast<size_t>(keep);
      } else if (field == "bootstraps_per_group") {
        uint64_t limit = 0;
        if (!absl::SimpleAtoi(*value, &limit) || limit > 1000) {
          return FieldError(source, field,
                            absl::StrCat("\"", *value, "\" is not a number in 0..1000"));
        }
        config.bootstraps_per_group = static_cast<size_t>(limit);
      } else if (field == "auto_resync") {
        if (*value == "true") {
          config.auto_resync = true;
        } else if (*value == "false") {
          config.auto_resync = false;
        } else {
          return FieldError(source, field, absl::StrCat("\"", *value, "\" is not true or false"));
        }
      } else if (field == "auto_resync_interval") {
        int seconds = 0;
        if (!absl::SimpleAtoi(*value, &seconds) || seconds < 1 || seconds > 86400 * 7) {
          return FieldError(source, field,
                            absl::StrCat("\"", *value, "\" is not a number of seconds in 1..604800"));
        }
        config.auto_resync_interval_seconds = seconds;
      } else if (field == "metrics_listen") {
        if (!value->empty()) {
          if (absl::Status st = ValidateListenAddress(*value); !st.ok()) {
            return FieldError(source, field, std::string(st.message()));
          }
        }
        config.metrics_listen = *value;
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
  return config;
}

absl::StatusOr<ControllerConfig> LoadControllerConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("reading config ", path, ": ", text.status().message()));
  }
  return ParseControllerConfig(*text, path);
}

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--help" || arg == "-h") {
      out.help = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    std::optional<std::string>* target = nullptr;
    if (name == "--config") target = &out.config;
    if (name == "--listen") target = &out.listen;
    if (name == "--data-dir") target = &out.data_dir;
    if (name == "--metrics-listen") target = &out.metrics_listen;
    if (name == "--certs-dir") target = &out.certs_dir;
    if (arg == "--insecure") {
      out.insecure = true;
      continue;
    }
    if (target == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown argument \"", arg, "\" (see --help)"));
    }
    if (!value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      value = args[++i];
    }
    *target = *value;
  }
  return out;
}

std::string Usage() {
  return "usage: tandem-controller [--config FILE] [--listen HOST:PORT] [--data-dir DIR]\n"
         "                         [--metrics-listen HOST:PORT] [--certs-dir DIR] [--insecure]\n"
         "  --config FILE        controller.yaml (fields: listen, data_dir, certs_dir,\n"
         "                       tls_ca_file, tls_cert_file, tls_key_file, insecure,\n"
         "                       events_keep, bootstraps_per_group, auto_resync,\n"
         "                       auto_resync_interval, metrics_listen)\n"
         "  --listen HOST:PORT   gRPC address (default 127.0.0.1:7400; port 0: any free port)\n"
         "  --data-dir DIR       state directory (default /var/lib/tandem-controller)\n"
         "  --metrics-listen HOST:PORT\n"
         "                       serve GET /metrics (Prometheus) and /healthz over HTTP\n"
         "                       (default: not served)\n"
         "  --certs-dir DIR      the cluster's ca.crt and this controller's controller.crt and\n"
         "                       controller.key (default /etc/tandem/certs; tandemctl cert\n"
         "                       create-ca, then tandemctl cert create-controller --address A)\n"
         "  --insecure           no TLS, every caller trusted; only when every listen address\n"
         "                       is loopback\n"
         "Flags override the file. SIGHUP reloads the certificates.\n";
}

absl::StatusOr<ControllerConfig> ResolveConfig(const CommandLine& command_line) {
  ControllerConfig config;
  if (command_line.config) {
    absl::StatusOr<ControllerConfig> loaded = LoadControllerConfig(*command_line.config);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  if (command_line.listen) {
    if (absl::Status st = ValidateListenAddress(*command_line.listen); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--listen: ", st.message()));
    }
    config.listen = *command_line.listen;
  }
  if (command_line.metrics_listen) {
    if (!command_line.metrics_listen->empty()) {
      if (absl::Status st = ValidateListenAddress(*command_line.metrics_listen); !st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--metrics-listen: ", st.message()));
      }
    }
    config.metrics_listen = *command_line.metrics_listen;
  }
  if (command_line.data_dir) {
    if (command_line.data_dir->empty()) {
      return absl::InvalidArgumentError("--data-dir: must not be empty");
    }
    config.data_dir = *command_line.data_dir;
  }
  if (command_line.certs_dir) {
    if (command_line.certs_dir->empty()) {
      return absl::InvalidArgumentError("--certs-dir: must not be empty");
    }
    config.certs_dir = *command_line.certs_dir;
  }
  if (command_line.insecure) config.insecure = true;
  if (config.insecure) {
    if (absl::Status st = CheckInsecureListen(
            {{"listen", config.listen}, {"metrics_listen", config.metrics_listen}});
        !st.ok()) {
      return st;
    }
  }
  return config;
}

TlsFiles ControllerTlsFiles(const ControllerConfig& config) {
  auto pick = [&](const std::string& file, const char* name) {
    return file.empty() ? absl::StrCat(config.certs_dir, "/", name) : file;
  };
  return TlsFiles{pick(config.tls_ca_file, "ca.crt"), pick(config.tls_cert_file, "controller.crt"),
                  pick(config.tls_key_file, "controller.key")};
}

}  // namespace tandem
