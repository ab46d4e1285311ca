// Tests of engine/cpu_backend, the reference every other backend is compared with: its logits
// against a naive double-precision transcription of the Hugging Face forward pass written here
// (plain loops, no shared code), KV-cache consistency (prefill vs. decode, chunked prefill,
// batching), GQA as repeated heads, the Qwen2 bias and Qwen3 q/k norm paths, and input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu_backend.hpp"
#include "engine/rope.hpp"
#include "sim/config_error.hpp"

using namespace specontext;

namespace {

ModelConfig toy_config(long long layers, long long hidden, long long q_heads, long long kv_heads, long long head_dim, long long ffn,
                       long long vocab) {
  ModelConfig c;
  ModelShape& s = c.shape;
  s.name = "toy";
  s.architecture = "LlamaForCausalLM";
  s.layers = layers;
  s.hidden = hidden;
  s.q_heads = q_heads;
  s.kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.ffn = ffn;
  s.vocab = vocab;
  s.max_positions = 4096;
  c.rope.theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.origin = "inline-toy.json";
  return c;
}

// xorshift64*, so the weights do not depend on the standard library's distributions.
class TestRng {
 public:
  explicit TestRng(std::uint64_t seed) : state_(seed * 2654435761u + 0x9E3779B97F4A7C15ull) {}
  float uniform(float lo, float hi) {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const std::uint64_t bits = state_ * 0x2545F4914F6CDD1Dull;
    return lo + (hi - lo) * static_cast<float>(static_cast<double>(bits >> 11) / 9007199254740992.0);
  }

