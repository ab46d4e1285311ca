#pragma once
// CPU reference of kernels/swiglu.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// silu(g) = g / (1 + exp(-g)) in fp32.
float silu(float g);

// out bf16 [tokens, ffn] (contiguous) = bf16(bf16(silu(gate)) * up) from gate_up bf16
// [tokens, in_stride] (gate columns [0, ffn), up [ffn, 2 ffn)).
std::vector<std::uint16_t> swiglu(const std::vector<std::uint16_t>& gate_up, std::int64_t tokens, std::int64_t ffn, std::int64_t in_stride);

}  // namespace specontext::ref
