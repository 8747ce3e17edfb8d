// Identities, authorization, addresses, the certificates tandemctl cert
// makes, and mutual TLS between a real gRPC server and clients.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/files.h"
#include "gtest/gtest.h"
#include "security/certs.h"
#include "security/identity.h"
#include "security/tls.h"
#include "tandem.grpc.pb.h"
#include "tests/harness/harness.h"
#include "tests/harness/pki.h"

namespace tandem {
namespace {

using ::tandem::testing::FreePort;
using ::tandem::testing::PollUntil;
using ::tandem::testing::TempDir;

TEST(IdentityTest, SpiffeIdsRoundTrip) {
  for (const Identity& id :
       {Identity::Node("db1"), Identity::Controller("ctl-1"),
        Identity::Operator("alice", OperatorRole::kAdmin),
        Identity::Operator("bob.b", OperatorRole::kViewer)}) {
    absl::StatusOr<Identity> back = ParseSpiffeId(SpiffeId(id));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, id);
  }
  EXPECT_EQ(SpiffeId(Identity::Node("db1")), "spiffe://tandem/node/db1");
  EXPECT_EQ(SpiffeId(Identity::Operator("a", OperatorRole::kViewer)),
            "spiffe://tandem/operator/viewer/a");
}

TEST(IdentityTest, RefusesForeignOrMalformedIds) {
  for (const char* uri :
       {"spiffe://other/node/db1", "spiffe://tandem/node/", "spiffe://tandem/node/a/b",
        "spiffe://tandem/operator/root/alice", "spiffe://tandem/operator/admin",
        "spiffe://tandem/master/db1", "spiffe://tandem/node/db 1", "https://tandem/node/db1"}) {
    EXPECT_FALSE(ParseSpiffeId(uri).ok()) << uri;
  }
}

TEST(IdentityTest, WhoMayDoWhat) {
  const Identity admin = Identity::Operator("alice", OperatorRole::kAdmin);
  const Identity viewer = Identity::Operator("bob", OperatorRole::kViewer);
  const Identity db1 = Identity::Node("db1");
  EXPECT_TRUE(AuthorizeOperatorCall(admin, true, "promote").ok());
  EXPECT_TRUE(AuthorizeOperatorCall(viewer, false, "list nodes").ok());
  absl::Status denied = AuthorizeOperatorCall(viewer, true, "promote");
  EXPECT_TRUE(absl::IsPermissionDenied(denied));
  EXPECT_EQ(denied.message(), "operator bob (viewer) may not promote: it needs an admin certificate");
  EXPECT_TRUE(absl::IsPermissionDenied(AuthorizeOperatorCall(db1, false, "list nodes")));
  EXPECT_TRUE(absl::IsPermissionDenied(AuthorizeOperatorCall(Identity{}, false, "list nodes")));
  EXPECT_TRUE(AuthorizeOperatorCall(Identity::Insecure(), true, "promote").ok());

  EXPECT_TRUE(AuthorizeNodeCall(db1, "db1", "report").ok());
  absl::Status as_other = AuthorizeNodeCall(Identity::Node("db2"), "db1", "report");
  EXPECT_TRUE(absl::IsPermissionDenied(as_other));
  EXPECT_TRUE(absl::StrContains(as_other.message(), "node db2 may not report as node db1"))
      << as_other;
  EXPECT_TRUE(absl::IsPermissionDenied(AuthorizeNodeCall(admin, "db1", "register")));
  EXPECT_TRUE(AuthorizeNodeCall(Identity::Insecure(), "db1", "register").ok());
}

TEST(AddressTest, AcceptsIpLiteralsAndHostNames) {
  for (const char* a : {"10.0.0.5", "127.0.0.1", "::1", "2001:db8::7", "db1", "db1.example.com",
                        "localhost", "a-b.c-d", "xn--bcher-kva.example"}) {
    EXPECT_TRUE(CheckHostAddress("address", a).ok()) << a;
  }
}

TEST(AddressTest, RefusesKeywordsWildcardsAndRanges) {
  for (const char* a :
       {"", "all", "ALL", "samehost", "samenet", "samerole", "sameuser", "replication", "%",
        "10.0.0.%", "db_1", "*", "*.example", "10.0.0.0/8", "::/0", "fe80::1%eth0", "1.2.3",
        "999.1.1.1", "-db", "db-", "a..b", ".db", "db.", "[::1]", "db1 ", "db\n1",
        "a\x1b[31m"}) {
    absl::Status st = CheckHostAddress("address", a);
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << "\"" << a << "\"";
  }
  EXPECT_TRUE(absl::StrContains(CheckHostAddress("internal address", "samenet").message(),
                                "keyword"));
}

TEST(AddressTest, SameHostAndLoopback) {
  EXPECT_TRUE(SameHostAddress("::1", "0:0:0:0:0:0:0:1"));
  EXPECT_TRUE(SameHostAddress("DB1.example", "db1.EXAMPLE"));
  EXPECT_FALSE(SameHostAddress("10.0.0.1", "10.0.0.2"));
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.3.2.1"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("::"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_EQ(HostOfHostPort("127.0.0.1:7400"), "127.0.0.1");
  EXPECT_EQ(HostOfHostPort("[::1]:7400"), "::1");
  EXPECT_EQ(HostOfHostPort("::1"), "::1");
  EXPECT_EQ(HostOfHostPort("db1"), "db1");
}

TEST(CertsTest, IssuesWhatItIsAskedFor) {
  const absl::Time now = absl::Now();
  absl::StatusOr<KeyAndCert> ca = CreateCa("prod", 3650, now);
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<CertificateInfo> ca_info = InspectCertificate(ca->cert_pem);
  ASSERT_TRUE(ca_info.ok());
  EXPECT_TRUE(ca_info->is_ca);
  EXPECT_EQ(ca_info->common_name, "prod CA");
  EXPECT_FALSE(ca_info->identity.has_value());

  absl::StatusOr<KeyAndCert> node =
      IssueCertificate(*ca, {Identity::Node("db1"), {"10.0.0.5", "db1.example", "::1"}, 30}, now);
  ASSERT_TRUE(node.ok()) << node.status();
  absl::StatusOr<CertificateInfo> info = InspectCertificate(node->cert_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->is_ca);
  EXPECT_EQ(info->common_name, "db1");
  EXPECT_EQ(info->issuer_common_name, "prod CA");
  ASSERT_TRUE(info->identity.has_value());
  EXPECT_EQ(*info->identity, Identity::Node("db1"));
  EXPECT_EQ(info->addresses, (std::vector<std::string>{"10.0.0.5", "db1.example", "::1"}));
  EXPECT_LT(absl::AbsDuration(info->not_after - (now + absl::Hours(24 * 30))), absl::Seconds(2));
  EXPECT_TRUE(VerifyCertificate(ca->cert_pem, node->cert_pem, now).ok());
  EXPECT_NE(node->key_pem.find("PRIVATE KEY"), std::string::npos);

  // Another CA's certificate, an expired one.
  absl::StatusOr<KeyAndCert> other = CreateCa("other", 10, now);
  ASSERT_TRUE(other.ok());
  absl::Status foreign = VerifyCertificate(other->cert_pem, node->cert_pem, now);
  EXPECT_TRUE(absl::StrContains(foreign.message(), "not signed by this CA")) << foreign;
  absl::Status expired = VerifyCertificate(ca->cert_pem, node->cert_pem, now + absl::Hours(24 * 31));
  EXPECT_TRUE(absl::StrContains(expired.message(), "expired")) << expired;
}

TEST(CertsTest, RefusesBadRequests) {
  const absl::Time now = absl::Now();
  absl::StatusOr<KeyAndCert> ca = CreateCa("c", 10, now);
  ASSERT_TRUE(ca.ok());
  EXPECT_FALSE(IssueCertificate(*ca, {Identity::Node("db1"), {}, 10}, now).ok())
      << "a node certificate without an address";
  EXPECT_FALSE(IssueCertificate(*ca, {Identity::Node("db1"), {"samenet"}, 10}, now).ok());
  EXPECT_FALSE(IssueCertificate(*ca, {Identity::Node("db 1"), {"10.0.0.1"}, 10}, now).ok());
  EXPECT_FALSE(IssueCertificate(*ca, {Identity::Operator("a", OperatorRole::kNone), {}, 10}, now).ok());
  EXPECT_FALSE(IssueCertificate(*ca, {Identity::Node("db1"), {"10.0.0.1"}, 0}, now).ok());
  absl::StatusOr<KeyAndCert> leaf = IssueCertificate(*ca, {Identity::Node("a"), {"10.0.0.1"}, 5}, now);
  ASSERT_TRUE(leaf.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      IssueCertificate(*leaf, {Identity::Node("b"), {"10.0.0.2"}, 5}, now).status()))
      << "a leaf certificate cannot sign";
  KeyAndCert mismatched{ca->key_pem, leaf->cert_pem};
  EXPECT_FALSE(IssueCertificate(mismatched, {Identity::Node("b"), {"10.0.0.2"}, 5}, now).ok());
}

