// Feature encoding of interactions, the arithmetic of livelearn.features:
// HashedEncoder (HashedFeatureEncoder: dense slots, numeric slots, hashed
// one-hot buckets, crosses) and DenseEncoder (FeatureEncoder's 4 inputs).
//
// Input is an InteractionBatch: the text and numbers of each interaction,
// read once from the caller's objects (the binding does this under the GIL);
// everything here is plain C++ and may run without it. Every token and hash
// is the one the Python reference builds (tokens "action=<a>", "user=<u>",
// "context:<key>=<value>", crosses "<a>=<v1>\x1f<b>=<v2>", hashed with
// stable_hash64), so native and Python paths give identical columns.
//
// A value the reference path must judge (a numeric key holding text, a number
// beyond float32) is not an error here: the encode_* methods return false and
// the caller runs the reference path, which raises its usual error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace livelearn {

// A batch of interactions as text and numbers. Strings live in one arena.
struct InteractionBatch {
  enum class Kind : std::uint8_t { None, Str, Int, Bool, Float };
  struct Span {
    std::size_t offset = 0, size = 0;
  };
  struct Item {  // one context entry
    Span key;
    Span text;              // the category text: str, decimal int, "true"/"false", or a float's
    bool has_text = false;  // false for None, and for floats whose text was not needed
    Kind kind = Kind::None;
    double number = 0.0;  // Int, Bool (0/1) and Float values
  };
  struct Row {
    double local = 0.0;  // POSIX seconds shifted to the encoder's timezone
    Span action, user;
    std::size_t ctx_begin = 0, ctx_end = 0;  // its items
    bool has_context = false;                // a non-empty context
  };

  std::string arena;
  std::vector<Row> rows;
  std::vector<Item> items;

  Span add(std::string_view s) {
    Span out{arena.size(), s.size()};
    arena.append(s.data(), s.size());
    return out;
  }
  std::string_view view(Span s) const { return std::string_view(arena).substr(s.offset, s.size); }
  void clear() {
    arena.clear();
    rows.clear();
    items.clear();
  }
};

struct CsrOut {  // rows with sorted, unique columns (collisions summed)
  std::vector<std::int64_t> indptr;
  std::vector<std::int32_t> indices;
  std::vector<float> values;
};

struct FieldsOut {  // hashed entries in field order (values all 1), dense slots
  std::vector<std::int64_t> indptr;
  std::vector<std::int32_t> indices;  // buckets in [0, n_buckets)
  std::vector<std::int32_t> fields;
  std::vector<float> dense;  // rows x n_dense, row-major
};

// Memoised stable_hash64 of tokens, emptied when it outgrows max_size (hot
// tokens are back after one miss), like livelearn.hashing.HashCache. A batch
// uses it through a Session, which holds the cache's lock if it is free and
// otherwise hashes without it: concurrent encoders never wait for each other.
class TokenHashCache {
 public:
  explicit TokenHashCache(std::size_t max_size = 65536) : max_size_(max_size) {}

  class Session {
   public:
    explicit Session(TokenHashCache& cache)
        : cache_(cache), lock_(cache.mutex_, std::try_to_lock) {}
    std::uint64_t operator()(const std::string& token);

   private:
    TokenHashCache& cache_;
    std::unique_lock<std::mutex> lock_;
  };

 private:
  std::size_t max_size_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::uint64_t> map_;
};

struct HashedEncoderConfig {
  std::int64_t n_buckets = 1 << 18;
  bool action = true, user = true, time = true, bias = true;
  bool open_context = true;  // context_keys=None: every str/int/bool value is hashed
  std::vector<std::string> context_keys, numeric_keys;
  std::vector<std::pair<std::string, std::string>> crosses;
};

class HashedEncoder {
 public:
  // Open context keys share this many field slots (HashedFeatureEncoder.CONTEXT_FIELDS).
  static constexpr int kContextFields = 4;

  // Throws std::invalid_argument for an out-of-range n_buckets or an unknown
  // cross field (the Python class validates the rest first).
  explicit HashedEncoder(HashedEncoderConfig config);

  std::int64_t n_dense() const { return k_; }
  std::int64_t n_inputs() const { return k_ + config_.n_buckets; }
  // True when a float context value can become a category (a listed key or a
  // cross on a context key): the reader must then fill in its text.
  bool needs_float_text() const { return needs_float_text_; }

  bool encode_sparse(const InteractionBatch& batch, CsrOut& out) const;
  bool encode_fields(const InteractionBatch& batch, FieldsOut& out) const;

 private:
  struct Cross {
    std::string a, b;                // field names, e.g. "user", "context:item"
    int source_a = 0, source_b = 0;  // 0 action, 1 user, 2 context
    std::string key_a, key_b;        // context keys
  };
  struct Entry {
    std::int64_t col;
    std::int32_t field;
  };

  // The hashed columns of one row in field order (duplicates possible).
  void hashed(const InteractionBatch& batch, const InteractionBatch::Row& row,
              std::vector<Entry>& out, std::string& token, TokenHashCache::Session& hash) const;
  // Dense slots then numeric slots of one row into `dense` (k_ values); the
  // mask says which numeric slots are present. False: the reference must judge.
  bool dense_values(const InteractionBatch& batch, const InteractionBatch::Row& row, double* dense,
                    std::uint8_t* present) const;
  std::int64_t column(std::uint64_t hash) const;

  HashedEncoderConfig config_;
  std::int64_t d_ = 0;  // bias + time slots
  std::int64_t k_ = 0;  // d_ + numeric slots
  std::int32_t n_fixed_ = 0;
  std::int32_t first_cross_ = 0;
  bool needs_float_text_ = false;
  std::vector<Cross> crosses_;
  mutable TokenHashCache cache_;
};

// FeatureEncoder's 4 inputs per row (rows x 4, row-major): unit_hash(action)
// (0 without `action`), time of day in [0, 1), unit_hash(user), 1 if the
// context is non-empty.
class DenseEncoder {
 public:
  explicit DenseEncoder(bool action) : action_(action) {}
  void encode(const InteractionBatch& batch, float* out) const;

 private:
  bool action_;
  mutable TokenHashCache cache_;
};

// Python's float % for a positive divisor (the result takes the divisor's sign).
double py_mod(double x, double y);

}  // namespace livelearn
