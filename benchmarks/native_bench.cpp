// Google Benchmark of the native core through Network (locks, guard and
// dispatch included): ns per train_step, per train_batch row and per predict
// row for dense 4-16-8-1 and 32-64-32-1 tanh/sigmoid/BCE/SGD networks, and a
// sparse 2^20-16-8-1 network with 8 active features per example.
//
// Each benchmark cycles through a fixed pool of pre-generated examples, so
// the timed loop contains no data generation. Compare "per_row" with
// build-tests/livelearn_floor (the 4-16-8-1 step as a bare fixed-size loop).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "livelearn/network.hpp"

namespace {

using livelearn::Config;
using livelearn::CsrView;
using livelearn::Network;

constexpr std::size_t kPool = 4096;  // examples; power of two for cheap cycling
constexpr std::size_t kBatch = 256;  // rows per train_batch / predict call

Config dense_config(int inputs, int h1, int h2) {
  Config c;  // defaults: tanh hidden, sigmoid output, BCE, SGD
  c.layers = {inputs, h1, h2, 1};
  c.learning_rate = 0.01f;
  c.seed = 1;
  return c;
}

struct DenseData {
  std::vector<float> X, Y;
  explicit DenseData(std::size_t inputs) : X(kPool * inputs), Y(kPool) {
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& v : X) v = u(rng);
    for (std::size_t r = 0; r < kPool; ++r) Y[r] = X[r * inputs] > 0 ? 1.0f : 0.0f;
  }
};

// Reports the CPU time per row as a counter, in seconds with an SI prefix
// ("150n" = 150 ns), next to the per-iteration time.
void per_row(benchmark::State& state, std::size_t rows_per_iteration) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows_per_iteration));
  state.counters["per_row"] = benchmark::Counter(
      static_cast<double>(rows_per_iteration),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_TrainStep(benchmark::State& state) {
  const auto in = static_cast<int>(state.range(0));
  Network t(dense_config(in, static_cast<int>(state.range(1)), static_cast<int>(state.range(2))));
  const DenseData d(static_cast<std::size_t>(in));
  std::size_t r = 0;
  for (auto _ : state) {
    auto res = t.train_step(&d.X[r * in], &d.Y[r], nullptr);
    benchmark::DoNotOptimize(res);
    r = (r + 1) & (kPool - 1);
  }
  per_row(state, 1);
}

void BM_TrainBatch(benchmark::State& state) {
  const auto in = static_cast<int>(state.range(0));
  Network t(dense_config(in, static_cast<int>(state.range(1)), static_cast<int>(state.range(2))));
  const DenseData d(static_cast<std::size_t>(in));
  std::vector<double> losses(kBatch);
  std::size_t r = 0;
  for (auto _ : state) {
    t.train_batch(kBatch, &d.X[r * in], &d.Y[r], losses.data(), nullptr, nullptr);
    benchmark::DoNotOptimize(losses.data());
    r = (r + kBatch) & (kPool - 1);
  }
  per_row(state, kBatch);
}

void BM_Predict(benchmark::State& state) {
  const auto in = static_cast<int>(state.range(0));
  Network t(dense_config(in, static_cast<int>(state.range(1)), static_cast<int>(state.range(2))));
  const DenseData d(static_cast<std::size_t>(in));
  t.train_batch(kPool, d.X.data(), d.Y.data(), nullptr, nullptr, nullptr);  // non-trivial weights
  std::vector<float> out(kBatch);
  std::size_t r = 0;
  for (auto _ : state) {
    t.predict(kBatch, &d.X[r * in], out.data());
    benchmark::DoNotOptimize(out.data());
    r = (r + kBatch) & (kPool - 1);
  }
  per_row(state, kBatch);
}

// Sparse: 2^20 hashed inputs, 8 distinct sorted active features per example
// (the common, pre-sorted case of the duplicate check).
constexpr int kSparseInputs = 1 << 20;
constexpr std::size_t kActive = 8;

struct SparseData {
  std::vector<std::int64_t> indptr;
  std::vector<std::int32_t> indices;
  std::vector<float> values, Y;
  SparseData() : indptr(kPool + 1), indices(kPool * kActive), values(kPool * kActive), Y(kPool) {
    std::mt19937 rng(0);
    std::uniform_int_distribution<std::int32_t> feature(0, kSparseInputs - 1);
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    for (std::size_t r = 0; r < kPool; ++r) {
      indptr[r] = static_cast<std::int64_t>(r * kActive);
      std::int32_t* row = &indices[r * kActive];
      for (std::size_t j = 0; j < kActive; ++j) {
        std::int32_t f;
        do f = feature(rng);
        while (std::find(row, row + j, f) != row + j);
        row[j] = f;
      }
      std::sort(row, row + kActive);
      for (std::size_t j = 0; j < kActive; ++j) values[r * kActive + j] = u(rng);
      Y[r] = (row[0] & 1) ? 1.0f : 0.0f;
    }
    indptr[kPool] = static_cast<std::int64_t>(kPool * kActive);
  }
  CsrView rows(std::size_t first, std::size_t n) const {
    return {n, &indptr[first], indices.data(), values.data()};
  }
};

Config sparse_config() { return dense_config(kSparseInputs, 16, 8); }

void BM_SparseTrainStep(benchmark::State& state) {
  Network t(sparse_config());
  const SparseData d;
  std::size_t r = 0;
  for (auto _ : state) {
    auto res = t.train_step_sparse(&d.indices[r * kActive], &d.values[r * kActive], kActive,
                                   &d.Y[r], nullptr);
    benchmark::DoNotOptimize(res);
    r = (r + 1) & (kPool - 1);
  }
  per_row(state, 1);
}

// CsrView rows index the shared indices/values arrays through absolute
// indptr offsets, so a window of indptr is a valid CSR batch only from row 0;
// hence whole-pool batches here.
void BM_SparseTrainBatch(benchmark::State& state) {
  Network t(sparse_config());
  const SparseData d;
  std::vector<double> losses(kPool);
  for (auto _ : state) {
    t.train_batch_sparse(d.rows(0, kPool), d.Y.data(), losses.data(), nullptr, nullptr);
    benchmark::DoNotOptimize(losses.data());
  }
  per_row(state, kPool);
}

void BM_SparsePredict(benchmark::State& state) {
  Network t(sparse_config());
  const SparseData d;
  t.train_batch_sparse(d.rows(0, kPool), d.Y.data(), nullptr, nullptr, nullptr);
  std::vector<float> out(kPool);
  for (auto _ : state) {
    t.predict_sparse(d.rows(0, kPool), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  per_row(state, kPool);
}

void DenseShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"in", "h1", "h2"});
  b->Args({4, 16, 8});
  b->Args({32, 64, 32});
}

BENCHMARK(BM_TrainStep)->Apply(DenseShapes);
BENCHMARK(BM_TrainBatch)->Apply(DenseShapes);
BENCHMARK(BM_Predict)->Apply(DenseShapes);
BENCHMARK(BM_SparseTrainStep);
BENCHMARK(BM_SparseTrainBatch);
BENCHMARK(BM_SparsePredict);

}  // namespace

BENCHMARK_MAIN();