 private:
  std::uint64_t state_;
};

Matrix random_matrix(TestRng& rng, long long rows, long long cols, float scale) {
  Matrix m{rows, cols, std::vector<float>(rows * cols)};
  for (float& x : m.data) x = rng.uniform(-scale, scale);
  return m;
}

std::vector<float> random_vector(TestRng& rng, long long n, float center, float spread) {
  std::vector<float> v(n);
  for (float& x : v) x = center + rng.uniform(-spread, spread);
  return v;
}

ModelWeights toy_weights(const ModelConfig& c, std::uint64_t seed) {
  const ModelShape& s = c.shape;
  TestRng rng(seed);
  const long long q_dim = s.q_heads * s.head_dim, kv_dim = s.kv_heads * s.head_dim;
  ModelWeights w;
  w.embed = random_matrix(rng, s.vocab, s.hidden, 1.0f);
  for (long long l = 0; l < s.layers; ++l) {
    LayerWeights L;
    L.input_norm = random_vector(rng, s.hidden, 1.0f, 0.2f);
    L.post_attention_norm = random_vector(rng, s.hidden, 1.0f, 0.2f);
    L.q = random_matrix(rng, q_dim, s.hidden, 0.6f);
    L.k = random_matrix(rng, kv_dim, s.hidden, 0.6f);
    L.v = random_matrix(rng, kv_dim, s.hidden, 0.6f);
    L.o = random_matrix(rng, s.hidden, q_dim, 0.6f);
    if (s.attention_bias) {
      L.q_bias = random_vector(rng, q_dim, 0.0f, 0.5f);
      L.k_bias = random_vector(rng, kv_dim, 0.0f, 0.5f);
      L.v_bias = random_vector(rng, kv_dim, 0.0f, 0.5f);
    }
    if (s.qk_norm) {
      L.q_norm = random_vector(rng, s.head_dim, 1.0f, 0.3f);
      L.k_norm = random_vector(rng, s.head_dim, 1.0f, 0.3f);
    }
    L.gate = random_matrix(rng, s.ffn, s.hidden, 0.6f);
    L.up = random_matrix(rng, s.ffn, s.hidden, 0.6f);
    L.down = random_matrix(rng, s.hidden, s.ffn, 0.6f);
    w.layers.push_back(std::move(L));
  }
  w.final_norm = random_vector(rng, s.hidden, 1.0f, 0.2f);
  if (!s.tied_embeddings) w.lm_head = random_matrix(rng, s.vocab, s.hidden, 0.6f);
  return w;
}

// ---- The naive reference: the whole sequence recomputed in double with plain loops. ----

using Vec = std::vector<double>;

Vec naive_rms_norm(const Vec& x, std::size_t first, std::size_t width, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (std::size_t i = 0; i < width; ++i) ss += x[first + i] * x[first + i];
  const double inv = 1.0 / std::sqrt(ss / width + eps);
  Vec y(width);
  for (std::size_t i = 0; i < width; ++i) y[i] = x[first + i] * inv * w[i];
  return y;
}

Vec naive_linear(const Matrix& w, const Vec& x, const std::vector<float>& bias) {
  Vec y(w.rows, 0.0);
  for (long long o = 0; o < w.rows; ++o) {
    double acc = bias.empty() ? 0.0 : bias[o];
    for (long long i = 0; i < w.cols; ++i) acc += static_cast<double>(w.data[o * w.cols + i]) * x[i];
    y[o] = acc;
  }
  return y;
}

Vec default_inv_freq(long long head_dim, double theta) {
  Vec inv(head_dim / 2);
  for (long long i = 0; i < head_dim / 2; ++i) inv[i] = 1.0 / std::pow(theta, 2.0 * i / head_dim);
  return inv;
}

// Logits of every position of `tokens`, [tokens.size()][vocab].
std::vector<Vec> naive_logits(const ModelConfig& c, const ModelWeights& w, const std::vector<int>& tokens, const Vec& inv_freq,
                              double rope_scale = 1.0) {
  const ModelShape& s = c.shape;
  const std::size_t n = tokens.size();
  const long long hd = s.head_dim, half = hd / 2;
  std::vector<Vec> x(n, Vec(s.hidden));
  for (std::size_t p = 0; p < n; ++p)
    for (long long i = 0; i < s.hidden; ++i) x[p][i] = w.embed.data[tokens[p] * s.hidden + i];

  auto rotate = [&](Vec& v, long long heads, std::size_t pos) {
    for (long long h = 0; h < heads; ++h)
      for (long long i = 0; i < half; ++i) {
        const double angle = static_cast<double>(pos) * inv_freq[i];
        const double co = std::cos(angle) * rope_scale, si = std::sin(angle) * rope_scale;
        const double a = v[h * hd + i], b = v[h * hd + i + half];
        v[h * hd + i] = a * co - b * si;
        v[h * hd + i + half] = b * co + a * si;
      }
  };

  for (long long l = 0; l < s.layers; ++l) {
    const LayerWeights& L = w.layers[l];
    std::vector<Vec> q(n), k(n), v(n);
    for (std::size_t p = 0; p < n; ++p) {
      const Vec h = naive_rms_norm(x[p], 0, s.hidden, L.input_norm, c.rms_norm_eps);
      q[p] = naive_linear(L.q, h, L.q_bias);
      k[p] = naive_linear(L.k, h, L.k_bias);
      v[p] = naive_linear(L.v, h, L.v_bias);
      if (s.qk_norm) {
        for (long long hh = 0; hh < s.q_heads; ++hh) {
          const Vec y = naive_rms_norm(q[p], hh * hd, hd, L.q_norm, c.rms_norm_eps);
          std::copy(y.begin(), y.end(), q[p].begin() + hh * hd);
        }
        for (long long hh = 0; hh < s.kv_heads; ++hh) {
          const Vec y = naive_rms_norm(k[p], hh * hd, hd, L.k_norm, c.rms_norm_eps);
          std::copy(y.begin(), y.end(), k[p].begin() + hh * hd);
        }
      }
      rotate(q[p], s.q_heads, p);
      rotate(k[p], s.kv_heads, p);
    }
    for (std::size_t p = 0; p < n; ++p) {
      Vec attn(s.q_heads * hd, 0.0);
      for (long long hh = 0; hh < s.q_heads; ++hh) {
        const long long kvh = hh * s.kv_heads / s.q_heads;
        Vec score(p + 1);
        double m = -1e300;
        for (std::size_t j = 0; j <= p; ++j) {
          double dot = 0;
          for (long long i = 0; i < hd; ++i) dot += q[p][hh * hd + i] * k[j][kvh * hd + i];
          score[j] = dot / std::sqrt(static_cast<double>(hd));
          m = std::max(m, score[j]);
        }
        double z = 0;
        for (double& sc : score) z += sc = std::exp(sc - m);
        for (std::size_t j = 0; j <= p; ++j)
          for (long long i = 0; i < hd; ++i) attn[hh * hd + i] += score[j] / z * v[j][kvh * hd + i];
      }
      const Vec o = naive_linear(L.o, attn, {});
      for (long long i = 0; i < s.hidden; ++i) x[p][i] += o[i];
      const Vec h2 = naive_rms_norm(x[p], 0, s.hidden, L.post_attention_norm, c.rms_norm_eps);
      const Vec g = naive_linear(L.gate, h2, {}), u = naive_linear(L.up, h2, {});
      Vec act(s.ffn);
      for (long long i = 0; i < s.ffn; ++i) act[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      const Vec d = naive_linear(L.down, act, {});
      for (long long i = 0; i < s.hidden; ++i) x[p][i] += d[i];
    }
  }
  std::vector<Vec> logits(n);
  for (std::size_t p = 0; p < n; ++p) logits[p] = naive_linear(w.output(), naive_rms_norm(x[p], 0, s.hidden, w.final_norm, c.rms_norm_eps), {});
  return logits;
}

// |a - b| <= tol * max(1, max |b|) elementwise: logits near zero are compared on the vector's scale.
void expect_close(const std::vector<float>& actual, const Vec& expected, double tol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double scale = 1.0;
  for (double e : expected) scale = std::max(scale, std::abs(e));
  for (std::size_t i = 0; i < actual.size(); ++i) EXPECT_NEAR(actual[i], expected[i], tol * scale) << what << " [" << i << "]";
}

void expect_close(const std::vector<float>& actual, const std::vector<float>& expected, double tol, const std::string& what) {
  expect_close(actual, Vec(expected.begin(), expected.end()), tol, what);
}

std::vector<float> slice(const std::vector<float>& v, std::size_t i, std::size_t n) {
  return std::vector<float>(v.begin() + i * n, v.begin() + (i + 1) * n);
}

template <class F>
void expect_invalid(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(CpuBackend, TinyModelMatchesNaiveLoops) {
  // 1 layer, hidden 4, 2 heads of 2, vocab 5, a 2-token prompt.
  const ModelConfig c = toy_config(1, 4, 2, 2, 2, 6, 5);
  const ModelWeights w = toy_weights(c, 1);
  CpuBackend backend(c, w, 1, 16);
  const std::vector<int> prompt = {3, 1};
  const std::vector<float> logits = backend.prefill(0, prompt);
  EXPECT_EQ(backend.length(0), 2);
  expect_close(logits, naive_logits(c, w, prompt, default_inv_freq(2, 10000.0)).back(), 1e-5, "2-token prompt");
}

TEST(CpuBackend, EveryPositionMatchesNaiveLoops) {
  // 2 layers, GQA (4 query heads over 2 KV heads), untied head.
  const ModelConfig c = toy_config(2, 16, 4, 2, 8, 24, 11);
  const ModelWeights w = toy_weights(c, 2);
  CpuBackend backend(c, w, 1, 64);
  const std::vector<int> prompt = {0, 5, 10, 2, 2, 7, 9, 1, 4};
  const std::vector<float> all = backend.prefill_all_logits(0, prompt);
  const std::vector<Vec> expected = naive_logits(c, w, prompt, default_inv_freq(8, 10000.0));
  for (std::size_t p = 0; p < prompt.size(); ++p) expect_close(slice(all, p, 11), expected[p], 1e-5, "position " + std::to_string(p));
}

TEST(CpuBackend, TiedEmbeddingsUseEmbedAsHead) {
  ModelConfig c = toy_config(1, 8, 2, 1, 4, 12, 7);
  c.shape.tied_embeddings = true;
  const ModelWeights w = toy_weights(c, 3);
  ASSERT_TRUE(w.lm_head.data.empty());
  CpuBackend backend(c, w, 1, 16);
  const std::vector<int> prompt = {6, 0, 3};
  expect_close(backend.prefill(0, prompt), naive_logits(c, w, prompt, default_inv_freq(4, 10000.0)).back(), 1e-5, "tied");
}

TEST(CpuBackend, ScaledRopeMatchesNaiveLoops) {
  // YaRN scaling: the backend's frequencies and its attention factor multiply cos and sin.
  ModelConfig c = toy_config(1, 16, 2, 2, 8, 16, 9);
  c.rope.scaling = RopeScaling::Yarn;
  c.rope.factor = 4.0;
  c.rope.original_max_positions = 64;
  const ModelWeights w = toy_weights(c, 4);
  const std::vector<float> inv = rope_inverse_frequencies(c);
  CpuBackend backend(c, w, 1, 64);
  const std::vector<int> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  expect_close(backend.prefill(0, prompt), naive_logits(c, w, prompt, Vec(inv.begin(), inv.end()), 0.1 * std::log(4.0) + 1.0).back(), 1e-5,
               "yarn");
}

TEST(CpuBackend, DecodeAfterPrefillEqualsLongerPrefill) {
  const ModelConfig c = toy_config(2, 16, 4, 2, 4, 24, 13);
  const ModelWeights w = toy_weights(c, 5);
  const std::vector<int> tokens = {4, 8, 12, 0, 3, 3, 9, 11};
  CpuBackend full(c, w, 1, 32);
  const std::vector<float> expected = full.prefill(0, tokens);

  CpuBackend stepped(c, w, 2, 32);
  stepped.prefill(1, std::vector<int>(tokens.begin(), tokens.end() - 1));
  const std::vector<float> decoded = stepped.decode({1}, {tokens.back()});
  EXPECT_EQ(stepped.length(1), static_cast<std::int64_t>(tokens.size()));
  expect_close(decoded, expected, 1e-5, "decode of token N+1");

  // Prefill in chunks, then token by token.
  CpuBackend chunked(c, w, 1, 32);
  chunked.prefill(0, {4, 8, 12});
  chunked.prefill(0, {0, 3});
  std::vector<float> last;
  for (int t : {3, 9, 11}) last = chunked.decode({0}, {t});
  expect_close(last, expected, 1e-5, "chunked prefill + decodes");
  for (int l = 0; l < 2; ++l) {
    expect_close(chunked.cached_keys(0, l), full.cached_keys(0, l), 1e-5, "keys of layer " + std::to_string(l));
    expect_close(chunked.cached_values(0, l), full.cached_values(0, l), 1e-5, "values of layer " + std::to_string(l));
  }
}

TEST(CpuBackend, BatchedDecodeEqualsDecodingAlone) {
  const ModelConfig c = toy_config(2, 16, 4, 1, 4, 20, 10);
  const ModelWeights w = toy_weights(c, 6);
  const std::vector<std::vector<int>> prompts = {{1, 2, 3, 4, 5, 6, 7}, {9}, {0, 0, 8, 2}};
  CpuBackend together(c, w, 4, 32), alone(c, w, 4, 32);
  // Request ids 3, 0, 2: the batch order need not follow the ids.
  const std::vector<int> ids = {3, 0, 2};
  for (int i = 0; i < 3; ++i) {
    together.prefill(ids[i], prompts[i]);
    alone.prefill(ids[i], prompts[i]);
  }
  for (int step = 0; step < 3; ++step) {
    const std::vector<int> next = {step % 10, (step + 4) % 10, (step + 7) % 10};
    const std::vector<float> batched = together.decode(ids, next);
    ASSERT_EQ(batched.size(), 30u);
    for (int i = 0; i < 3; ++i) {
      const std::vector<float> single = alone.decode({ids[i]}, {next[i]});
      expect_close(slice(batched, i, 10), single, 1e-5, "step " + std::to_string(step) + " request " + std::to_string(ids[i]));
      EXPECT_EQ(together.length(ids[i]), alone.length(ids[i]));
    }
  }
  EXPECT_EQ(together.length(1), 0);
}

TEST(CpuBackend, GqaEqualsMhaWithRepeatedKvHeads) {
  const ModelConfig gqa = toy_config(2, 16, 4, 1, 4, 20, 12);
  const ModelWeights wg = toy_weights(gqa, 7);
  ModelConfig mha = gqa;
  mha.shape.kv_heads = 4;
  ModelWeights wm = wg;
  for (LayerWeights& L : wm.layers) {
    for (Matrix* m : {&L.k, &L.v}) {
      Matrix repeated{4 * m->rows, m->cols, {}};
      for (int r = 0; r < 4; ++r) repeated.data.insert(repeated.data.end(), m->data.begin(), m->data.end());
      *m = repeated;
    }
  }
  CpuBackend a(gqa, wg, 1, 32), b(mha, wm, 1, 32);
  const std::vector<int> prompt = {11, 3, 5, 7, 0};
  expect_close(a.prefill(0, prompt), b.prefill(0, prompt), 1e-5, "prefill");
  expect_close(a.decode({0}, {6}), b.decode({0}, {6}), 1e-5, "decode");
  EXPECT_EQ(a.cached_keys(0, 0).size(), 6u * 4u);
  EXPECT_EQ(b.cached_keys(0, 0).size(), 6u * 16u);
}

TEST(CpuBackend, Qwen2BiasPath) {
  ModelConfig with_bias = toy_config(2, 16, 4, 2, 4, 20, 9);
  with_bias.shape.attention_bias = true;
  const ModelWeights wb = toy_weights(with_bias, 8);
  const std::vector<int> prompt = {1, 4, 8, 2};
  // Non-zero biases: as the naive loops say, and unlike the same model without them.
  CpuBackend biased(with_bias, wb, 1, 16);
  const std::vector<float> biased_logits = biased.prefill(0, prompt);
  expect_close(biased_logits, naive_logits(with_bias, wb, prompt, default_inv_freq(4, 10000.0)).back(), 1e-5, "biased");

  ModelConfig no_bias = with_bias;
  no_bias.shape.attention_bias = false;
  ModelWeights wn = wb;
  for (LayerWeights& L : wn.layers) L.q_bias.clear(), L.k_bias.clear(), L.v_bias.clear();
  CpuBackend plain(no_bias, wn, 1, 16);
  const std::vector<float> plain_logits = plain.prefill(0, prompt);
  double diff = 0;
  for (std::size_t i = 0; i < plain_logits.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(plain_logits[i] - biased_logits[i])));
  EXPECT_GT(diff, 1e-2);

  // Zero biases: the same as no biases.
  ModelWeights wz = wb;
  for (LayerWeights& L : wz.layers)
    for (std::vector<float>* b : {&L.q_bias, &L.k_bias, &L.v_bias}) std::fill(b->begin(), b->end(), 0.0f);
  CpuBackend zero(with_bias, wz, 1, 16);
  expect_close(zero.prefill(0, prompt), plain_logits, 1e-6, "zero bias");
}

TEST(CpuBackend, Qwen3QkNormPath) {
  ModelConfig qwen3 = toy_config(2, 16, 4, 2, 4, 20, 9);
  qwen3.shape.qk_norm = true;
  const ModelWeights w = toy_weights(qwen3, 9);
  const std::vector<int> prompt = {8, 0, 5, 5, 1};
  const Vec inv = default_inv_freq(4, 10000.0);
  CpuBackend normed(qwen3, w, 1, 16);
  const std::vector<float> logits = normed.prefill(0, prompt);
  expect_close(logits, naive_logits(qwen3, w, prompt, inv).back(), 1e-5, "q/k norm");

  // Unit norm weights: still a normalisation (so still the naive result), but different logits.
  ModelWeights unit = w;
  for (LayerWeights& L : unit.layers) std::fill(L.q_norm.begin(), L.q_norm.end(), 1.0f), std::fill(L.k_norm.begin(), L.k_norm.end(), 1.0f);
  CpuBackend unit_backend(qwen3, unit, 1, 16);
  const std::vector<float> unit_logits = unit_backend.prefill(0, prompt);
  expect_close(unit_logits, naive_logits(qwen3, unit, prompt, inv).back(), 1e-5, "unit q/k norm");
  double diff = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(logits[i] - unit_logits[i])));
  EXPECT_GT(diff, 1e-3);