using Pki = ::tandem::testing::TestPki;

TEST(CertsTest, LoadTlsMaterialSaysWhatIsWrong) {
  TempDir dir("tdsec");
  Pki pki(dir.path());
  TlsFiles files = pki.Issue("node.db1", Identity::Node("db1"), {"127.0.0.1"});
  EXPECT_TRUE(LoadTlsMaterial(files, IdentityKind::kNode, "db1", absl::Now()).ok());

  absl::Status wrong_name =
      LoadTlsMaterial(files, IdentityKind::kNode, "db2", absl::Now()).status();
  EXPECT_TRUE(absl::StrContains(wrong_name.message(), "names node db1, not node db2"))
      << wrong_name;
  EXPECT_FALSE(LoadTlsMaterial(files, IdentityKind::kController, "", absl::Now()).ok());

  TlsFiles missing = files;
  missing.cert_file = dir.Sub("nope.crt");
  absl::Status st = LoadTlsMaterial(missing, IdentityKind::kNode, "db1", absl::Now()).status();
  EXPECT_TRUE(absl::StrContains(st.message(), "tandemctl cert create-node db1")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "insecure")) << st;

  ASSERT_EQ(chmod(files.key_file.c_str(), 0644), 0);
  EXPECT_TRUE(absl::IsPermissionDenied(
      LoadTlsMaterial(files, IdentityKind::kNode, "db1", absl::Now()).status()));
  ASSERT_EQ(chmod(files.key_file.c_str(), 0600), 0);

  TlsFiles other = pki.Issue("node.db2", Identity::Node("db2"), {"127.0.0.1"});
  TlsFiles crossed{files.ca_file, files.cert_file, other.key_file};
  EXPECT_TRUE(absl::StrContains(
      LoadTlsMaterial(crossed, IdentityKind::kNode, "db1", absl::Now()).status().message(),
      "does not match"));

  TlsFiles expired = pki.Issue("old", Identity::Node("db1"), {"127.0.0.1"}, 1,
                               absl::Now() - absl::Hours(48));
  absl::Status old = LoadTlsMaterial(expired, IdentityKind::kNode, "db1", absl::Now()).status();
  EXPECT_TRUE(absl::StrContains(old.message(), "expired")) << old;
}

