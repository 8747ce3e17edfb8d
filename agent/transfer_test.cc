// Tests of the agent-to-agent transfer: TransferServer and GrpcBackupSource
// over real gRPC on loopback, with a fake engine that streams a known
// pattern.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/config.h"
#include "agent/transfer_client.h"
#include "agent/transfer_server.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/harness/pki.h"

namespace tandem {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::PollUntil;

constexpr size_t kChunk = 1 << 20;

char PatternByte(uint64_t offset) { return static_cast<char>((offset * 131 + offset / 7) & 0xff); }

// Streams `chunks` pieces of kChunk bytes of a known pattern; records how
// far it got and how its stream ended.
class StreamingFake : public Engine {
 public:
  explicit StreamingFake(int chunks) : chunks_(chunks) {}

  EngineType type() const override { return EngineType::kMysql; }
  absl::StatusOr<EngineFacts> Observe() override { return EngineFacts{}; }
  absl::Status Start() override { return absl::OkStatus(); }
  absl::Status Stop() override { return absl::OkStatus(); }
  absl::Status Fence() override { return absl::OkStatus(); }
  absl::Status ServeSlaves(const std::vector<Peer>&) override { return absl::OkStatus(); }
  absl::StatusOr<std::string> Bootstrap(const Peer&, const Peer&, const ProgressFn&) override {
    return std::string();
  }
  absl::Status Follow(const Peer&, const Peer&) override { return absl::OkStatus(); }
  absl::Status MakeWritable() override { return absl::OkStatus(); }
  std::string DataParentDir() const override { return "/"; }

  absl::Status StreamBackup(const std::string& slave_id, const BackupSink& write) override {
    last_slave = slave_id;
    std::string chunk(kChunk, '\0');
    absl::Status st;
    for (int i = 0; i < chunks_ && st.ok(); ++i) {
      for (size_t j = 0; j < kChunk; ++j) chunk[j] = PatternByte(produced + j);
      st = write(chunk, static_cast<uint64_t>(chunks_) * kChunk);
      if (st.ok()) produced += kChunk;
    }
    std::lock_guard<std::mutex> lock(mu);
    result = st;
    finished = true;
    return st;
  }

  std::atomic<uint64_t> produced{0};
  std::string last_slave;
  std::mutex mu;
  bool finished = false;
  absl::Status result;

 private:
  const int chunks_;
};

std::shared_ptr<TlsCredentials> Creds(const TlsFiles& files) {
  absl::StatusOr<std::shared_ptr<TlsCredentials>> creds =
      TlsCredentials::Load(files, IdentityKind::kNode, "");
  EXPECT_TRUE(creds.ok()) << creds.status();
  return creds.ok() ? *creds : nullptr;
}

// Mutual TLS as in production: the master db1 serves, db2 is the slave the
// controller has bootstrapping (`serves`), db3 another node of the cluster.
class TransferTest : public ::testing::Test {
 protected:
  void StartServer(int chunks, milliseconds stall_timeout = seconds(60)) {
    auto fake = std::make_unique<StreamingFake>(chunks);
    fake_ = fake.get();
    TransferServerOptions options;
    options.listen = "127.0.0.1:0";
    options.tls = Creds(pki_.Node("db1"));
    options.engine = EngineType::kMysql;
    options.serves = [](const std::string& id) { return id == "db2"; };
    options.busy_wait = milliseconds(200);
    options.stall_timeout = stall_timeout;
    absl::StatusOr<std::unique_ptr<TransferServer>> server =
        TransferServer::Start(options, std::move(fake));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
  }

  Peer Upstream() const {
    return Peer{"db1", "main", "127.0.0.1", 3306, static_cast<uint32_t>(server_->port())};
  }

  bool Finished() {
    std::lock_guard<std::mutex> lock(fake_->mu);
    return fake_->finished;
  }