  // The norm precedes RoPE and removes the scale of q and k: scaling Wq and Wk changes nothing
  // with the norm and changes the logits without it.
  ModelWeights scaled = w;
  for (LayerWeights& L : scaled.layers)
    for (Matrix* m : {&L.q, &L.k})
      for (float& x : m->data) x *= 3.0f;
  CpuBackend scaled_backend(qwen3, scaled, 1, 16);
  expect_close(scaled_backend.prefill(0, prompt), logits, 1e-4, "scaled Wq/Wk under q/k norm");

  ModelConfig llama = qwen3;
  llama.shape.qk_norm = false;
  ModelWeights w_plain = w, scaled_plain = scaled;
  for (ModelWeights* m : {&w_plain, &scaled_plain})
    for (LayerWeights& L : m->layers) L.q_norm.clear(), L.k_norm.clear();
  CpuBackend p1(llama, w_plain, 1, 16), p2(llama, scaled_plain, 1, 16);
  const std::vector<float> l1 = p1.prefill(0, prompt), l2 = p2.prefill(0, prompt);
  diff = 0;
  for (std::size_t i = 0; i < l1.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(l1[i] - l2[i])));
  EXPECT_GT(diff, 1e-3);
}

TEST(CpuBackend, ResetEmptiesTheCache) {
  const ModelConfig c = toy_config(1, 8, 2, 2, 4, 8, 6);
  CpuBackend backend(c, toy_weights(c, 10), 2, 16);
  const std::vector<float> first = backend.prefill(1, {1, 2, 3});
  backend.decode({1}, {4});
  backend.reset(1);
  EXPECT_EQ(backend.length(1), 0);
  EXPECT_TRUE(backend.cached_keys(1, 0).empty());
  expect_close(backend.prefill(1, {1, 2, 3}), first, 0.0, "after reset");
}