// A server whose ListNodes answers with the caller's identity as a node id.
class WhoAmI final : public v1::Operator::Service {
 public:
  grpc::Status ListNodes(grpc::ServerContext* context, const v1::ListNodesRequest*,
                         v1::ListNodesResponse* response) override {
    response->add_nodes()->mutable_info()->set_id(PeerIdentity(*context, true).Describe());
    return grpc::Status::OK;
  }
};

class MtlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_files_ = pki_.Issue("controller", Identity::Controller("ctl"), {"127.0.0.1"});
    absl::StatusOr<std::shared_ptr<TlsCredentials>> creds =
        TlsCredentials::Load(server_files_, IdentityKind::kController, "");
    ASSERT_TRUE(creds.ok()) << creds.status();
    server_creds_ = *creds;
    grpc::ServerBuilder builder;
    port_ = FreePort();
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port_), server_creds_->Server());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }

  // Calls ListNodes with `creds`, expecting `expected` on the server side.
  absl::StatusOr<std::string> Call(const TlsCredentials& creds, const Identity& expected,
                                   const std::string& host = "127.0.0.1",
                                   std::string* server_serial = nullptr) {
    auto channel = grpc::CreateChannel(absl::StrCat(host, ":", port_), creds.Channel(expected));
    auto stub = v1::Operator::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListNodesResponse response;
    grpc::Status st = stub->ListNodes(&context, v1::ListNodesRequest(), &response);
    if (!st.ok()) return absl::UnavailableError(st.error_message());
    if (server_serial != nullptr) {
      for (const auto& pem : context.auth_context()->FindPropertyValues("x509_pem_cert")) {
        *server_serial = InspectCertificate(std::string(pem.data(), pem.size()))->serial;
      }
    }
    return response.nodes(0).info().id();
  }

  std::shared_ptr<TlsCredentials> Client(const TlsFiles& files, IdentityKind kind) {
    absl::StatusOr<std::shared_ptr<TlsCredentials>> c = TlsCredentials::Load(files, kind, "");
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }

  TempDir dir_{"tdmtls"};
  Pki pki_{dir_.path()};
  TlsFiles server_files_;
  std::shared_ptr<TlsCredentials> server_creds_;
  WhoAmI service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(MtlsTest, BothSidesKnowWhoTheOtherIs) {
  auto alice = Client(pki_.Issue("client.alice", Identity::Operator("alice", OperatorRole::kViewer), {}),
                      IdentityKind::kOperator);
  absl::StatusOr<std::string> who = Call(*alice, Identity::Controller(""));
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, "operator alice (viewer)");
  auto db1 = Client(pki_.Issue("node.db1", Identity::Node("db1"), {"127.0.0.1"}), IdentityKind::kNode);
  EXPECT_EQ(Call(*db1, Identity::Controller("")).value_or(""), "node db1");
}

