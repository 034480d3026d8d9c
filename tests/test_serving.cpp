// Serving a trace by continuous batching (runtime/server.h) on stories260K's real weights: every
// request gets the greedy tokens it gets alone with the contiguous cache, whatever the policy,
// the KV codec, the preemptions and the prefix reuse; traces read from CSV refuse bad rows with
// one line naming the row.
#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "core/error.h"
#include "experiments/trace.h"
#include "runtime/server.h"
#include "test_stories.h"

namespace kvscope {
namespace {

std::vector<int32_t> tokens(int n, int salt) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; i++) t.push_back(int32_t(3 + (i * 37 + salt * 11) % 500));
    return t;
}

// Unequal lengths, a 40-token prefix shared by most requests; all arrive at once, so which
// tokens each step computes does not depend on how long steps take.
std::vector<TraceRequest> trace() {
    std::vector<TraceRequest> t;
    const std::vector<int32_t> sys = tokens(40, 99);
    for (int i = 0; i < 10; i++) {
        TraceRequest r;
        r.arrival_s = 0.0;
        if (i % 3 != 2) r.prompt = sys;
        const std::vector<int32_t> own = tokens(2 + (i * 7) % 23, i);
        r.prompt.insert(r.prompt.end(), own.begin(), own.end());
        r.max_new = 3 + (i * 11) % 30;
        t.push_back(r);
    }
    return t;
}

TEST(Serving, EveryRequestGetsItsTokensAloneUnderEveryPolicy) {
    const std::vector<TraceRequest> reqs = trace();
    for (DType kv : {DType::F32, DType::I8}) {
        std::vector<std::vector<int32_t>> alone;
        for (const TraceRequest& r : reqs) alone.push_back(test::stories_greedy(kv, true, {r.prompt}, r.max_new)[0]);
        for (ServePolicy p : {ServePolicy::Static, ServePolicy::Paged, ServePolicy::Prefix}) {
            ServeOptions so;
            so.sched.policy = p;
            so.sched.max_len = 128;
            so.sched.block_tokens = 8;
            // Static: two lanes. Paged: 20 blocks, less than the trace wants at once, so requests
            // are preempted and recomputed.
            so.sched.kv_tokens = p == ServePolicy::Static ? 256 : 160;
            so.sched.step_tokens = 48;  // prompts longer than this are prefilled in chunks
            so.kv = kv;
            Server s(*test::stories260k().weights, so);
            const ServeResult res = s.run(reqs);
            ASSERT_EQ(res.requests.size(), reqs.size());
            for (size_t i = 0; i < reqs.size(); i++)
                EXPECT_EQ(res.requests[i].tokens, alone[i]) << serve_policy_name(p) << " " << dtype_name(kv) << " request " << i;
            if (p == ServePolicy::Static) {
                EXPECT_LE(res.max_running, 2);
            } else {
                EXPECT_GT(res.preemptions, 0) << serve_policy_name(p);
            }
            if (p == ServePolicy::Prefix) {
                EXPECT_GE(res.prefix_tokens_reused, 40 * 4);
            }
            for (const RequestRecord& q : res.requests) {
                EXPECT_GE(q.first_token_s, q.arrival_s);
                EXPECT_GE(q.finish_s, q.first_token_s);
                EXPECT_EQ(q.n_out, int(q.tokens.size()));
            }
            for (const TimelinePoint& pt : res.timeline) EXPECT_LE(pt.held_tokens, pt.reserved_tokens);
        }
    }
}

TEST(Serving, RefusesFormatsAndBudgetsItCannotServe) {
    ServeOptions so;
    so.sched.max_len = 600;  // stories260K's window is 512
    so.sched.kv_tokens = 1200;
    EXPECT_THROW(Server(*test::stories260k().weights, so), Error);
    so.sched.max_len = 64;
    so.kv = KvFormat(DType::I4);
    so.kv.residual = 16;
    EXPECT_THROW(Server(*test::stories260k().weights, so), Error);
}