TEST(CpuBackend, DecodeSampleGreedyIsArgmaxAndSeededSamplingRepeats) {
  const ModelConfig c = toy_config(1, 8, 2, 2, 4, 8, 6);
  const ModelWeights w = toy_weights(c, 11);
  CpuBackend a(c, w, 2, 32), b(c, w, 2, 32);
  for (CpuBackend* x : {&a, &b}) x->prefill(0, {1, 2}), x->prefill(1, {3});
  const std::vector<float> logits = a.decode({0, 1}, {5, 0});
  const std::vector<int> greedy = b.decode_sample({0, 1}, {5, 0}, SamplingParams{}, 0);
  for (int i = 0; i < 2; ++i) {
    const auto row = slice(logits, i, 6);
    EXPECT_EQ(greedy[i], std::max_element(row.begin(), row.end()) - row.begin());
  }
  SamplingParams hot;
  hot.temperature = 1.5f;
  hot.seed = 99;
  std::vector<int> ta = {1, 1}, tb = {1, 1};
  for (int step = 1; step < 10; ++step) {
    ta = a.decode_sample({0, 1}, ta, hot, step);
    tb = b.decode_sample({0, 1}, tb, hot, step);
    EXPECT_EQ(ta, tb) << "step " << step;
  }
}

TEST(CpuBackend, RejectsBadInput) {
  const ModelConfig c = toy_config(1, 8, 2, 2, 4, 8, 6);
  const ModelWeights w = toy_weights(c, 12);
  CpuBackend backend(c, w, 2, 8);
  expect_invalid([&] { backend.prefill(2, {1}); }, "request 2 is unknown");
  expect_invalid([&] { backend.prefill(-1, {1}); }, "request -1 is unknown");
  expect_invalid([&] { backend.decode({5}, {1}); }, "request 5 is unknown");
  expect_invalid([&] { backend.length(7); }, "request 7 is unknown");
  expect_invalid([&] { backend.reset(2); }, "request 2 is unknown");
  expect_invalid([&] { backend.prefill(0, {1, 6}); }, "token id 6");
  expect_invalid([&] { backend.prefill(0, {-1}); }, "token id -1");
  expect_invalid([&] { backend.decode({0}, {99}); }, "token id 99");
  expect_invalid([&] { backend.prefill(0, {}); }, "no tokens");
  expect_invalid([&] { backend.decode({0, 1}, {1}); }, "2 requests but 1 tokens");
  expect_invalid([&] { backend.decode({0, 0}, {1, 1}); }, "appears twice");
  expect_invalid([&] { backend.prefill(0, std::vector<int>(9, 1)); }, "past max_context 8");
  EXPECT_EQ(backend.length(0), 0);  // a rejected call leaves the cache alone
  backend.prefill(0, std::vector<int>(8, 1));
  expect_invalid([&] { backend.decode({1, 0}, {1, 1}); }, "past max_context 8");
  EXPECT_EQ(backend.length(1), 0);

  ModelConfig short_model = c;
  short_model.shape.max_positions = 4;
  CpuBackend short_backend(short_model, w, 1, 8);
  short_backend.prefill(0, {1, 2, 3, 4});
  expect_invalid([&] { short_backend.decode({0}, {1}); }, "max_position_embeddings 4");

  expect_invalid([&] { CpuBackend(c, w, 0, 8); }, "max_requests");
  expect_invalid([&] { CpuBackend(c, w, 1, 0); }, "max_context");
}

