// Network configuration: layer sizes, activations, loss and optimizer settings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace livelearn {

enum class Activation : std::uint8_t { Identity, Tanh, Relu, Sigmoid };
enum class Loss : std::uint8_t { MSE, BCE };
enum class Optimizer : std::uint8_t { SGD, Adam };

struct Config {
  // Sizes of every layer, input first, output last: {4, 16, 8, 1}.
  std::vector<int> layers{4, 16, 8, 1};
  Activation hidden_activation = Activation::Tanh;
  Activation output_activation = Activation::Sigmoid;
  Loss loss = Loss::BCE;
  Optimizer optimizer = Optimizer::SGD;
  float learning_rate = 0.05f;
  float momentum = 0.0f;           // SGD only; 0 disables the velocity buffer
  float weight_decay = 0.0f;       // L2 penalty on weights (not biases), added to the gradient
  std::optional<float> clip_norm;  // global gradient-norm clip; none: no clipping
  float beta1 = 0.9f;              // Adam
  float beta2 = 0.999f;            // Adam
  float epsilon = 1e-8f;           // Adam
  std::uint64_t seed = 0;
  // The output bias is a running mean of the target instead of a gradient
  // step: b += logit(p + w (y - p) / N) - logit(p) under bce (at most 1 logit
  // a step), b += w (y - z) / N under mse, N (state tensor optimizer.bias.N)
  // counting the examples' weight from bias_prior, capped at bias_window.
  bool running_bias = false;
  float bias_prior = 2.0f;        // running_bias: pseudo-events before the first one
  float bias_window = 100000.0f;  // running_bias: N stops growing here (a moving average)

  // Throws std::invalid_argument naming the offending parameter.
  void validate() const;
};

Activation parse_activation(const std::string& name, const char* parameter);
Loss parse_loss(const std::string& name);
Optimizer parse_optimizer(const std::string& name);
const char* to_string(Activation a);
const char* to_string(Loss l);
const char* to_string(Optimizer o);

}  // namespace livelearn
