#include "agent/controller_link.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "proto/convert.h"
#include "tandem.grpc.pb.h"

namespace tandem {
namespace {

constexpr size_t kMaxQueuedEvents = 1000;
constexpr auto kHeartbeat = std::chrono::seconds(5);

}  // namespace

ControllerLink::ControllerLink(std::string address, std::shared_ptr<TlsCredentials> tls,
                               NodeInfo node, DesiredStateStore* store,
                               std::function<void()> on_change)
    : address_(std::move(address)),
      tls_(std::move(tls)),
      node_(std::move(node)),
      store_(store),
      on_change_(std::move(on_change)) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  channel_ = grpc::CreateCustomChannel(
      address_, ChannelCredentialsFor(tls_.get(), Identity::Controller("")), args);
}

ControllerLink::~ControllerLink() { Stop(); }

void ControllerLink::Start() {
  watch_thread_ = std::thread([this] { WatchLoop(); });
  report_thread_ = std::thread([this] { ReportLoop(); });
}

void ControllerLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !watch_thread_.joinable()) return;
    stop_ = true;
    if (watch_context_ != nullptr) watch_context_->TryCancel();
  }
  if (watch_thread_.joinable()) watch_thread_.join();
  if (report_thread_.joinable()) report_thread_.join();
}

bool ControllerLink::Connected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

void ControllerLink::Publish(const ObservedState& observed, std::vector<StepEvent> events) {
  absl::MutexLock lock(&mu_);
  observed_ = observed;
  have_report_ = true;
  for (StepEvent& e : events) events_.push_back(std::move(e));
  if (events_.size() > kMaxQueuedEvents) {
    events_.erase(events_.begin(), events_.end() - kMaxQueuedEvents);
  }
}

void ControllerLink::WatchLoop() {
  auto stub = v1::Agents::NewStub(channel_);
  auto backoff = std::chrono::milliseconds(250);
  bool logged_down = false;
  for (;;) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      watch_context_ = &context;
    }
    v1::WatchRequest request;
    ToProto(node_, request.mutable_node());
    std::unique_ptr<grpc::ClientReader<v1::DesiredState>> reader = stub->Watch(&context, request);
    v1::DesiredState message;
    bool got_any = false;
    while (reader->Read(&message)) {
      if (!got_any) {
        got_any = true;
        backoff = std::chrono::milliseconds(250);
        logged_down = false;
        absl::MutexLock lock(&mu_);
        connected_ = true;
        LogInfo(absl::StrCat("controller ", address_, ": watching desired state of ", node_.id));
      }
      DesiredState desired = FromProto(message);
      const uint64_t held = store_->Current().generation;
      absl::StatusOr<bool> changed = store_->Offer(desired);
      if (!changed.ok()) {
        LogError(absl::StrCat("cannot persist desired state: ", changed.status().message()));
      } else if (*changed) {
        LogInfo(absl::StrCat("desired state: generation ", desired.generation, " role ",
                             std::string(RoleName(desired.role))));
        on_change_();
      } else if (desired.generation < held) {
        LogWarning(absl::StrCat("ignoring desired generation ", desired.generation,
                                " older than the held generation ", held));
      }
    }
    grpc::Status status = reader->Finish();
    {
      absl::MutexLock lock(&mu_);
      watch_context_ = nullptr;
      connected_ = false;
      if (stop_) return;
    }
    if (!logged_down) {
      LogWarning(absl::StrCat("controller ", address_, " unreachable (", status.error_message(),
                              "); keeping the last desired state"));
      logged_down = true;
    }
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::FromChrono(backoff));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

void ControllerLink::ReportLoop() {
  auto stub = v1::Agents::NewStub(channel_);
  auto last_sent = std::chrono::steady_clock::time_point{};
  for (;;) {
    v1::ReportRequest request;
    size_t sent_events = 0;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || have_report_; };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::FromChrono(kHeartbeat));
      if (stop_) return;
      if (!have_report_ && std::chrono::steady_clock::now() - last_sent < kHeartbeat) continue;
      ToProto(node_, request.mutable_node());
      ToProto(observed_, request.mutable_observed());
      for (const StepEvent& e : events_) ToProto(e, request.add_events());
      sent_events = events_.size();
      have_report_ = false;
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ReportResponse response;
    grpc::Status status = stub->Report(&context, request, &response);
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      last_sent = std::chrono::steady_clock::now();
      events_.erase(events_.begin(), events_.begin() + static_cast<long>(
                                                           std::min(sent_events, events_.size())));
      if (response.upstream_data_bytes() != 0) {
        store_->SetUpstreamDataBytes(response.upstream_data_bytes());
      }
    } else {
      have_report_ = true;  // resend with the next attempt
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Seconds(1));
    }
  }
}

}  // namespace tandem