TEST(CpuBackend, RejectsWeightsThatContradictTheConfig) {
  const ModelConfig c = toy_config(1, 8, 2, 2, 4, 8, 6);
  ModelWeights w = toy_weights(c, 13);
  w.layers[0].k.rows = 4;
  w.layers[0].k.data.resize(4 * 8);
  expect_invalid([&] { CpuBackend(c, w, 1, 8); }, "model.layers.0.self_attn.k_proj.weight");

  ModelWeights no_head = toy_weights(c, 13);
  no_head.lm_head = Matrix{};
  expect_invalid([&] { CpuBackend(c, no_head, 1, 8); }, "lm_head.weight");

  ModelConfig bias = c;
  bias.shape.attention_bias = true;
  expect_invalid([&] { CpuBackend(bias, toy_weights(c, 13), 1, 8); }, "q_proj.bias");

  ModelConfig bad_heads = c;
  bad_heads.shape.kv_heads = 3;
  expect_invalid([&] { CpuBackend(bad_heads, toy_weights(c, 13), 1, 8); }, "num_key_value_heads");

  ModelConfig mla = c;
  mla.shape.kv_lora_rank = 16;
  expect_invalid([&] { CpuBackend(mla, toy_weights(c, 13), 1, 8); }, "kv_lora_rank");
}
