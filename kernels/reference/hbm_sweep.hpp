#pragma once
// CPU reference of kernels/hbm_sweep: what its checksum must be once every word has been read.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// The XOR of every word (0 for none).
std::uint64_t xor_of_words(const std::vector<std::uint64_t>& words);

}  // namespace specontext::ref
