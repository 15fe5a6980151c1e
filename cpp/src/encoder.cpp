// The arithmetic of livelearn.features, one row at a time (see encoder.hpp).
// Built with -ffp-contract=off (CMakeLists.txt): every float expression is
// evaluated as Python evaluates it, operation by operation.
#include "livelearn/encoder.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "livelearn/hashing.hpp"

namespace livelearn {
namespace {

constexpr double kSecondsPerDay = 86400.0;
constexpr double kTwoPi = 2.0 * 3.141592653589793;  // 2.0 * math.pi, exact
// Largest float32 below 1.0: time of day stays in [0, 1) after the float32 cast.
constexpr double kBelowOne = 1.0 - 0x1p-24;
constexpr double kFloat32Max = static_cast<double>(std::numeric_limits<float>::max());

using Batch = InteractionBatch;

const Batch::Item* find_item(const Batch& batch, const Batch::Row& row, std::string_view key) {
  for (std::size_t i = row.ctx_begin; i < row.ctx_end; ++i) {
    if (batch.view(batch.items[i].key) == key) return &batch.items[i];
  }
  return nullptr;
}

}  // namespace

std::uint64_t TokenHashCache::Session::operator()(const std::string& token) {
  if (!lock_.owns_lock()) return stable_hash64(token);
  auto& map = cache_.map_;
  const auto found = map.find(token);
  if (found != map.end()) return found->second;
  const std::uint64_t h = stable_hash64(token);
  if (map.size() >= cache_.max_size_) map.clear();
  map.emplace(token, h);
  return h;
}

double py_mod(double x, double y) {
  double mod = std::fmod(x, y);
  if (mod != 0.0) {
    if ((y < 0) != (mod < 0)) mod += y;
  } else {
    mod = std::copysign(0.0, y);
  }
  return mod;
}

HashedEncoder::HashedEncoder(HashedEncoderConfig config) : config_(std::move(config)) {
  if (config_.n_buckets < 1 || config_.n_buckets > (std::int64_t{1} << 26)) {
    throw std::invalid_argument("n_buckets: must be in [1, 2**26]");
  }
  d_ = (config_.bias ? 1 : 0) + (config_.time ? 4 : 0);
  k_ = d_ + static_cast<std::int64_t>(config_.numeric_keys.size());
  n_fixed_ = (config_.action ? 1 : 0) + (config_.user ? 1 : 0);
  first_cross_ =
      n_fixed_ + (config_.open_context ? kContextFields
                                       : static_cast<std::int32_t>(config_.context_keys.size()));
  needs_float_text_ = !config_.open_context && !config_.context_keys.empty();
  for (const auto& [a, b] : config_.crosses) {
    Cross c{a, b, 0, 0, {}, {}};
    auto source = [&](const std::string& field, int& src, std::string& key) {
      if (field == "action") {
        src = 0;
      } else if (field == "user") {
        src = 1;
      } else if (field.rfind("context:", 0) == 0 && field.size() > 8) {
        src = 2;
        key = field.substr(8);
        needs_float_text_ = true;
      } else {
        throw std::invalid_argument("crosses: unknown field '" + field + "'");
      }
    };
    source(a, c.source_a, c.key_a);
    source(b, c.source_b, c.key_b);
    crosses_.push_back(std::move(c));
  }
}

std::int64_t HashedEncoder::column(std::uint64_t hash) const {
  return k_ + static_cast<std::int64_t>(hash % static_cast<std::uint64_t>(config_.n_buckets));
}

void HashedEncoder::hashed(const Batch& batch, const Batch::Row& row, std::vector<Entry>& out,
                           std::string& token, TokenHashCache::Session& hash) const {
  auto hash_of = [&](std::string_view prefix, std::string_view value) {
    token.assign(prefix.data(), prefix.size());
    token.append(value.data(), value.size());
    return column(hash(token));
  };
  if (config_.action) out.push_back({hash_of("action=", batch.view(row.action)), 0});
  if (config_.user) out.push_back({hash_of("user=", batch.view(row.user)), config_.action});
  if (row.has_context) {
    if (config_.open_context) {
      for (std::size_t i = row.ctx_begin; i < row.ctx_end; ++i) {
        const auto& item = batch.items[i];
        // str, int and bool values are categories; floats numeric-only, None absent.
        if (item.kind == Batch::Kind::None || item.kind == Batch::Kind::Float) continue;
        const std::string_view key = batch.view(item.key);
        if (std::find(config_.numeric_keys.begin(), config_.numeric_keys.end(), key) !=
            config_.numeric_keys.end()) {
          continue;
        }
        token.assign("context:");
        token.append(key.data(), key.size());
        const auto field = n_fixed_ + static_cast<std::int32_t>(hash(token) % kContextFields);
        token.push_back('=');
        const std::string_view text = batch.view(item.text);
        token.append(text.data(), text.size());
        out.push_back({column(hash(token)), field});
      }
    } else {
      for (std::size_t j = 0; j < config_.context_keys.size(); ++j) {
        const std::string& key = config_.context_keys[j];
        const Batch::Item* item = find_item(batch, row, key);
        if (item == nullptr || !item->has_text) continue;
        token.assign("context:");
        token.append(key);
        token.push_back('=');
        const std::string_view text = batch.view(item->text);
        token.append(text.data(), text.size());
        out.push_back({column(hash(token)), n_fixed_ + static_cast<std::int32_t>(j)});
      }
    }
  }
  for (std::size_t i = 0; i < crosses_.size(); ++i) {
    const Cross& c = crosses_[i];
    auto value = [&](int src, const std::string& key, std::string_view& text) {
      if (src == 0) {
        text = batch.view(row.action);
      } else if (src == 1) {
        text = batch.view(row.user);
      } else {
        const Batch::Item* item = find_item(batch, row, key);
        if (item == nullptr || !item->has_text) return false;
        text = batch.view(item->text);
      }
      return true;
    };
    std::string_view v1, v2;
    if (!value(c.source_a, c.key_a, v1) || !value(c.source_b, c.key_b, v2)) continue;
    token.assign(c.a);
    token.push_back('=');
    token.append(v1.data(), v1.size());
    token.push_back('\x1f');
    token.append(c.b);
    token.push_back('=');
    token.append(v2.data(), v2.size());
    out.push_back({column(hash(token)), first_cross_ + static_cast<std::int32_t>(i)});
  }
}

bool HashedEncoder::dense_values(const Batch& batch, const Batch::Row& row, double* dense,
                                 std::uint8_t* present) const {
  std::int64_t c = 0;
  if (config_.bias) dense[c++] = 1.0;
  if (config_.time) {
    const double t = row.local;
    const double day = kTwoPi * py_mod(t, kSecondsPerDay) / kSecondsPerDay;
    const double week = kTwoPi * py_mod(t / kSecondsPerDay + 3.0, 7.0) / 7.0;  // 1970-01-01: Thu
    dense[c++] = std::sin(day);
    dense[c++] = std::cos(day);
    dense[c++] = std::sin(week);
    dense[c++] = std::cos(week);
  }
  for (std::size_t j = 0; j < config_.numeric_keys.size(); ++j, ++c) {
    present[c] = 0;
    dense[c] = 0.0;
    if (!row.has_context) continue;
    const Batch::Item* item = find_item(batch, row, config_.numeric_keys[j]);
    if (item == nullptr || item->kind == Batch::Kind::None) continue;
    if (item->kind == Batch::Kind::Str) return false;  // the reference raises
    const double v = item->number;
    if (!(-kFloat32Max <= v && v <= kFloat32Max)) return false;
    dense[c] = v;
    present[c] = 1;
  }
  return true;
}

bool HashedEncoder::encode_sparse(const Batch& batch, CsrOut& out) const {
  const std::size_t n = batch.rows.size();
  out.indptr.assign(1, 0);
  out.indptr.reserve(n + 1);
  out.indices.clear();
  out.values.clear();
  out.indices.reserve(n * static_cast<std::size_t>(k_ + 6));
  out.values.reserve(n * static_cast<std::size_t>(k_ + 6));
  std::vector<double> dense(static_cast<std::size_t>(k_));
  std::vector<std::uint8_t> present(static_cast<std::size_t>(k_), 1);
  std::vector<Entry> entries;
  std::string token;
  TokenHashCache::Session hash(cache_);
  for (const auto& row : batch.rows) {
    std::uint8_t* mask = present.data();
    if (!dense_values(batch, row, dense.data(), mask)) return false;
    for (std::int64_t c = 0; c < k_; ++c) {
      if (!mask[c]) continue;
      out.indices.push_back(static_cast<std::int32_t>(c));
      out.values.push_back(static_cast<float>(dense[static_cast<std::size_t>(c)]));
    }
    entries.clear();
    hashed(batch, row, entries, token, hash);
    std::sort(entries.begin(), entries.end(),
              [](const Entry& x, const Entry& y) { return x.col < y.col; });
    std::int64_t prev = -1;
    for (const Entry& e : entries) {
      if (e.col == prev) {  // a hash collision: sum into one entry
        out.values.back() += 1.0f;
      } else {
        out.indices.push_back(static_cast<std::int32_t>(e.col));
        out.values.push_back(1.0f);
        prev = e.col;
      }
    }
    out.indptr.push_back(static_cast<std::int64_t>(out.indices.size()));
  }
  return true;
}

bool HashedEncoder::encode_fields(const Batch& batch, FieldsOut& out) const {
  const std::size_t n = batch.rows.size();
  const auto k = static_cast<std::size_t>(k_);
  out.indptr.assign(1, 0);
  out.indptr.reserve(n + 1);
  out.indices.clear();
  out.fields.clear();
  out.indices.reserve(n * 6);
  out.fields.reserve(n * 6);
  out.dense.assign(n * k, 0.0f);
  std::vector<double> dense(k);
  std::vector<std::uint8_t> present(k, 1);
  std::vector<Entry> entries;
  std::string token;
  TokenHashCache::Session hash(cache_);
  for (std::size_t r = 0; r < n; ++r) {
    const auto& row = batch.rows[r];
    if (!dense_values(batch, row, dense.data(), present.data())) return false;
    for (std::size_t c = 0; c < k; ++c) out.dense[r * k + c] = static_cast<float>(dense[c]);
    entries.clear();
    hashed(batch, row, entries, token, hash);
    for (const Entry& e : entries) {
      out.indices.push_back(static_cast<std::int32_t>(e.col - k_));
      out.fields.push_back(e.field);
    }
    out.indptr.push_back(static_cast<std::int64_t>(out.indices.size()));
  }
  return true;
}

void DenseEncoder::encode(const Batch& batch, float* out) const {
  TokenHashCache::Session hash(cache_);
  std::string token;
  auto unit = [&](InteractionBatch::Span span) {
    const std::string_view text = batch.view(span);
    token.assign(text.data(), text.size());
    return static_cast<float>(unit_hash(hash(token)));
  };
  for (const auto& row : batch.rows) {
    const double tod = std::min(py_mod(row.local, kSecondsPerDay) / kSecondsPerDay, kBelowOne);
    out[0] = action_ ? unit(row.action) : 0.0f;
    out[1] = static_cast<float>(tod);
    out[2] = unit(row.user);
    out[3] = row.has_context ? 1.0f : 0.0f;
    out += 4;
  }
}

}  // namespace livelearn