TEST_F(MtlsTest, ClientRefusesAServerThatIsNotWhatItExpects) {
  auto db1 = Client(pki_.Issue("node.db1", Identity::Node("db1"), {"127.0.0.1"}), IdentityKind::kNode);
  // Expecting node db2 (a transfer from db2) but reaching the controller.
  EXPECT_FALSE(Call(*db1, Identity::Node("db2")).ok());
  // The certificate names 127.0.0.1, not localhost.
  EXPECT_FALSE(Call(*db1, Identity::Controller(""), "localhost").ok());
}

TEST_F(MtlsTest, ServerRefusesForeignExpiredAndMissingCertificates) {
  TempDir other_dir("tdmtlso");
  Pki other(other_dir.path(), "other");
  TlsFiles foreign = other.Issue("client.mallory", Identity::Operator("mallory", OperatorRole::kAdmin), {});
  // The foreign client trusts our CA for the server, so only its own
  // certificate is wrong.
  foreign.ca_file = server_files_.ca_file;
  absl::StatusOr<std::shared_ptr<TlsCredentials>> mallory = TlsCredentials::Load(
      {other_dir.Sub("ca.crt"), foreign.cert_file, foreign.key_file}, IdentityKind::kOperator, "");
  ASSERT_TRUE(mallory.ok()) << mallory.status();
  {
    // Swap in our CA as the root the client checks the server with.
    auto channel = grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port_),
        grpc::SslCredentials({*ReadFile(server_files_.ca_file), *ReadFile(foreign.key_file),
                              *ReadFile(foreign.cert_file)}));
    auto stub = v1::Operator::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListNodesResponse response;
    EXPECT_FALSE(stub->ListNodes(&context, v1::ListNodesRequest(), &response).ok())
        << "a client certificate from another CA";
  }
  {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                       grpc::SslCredentials({*ReadFile(server_files_.ca_file), "", ""}));
    auto stub = v1::Operator::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListNodesResponse response;
    EXPECT_FALSE(stub->ListNodes(&context, v1::ListNodesRequest(), &response).ok())
        << "a client without a certificate";
  }
  {
    TlsFiles expired = pki_.Issue("client.old", Identity::Operator("old", OperatorRole::kAdmin), {},
                                  1, absl::Now() - absl::Hours(72));
    auto channel = grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port_),
        grpc::SslCredentials({*ReadFile(expired.ca_file), *ReadFile(expired.key_file),
                              *ReadFile(expired.cert_file)}));
    auto stub = v1::Operator::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListNodesResponse response;
    EXPECT_FALSE(stub->ListNodes(&context, v1::ListNodesRequest(), &response).ok())
        << "an expired client certificate";
  }
  {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                       grpc::InsecureChannelCredentials());
    auto stub = v1::Operator::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListNodesResponse response;
    EXPECT_FALSE(stub->ListNodes(&context, v1::ListNodesRequest(), &response).ok())
        << "plaintext";
  }
}

TEST_F(MtlsTest, ReloadSwapsTheCertificateForNewConnections) {
  auto alice = Client(pki_.Issue("client.alice", Identity::Operator("alice", OperatorRole::kAdmin), {}),
                      IdentityKind::kOperator);
  std::string before;
  ASSERT_TRUE(Call(*alice, Identity::Controller(""), "127.0.0.1", &before).ok());
  ASSERT_FALSE(before.empty());

  // A bad file is refused and the certificate in use stays.
  ASSERT_TRUE(WriteFileAtomic(server_files_.cert_file, "garbage", 0644).ok());
  EXPECT_FALSE(server_creds_->Reload().ok());
  std::string still;
  ASSERT_TRUE(Call(*alice, Identity::Controller(""), "127.0.0.1", &still).ok());
  EXPECT_EQ(still, before);

  pki_.Issue("controller", Identity::Controller("ctl"), {"127.0.0.1"});
  ASSERT_TRUE(server_creds_->Reload().ok());
  const std::string renewed = server_creds_->info().serial;
  EXPECT_NE(renewed, before);
  std::string now_serial;
  EXPECT_TRUE(PollUntil(
      [&] {
        return Call(*alice, Identity::Controller(""), "127.0.0.1", &now_serial).ok() &&
               now_serial == renewed;
      },
      std::chrono::seconds(20), std::chrono::milliseconds(100)))
      << "still serving " << now_serial;
}

}  // namespace
}  // namespace tandem