  testing::TempDir dir_{"tdxfer"};
  testing::TestPki pki_{dir_.path()};
  std::shared_ptr<TlsCredentials> db2_ = Creds(pki_.Node("db2"));
  StreamingFake* fake_ = nullptr;
  std::unique_ptr<TransferServer> server_;
};

TEST_F(TransferTest, StreamsEveryByteInOrderWithTheEstimate) {
  StartServer(12);
  GrpcBackupSource source(db2_, EngineType::kMysql);
  uint64_t received = 0;
  uint64_t estimate = 0;
  bool in_order = true;
  absl::Status st = source.Fetch(Upstream(), "db2", [&](std::string_view chunk, uint64_t total) {
    for (size_t i = 0; i < chunk.size(); ++i) in_order &= chunk[i] == PatternByte(received + i);
    received += chunk.size();
    estimate = total;
    return absl::OkStatus();
  });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(received, 12 * kChunk);
  EXPECT_EQ(estimate, 12 * kChunk);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(fake_->last_slave, "db2");
}

TEST_F(TransferTest, OnlyTheBootstrappingSlavesCertificateGetsABackup) {
  StartServer(1);
  auto fetch = [&](GrpcBackupSource& source, const std::string& id, Peer upstream) {
    return source.Fetch(upstream, id, [](std::string_view, uint64_t) { return absl::OkStatus(); });
  };
  GrpcBackupSource plaintext(nullptr, EngineType::kMysql);
  GrpcBackupSource db3(Creds(pki_.Node("db3")), EngineType::kMysql);
  testing::TempDir other_dir("tdxfero");
  testing::TestPki other(other_dir.path(), "other");
  GrpcBackupSource foreign(Creds(other.Node("db2")), EngineType::kMysql);
  GrpcBackupSource db2(db2_, EngineType::kMysql);
  GrpcBackupSource db2_redis(db2_, EngineType::kRedis);

  absl::Status st = fetch(plaintext, "db2", Upstream());
  EXPECT_TRUE(absl::IsUnavailable(st)) << "no certificate, no handshake: " << st;
  st = fetch(foreign, "db2", Upstream());
  EXPECT_TRUE(absl::IsUnavailable(st)) << "another cluster's CA: " << st;
  st = fetch(db3, "db2", Upstream());
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "node db3 may not fetch a backup as node db2")) << st;
  st = fetch(db3, "db3", Upstream());
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "db3 is not a slave the controller has "
                                              "bootstrapping")) << st;
  st = fetch(db2_redis, "db2", Upstream());
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  // The slave checks the master too: the server here is db1, not db9.
  Peer impostor = Upstream();
  impostor.id = "db9";
  st = fetch(db2, "db2", impostor);
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_FALSE(Finished()) << "no backup was started for a refused request";
  EXPECT_TRUE(fetch(db2, "db2", Upstream()).ok());
  EXPECT_TRUE(Finished());
}

TEST_F(TransferTest, AStalledReaderIsCutOffAndTheSlotFreed) {
  StartServer(96, milliseconds(500));
  GrpcBackupSource source(db2_, EngineType::kMysql);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::thread stalled([&] {
    absl::Status st = source.Fetch(Upstream(), "db2", [&](std::string_view, uint64_t) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return release; });
      return absl::OkStatus();
    });
    EXPECT_FALSE(st.ok()) << "the master cut the stream";
  });
  // The master's backup tool stops (its sink fails) without the reader
  // doing anything.
  ASSERT_TRUE(PollUntil([&] { return Finished(); }, seconds(20)));
  {
    std::lock_guard<std::mutex> lock(fake_->mu);
    EXPECT_TRUE(absl::IsDeadlineExceeded(fake_->result)) << fake_->result;
    EXPECT_TRUE(absl::StrContains(fake_->result.message(), "cut off")) << fake_->result;
  }
  EXPECT_LT(fake_->produced.load(), 96 * kChunk);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  stalled.join();
  // The slot is free: the next fetch streams everything.
  {
    std::lock_guard<std::mutex> lock(fake_->mu);
    fake_->finished = false;
  }
  fake_->produced = 0;
  uint64_t received = 0;
  EXPECT_TRUE(source.Fetch(Upstream(), "db2", [&](std::string_view chunk, uint64_t) {
                      received += chunk.size();
                      return absl::OkStatus();
                    }).ok());
  EXPECT_EQ(received, 96 * kChunk);
}

TEST_F(TransferTest, ASinkErrorCancelsTheStreamAndStopsTheProducer) {
  StartServer(200);
  GrpcBackupSource source(db2_, EngineType::kMysql);
  int calls = 0;
  absl::Status st = source.Fetch(Upstream(), "db2", [&](std::string_view, uint64_t) {
    return ++calls == 2 ? absl::FailedPreconditionError("disk full (injected)") : absl::OkStatus();
  });
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_EQ(st.message(), "disk full (injected)");
  ASSERT_TRUE(PollUntil([&] { return Finished(); }, seconds(30)));
  std::lock_guard<std::mutex> lock(fake_->mu);
  EXPECT_FALSE(fake_->result.ok()) << "the master's side saw the stream end";
  EXPECT_LT(fake_->produced.load(), 200 * kChunk);
}

