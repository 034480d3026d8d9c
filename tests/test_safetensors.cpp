// The safetensors reader against well-formed and broken files.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "model/safetensors.h"
#include "test_util.h"

using namespace kvscope;

namespace {

std::vector<uint8_t> file_bytes(const std::string& header, size_t data_bytes) {
    std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
    uint64_t n = header.size();
    for (int i = 0; i < 8; i++) b[size_t(i)] = uint8_t(n >> (8 * i));
    std::memcpy(b.data() + 8, header.data(), header.size());
    return b;
}

std::string parse_error(const std::vector<uint8_t>& b) {
    try {
        SafetensorsFile::parse(b.data(), b.size(), "x.safetensors");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Safetensors, WriteThenOpenRoundTrips) {
    auto dir = test::temp_dir("st");
    std::vector<float> a = {1, 2, 3, 4, 5, 6};
    std::vector<uint16_t> h = {0x3c00, 0x4000};
    write_safetensors(dir / "m.safetensors",
                      {{"a", StDType::F32, {2, 3}, a.data()}, {"b.h", StDType::F16, {2}, h.data()}},
                      {{"format", "pt"}, {"k", "v"}});
    SafetensorsFile f = SafetensorsFile::open(dir / "m.safetensors");
    ASSERT_NE(f.find("a"), nullptr);
    EXPECT_EQ(f.find("a")->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(std::memcmp(f.find("a")->data, a.data(), 24), 0);
    EXPECT_EQ(f.find("b.h")->dtype, StDType::F16);
    EXPECT_EQ(f.metadata().at("k"), "v");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.find("a")->data) % 8, 0u);  // data section aligned
    EXPECT_EQ(f.find("nope"), nullptr);
}

TEST(Safetensors, RejectsTruncatedFiles) {
    std::vector<uint8_t> b = {1, 2, 3};
    EXPECT_NE(parse_error(b).find("truncated"), std::string::npos);
}

TEST(Safetensors, RejectsHeaderLengthPastTheEnd) {
    auto b = file_bytes("{}", 0);
    b[0] = 0xff;
    b[1] = 0xff;
    std::string e = parse_error(b);
    EXPECT_NE(e.find("past the end"), std::string::npos) << e;
    EXPECT_NE(e.find("x.safetensors"), std::string::npos) << e;
}

TEST(Safetensors, RejectsMalformedJson) {
    EXPECT_NE(parse_error(file_bytes("{\"a\": [", 0)).find("not valid JSON"), std::string::npos);
    EXPECT_NE(parse_error(file_bytes("[1,2]", 0)).find("JSON object"), std::string::npos);
}

TEST(Safetensors, RejectsUnknownDtype) {
    std::string e = parse_error(file_bytes(R"({"w":{"dtype":"F8_E9","shape":[2],"data_offsets":[0,2]}})", 2));
    EXPECT_NE(e.find("unknown dtype \"F8_E9\""), std::string::npos) << e;
}

TEST(Safetensors, RejectsOffsetsOutsideTheData) {
    std::string e = parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8));
    EXPECT_NE(e.find("outside the data section"), std::string::npos) << e;
}

TEST(Safetensors, RejectsSizeThatDoesNotMatchShape) {
    std::string e = parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8));
    EXPECT_NE(e.find("needs 12"), std::string::npos) << e;
}

TEST(Safetensors, RejectsBadEntries) {
    EXPECT_FALSE(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0)).empty());
    EXPECT_FALSE(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[1]}})", 4)).empty());
    EXPECT_FALSE(parse_error(file_bytes(R"({"w":3})", 0)).empty());
    EXPECT_FALSE(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)).empty());
}

TEST(Safetensors, OpenNamesAMissingFile) {
    try {
        SafetensorsFile::open("/nonexistent/model.safetensors");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.safetensors"), std::string::npos);
    }
}
