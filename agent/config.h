// agent.yaml: loading and validation. Every error names the file, the
// field and the reason ("agent.yaml: engine.port: must be 1..65535").
#ifndef TANDEM_AGENT_CONFIG_H_
#define TANDEM_AGENT_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/types.h"
#include "engines/engine_config.h"

namespace tandem {

struct AgentConfig {
  std::string node;
  std::string stack;
  std::string controller = "127.0.0.1:7400";
  // Mutual TLS on every Tandem link (to the controller, between agents):
  // the cluster's CA and this node's certificate (security/certs.h). Empty
  // file fields come from certs_dir: ca.crt, node.<node>.crt/.key.
  std::string certs_dir = "/etc/tandem/certs";
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // No TLS, no identities: allowed only when every address this agent
  // listens on (health_listen, transfer_listen) is loopback.
  bool insecure = false;
  Addresses addresses;
  EngineConfig engine;
  std::string env_file = "/etc/tandem/env";
  std::string env_hook;
  std::string health_listen = "127.0.0.1:7401";
  // Where this agent serves the backups that seed its slaves (agent to
  // agent, e.g. 0.0.0.0:7402; "" = none). Its port is registered with the
  // controller (NodeInfo::transfer_port).
  std::string transfer_listen;
  std::string state_dir = "/var/lib/tandem";
  int reconcile_interval_seconds = 5;

  // This node as the controller registers it.
  NodeInfo Info() const;
  // This node as its peers know it (internal address).
  Peer Self() const;
  // The TLS files: ca, certificate, key (explicit, else from certs_dir).
  std::string CaFile() const;
  std::string CertFile() const;
  std::string KeyFile() const;
};

// Parses and validates YAML text; `source` names it in errors.
absl::StatusOr<AgentConfig> ParseAgentConfig(const std::string& yaml, const std::string& source);

// Reads and parses the file at `path`.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

// The default port of each engine (5432, 3306, 6379, 27017).
uint32_t DefaultPort(EngineType engine);

}  // namespace tandem

#endif  // TANDEM_AGENT_CONFIG_H_
