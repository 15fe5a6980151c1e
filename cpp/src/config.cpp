#include "livelearn/config.hpp"

#include <cmath>
#include <stdexcept>

namespace livelearn {
namespace {

[[noreturn]] void fail(const std::string& parameter, const std::string& why) {
  throw std::invalid_argument(parameter + ": " + why);
}

bool finite_positive(float v) { return std::isfinite(v) && v > 0.0f; }

}  // namespace

void Config::validate() const {
  if (layers.size() < 2) fail("layers", "need at least an input and an output size");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 1) {
      fail("layers", "layer " + std::to_string(i) + " has " + std::to_string(layers[i]) +
                         " units; every layer needs at least 1");
    }
    // Hidden and output widths stay small; the input may be a hashed space.
    const long long limit = i == 0 ? (1LL << 30) : (1LL << 16);
    if (layers[i] > limit) {
      fail("layers", "layer " + std::to_string(i) + " has " + std::to_string(layers[i]) +
                         " units; at most " + std::to_string(limit) + " allowed");
    }
  }
  long double weights = 0;
  for (std::size_t i = 0; i + 1 < layers.size(); ++i) {
    weights += static_cast<long double>(layers[i]) * layers[i + 1] + layers[i + 1];
  }
  if (weights > static_cast<long double>(1ULL << 31)) {
    fail("layers", "the network would have more than 2^31 parameters");
  }
  if (output_activation == Activation::Relu || output_activation == Activation::Tanh) {
    fail("output", "must be 'identity' or 'sigmoid'");
  }
  if (loss == Loss::BCE && output_activation != Activation::Sigmoid) {
    fail("output", "loss='bce' needs output='sigmoid' (the loss is computed from the logits)");
  }
  if (!finite_positive(learning_rate)) fail("learning_rate", "must be finite and > 0");
  if (!(std::isfinite(momentum) && momentum >= 0.0f && momentum < 1.0f)) {
    fail("momentum", "must be in [0, 1)");
  }
  if (momentum != 0.0f && optimizer != Optimizer::SGD) {
    fail("momentum", "only applies to optimizer='sgd' (Adam has beta1)");
  }
  if (!(std::isfinite(weight_decay) && weight_decay >= 0.0f)) {
    fail("weight_decay", "must be finite and >= 0");
  }
  if (clip_norm && !(std::isfinite(*clip_norm) && *clip_norm > 0.0f)) {
    fail("clip_norm", "must be finite and > 0 (or None to disable)");
  }
  if (!(std::isfinite(beta1) && beta1 >= 0.0f && beta1 < 1.0f)) fail("beta1", "must be in [0, 1)");
  if (!(std::isfinite(beta2) && beta2 >= 0.0f && beta2 < 1.0f)) fail("beta2", "must be in [0, 1)");
  if (!finite_positive(epsilon)) fail("epsilon", "must be finite and > 0");
  if (!finite_positive(bias_prior)) fail("bias_prior", "must be finite and > 0");
  if (!(std::isfinite(bias_window) && bias_window >= bias_prior)) {
    fail("bias_window", "must be finite and >= bias_prior");
  }
}

Activation parse_activation(const std::string& name, const char* parameter) {
  if (name == "tanh") return Activation::Tanh;
  if (name == "relu") return Activation::Relu;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "identity" || name == "linear") return Activation::Identity;
  fail(parameter,
       "unknown activation '" + name + "' (expected 'tanh', 'relu', 'sigmoid' or 'identity')");
}

Loss parse_loss(const std::string& name) {
  if (name == "bce") return Loss::BCE;
  if (name == "mse") return Loss::MSE;
  fail("loss", "unknown loss '" + name + "' (expected 'bce' or 'mse')");
}

Optimizer parse_optimizer(const std::string& name) {
  if (name == "sgd") return Optimizer::SGD;
  if (name == "adam") return Optimizer::Adam;
  fail("optimizer", "unknown optimizer '" + name + "' (expected 'sgd' or 'adam')");
}

const char* to_string(Activation a) {
  switch (a) {
    case Activation::Identity:
      return "identity";
    case Activation::Tanh:
      return "tanh";
    case Activation::Relu:
      return "relu";
    case Activation::Sigmoid:
      return "sigmoid";
  }
  return "?";
}

const char* to_string(Loss l) { return l == Loss::BCE ? "bce" : "mse"; }
const char* to_string(Optimizer o) { return o == Optimizer::SGD ? "sgd" : "adam"; }

}  // namespace livelearn