std::string error_of(const std::string& csv) {
    try {
        exp::parse_trace_csv(csv, "t.csv");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Serving, TraceCsvParsesAndRefusesBadRowsNamingThem) {
    const auto rows = exp::parse_trace_csv("arrival_s,prompt_len,output_len,shared_prefix_len\n0,10,5,4\n0.5, 20 ,1,0\n", "t.csv");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[1].prompt_len, 20);
    EXPECT_EQ(rows[0].shared_prefix_len, 4);
    EXPECT_DOUBLE_EQ(rows[1].arrival_s, 0.5);
    // Columns in any order, extra ones ignored, shared_prefix_len optional.
    EXPECT_EQ(exp::parse_trace_csv("note,output_len,prompt_len,arrival_s\nx,3,7,1\n", "t.csv")[0].prompt_len, 7);

    EXPECT_EQ(error_of(""), "t.csv: empty file (expected a header line with arrival_s, prompt_len, output_len (and "
                            "optionally shared_prefix_len), then one request per row)");
    EXPECT_NE(error_of("arrival_s,prompt_len\n0,4\n").find("t.csv: missing column 'output_len'"), std::string::npos);
    EXPECT_EQ(error_of("arrival_s,prompt_len,output_len\n0,4,2\n1,-3,2\n"),
              "t.csv row 2: prompt_len '-3': expected an integer of at least 1");
    EXPECT_EQ(error_of("arrival_s,prompt_len,output_len\nsoon,4,2\n"),
              "t.csv row 1: arrival_s 'soon': expected seconds from the trace's start (a number >= 0)");
    EXPECT_EQ(error_of("arrival_s,prompt_len,output_len\n0,4\n"), "t.csv row 1: 2 fields, the header has 3");
    EXPECT_EQ(error_of("arrival_s,prompt_len,output_len,shared_prefix_len\n0,4,2,5\n"),
              "t.csv row 1: shared_prefix_len 5 is longer than prompt_len 4");
    EXPECT_NE(error_of("arrival_s,prompt_len,output_len\n").find("header but no requests"), std::string::npos);

    // A request longer than a request may be, named by its row.
    const ModelConfig& c = test::stories260k().cfg;
    const auto long_rows = exp::parse_trace_csv("arrival_s,prompt_len,output_len\n0,10,5\n0,500,20\n", "t.csv");
    try {
        exp::trace_requests(long_rows, nullptr, c, c.n_ctx, "t.csv", 1);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "t.csv row 2: prompt_len 500 + output_len 20 = 520 exceeds the 512 positions a request may hold");
    }
}

TEST(Serving, GeneratedTracesAreSeededAndScaleWithTheRate) {
    exp::TraceGen g;
    g.n_requests = 20;
    g.prompt = {4, 9};
    g.output = {2, 5};
    g.system_prompt = 6;
    const auto a = exp::generate_trace(g), b = exp::generate_trace(g);
    ASSERT_EQ(a.size(), 20u);
    for (size_t i = 0; i < a.size(); i++) {
        EXPECT_EQ(a[i].prompt_len, b[i].prompt_len);
        EXPECT_GE(a[i].prompt_len, 10);
        EXPECT_LE(a[i].prompt_len, 15);
        EXPECT_GE(a[i].output_len, 2);
        EXPECT_LE(a[i].output_len, 5);
        EXPECT_EQ(a[i].shared_prefix_len, 6);
    }
    const auto slow = exp::with_rate(a, 2.0, 1), fast = exp::with_rate(a, 4.0, 1);
    EXPECT_EQ(slow[0].arrival_s, 0.0);
    for (size_t i = 1; i < a.size(); i++) {
        EXPECT_GT(slow[i].arrival_s, slow[i - 1].arrival_s);
        EXPECT_NEAR(fast[i].arrival_s * 2, slow[i].arrival_s, 1e-9);
    }
    const ModelConfig& c = test::stories260k().cfg;
    const auto reqs = exp::trace_requests(a, nullptr, c, c.n_ctx, "gen", 1);
    for (const TraceRequest& r : reqs)  // the system prompt is the same for all
        EXPECT_TRUE(std::equal(r.prompt.begin(), r.prompt.begin() + 6, reqs[0].prompt.begin()));
    EXPECT_NE(reqs[0].prompt[6], reqs[1].prompt[6]);
    EXPECT_THROW(exp::parse_len_range("9-3", "--prompt-lens"), Error);
    EXPECT_THROW(exp::parse_len_range("0", "--prompt-lens"), Error);
    EXPECT_EQ(exp::parse_len_range("32-256", "--prompt-lens").hi, 256);
}

}  // namespace
}  // namespace kvscope
