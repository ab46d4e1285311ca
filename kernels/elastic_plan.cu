#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/elastic_plan.cuh"
#include "kernels/shared_memory_opt_in.cuh"

namespace specontext::kernels {
namespace {

// Why this shape:
// - The plan is a set difference between a sorted list (the selection, m <= B entries) and an
//   unsorted table (slot -> position, B entries). Sorting the table (bitonic: ~log^2 B / 2 = 91
//   barrier-separated passes at B = 8192) costs far more barriers than the alternative: every
//   slot binary-searches its position in the list, kept in shared memory (O(B log B) work,
//   ~log B shared loads per slot, no barrier). A hit marks the list entry "held by slot s"
//   (atomicMin, so the lowest slot wins should the table hold a position twice).
// - The pairing "k-th missing position -> k-th free slot" then needs the rank of every missing
//   entry and of every free slot: one block-wide exclusive scan of both counts packed in one
//   32-bit word (each total is <= kElasticPlanMaxSlots < 2^16). Thread t owns the contiguous
//   slots [t * per, (t + 1) * per) and list entries likewise, so ranks follow index order; a
//   thread's per <= 32 "kept" flags live in one register bit mask.
// - Shared memory is two int arrays of B entries: the list (later reused for the free slots in
//   rank order) and the holder of each list entry (later the attended slot of each entry, staged
//   so that attend_slots is written coalesced). About five barriers per block in all.
constexpr int kMaxThreads = 512;
constexpr int kNone = INT_MAX;  // "no slot holds this list entry"
constexpr int kDefaultSmem = 48 * 1024;
static_assert(kElasticPlanMaxSlots <= kMaxThreads * 32, "a thread's slots must fit one 32-bit mask");
static_assert(kElasticPlanMaxSlots < (1 << 16), "the scan packs two counts in 16 bits each");

__device__ __forceinline__ int lower_bound(const int* a, int n, int x) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (a[mid] < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Exclusive prefix sum of v over the block (blockDim.x a multiple of 32, at most 1024); *total
// gets the block's sum. Contains two barriers; every thread must call it.
__device__ unsigned block_exclusive_scan(unsigned v, unsigned* total) {
  __shared__ unsigned warp_sums[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  unsigned incl = v;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const unsigned x = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += x;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    unsigned w = lane < warps ? warp_sums[lane] : 0u;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const unsigned x = __shfl_up_sync(0xffffffffu, w, off);
      if (lane >= off) w += x;
    }
    warp_sums[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  *total = warp_sums[warps - 1];
  return (warp > 0 ? warp_sums[warp - 1] : 0u) + incl - v;
}

// Grid: x = i * kv_heads + g. Dynamic shared memory: 2 * slot_count ints. `per` = slots (and
// list entries) per thread, ceil(slot_count / blockDim.x) <= 32.
__global__ void __launch_bounds__(kMaxThreads) elastic_plan_kernel(ElasticPlanParams p, int per) {
  extern __shared__ int smem[];
  const int n = p.slot_count;
  int* list = smem;      // list entries; after the scan: free slots by rank
  int* holder = smem + n;  // slot holding list entry j (kNone); later: the slot entry j attends
  const int b = blockIdx.x;
  const int i = b / p.kv_heads, g = b % p.kv_heads;
  const int tid = threadIdx.x;
  std::int32_t* attend = p.attend_slots + static_cast<std::int64_t>(b) * (n + 1);

  const int row = p.slots[i];
  if (row < 0 || row >= p.max_requests) {  // no table row to plan against: nothing attended
    if (tid == 0) p.attend_counts[b] = p.load_counts[b] = 0;
    return;
  }
  const int cur = p.current[i];
  const std::int32_t* sel = p.selection + i * p.sel_request_stride + g * p.sel_head_stride;
  const int cnt = min(max(p.selection_counts[i * p.count_request_stride + g * p.count_head_stride], 0), n + 1);
  const bool has_cur = cnt > 0 && sel[cnt - 1] == cur;
  const int m = min(cnt - (has_cur ? 1 : 0), n);  // past positions planned
  std::int32_t* table = p.slot_positions + (static_cast<std::int64_t>(row) * p.kv_heads + g) * n;

  for (int j = tid; j < m; j += blockDim.x) {
    list[j] = sel[j];
    holder[j] = kNone;
  }
  __syncthreads();

  // Slots holding a listed past position claim it (strided over slots: coalesced table reads).
  for (int s = tid; s < n; s += blockDim.x) {
    const int q = table[s];
    if (q >= 0 && q < cur) {
      const int j = lower_bound(list, m, q);
      if (j < m && list[j] == q) atomicMin(&holder[j], s);
    }
  }
  __syncthreads();

  // Own chunk: which slots are kept (the claim succeeded), how many are free, how many of the
  // own list entries are missing. The table reads hit L1: the loop above just read them.
  const int s0 = tid * per, s1 = min(n, s0 + per);
  const int j0 = min(m, tid * per), j1 = min(m, j0 + per);
  unsigned kept = 0;
  int nfree = 0;
  for (int s = s0; s < s1; ++s) {
    const int q = table[s];
    bool keep = false;
    if (q >= 0 && q < cur) {
      const int j = lower_bound(list, m, q);
      keep = j < m && list[j] == q && holder[j] == s;
    }
    if (keep)
      kept |= 1u << (s - s0);
    else
      ++nfree;
  }
  int nmiss = 0;
  for (int j = j0; j < j1; ++j) nmiss += holder[j] == kNone ? 1 : 0;
  unsigned total = 0;
  // Every thread's list reads are done before the scan's first barrier: the list may be reused.
  const unsigned prefix = block_exclusive_scan((static_cast<unsigned>(nfree) << 16) | static_cast<unsigned>(nmiss), &total);
  const int loads = static_cast<int>(total & 0xffffu);

  // Free slots in rank order into `list`; the ones no load fills keep their position unless it
  // is not valid history (negative, or at / past the current token).
  int r = static_cast<int>(prefix >> 16);
  for (int s = s0; s < s1; ++s) {
    if ((kept >> (s - s0)) & 1u) continue;
    if (r < loads) {
      list[r] = s;
    } else {
      const int q = table[s];
      if (q != -1 && (q < 0 || q >= cur)) table[s] = -1;
    }
    ++r;
  }
  __syncthreads();

  // Own list entries: kept ones attend their holder, missing ones take the next free slot.
  r = static_cast<int>(prefix & 0xffffu);
  std::int32_t* load_pos = p.load_positions + static_cast<std::int64_t>(b) * n;
  for (int j = j0; j < j1; ++j) {
    if (holder[j] != kNone) continue;
    const int slot = list[r];
    const int q = sel[j];
    load_pos[r] = q;
    table[slot] = q;
    holder[j] = slot;
    ++r;
  }
  __syncthreads();

  // Coalesced copies of the staged results.
  for (int j = tid; j < m; j += blockDim.x) attend[j] = holder[j];
  std::int32_t* load_slot = p.load_slots + static_cast<std::int64_t>(b) * n;
  for (int k = tid; k < loads; k += blockDim.x) load_slot[k] = list[k];
  if (tid == 0) {
    attend[m] = n;  // the current token, in the extra slot, is always attended
    p.attend_counts[b] = m + 1;
    p.load_counts[b] = loads;
    if (p.loaded_total != nullptr && loads > 0) atomicAdd(p.loaded_total, static_cast<unsigned long long>(loads));
  }
}

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("elastic_plan: " + what); }

#define PLAN_REQUIRE(ok, what) \
  do {                         \
    if (!(ok)) fail(what);     \
  } while (0)

bool aligned4(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 4 == 0; }

}  // namespace

int elastic_plan_smem_bytes(int slot_count) { return slot_count <= 0 ? 0 : 2 * slot_count * static_cast<int>(sizeof(int)); }

void launch_elastic_plan(const ElasticPlanParams& p, cudaStream_t stream) {
  PLAN_REQUIRE(p.requests >= 0, "requests must be >= 0, got " + std::to_string(p.requests));
  PLAN_REQUIRE(p.kv_heads > 0, "kv_heads must be > 0, got " + std::to_string(p.kv_heads));
  PLAN_REQUIRE(p.slot_count > 0 && p.slot_count <= kElasticPlanMaxSlots,
               "slot_count must be in 1 .. " + std::to_string(kElasticPlanMaxSlots) + ", got " + std::to_string(p.slot_count));
  PLAN_REQUIRE(p.max_requests >= p.requests && p.max_requests > 0,
               "max_requests (" + std::to_string(p.max_requests) + ") must be > 0 and >= requests (" + std::to_string(p.requests) + ")");
  PLAN_REQUIRE(static_cast<std::int64_t>(p.requests) * p.kv_heads <= INT_MAX, "requests * kv_heads exceeds the grid");
  PLAN_REQUIRE(p.sel_request_stride >= 0 && p.sel_head_stride >= 0 && p.count_request_stride >= 0 && p.count_head_stride >= 0,
               "strides must be >= 0");
  PLAN_REQUIRE(p.selection && p.selection_counts && p.slots && p.current && p.slot_positions && p.attend_slots &&
                   p.attend_counts && p.load_positions && p.load_slots && p.load_counts,
               "a tensor pointer is null");
  PLAN_REQUIRE(aligned4(p.selection) && aligned4(p.selection_counts) && aligned4(p.slots) && aligned4(p.current) &&
                   aligned4(p.slot_positions) && aligned4(p.attend_slots) && aligned4(p.attend_counts) &&
                   aligned4(p.load_positions) && aligned4(p.load_slots) && aligned4(p.load_counts),
               "int32 tensors must be 4-byte aligned");
  PLAN_REQUIRE(reinterpret_cast<std::uintptr_t>(p.loaded_total) % 8 == 0, "loaded_total must be 8-byte aligned");
  if (p.requests == 0) return;

  const int threads = std::min(kMaxThreads, (p.slot_count + 31) / 32 * 32);
  const int per = (p.slot_count + threads - 1) / threads;
  const int smem = elastic_plan_smem_bytes(p.slot_count);
  if (smem > kDefaultSmem) {
    // The largest size the kernel can ask for is allowed, so later, larger budgets need no new call.
    static SharedMemoryOptIn opt_in;
    opt_in.allow(reinterpret_cast<const void*>(elastic_plan_kernel), elastic_plan_smem_bytes(kElasticPlanMaxSlots), false);
  }
  const unsigned blocks = static_cast<unsigned>(p.requests) * static_cast<unsigned>(p.kv_heads);
  elastic_plan_kernel<<<blocks, threads, smem, stream>>>(p, per);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
