// Conversion between the protobuf messages of tandem.proto and the domain
// types of common/types.h. The only place both are known; every gRPC edge
// (controller service, agent link, tandemctl) goes through it.
#ifndef TANDEM_PROTO_CONVERT_H_
#define TANDEM_PROTO_CONVERT_H_

#include "common/types.h"
#include "tandem.pb.h"

namespace tandem {

v1::Role ToProto(Role role);
Role FromProto(v1::Role role);
v1::EngineType ToProto(EngineType engine);
EngineType FromProto(v1::EngineType engine);

void ToProto(const NodeInfo& in, v1::NodeInfo* out);
NodeInfo FromProto(const v1::NodeInfo& in);
void ToProto(const Peer& in, v1::Peer* out);
Peer FromProto(const v1::Peer& in);
void ToProto(const DesiredState& in, v1::DesiredState* out);
DesiredState FromProto(const v1::DesiredState& in);
void ToProto(const ObservedState& in, v1::ObservedState* out);
ObservedState FromProto(const v1::ObservedState& in);
void ToProto(const StepEvent& in, v1::StepEvent* out);
StepEvent FromProto(const v1::StepEvent& in);

}  // namespace tandem

#endif  // TANDEM_PROTO_CONVERT_H_
