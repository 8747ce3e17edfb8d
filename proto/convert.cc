#include "proto/convert.h"

namespace tandem {

v1::Role ToProto(Role role) {
  switch (role) {
    case Role::kStandalone: return v1::ROLE_STANDALONE;
    case Role::kMaster: return v1::ROLE_MASTER;
    case Role::kSlave: return v1::ROLE_SLAVE;
    case Role::kUnspecified: break;
  }
  return v1::ROLE_UNSPECIFIED;
}

Role FromProto(v1::Role role) {
  switch (role) {
    case v1::ROLE_STANDALONE: return Role::kStandalone;
    case v1::ROLE_MASTER: return Role::kMaster;
    case v1::ROLE_SLAVE: return Role::kSlave;
    default: break;
  }
  return Role::kUnspecified;
}

v1::EngineType ToProto(EngineType engine) {
  switch (engine) {
    case EngineType::kPostgresql: return v1::ENGINE_TYPE_POSTGRESQL;
    case EngineType::kMysql: return v1::ENGINE_TYPE_MYSQL;
    case EngineType::kRedis: return v1::ENGINE_TYPE_REDIS;
    case EngineType::kMongodb: return v1::ENGINE_TYPE_MONGODB;
    case EngineType::kUnspecified: break;
  }
  return v1::ENGINE_TYPE_UNSPECIFIED;
}

EngineType FromProto(v1::EngineType engine) {
  switch (engine) {
    case v1::ENGINE_TYPE_POSTGRESQL: return EngineType::kPostgresql;
    case v1::ENGINE_TYPE_MYSQL: return EngineType::kMysql;
    case v1::ENGINE_TYPE_REDIS: return EngineType::kRedis;
    case v1::ENGINE_TYPE_MONGODB: return EngineType::kMongodb;
    default: break;
  }
  return EngineType::kUnspecified;
}

void ToProto(const NodeInfo& in, v1::NodeInfo* out) {
  out->set_id(in.id);
  out->set_stack(in.stack);
  out->set_engine(ToProto(in.engine));
  out->set_address_internal(in.addresses.internal);
  out->set_address_external(in.addresses.external);
  out->set_port(in.port);
  out->set_transfer_port(in.transfer_port);
  out->set_tls_port(in.tls_port);
}

NodeInfo FromProto(const v1::NodeInfo& in) {
  NodeInfo out;
  out.id = in.id();
  out.stack = in.stack();
  out.engine = FromProto(in.engine());
  out.addresses.internal = in.address_internal();
  out.addresses.external = in.address_external();
  out.port = in.port();
  out.transfer_port = in.transfer_port();
  out.tls_port = in.tls_port();
  return out;
}

void ToProto(const Peer& in, v1::Peer* out) {
  out->set_id(in.id);
  out->set_stack(in.stack);
  out->set_host(in.host);
  out->set_port(in.port);
  out->set_transfer_port(in.transfer_port);
  out->set_tls_port(in.tls_port);
  out->set_bootstrapping(in.bootstrapping);
}

Peer FromProto(const v1::Peer& in) {
  return Peer{in.id(),   in.stack(),         in.host(), in.port(), in.transfer_port(),
              in.tls_port(), in.bootstrapping()};
}

void ToProto(const DesiredState& in, v1::DesiredState* out) {
  out->set_generation(in.generation);
  out->set_role(ToProto(in.role));
  if (!in.upstream.id.empty()) ToProto(in.upstream, out->mutable_upstream());
  for (const Peer& slave : in.slaves) ToProto(slave, out->add_slaves());
  for (const auto& [key, value] : in.env) (*out->mutable_env())[key] = value;
  out->set_resync_token(in.resync_token);
  out->set_upstream_data_bytes(in.upstream_data_bytes);
  out->set_fenced(in.fenced);
  out->set_catch_up_position(in.catch_up_position);
  out->set_rejoin_first(in.rejoin_first);
}

DesiredState FromProto(const v1::DesiredState& in) {
  DesiredState out;
  out.generation = in.generation();
  out.role = FromProto(in.role());
  if (in.has_upstream()) out.upstream = FromProto(in.upstream());
  for (const v1::Peer& slave : in.slaves()) out.slaves.push_back(FromProto(slave));
  for (const auto& [key, value] : in.env()) out.env[key] = value;
  out.resync_token = in.resync_token();
  out.upstream_data_bytes = in.upstream_data_bytes();
  out.fenced = in.fenced();
  out.catch_up_position = in.catch_up_position();
  out.rejoin_first = in.rejoin_first();
  return out;
}

void ToProto(const ObservedState& in, v1::ObservedState* out) {
  out->set_engine_reachable(in.engine_reachable);
  out->set_role(ToProto(in.role));
  out->set_upstream(in.upstream);
  out->set_streaming(in.streaming);
  out->set_writable(in.writable);
  out->set_lag_bytes(in.lag_bytes);
  out->set_lag_seconds(in.lag_seconds);
  out->set_data_bytes(in.data_bytes);
  out->mutable_bootstrap()->set_done_bytes(in.bootstrap.done_bytes);
  out->mutable_bootstrap()->set_total_bytes(in.bootstrap.total_bytes);
  out->set_converged_generation(in.converged_generation);
  out->set_seen_generation(in.seen_generation);
  out->set_current_step(in.current_step);
  out->set_last_error(in.last_error);
  out->set_error_blocks(in.error_blocks);
  out->set_position(in.position);
  out->set_out_of_sync(in.out_of_sync);
}

ObservedState FromProto(const v1::ObservedState& in) {
  ObservedState out;
  out.engine_reachable = in.engine_reachable();
  out.role = FromProto(in.role());
  out.upstream = in.upstream();
  out.streaming = in.streaming();
  out.writable = in.writable();
  out.lag_bytes = in.lag_bytes();
  out.lag_seconds = in.lag_seconds();
  out.data_bytes = in.data_bytes();
  out.bootstrap = Progress{in.bootstrap().done_bytes(), in.bootstrap().total_bytes()};
  out.converged_generation = in.converged_generation();
  out.seen_generation = in.seen_generation();
  out.current_step = in.current_step();
  out.last_error = in.last_error();
  out.error_blocks = in.error_blocks();
  out.position = in.position();
  out.out_of_sync = in.out_of_sync();
  return out;
}

void ToProto(const StepEvent& in, v1::StepEvent* out) {
  out->set_generation(in.generation);
  out->set_step(in.step);
  out->set_reason(in.reason);
  out->set_ok(in.ok);
  out->set_error(in.error);
  out->set_seconds(in.seconds);
}

StepEvent FromProto(const v1::StepEvent& in) {
  return StepEvent{in.generation(), in.step(), in.reason(), in.ok(), in.error(), in.seconds()};
}

}  // namespace tandem
