// PostfixPolicy: the request reader under hostile input (split reads, 10,000 attributes, NULs,
// long lines) and the answers from the decision table and from rate playbooks fed at DATA.
#include "engine/policy/postfix_policy.h"

#include <gtest/gtest.h>

#include "engine/policy/decision_feed.h"
#include "mxward/playbook.h"
#include "mxward/playbook_engine.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

constexpr UnixMicros kT0 = 1'795'000'000 * kMicrosPerSecond;

std::string Request(const std::string& state, const std::string& client,
                    const std::string& user = "", int recipients = 0,
                    const std::string& queue_id = "") {
  return "request=smtpd_access_policy\nprotocol_state=" + state +
         "\nprotocol_name=ESMTP\nclient_address=" + client +
         "\nclient_name=unknown\nhelo_name=x\nsender=a@example.org\nrecipient=b@example.net\n"
         "recipient_count=" +
         std::to_string(recipients) + "\nqueue_id=" + queue_id + "\nsasl_username=" + user +
         "\nsize=0\nccert_subject=\nunknown_future_attribute=whatever\n\n";
}

TEST(PostfixPolicyReaderTest, RequestsSplitAtEveryByteArriveWhole) {
  const std::string two = Request("RCPT", "192.0.2.1", "alice") + Request("DATA", "192.0.2.2");
  PostfixPolicyReader reader;
  std::vector<PostfixPolicyRequest> out;
  for (char c : two) ASSERT_OK(reader.Feed(std::string_view(&c, 1), &out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].request, "smtpd_access_policy");
  EXPECT_EQ(out[0].protocol_state, "RCPT");
  EXPECT_EQ(out[0].client_address, "192.0.2.1");
  EXPECT_EQ(out[0].sasl_username, "alice");
  EXPECT_EQ(out[1].protocol_state, "DATA");
  EXPECT_EQ(out[1].attributes, 14u);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(PostfixPolicyReaderTest, TenThousandAttributesCloseTheConnection) {
  std::string flood = "request=smtpd_access_policy\n";
  for (int i = 0; i < 10'000; ++i) flood += "a" + std::to_string(i) + "=x\n";
  PostfixPolicyReader reader;
  std::vector<PostfixPolicyRequest> out;
  const Status st = reader.Feed(flood, &out);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("attributes"), std::string::npos) << st.message();
  EXPECT_TRUE(out.empty());
  // Failed for good: a valid request afterwards is not read.
  EXPECT_FALSE(reader.Feed(Request("RCPT", "192.0.2.1"), &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(PostfixPolicyReaderTest, NulLongLinesAndGarbageAreProtocolErrors) {
  static constexpr char kNul[] = "request=smtpd_access_policy\nsender=a\0b\n\n";
  const std::string with_nul(kNul, sizeof kNul - 1);
  const std::string long_line = "sender=" + std::string(1'000'000, 'x');
  for (const std::string& bad :
       {with_nul, long_line, std::string("no equals sign\n\n"), std::string("=value\n\n")}) {
    PostfixPolicyReader reader;
    std::vector<PostfixPolicyRequest> out;
    EXPECT_FALSE(reader.Feed(bad, &out).ok()) << bad.substr(0, 40);
    EXPECT_TRUE(out.empty());
    EXPECT_LE(reader.buffered(), kMaxPostfixLineBytes);
  }
}

TEST(PostfixPolicyReaderTest, CrLfAndEmptyLinesBetweenRequestsAreTolerated) {
  PostfixPolicyReader reader;
  std::vector<PostfixPolicyRequest> out;
  ASSERT_OK(
      reader.Feed("\n\nrequest=smtpd_access_policy\r\nclient_address=192.0.2.5\r\n\r\n", &out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].client_address, "192.0.2.5");
}

struct Collect : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

std::unique_ptr<PlaybookEngine> Engine(const std::string& toml) {
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(toml, "rules.d/account-rate.toml", &diags);
  for (const auto& d : diags) ADD_FAILURE() << d.ToString();
  std::vector<Playbook> pbs;
  if (pb.ok()) pbs.push_back(std::move(*pb));
  PlaybookEngineOptions o;
  o.hash_seed = 9;
  return PlaybookEngine::Create(std::move(pbs), Config::Defaults(), o);
}

std::string RatePlaybook(const std::string& action) {
  return R"(
description = "an account sending more than 3 messages an hour"
key = "sasl_user"
[match]
events = ["message_submitted"]
source = "postfix-policy"
[trigger]
type = "count"
threshold = 3
window = "1h"
[[action]]
)" + action;
}

class PostfixPolicyTest : public ::testing::Test {
 protected:
  void Use(const std::string& action) {
    engine_ = Engine(RatePlaybook(action));
    policy_ = std::make_unique<PostfixPolicy>(
        &decisions_, [this](const Event& e) { engine_->OnEvent(e, &feed_); }, &clock_);
  }
  // `verified`: as the server marks a request that came through the unix socket (Postfix's
  // own); over TCP it is not, and playbooks that act on mailboxes do not count it.
  std::string Ask(const std::string& bytes, bool verified = true) {
    PostfixPolicyReader reader;
    std::vector<PostfixPolicyRequest> out;
    EXPECT_OK(reader.Feed(bytes, &out));
    EXPECT_EQ(out.size(), 1u);
    clock_.Advance(kMicrosPerSecond);
    if (out.empty()) return "";
    out[0].verified = verified;
    return policy_->Answer(out[0]);
  }

  ManualClock clock_{kT0};
  DecisionTable decisions_;
  Collect recorded_;
  DecisionFeed feed_{&decisions_, &recorded_, &clock_};
  std::unique_ptr<PlaybookEngine> engine_;
  std::unique_ptr<PostfixPolicy> policy_;
};

// Over TCP (loopback, no authentication in the protocol) any local process could have asked: a
// playbook that acts on mailboxes does not count those requests, however many.
TEST_F(PostfixPolicyTest, RequestsNotThroughTheSocketDoNotCountAgainstAnAccount) {
  Use("type = \"suspend_sending\"\nuser = \"{sasl_user}\"\nduration = \"30m\"\n");
  for (int i = 0; i < 10; ++i) {
    const std::string qid = "T" + std::to_string(i);
    EXPECT_EQ(Ask(Request("DATA", "192.0.2.50", "alice@example.org", 1, qid), false), "DUNNO");
  }
  EXPECT_TRUE(recorded_.incidents.empty());
  EXPECT_EQ(engine_->playbook_unverified_ignored(0), 10u);
}

TEST_F(PostfixPolicyTest, TheMessagePastTheLimitIsDeferredAtData) {
  Use("type = \"suspend_sending\"\nuser = \"{sasl_user}\"\nduration = \"30m\"\n");
  EXPECT_EQ(Ask(Request("DATA", "192.0.2.50", "alice@example.org", 1, "Q1")), "DUNNO");
  EXPECT_EQ(Ask(Request("DATA", "192.0.2.50", "alice@example.org", 1, "Q2")), "DUNNO");
  const std::string third = Ask(Request("DATA", "192.0.2.50", "alice@example.org", 1, "Q3"));
  EXPECT_TRUE(third.starts_with("DEFER_IF_PERMIT 4.7.1 ")) << third;
  ASSERT_EQ(recorded_.incidents.size(), 1u);
  EXPECT_EQ(recorded_.incidents[0].key, "alice@example.org");
  // Paused from MAIL on, for this account only. MAIL feeds no event; RCPT a recipient_submitted
  // one, which this playbook (message_submitted) does not count.
  EXPECT_TRUE(Ask(Request("MAIL", "192.0.2.50", "Alice@Example.org")).starts_with("DEFER_IF"));
  EXPECT_EQ(Ask(Request("RCPT", "192.0.2.50", "bob@example.org")), "DUNNO");
  EXPECT_EQ(Ask(Request("CONNECT", "192.0.2.50")), "DUNNO");
  EXPECT_EQ(policy_->counters().events, 4u);
  EXPECT_EQ(recorded_.incidents.size(), 1u);
  // Thirty minutes later the pause is over.
  clock_.Advance(1800 * kMicrosPerSecond);
  EXPECT_EQ(Ask(Request("RCPT", "192.0.2.50", "alice@example.org")), "DUNNO");
}

TEST_F(PostfixPolicyTest, HoldQueuePutsTheMessageOnHoldAndTheIncidentNamesIt) {
  Use("type = \"hold_queue\"\nuser = \"{sasl_user}\"\n");
  (void)Ask(Request("DATA", "192.0.2.51", "carol@example.org", 2, "4XyZ1"));
  (void)Ask(Request("DATA", "192.0.2.51", "carol@example.org", 2, "4XyZ2"));
  EXPECT_EQ(Ask(Request("DATA", "192.0.2.51", "carol@example.org", 2, "4XyZ3")),
            "HOLD mxward: held for review");
  ASSERT_EQ(recorded_.incidents.size(), 1u);
  ASSERT_EQ(recorded_.incidents[0].actions.size(), 1u);
  EXPECT_EQ(recorded_.incidents[0].actions[0].params["queue_ids"],
            nlohmann::json::array({"4XyZ3"}));
}

TEST_F(PostfixPolicyTest, BannedAddressIsRejectedAtEveryStateAndSuspendedAccountsToo) {
  Use("type = \"hold_queue\"\nuser = \"{sasl_user}\"\n");
  IpPrefix net;
  ASSERT_TRUE(IpPrefix::Parse("203.0.113.0/24", &net));
  decisions_.Ban(net, 0, "by hand");
  for (const char* state : {"CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE"}) {
    EXPECT_EQ(Ask(Request(state, "203.0.113.9")), "REJECT 5.7.1 Access denied by policy") << state;
  }
  decisions_.SetAccount("dave@example.org", AccountDecisionKind::kSuspend, 0, "by hand");
  EXPECT_TRUE(Ask(Request("MAIL", "192.0.2.52", "dave@example.org")).starts_with("REJECT 5.7.1"));
  EXPECT_EQ(Ask(Request("RCPT", "192.0.2.52", "erin@example.org")), "DUNNO");
  EXPECT_EQ(Ask("request=junk\n\n"), "DUNNO");
  EXPECT_EQ(policy_->counters().reject, 7u);
}

// Recipient domains counted at RCPT, before Postfix accepts the recipient: the recipient that
// brings the account to its third distinct domain in an hour is deferred by its own incident.
TEST_F(PostfixPolicyTest, RecipientDomainsAreCountedAtRcptAndTheCrossingOneIsDeferred) {
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(R"(
description = "an account writing to 3 recipient domains in an hour"
key = "sasl_user"
[match]
events = ["recipient_submitted"]
source = "postfix-policy"
[trigger]
type = "distinct"
field = "recipient_domain"
threshold = 3
window = "1h"
[[action]]
type = "suspend_sending"
user = "{sasl_user}"
duration = "1h"
)",
                                "rules.d/rcpt-domains.toml", &diags);
  ASSERT_OK(pb);
  std::vector<Playbook> pbs;
  pbs.push_back(std::move(*pb));
  engine_ = PlaybookEngine::Create(std::move(pbs), Config::Defaults());
  policy_ = std::make_unique<PostfixPolicy>(
      &decisions_, [this](const Event& e) { engine_->OnEvent(e, &feed_); }, &clock_);
  // As the shipped snippet makes Postfix ask: twice per RCPT (client and recipient
  // restrictions), same instance; counted once.
  auto rcpt = [this](const std::string& recipient) {
    const std::string request =
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.60\n"
        "sasl_username=frank@example.org\nsender=frank@example.org\ninstance=7a1.5f0.1\n"
        "recipient=" +
        recipient + "\n\n";
    const std::string first = Ask(request);
    EXPECT_EQ(Ask(request), first) << recipient;
    return first;
  };
  EXPECT_EQ(rcpt("a@one.example"), "DUNNO");
  EXPECT_EQ(rcpt("b@one.example"), "DUNNO") << "the same domain again";
  EXPECT_EQ(rcpt("c@two.example"), "DUNNO");
  EXPECT_TRUE(rcpt("d@three.example").starts_with("DEFER_IF_PERMIT 4.7.1")) << "third domain";
  EXPECT_TRUE(rcpt("e@one.example").starts_with("DEFER_IF_PERMIT 4.7.1")) << "paused";
  ASSERT_EQ(recorded_.incidents.size(), 1u);
  EXPECT_EQ(recorded_.incidents[0].key, "frank@example.org");
  EXPECT_EQ(recorded_.incidents[0].count, 3u);
  EXPECT_EQ(policy_->counters().events, 5u) << "five recipients, ten requests: one event each";
}

}  // namespace
}  // namespace mxward
