// The native floor: one SGD step of a 4-16-8-1 tanh/sigmoid/BCE network as a
// plain hand-written loop with compile-time sizes, built with
// -O3 -march=native -ffast-math. No locks, no guards, no dispatch: the best a
// compiler does for this arithmetic on this machine. Prints ns per step.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

constexpr int I = 4, H1 = 16, H2 = 8;

struct Net {
  float w1[I][H1], b1[H1], w2[H1][H2], b2[H2], w3[H2], b3;
};

float step(Net& n, const float* x, float y, float lr) {
  float a1[H1], a2[H2], d1[H1], d2[H2];
  for (int o = 0; o < H1; ++o) a1[o] = n.b1[o];
  for (int i = 0; i < I; ++i)
    for (int o = 0; o < H1; ++o) a1[o] += x[i] * n.w1[i][o];
  for (int o = 0; o < H1; ++o) a1[o] = std::tanh(a1[o]);
  for (int o = 0; o < H2; ++o) a2[o] = n.b2[o];
  for (int i = 0; i < H1; ++i)
    for (int o = 0; o < H2; ++o) a2[o] += a1[i] * n.w2[i][o];
  for (int o = 0; o < H2; ++o) a2[o] = std::tanh(a2[o]);
  float z = n.b3;
  for (int i = 0; i < H2; ++i) z += a2[i] * n.w3[i];
  const float p = 1.0f / (1.0f + std::exp(-z));
  const float loss = std::fmax(z, 0.0f) - z * y + std::log1p(std::exp(-std::fabs(z)));
  const float d3 = p - y;
  for (int i = 0; i < H2; ++i) d2[i] = n.w3[i] * d3 * (1.0f - a2[i] * a2[i]);
  for (int i = 0; i < H1; ++i) {
    float s = 0.0f;
    for (int o = 0; o < H2; ++o) s += n.w2[i][o] * d2[o];
    d1[i] = s * (1.0f - a1[i] * a1[i]);
  }
  for (int i = 0; i < H2; ++i) n.w3[i] -= lr * a2[i] * d3;
  n.b3 -= lr * d3;
  for (int i = 0; i < H1; ++i)
    for (int o = 0; o < H2; ++o) n.w2[i][o] -= lr * a1[i] * d2[o];
  for (int o = 0; o < H2; ++o) n.b2[o] -= lr * d2[o];
  for (int i = 0; i < I; ++i)
    for (int o = 0; o < H1; ++o) n.w1[i][o] -= lr * x[i] * d1[o];
  for (int o = 0; o < H1; ++o) n.b1[o] -= lr * d1[o];
  return loss;
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 2000000;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  Net net;
  for (float* p = &net.w1[0][0]; p < &net.b3 + 1; ++p) *p = u(rng);
  std::vector<float> X(static_cast<size_t>(n) * I), Y(static_cast<size_t>(n));
  for (auto& v : X) v = u(rng);
  for (long r = 0; r < n; ++r) Y[r] = X[r * I] + X[r * I + 1] > 0 ? 1.0f : 0.0f;
  double best = 1e30, sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long r = 0; r < n; ++r) sink += step(net, &X[r * I], Y[r], 0.05f);
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count() / n);
  }
  std::printf("{\"floor_ns_per_step\": %.2f, \"checksum\": %.6g}\n", best, sink);
  return 0;
}
