// The agent's link to the controller: a Watch stream that receives the
// desired state (pushed; reconnected with backoff when it breaks) and a
// sender of observed-state reports.
//
// When the controller is unreachable the agent keeps the persisted desired
// state; reports are kept (the latest observed state, and up to 1000 step
// events) and sent when the link is back.
//
// Thread-safety: all public methods may be called from any thread.
#ifndef TANDEM_AGENT_CONTROLLER_LINK_H_
#define TANDEM_AGENT_CONTROLLER_LINK_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/desired_store.h"
#include "agent/reconciler.h"
#include "common/types.h"
#include "security/tls.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace tandem {

class ControllerLink : public ObservedSink {
 public:
  // `tls`: this node's certificate and the cluster's CA (mutual TLS; the
  // controller's certificate must name `address`'s host); null: plaintext
  // (insecure mode). `on_change` is called (from the link's thread) when a
  // new desired target was stored.
  ControllerLink(std::string address, std::shared_ptr<TlsCredentials> tls, NodeInfo node,
                 DesiredStateStore* store, std::function<void()> on_change);
  ~ControllerLink() override;

  void Start();
  void Stop();

  // ObservedSink: queues the report; the sender thread delivers it.
  void Publish(const ObservedState& observed, std::vector<StepEvent> events) override;

  bool Connected() const;

 private:
  void WatchLoop();
  void ReportLoop();

  const std::string address_;
  const std::shared_ptr<TlsCredentials> tls_;
  const NodeInfo node_;
  DesiredStateStore* const store_;
  const std::function<void()> on_change_;
  std::shared_ptr<grpc::Channel> channel_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool have_report_ ABSL_GUARDED_BY(mu_) = false;
  ObservedState observed_ ABSL_GUARDED_BY(mu_);
  std::vector<StepEvent> events_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* watch_context_ ABSL_GUARDED_BY(mu_) = nullptr;

  std::thread watch_thread_;
  std::thread report_thread_;
};

}  // namespace tandem

#endif  // TANDEM_AGENT_CONTROLLER_LINK_H_
