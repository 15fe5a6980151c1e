// The native encoder: BLAKE2b-64 against hashlib's values, Python's float %,
// and the layout of HashedEncoder rows (columns, collisions, fields).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "livelearn/encoder.hpp"
#include "livelearn/hashing.hpp"

namespace livelearn {
namespace {

TEST(Hashing, MatchesHashlibBlake2b64) {
  // int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
  EXPECT_EQ(stable_hash64(""), 13020603013274838756ULL);
  EXPECT_EQ(stable_hash64("click"), 3201885008413916684ULL);
  EXPECT_EQ(stable_hash64(std::string(128, 'x')), 154496675747142800ULL);  // one full block
  EXPECT_EQ(stable_hash64(std::string(129, 'x')), 11792093813925010968ULL);
  EXPECT_EQ(stable_hash64(std::string(1000, 'a')), 15573970791842436383ULL);
  EXPECT_EQ(stable_hash64("\xc3\xa9\xf0\x9f\x8e\x89"), 5774924597378700615ULL);  // "é🎉"
  EXPECT_EQ(stable_hash64("action=buy"), 275342153521271362ULL);
}

TEST(Hashing, UnitHashInRange) {
  EXPECT_EQ(unit_hash(0), -1.0);
  EXPECT_LT(unit_hash(~0ULL), 1.0);
}

TEST(PyMod, FollowsTheDivisorSign) {
  EXPECT_EQ(py_mod(-1.0, 7.0), 6.0);
  EXPECT_EQ(py_mod(86401.0, 86400.0), 1.0);
  EXPECT_FALSE(std::signbit(py_mod(-0.0, 7.0)));
}

InteractionBatch one_row(const std::string& action, const std::string& user) {
  InteractionBatch b;
  InteractionBatch::Row row;
  row.action = b.add(action);
  row.user = b.add(user);
  b.rows.push_back(row);
  return b;
}

TEST(HashedEncoder, OneBucketSumsCollisions) {
  HashedEncoderConfig c;
  c.n_buckets = 1;
  c.time = false;
  c.crosses = {{"user", "action"}};
  HashedEncoder enc(c);
  EXPECT_EQ(enc.n_inputs(), 2);
  CsrOut out;
  ASSERT_TRUE(enc.encode_sparse(one_row("a", "u"), out));
  EXPECT_EQ(out.indptr, (std::vector<std::int64_t>{0, 2}));
  EXPECT_EQ(out.indices, (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(out.values, (std::vector<float>{1.0f, 3.0f}));  // action, user, user x action
}

TEST(HashedEncoder, ColumnsAreTheTokenHashes) {
  HashedEncoderConfig c;
  c.n_buckets = 1 << 20;
  c.time = false;
  c.bias = false;
  c.crosses = {{"user", "action"}};
  HashedEncoder enc(c);
  FieldsOut out;
  ASSERT_TRUE(enc.encode_fields(one_row("buy", "7"), out));
  const auto col = [](const std::string& t) {
    return static_cast<std::int32_t>(stable_hash64(t) % (1 << 20));
  };
  EXPECT_EQ(out.indices, (std::vector<std::int32_t>{col("action=buy"), col("user=7"),
                                                    col("user=7\x1f"
                                                        "action=buy")}));
  EXPECT_EQ(out.fields, (std::vector<std::int32_t>{0, 1, 6}));  // 2 fixed + 4 context slots
}

TEST(HashedEncoder, NumericTextNeedsTheReference) {
  HashedEncoderConfig c;
  c.numeric_keys = {"price"};
  HashedEncoder enc(c);
  InteractionBatch b = one_row("a", "u");
  InteractionBatch::Item item;
  item.key = b.add("price");
  item.kind = InteractionBatch::Kind::Str;
  item.text = b.add("cheap");
  item.has_text = true;
  b.items.push_back(item);
  b.rows[0].ctx_end = 1;
  b.rows[0].has_context = true;
  CsrOut out;
  EXPECT_FALSE(enc.encode_sparse(b, out));
  b.items[0].kind = InteractionBatch::Kind::Float;
  b.items[0].number = 9.5;
  ASSERT_TRUE(enc.encode_sparse(b, out));
  EXPECT_EQ(out.indices[5], 5);
  EXPECT_EQ(out.values[5], 9.5f);
}

TEST(HashedEncoder, RefusesBadBuckets) {
  HashedEncoderConfig c;
  c.n_buckets = 0;
  EXPECT_THROW(HashedEncoder{c}, std::invalid_argument);
  c.n_buckets = 8;
  c.crosses = {{"user", "bogus"}};
  EXPECT_THROW(HashedEncoder{c}, std::invalid_argument);
}

}  // namespace
}  // namespace livelearn
