#pragma once
// Host-side checks shared by the attention launchers (decode and prefill read the same KV-cache
// layout and query buffer): every violation throws std::invalid_argument "<op>: <what>" before
// anything touches the device.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace specontext::kernels {

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

[[noreturn]] inline void attention_fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

// The message is built only on failure: launches sit on the decode critical path.
#define SPECONTEXT_ATTENTION_REQUIRE(op, ok, what) \
  do {                                             \
    if (!(ok)) ::specontext::kernels::attention_fail(op, what); \
  } while (0)

// Head shape, softmax scale, query and cache pointers and strides: the fields both launchers
// take with the same meaning (DecodeAttentionParams, PrefillAttentionParams).
template <class Params>
void check_attention_layout(const char* op, const Params& p) {
  SPECONTEXT_ATTENTION_REQUIRE(op, p.head_dim == 32 || p.head_dim == 64 || p.head_dim == 128,
                               "head_dim " + std::to_string(p.head_dim) + " is not supported (32, 64 or 128)");
  SPECONTEXT_ATTENTION_REQUIRE(op, p.q_heads > 0 && p.kv_heads > 0 && p.q_heads % p.kv_heads == 0,
                               "q_heads (" + std::to_string(p.q_heads) + ") must be a positive multiple of kv_heads (" +
                                   std::to_string(p.kv_heads) + ")");
  SPECONTEXT_ATTENTION_REQUIRE(op, p.max_context > 0, "max_context must be > 0");
  SPECONTEXT_ATTENTION_REQUIRE(op, p.scale > 0.0f && std::isfinite(p.scale), "scale must be positive and finite");
  SPECONTEXT_ATTENTION_REQUIRE(op, p.q && p.k_cache && p.v_cache && p.slots && p.out, "a tensor pointer is null");
  SPECONTEXT_ATTENTION_REQUIRE(op, aligned16(p.q) && aligned16(p.k_cache) && aligned16(p.v_cache),
                               "q, k_cache and v_cache must be 16-byte aligned");
  const std::int64_t hd = p.head_dim;
  SPECONTEXT_ATTENTION_REQUIRE(op, p.q_row_stride % 8 == 0 && p.q_row_stride >= p.q_heads * hd,
                               "q_row_stride must be a multiple of 8 and >= q_heads * head_dim");
  SPECONTEXT_ATTENTION_REQUIRE(op, p.out_row_stride >= p.q_heads * hd, "out_row_stride must be >= q_heads * head_dim");
  SPECONTEXT_ATTENTION_REQUIRE(op, p.kv_head_stride % 8 == 0 && p.kv_head_stride >= p.max_context * hd,
                               "kv_head_stride must be a multiple of 8 and >= max_context * head_dim");
  SPECONTEXT_ATTENTION_REQUIRE(op, p.kv_request_stride % 8 == 0 && p.kv_request_stride >= p.kv_heads * p.kv_head_stride,
                               "kv_request_stride must be a multiple of 8 and >= kv_heads * kv_head_stride");
}

}  // namespace specontext::kernels