TEST_F(TransferTest, ASlowSlaveHoldsTheProducerBack) {
  StartServer(96);
  GrpcBackupSource source(db2_, EngineType::kMysql);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  uint64_t received = 0;
  std::thread slave([&] {
    absl::Status st = source.Fetch(Upstream(), "db2", [&](std::string_view chunk, uint64_t) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return release; });
      received += chunk.size();
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
  });
  // While the slave takes nothing, the master cannot run far ahead: what
  // sits in between is bounded by gRPC's flow-control windows.
  ASSERT_TRUE(PollUntil([&] { return fake_->produced.load() >= kChunk; }, seconds(10)));
  EXPECT_FALSE(PollUntil([&] { return fake_->produced.load() > 48 * kChunk; }, seconds(2)))
      << fake_->produced.load() << " bytes produced while the slave was blocked";
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  slave.join();
  EXPECT_EQ(received, 96 * kChunk);
}

TEST_F(TransferTest, OneTransferAtATimeTheNextWaitsThenIsUnavailable) {
  StartServer(96);  // more than the flow-control windows hold; busy_wait is 200 ms
  GrpcBackupSource source(db2_, EngineType::kMysql);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  bool first_started = false;
  std::thread first([&] {
    absl::Status st = source.Fetch(Upstream(), "db2", [&](std::string_view, uint64_t) {
      std::unique_lock<std::mutex> lock(mu);
      first_started = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, seconds(10), [&] { return first_started; }));
  }
  absl::Status second =
      source.Fetch(Upstream(), "db2", [](std::string_view, uint64_t) { return absl::OkStatus(); });
  EXPECT_TRUE(absl::IsUnavailable(second)) << second;
  EXPECT_TRUE(absl::StrContains(second.message(), "another backup")) << second;
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  first.join();
  EXPECT_TRUE(source.Fetch(Upstream(), "db2", [](std::string_view, uint64_t) {
                      return absl::OkStatus();
                    }).ok())
      << "free again";
}

TEST_F(TransferTest, AMissingAgentIsUnavailable) {
  StartServer(1);
  GrpcBackupSource source(db2_, EngineType::kMysql);
  Peer no_port = Upstream();
  no_port.transfer_port = 0;
  absl::Status st = source.Fetch(no_port, "db2", [](std::string_view, uint64_t) { return absl::OkStatus(); });
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  Peer nobody = Upstream();
  nobody.transfer_port = testing::FreePort();
  st = source.Fetch(nobody, "db2", [](std::string_view, uint64_t) { return absl::OkStatus(); });
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "db1's agent")) << st;
}

TEST(TransferConfigTest, TransferListenAndSeedMethodInAgentYaml) {
  const std::string base =
      "node: db1\nstack: main\naddresses: {internal: 10.0.0.1}\nstate_dir: /tmp/x\n"
      "engine:\n  type: mysql\n  data_dir: /var/lib/mysql\n  seed_method: dump\n";
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(base + "transfer_listen: 0.0.0.0:7402\n", "a.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->transfer_listen, "0.0.0.0:7402");
  EXPECT_EQ(c->Info().transfer_port, 7402u);
  EXPECT_EQ(c->engine.seed_method, "dump");
  absl::StatusOr<AgentConfig> none = ParseAgentConfig(base, "a.yaml");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->Info().transfer_port, 0u);
  for (const char* bad : {"7402", "0.0.0.0:0", "0.0.0.0:70000", "h:x"}) {
    absl::StatusOr<AgentConfig> r =
        ParseAgentConfig(base + "transfer_listen: \"" + bad + "\"\n", "a.yaml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(absl::StartsWith(r.status().message(), "a.yaml: transfer_listen:")) << r.status();
  }
}

TEST(TransferServerTest, BadListenAddressIsRefused) {
  TransferServerOptions options;
  options.listen = "no-port";
  absl::StatusOr<std::unique_ptr<TransferServer>> server =
      TransferServer::Start(options, std::make_unique<StreamingFake>(1));
  EXPECT_TRUE(absl::IsInvalidArgument(server.status())) << server.status();
}

}  // namespace
}  // namespace tandem
