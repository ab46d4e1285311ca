// kernels/elastic_plan and kernels/elastic_gather (elastic loading) against their CPU references
// over multi-step decode sequences: random selections with controlled overlap, per-head and
// shared lists, lists with and without the current position, budgets from 1 to 16384 slots,
// permuted request rows, a rollback, a table that starts out corrupt, more (request, head)
// pairs than the gather scans at once, and the three launches captured in a CUDA graph.
// After every step: the plan equals the reference exactly, every buffer equals the reference's
// (so nothing else was written), every attended slot holds the K/V of its listed position in
// every copied layer (read back from the pinned host array itself), the load count is what the
// set difference says and loaded_total adds up. Plus launch validation (no GPU needed) and the
// reference on hand-worked examples.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/pinned_host_buffer.cuh"
#include "kernels/elastic_gather.cuh"
#include "kernels/elastic_plan.cuh"
#include "kernels/reference/elastic_load.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

enum class CurrentMode { kAlways, kNever, kRandom };

struct Scenario {
  int requests = 2;
  int max_requests = 3;  // rows; the requests use a permutation of some of them
  int kv_heads = 2;
  int slot_count = 16;
  int head_dim = 64;
  int host_layers = 2;
  std::vector<std::pair<int, int>> ranges = {{0, 2}};  // layer ranges, one gather and one store launch each
  int steps = 20;
  double overlap = 0.8;       // fraction of the previous list kept
  bool shared_list = false;   // one list per request (head strides 0)
  CurrentMode current = CurrentMode::kRandom;
  bool full_budget = true;    // every list holds slot_count past positions (else 0 .. slot_count)
  int rollback_step = -1;     // at this step request 0's current position moves back by 3
  bool corrupt_table = false;  // the table starts with duplicates, negatives and future positions
  bool odd_counts = false;    // some counts above slot_count + 1 or negative (clamped on the device)
  int max_blocks = 16;
  bool graph = false;         // capture plan + gathers + stores once, replay every step
};

// Fills the fields the kernel's and the reference's plan params share (same names).
template <class P>
void set_plan_fields(P& p, const Scenario& c, std::int64_t sel_rs, std::int64_t sel_hs, std::int64_t cnt_rs, std::int64_t cnt_hs) {
  p.sel_request_stride = sel_rs;
  p.sel_head_stride = sel_hs;
  p.count_request_stride = cnt_rs;
  p.count_head_stride = cnt_hs;
  p.requests = c.requests;
  p.kv_heads = c.kv_heads;
  p.slot_count = c.slot_count;
  p.max_requests = c.max_requests;
}

template <class T>
void expect_same(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  if (std::memcmp(got.data(), want.data(), got.size() * sizeof(T)) == 0) return;
  std::size_t k = 0;
  while (got[k] == want[k]) ++k;
  FAIL() << what << ": first difference at element " << k << " (got " << got[k] << ", want " << want[k] << ")";
}

void run_scenario(const Scenario& c, std::uint64_t seed) {
  const int R = c.requests, H = c.kv_heads, n = c.slot_count, hd = c.head_dim, L = c.host_layers;
  const std::int64_t pairs = static_cast<std::int64_t>(R) * H;
  std::mt19937_64 gen(seed);

  // Requests on a permutation of the rows; the rows no request uses must stay untouched.
  std::vector<std::int32_t> rows(static_cast<std::size_t>(c.max_requests));
  std::iota(rows.begin(), rows.end(), 0);
  std::shuffle(rows.begin(), rows.end(), gen);
  std::vector<std::int32_t> slots(rows.begin(), rows.begin() + R);

  // Current positions: request i starts at 2n + 8 + 3i, so there are always >= n positions
  // outside the previous list to draw new ones from.
  std::vector<std::int64_t> start(static_cast<std::size_t>(R));
  for (int i = 0; i < R; ++i) start[i] = 2LL * n + 8 + 3LL * i;
  const std::int64_t host_positions = start[R - 1] + c.steps + 2;

  // Host KV (pinned, mapped) and the slot buffers, random; the mirrors are what they must hold.
  const std::size_t host_elems = static_cast<std::size_t>(c.max_requests) * H * host_positions * L * 2 * hd;
  const std::size_t slot_elems = static_cast<std::size_t>(L) * c.max_requests * H * (n + 1) * hd;
  // Pinned, mapped host memory, as the engine keeps offloaded layers' KV (read by the gather over PCIe).
  const PinnedHostBuffer host_buffer(host_elems * sizeof(std::uint16_t), HostPages::Cuda);
  std::uint16_t* const host = static_cast<std::uint16_t*>(host_buffer.host());
  std::uint16_t* const host_dev = static_cast<std::uint16_t*>(host_buffer.device());
  std::vector<std::uint16_t> host_want = testing::random_bf16(host_elems, static_cast<std::uint32_t>(seed));
  std::memcpy(host, host_want.data(), host_elems * sizeof(std::uint16_t));
  std::vector<std::uint16_t> k_want = testing::random_bf16(slot_elems, static_cast<std::uint32_t>(seed + 1));
  std::vector<std::uint16_t> v_want = testing::random_bf16(slot_elems, static_cast<std::uint32_t>(seed + 2));
  auto host_at = [&](int r, int g, std::int64_t pos, int l, int kv) {
    return ((((static_cast<std::int64_t>(r) * H + g) * host_positions + pos) * L + l) * 2 + kv) * hd;
  };
  auto slot_at = [&](int l, int r, int g, int slot) {
    return (((static_cast<std::int64_t>(l) * c.max_requests + r) * H + g) * (n + 1) + slot) * hd;
  };

  // The table starts empty, or corrupt: duplicates, negatives other than -1, future positions.
  // Even then it tells the truth where it names a stored position (the slot holds that K/V), so
  // the content invariant below stays checkable.
  std::vector<std::int32_t> table_want(static_cast<std::size_t>(c.max_requests) * H * n, -1);
  if (c.corrupt_table) {
    std::uniform_int_distribution<int> any(-4, static_cast<int>(host_positions) + 5);
    for (auto& q : table_want) q = any(gen);
    for (std::size_t k = 1; k < table_want.size(); k += 3) table_want[k] = table_want[k - 1];
    for (int r = 0; r < c.max_requests; ++r)
      for (int g = 0; g < H; ++g)
        for (int s = 0; s < n; ++s) {
          const int q = table_want[(static_cast<std::size_t>(r) * H + g) * n + s];
          if (q < 0 || q >= host_positions) continue;
          for (int l = 0; l < L; ++l) {
            std::copy_n(host_want.begin() + host_at(r, g, q, l, 0), hd, k_want.begin() + slot_at(l, r, g, s));
            std::copy_n(host_want.begin() + host_at(r, g, q, l, 1), hd, v_want.begin() + slot_at(l, r, g, s));
          }
        }
  }
  DeviceBuffer<std::uint16_t> dk(k_want), dv(v_want);
  DeviceBuffer<std::int32_t> dtable(table_want);

  // Lists: per head with padded strides, or one per request shared by every head (strides 0).
  const std::int64_t sel_hs = c.shared_list ? 0 : n + 4;
  const std::int64_t sel_rs = c.shared_list ? n + 6 : H * (n + 4) + 5;
  const std::int64_t cnt_hs = c.shared_list ? 0 : 1;
  const std::int64_t cnt_rs = c.shared_list ? 2 : H + 1;
  std::vector<std::int32_t> selection(static_cast<std::size_t>(R * sel_rs), -99), counts(static_cast<std::size_t>(R * cnt_rs), -99);
  std::vector<std::int32_t> current(static_cast<std::size_t>(R));
  DeviceBuffer<std::int32_t> dselection(selection), dcounts(counts), dcurrent(current), dslots(slots);

  // Outputs start as a sentinel in both, so whole-array comparisons also show that nothing past
  // the counts was written.
  const std::int32_t kSentinel = -7;
  std::vector<std::int32_t> attend_want(static_cast<std::size_t>(pairs * (n + 1)), kSentinel);
  std::vector<std::int32_t> load_pos_want(static_cast<std::size_t>(pairs * n), kSentinel), load_slot_want = load_pos_want;
  std::vector<std::int32_t> attend_counts_want(static_cast<std::size_t>(pairs), kSentinel), load_counts_want = attend_counts_want;
  DeviceBuffer<std::int32_t> dattend(attend_want), dattend_counts(attend_counts_want), dload_pos(load_pos_want),
      dload_slot(load_slot_want), dload_counts(load_counts_want);
  unsigned long long total_want = 0, loads_seen = 0;
  DeviceBuffer<unsigned long long> dtotal(std::vector<unsigned long long>{0});

  kernels::ElasticPlanParams kp;
  set_plan_fields(kp, c, sel_rs, sel_hs, cnt_rs, cnt_hs);
  kp.selection = dselection.get();
  kp.selection_counts = dcounts.get();
  kp.slots = dslots.get();
  kp.current = dcurrent.get();
  kp.slot_positions = dtable.get();
  kp.attend_slots = dattend.get();
  kp.attend_counts = dattend_counts.get();
  kp.load_positions = dload_pos.get();
  kp.load_slots = dload_slot.get();
  kp.load_counts = dload_counts.get();
  kp.loaded_total = dtotal.get();

  ref::ElasticPlanParams rp;
  set_plan_fields(rp, c, sel_rs, sel_hs, cnt_rs, cnt_hs);
  rp.selection = selection.data();
  rp.selection_counts = counts.data();
  rp.slots = slots.data();
  rp.current = current.data();
  rp.slot_positions = table_want.data();
  rp.attend_slots = attend_want.data();
  rp.attend_counts = attend_counts_want.data();
  rp.load_positions = load_pos_want.data();
  rp.load_slots = load_slot_want.data();
  rp.load_counts = load_counts_want.data();
  rp.loaded_total = &total_want;

  auto copy_shape = [&](int begin, int end) {
    ref::ElasticCopyShape s;
    s.host_positions = host_positions;
    s.host_layers = L;
    s.layer_begin = begin;
    s.layer_end = end;
    s.requests = R;
    s.kv_heads = H;
    s.max_requests = c.max_requests;
    s.slot_count = n;
    s.head_dim = hd;
    return s;
  };
  auto enqueue_step = [&](cudaStream_t stream) {
    kernels::launch_elastic_plan(kp, stream);
    for (const auto& [begin, end] : c.ranges) {
      kernels::ElasticGatherParams gp;
      gp.host_kv = host_dev;
      gp.host_positions = host_positions;
      gp.host_layers = L;
      gp.layer_begin = begin;
      gp.layer_end = end;
      gp.k_slots = dk.get();
      gp.v_slots = dv.get();
      gp.slots = dslots.get();
      gp.load_positions = dload_pos.get();
      gp.load_slots = dload_slot.get();
      gp.load_counts = dload_counts.get();
      gp.requests = R;
      gp.kv_heads = H;
      gp.max_requests = c.max_requests;
      gp.slot_count = n;
      gp.head_dim = hd;
      gp.max_blocks = c.max_blocks;
      kernels::launch_elastic_gather(gp, stream);
    }
    for (const auto& [begin, end] : c.ranges) {
      kernels::ElasticStoreCurrentParams sp;
      sp.host_kv = host_dev;
      sp.host_positions = host_positions;
      sp.host_layers = L;
      sp.layer_begin = begin;
      sp.layer_end = end;
      sp.k_slots = dk.get();
      sp.v_slots = dv.get();
      sp.slots = dslots.get();
      sp.current = dcurrent.get();
      sp.requests = R;
      sp.kv_heads = H;
      sp.max_requests = c.max_requests;
      sp.slot_count = n;
      sp.head_dim = hd;
      sp.max_blocks = c.max_blocks;
      kernels::launch_elastic_store_current(sp, stream);
    }
  };

  cudaStream_t stream = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaStreamCreate(&stream));
  cudaGraphExec_t exec = nullptr;
  struct Cleanup {
    cudaStream_t& s;
    cudaGraphExec_t& e;
    ~Cleanup() {
      if (e) cudaGraphExecDestroy(e);
      if (s) cudaStreamDestroy(s);
    }
  } cleanup{stream, exec};
  if (c.graph) {
    // Captured before any step has run, so the capture itself also does the launchers' one-time
    // set-up (the shared-memory opt-in), as in the engine.
    cudaGraph_t graph = nullptr;
    SPECONTEXT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    enqueue_step(stream);
    SPECONTEXT_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    SPECONTEXT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    SPECONTEXT_CUDA_CHECK(cudaGraphDestroy(graph));
  }

  std::set<int> copied_layers;
  for (const auto& [begin, end] : c.ranges)
    for (int l = begin; l < end; ++l) copied_layers.insert(l);
  // The previous step's past list of every (i, g) (of every i with a shared list).
  const int lists = c.shared_list ? 1 : H;
  std::vector<std::vector<int>> prev(static_cast<std::size_t>(R * lists));
  std::vector<std::int64_t> cur_of(static_cast<std::size_t>(R));
  for (int i = 0; i < R; ++i) cur_of[i] = start[i];

  for (int step = 0; step < c.steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    for (int i = 0; i < R; ++i) {
      if (step > 0) cur_of[i] += 1;
      if (i == 0 && step == c.rollback_step) cur_of[i] -= 4;  // three tokens rejected
      current[i] = static_cast<std::int32_t>(cur_of[i]);
    }

    // New lists: keep round(overlap * |previous|) random entries of the previous list (those
    // still in the past), fill up with positions outside it; ascending; the current position
    // appended per the mode. With odd_counts, some counts are negative (nothing planned) and some
    // lists hold slot_count + 1 past positions under a count above slot_count + 1 (the device
    // reads slot_count + 1 entries and plans the first slot_count).
    const std::vector<std::vector<int>> before = prev;
    for (int i = 0; i < R; ++i) {
      const int cur = current[i];
      for (int h = 0; h < lists; ++h) {
        std::vector<int>& last = prev[static_cast<std::size_t>(i * lists + h)];
        const int odd = c.odd_counts ? (i + h + step) % 5 : -1;
        std::vector<int> eligible;
        for (int q : last)
          if (q < cur) eligible.push_back(q);
        int target = c.full_budget ? n : std::uniform_int_distribution<int>(0, n)(gen);
        if (odd == 1) target = n + 1;
        std::shuffle(eligible.begin(), eligible.end(), gen);
        const int keep = std::min<int>(target, static_cast<int>(std::lround(c.overlap * static_cast<double>(eligible.size()))));
        std::vector<int> now(eligible.begin(), eligible.begin() + keep);
        std::vector<char> used(static_cast<std::size_t>(cur), 0);
        for (int q : eligible) used[q] = 1;  // new positions come from outside the previous list
        std::uniform_int_distribution<int> pos(0, cur - 1);
        while (static_cast<int>(now.size()) < target) {  // cur >= 2n + 4: always enough room
          const int q = pos(gen);
          if (used[q]) continue;
          used[q] = 1;
          now.push_back(q);
        }
        std::sort(now.begin(), now.end());
        last.assign(now.begin(), now.begin() + std::min<std::size_t>(now.size(), static_cast<std::size_t>(n)));
        if (odd == 0) last.clear();
        const bool with_cur = c.current == CurrentMode::kAlways || (c.current == CurrentMode::kRandom && gen() % 2 == 0);
        if (with_cur) now.push_back(cur);
        int count = static_cast<int>(now.size());
        if (odd == 0) count = -3;
        if (odd == 1) count = n + 3;
        std::copy(now.begin(), now.end(), selection.begin() + i * sel_rs + h * sel_hs);
        counts[static_cast<std::size_t>(i * cnt_rs + h * cnt_hs)] = count;
      }
    }

    // Positions each (i, g) holds as valid history before the step (for the load-count checks).
    std::vector<std::set<int>> held(static_cast<std::size_t>(pairs));
    for (int i = 0; i < R; ++i)
      for (int g = 0; g < H; ++g)
        for (int s = 0; s < n; ++s) {
          const int q = table_want[(static_cast<std::size_t>(slots[i]) * H + g) * n + s];
          if (q >= 0 && q < current[i]) held[static_cast<std::size_t>(i * H + g)].insert(q);
        }

    dselection.upload(selection);
    dcounts.upload(counts);
    dcurrent.upload(current);
    // The step's own K/V of the current token, written to the extra slot of every layer (the
    // engine's append); the stores then copy the ranges' rows to the host.
    for (int i = 0; i < R; ++i)
      for (int g = 0; g < H; ++g)
        for (int l = 0; l < L; ++l) {
          const std::int64_t at = slot_at(l, slots[i], g, n);
          for (int d = 0; d < hd; ++d) {
            k_want[at + d] = ref::float_to_bf16(std::normal_distribution<float>()(gen));
            v_want[at + d] = ref::float_to_bf16(std::normal_distribution<float>()(gen));
          }
          SPECONTEXT_CUDA_CHECK(cudaMemcpy(dk.get() + at, k_want.data() + at, hd * sizeof(std::uint16_t), cudaMemcpyHostToDevice));
          SPECONTEXT_CUDA_CHECK(cudaMemcpy(dv.get() + at, v_want.data() + at, hd * sizeof(std::uint16_t), cudaMemcpyHostToDevice));
        }

    if (exec != nullptr)
      SPECONTEXT_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    else
      enqueue_step(stream);
    SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(stream));

    ref::elastic_plan(rp);
    for (const auto& [begin, end] : c.ranges)
      ref::elastic_gather(copy_shape(begin, end), host_want.data(), k_want.data(), v_want.data(), slots.data(), load_pos_want.data(),
                          load_slot_want.data(), load_counts_want.data());
    for (const auto& [begin, end] : c.ranges)
      ref::elastic_store_current(copy_shape(begin, end), host_want.data(), k_want.data(), v_want.data(), slots.data(), current.data());

    // The plan, exactly; and every buffer, whole.
    const auto attend = dattend.download(), attend_counts = dattend_counts.download();
    const auto load_pos = dload_pos.download(), load_slot = dload_slot.download(), load_counts = dload_counts.download();
    const auto table = dtable.download();
    expect_same(attend, attend_want, "attend_slots");
    expect_same(attend_counts, attend_counts_want, "attend_counts");
    expect_same(load_pos, load_pos_want, "load_positions");
    expect_same(load_slot, load_slot_want, "load_slots");
    expect_same(load_counts, load_counts_want, "load_counts");
    expect_same(table, table_want, "slot_positions");
    const auto k = dk.download(), v = dv.download();
    expect_same(k, k_want, "k_slots");
    expect_same(v, v_want, "v_slots");
    const std::vector<std::uint16_t> host_now(host, host + host_elems);
    expect_same(host_now, host_want, "host_kv");
    if (::testing::Test::HasFailure()) return;

    // The real invariant, independent of the reference: each listed past position is attended
    // through a slot that holds its K/V (as the pinned host array has it) in every copied layer,
    // the current token through the extra slot; and the loads are the positions not held before.
    for (int i = 0; i < R; ++i) {
      const int r = slots[i], cur = current[i];
      for (int g = 0; g < H; ++g) {
        const std::int64_t b = static_cast<std::int64_t>(i) * H + g;
        const std::int32_t* list = selection.data() + i * sel_rs + g * sel_hs;
        const int cnt = std::clamp(counts[static_cast<std::size_t>(i * cnt_rs + g * cnt_hs)], 0, n + 1);
        const int m = std::min(cnt - (cnt > 0 && list[cnt - 1] == cur ? 1 : 0), n);
        ASSERT_EQ(attend_counts[b], m + 1) << "request " << i << " head " << g;
        ASSERT_EQ(attend[b * (n + 1) + m], n);
        std::set<int> used_slots;
        int missing = 0;
        for (int j = 0; j < m; ++j) {
          const int slot = attend[b * (n + 1) + j];
          ASSERT_TRUE(slot >= 0 && slot < n) << "slot " << slot;
          ASSERT_TRUE(used_slots.insert(slot).second) << "slot " << slot << " attended twice";
          ASSERT_EQ(table[(static_cast<std::size_t>(r) * H + g) * n + slot], list[j]);
          if (!held[static_cast<std::size_t>(b)].count(list[j])) ++missing;
          for (int l : copied_layers) {
            const std::uint16_t* want_k = host + host_at(r, g, list[j], l, 0);
            const std::uint16_t* want_v = host + host_at(r, g, list[j], l, 1);
            ASSERT_TRUE(std::equal(want_k, want_k + hd, k.begin() + slot_at(l, r, g, slot)))
                << "K of position " << list[j] << " layer " << l << " in slot " << slot << " (request " << i << " head " << g << ")";
            ASSERT_TRUE(std::equal(want_v, want_v + hd, v.begin() + slot_at(l, r, g, slot)))
                << "V of position " << list[j] << " layer " << l << " in slot " << slot;
          }
        }
        ASSERT_EQ(load_counts[b], missing) << "request " << i << " head " << g;
        for (int l : copied_layers) {  // the store made this step's token loadable
          ASSERT_TRUE(std::equal(k.begin() + slot_at(l, r, g, n), k.begin() + slot_at(l, r, g, n) + hd, host + host_at(r, g, cur, l, 0)));
          ASSERT_TRUE(std::equal(v.begin() + slot_at(l, r, g, n), v.begin() + slot_at(l, r, g, n) + hd, host + host_at(r, g, cur, l, 1)));
        }
        loads_seen += static_cast<unsigned long long>(load_counts[b]);
      }
    }
    // With full lists and an intact table the slots hold exactly the previous list, so the loads
    // are |S_now \ S_last| (the previous current token counts as new: it was never in a slot):
    // none at 100% overlap, all of them at 0%.
    if (c.full_budget && !c.corrupt_table && !c.odd_counts && step > 0) {
      for (int i = 0; i < R; ++i)
        for (int g = 0; g < H; ++g) {
          const std::size_t li = static_cast<std::size_t>(i * lists + (c.shared_list ? 0 : g));
          const std::set<int> last(before[li].begin(), before[li].end());
          int fresh = 0;
          for (int q : prev[li]) fresh += last.count(q) ? 0 : 1;
          const int loads = load_counts[static_cast<std::size_t>(i * H + g)];
          EXPECT_EQ(loads, fresh) << "request " << i << " head " << g;
          if (c.overlap == 1.0 && !(i == 0 && step == c.rollback_step)) {
            EXPECT_EQ(loads, 0);
          }
          if (c.overlap == 0.0) {
            EXPECT_EQ(loads, n);
          }
        }
    }
    EXPECT_EQ(dtotal.download()[0], total_want);
    EXPECT_EQ(total_want, loads_seen);
  }
}

Scenario base(int requests, int max_requests, int kv_heads, int slot_count, int head_dim, int host_layers,
              std::vector<std::pair<int, int>> ranges) {
  Scenario c;
  c.requests = requests;
  c.max_requests = max_requests;
  c.kv_heads = kv_heads;
  c.slot_count = slot_count;
  c.head_dim = head_dim;
  c.host_layers = host_layers;
  c.ranges = std::move(ranges);
  return c;
}

// Per-head lists at 0%, 50%, 90% and 100% overlap between steps; layers copied by two launches.
TEST(ElasticLoad, PerHeadListsAtEveryOverlap) {
  SPECONTEXT_REQUIRE_GPU();
  std::uint64_t seed = 100;
  for (double overlap : {0.0, 0.5, 0.9, 1.0}) {
    SCOPED_TRACE("overlap " + std::to_string(overlap));
    Scenario c = base(3, 5, 2, 256, 64, 3, {{0, 1}, {1, 3}});
    c.overlap = overlap;
    run_scenario(c, seed++);
    if (HasFatalFailure()) return;
  }
}

// One list per request shared by every head (head strides 0), always ending in the current
// position; only layers 1 and 2 of 4 copied (0 and 3 must stay untouched).
TEST(ElasticLoad, SharedListPartialLayerRange) {
  SPECONTEXT_REQUIRE_GPU();
  Scenario c = base(2, 4, 4, 2048, 128, 4, {{1, 3}});
  c.shared_list = true;
  c.current = CurrentMode::kAlways;
  c.overlap = 0.9;
  run_scenario(c, 200);
}

// Budgets of 1 and 7 slots, lists of every size from empty to full, with and without the current.
TEST(ElasticLoad, TinyBudgets) {
  SPECONTEXT_REQUIRE_GPU();
  std::uint64_t seed = 300;
  for (int n : {1, 7}) {
    for (CurrentMode mode : {CurrentMode::kAlways, CurrentMode::kNever, CurrentMode::kRandom}) {
      SCOPED_TRACE("slot_count " + std::to_string(n) + " mode " + std::to_string(static_cast<int>(mode)));
      Scenario c = base(3, 4, 2, n, 32, 2, {{0, 2}});
      c.full_budget = false;
      c.current = mode;
      c.overlap = 0.5;
      run_scenario(c, seed++);
      if (HasFatalFailure()) return;
      c.full_budget = true;
      run_scenario(c, seed++);
      if (HasFatalFailure()) return;
    }
  }
}

// The largest budgets: 8192 slots (64 KB of shared memory, past the 48 KB default) and the
// supported maximum, 16384.
TEST(ElasticLoad, LargeBudgets) {
  SPECONTEXT_REQUIRE_GPU();
  Scenario c = base(2, 3, 2, 8192, 32, 2, {{0, 2}});
  c.overlap = 0.9;
  c.current = CurrentMode::kNever;
  run_scenario(c, 400);
  if (HasFatalFailure()) return;
  Scenario big = base(2, 2, 2, kernels::kElasticPlanMaxSlots, 32, 1, {{0, 1}});
  big.shared_list = true;
  big.overlap = 0.8;
  big.steps = 4;
  run_scenario(big, 401);
}

// Lists of random sizes, request 0 rolled back by 3 tokens at step 10 (slots holding positions
// at or past the new current token are emptied), the gather on a single block, layer 1 of 2 not
// copied.
TEST(ElasticLoad, VariableListsRollbackSingleBlock) {
  SPECONTEXT_REQUIRE_GPU();
  Scenario c = base(3, 3, 2, 64, 64, 2, {{0, 1}});
  c.full_budget = false;
  c.rollback_step = 10;
  c.max_blocks = 1;
  run_scenario(c, 500);
  if (HasFatalFailure()) return;
  c.full_budget = true;
  c.overlap = 0.9;
  c.current = CurrentMode::kAlways;
  run_scenario(c, 501);
}

// Device-side garbage the kernels must survive identically to the reference: a table with
// duplicates, negatives and future positions, negative counts, counts past slot_count + 1.
TEST(ElasticLoad, CorruptTableAndOutOfRangeCounts) {
  SPECONTEXT_REQUIRE_GPU();
  Scenario c = base(3, 4, 3, 32, 32, 2, {{0, 2}});
  c.corrupt_table = true;
  c.odd_counts = true;
  c.rollback_step = 5;
  run_scenario(c, 600);
  if (HasFatalFailure()) return;
  c.shared_list = true;
  c.overlap = 0.5;
  run_scenario(c, 601);
}

// More (request, head) pairs than the gather scans at once (1024), on 3 blocks and on many.
TEST(ElasticLoad, ManyPairsSpanGatherChunks) {
  SPECONTEXT_REQUIRE_GPU();
  Scenario c = base(300, 310, 4, 16, 32, 1, {{0, 1}});
  c.steps = 5;
  c.full_budget = false;
  c.max_blocks = 3;
  run_scenario(c, 700);
  if (HasFatalFailure()) return;
  c.max_blocks = 1000;
  run_scenario(c, 701);
}

// Plan, two gathers and two stores captured once in a CUDA graph (before any of them ran), then
// replayed every step with new lists: nothing in them syncs with the host or allocates.
TEST(ElasticLoad, CapturedInCudaGraph) {
  SPECONTEXT_REQUIRE_GPU();
  Scenario c = base(2, 3, 2, 8192, 32, 2, {{0, 1}, {1, 2}});
  c.graph = true;
  c.steps = 6;
  c.overlap = 0.9;
  run_scenario(c, 800);
  if (HasFatalFailure()) return;
  Scenario small = base(3, 3, 2, 100, 128, 2, {{0, 2}});
  small.graph = true;
  small.full_budget = false;
  run_scenario(small, 801);
}

template <class F>
void expect_invalid(F&& launch, const std::string& prefix, const std::string& fragment) {
  try {
    launch();
    ADD_FAILURE() << "accepted; expected \"" << fragment << "\"";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(prefix, 0), 0u) << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
  }
}

// Launch validation throws before touching the device, so this runs without a GPU.
TEST(ElasticLoad, RejectsBadParameters) {
  alignas(16) static std::uint16_t fake[64];
  alignas(16) static std::int32_t ints[16];
  kernels::ElasticPlanParams p;
  p.selection = p.selection_counts = p.slots = p.current = ints;
  p.slot_positions = p.attend_slots = p.attend_counts = p.load_positions = p.load_slots = p.load_counts = ints;
  p.requests = 2;
  p.kv_heads = 2;
  p.slot_count = 64;
  p.max_requests = 2;
  auto plan = [&] { kernels::launch_elastic_plan(p, nullptr); };
  p.slot_count = 0;
  expect_invalid(plan, "elastic_plan: ", "slot_count");
  p.slot_count = kernels::kElasticPlanMaxSlots + 1;
  expect_invalid(plan, "elastic_plan: ", "slot_count");
  p.slot_count = 64;
  p.kv_heads = 0;
  expect_invalid(plan, "elastic_plan: ", "kv_heads");
  p.kv_heads = 2;
  p.max_requests = 1;
  expect_invalid(plan, "elastic_plan: ", "max_requests");
  p.max_requests = 2;
  p.sel_head_stride = -1;
  expect_invalid(plan, "elastic_plan: ", "stride");
  p.sel_head_stride = 0;
  p.load_slots = nullptr;
  expect_invalid(plan, "elastic_plan: ", "null");
  p.load_slots = ints;
  p.current = reinterpret_cast<const std::int32_t*>(reinterpret_cast<const char*>(ints) + 2);
  expect_invalid(plan, "elastic_plan: ", "aligned");
  p.current = ints;
  p.requests = -1;
  expect_invalid(plan, "elastic_plan: ", "requests");
  p.requests = 0;
  EXPECT_NO_THROW(plan());  // nothing to do: returns before the device

  kernels::ElasticGatherParams g;
  g.host_kv = fake;
  g.k_slots = g.v_slots = fake;
  g.slots = g.load_positions = g.load_slots = g.load_counts = ints;
  g.host_positions = 100;
  g.host_layers = 4;
  g.layer_begin = 1;
  g.layer_end = 3;
  g.requests = 2;
  g.kv_heads = 2;
  g.max_requests = 2;
  g.slot_count = 64;
  g.head_dim = 96;
  g.max_blocks = 8;
  auto gather = [&] { kernels::launch_elastic_gather(g, nullptr); };
  expect_invalid(gather, "elastic_gather: ", "head_dim 96");
  g.head_dim = 64;
  g.layer_end = 5;
  expect_invalid(gather, "elastic_gather: ", "layer range");
  g.layer_begin = 3;
  g.layer_end = 2;
  expect_invalid(gather, "elastic_gather: ", "layer range");
  g.layer_begin = 1;
  g.layer_end = 3;
  g.max_blocks = 0;
  expect_invalid(gather, "elastic_gather: ", "max_blocks");
  g.max_blocks = 8;
  g.host_kv = fake + 1;
  expect_invalid(gather, "elastic_gather: ", "16-byte aligned");
  g.host_kv = fake;
  g.load_counts = nullptr;
  expect_invalid(gather, "elastic_gather: ", "null");
  g.load_counts = ints;
  g.host_positions = 0;
  expect_invalid(gather, "elastic_gather: ", "host_positions");
  g.host_positions = 100;
  g.slot_count = 0;
  expect_invalid(gather, "elastic_gather: ", "slot_count");
  g.slot_count = 64;
  g.requests = 3;
  expect_invalid(gather, "elastic_gather: ", "max_requests");
  g.requests = 2;
  g.layer_end = g.layer_begin;
  EXPECT_NO_THROW(gather());  // an empty layer range is a no-op

  kernels::ElasticStoreCurrentParams s;
  s.host_kv = fake;
  s.k_slots = s.v_slots = fake;
  s.slots = ints;
  s.host_positions = 100;
  s.host_layers = 2;
  s.layer_begin = 0;
  s.layer_end = 2;
  s.requests = 1;
  s.kv_heads = 1;
  s.max_requests = 1;
  s.slot_count = 8;
  s.head_dim = 32;
  s.max_blocks = 4;
  auto store = [&] { kernels::launch_elastic_store_current(s, nullptr); };
  expect_invalid(store, "elastic_store_current: ", "null");  // current
  s.current = ints;
  s.layer_end = 3;
  expect_invalid(store, "elastic_store_current: ", "layer range");
  s.layer_end = 2;
  s.k_slots = fake + 4;
  expect_invalid(store, "elastic_store_current: ", "16-byte aligned");
}

}  // namespace

// One (request, head), 4 slots, three steps worked by hand.
TEST(ElasticLoadReference, PlanByHand) {
  std::vector<std::int32_t> table = {10, -1, 3, 7};  // slot -> position
  std::vector<std::int32_t> list(8, -99), count = {0}, slots = {0}, current = {0};
  std::vector<std::int32_t> attend(5, -7), attend_count = {-7}, load_pos(4, -7), load_slot(4, -7), load_count = {-7};
  unsigned long long total = 0;
  ref::ElasticPlanParams p;
  p.selection = list.data();
  p.selection_counts = count.data();
  p.slots = slots.data();
  p.current = current.data();
  p.slot_positions = table.data();
  p.requests = 1;
  p.kv_heads = 1;
  p.slot_count = 4;
  p.max_requests = 1;
  p.attend_slots = attend.data();
  p.attend_counts = attend_count.data();
  p.load_positions = load_pos.data();
  p.load_slots = load_slot.data();
  p.load_counts = load_count.data();
  p.loaded_total = &total;
  auto set_list = [&](std::vector<std::int32_t> l, int cur) {
    std::copy(l.begin(), l.end(), list.begin());
    count[0] = static_cast<std::int32_t>(l.size());
    current[0] = cur;
  };

  // Step 1: current 12, listed. 3 (slot 2) and 7 (slot 3) are held; 5 and 9 are missing and take
  // the free slots 0 (held 10, not listed) and 1 (empty), in that order.
  set_list({3, 5, 7, 9, 12}, 12);
  ref::elastic_plan(p);
  EXPECT_EQ(attend, (std::vector<std::int32_t>{2, 0, 3, 1, 4}));
  EXPECT_EQ(attend_count[0], 5);
  EXPECT_EQ(load_count[0], 2);
  EXPECT_EQ(load_pos, (std::vector<std::int32_t>{5, 9, -7, -7}));
  EXPECT_EQ(load_slot, (std::vector<std::int32_t>{0, 1, -7, -7}));
  EXPECT_EQ(table, (std::vector<std::int32_t>{5, 9, 3, 7}));
  EXPECT_EQ(total, 2u);

  // Step 2: current 13, not listed; 12 (last step's current, never in a slot) is loaded into the
  // first free slot (2); slot 3 is free but keeps 7 (valid history: a later step may want it).
  set_list({5, 9, 12}, 13);
  ref::elastic_plan(p);
  EXPECT_EQ(std::vector<std::int32_t>(attend.begin(), attend.begin() + 4), (std::vector<std::int32_t>{0, 1, 2, 4}));
  EXPECT_EQ(attend_count[0], 4);
  EXPECT_EQ(load_count[0], 1);
  EXPECT_EQ(load_pos[0], 12);
  EXPECT_EQ(load_slot[0], 2);
  EXPECT_EQ(table, (std::vector<std::int32_t>{5, 9, 12, 7}));
  EXPECT_EQ(total, 3u);

  // Step 3: rollback, current 8. 9 and 12 are not history any more: their slots are emptied. 7
  // comes back from slot 3 without a load.
  set_list({5, 7, 8}, 8);
  ref::elastic_plan(p);
  EXPECT_EQ(std::vector<std::int32_t>(attend.begin(), attend.begin() + 3), (std::vector<std::int32_t>{0, 3, 4}));
  EXPECT_EQ(attend_count[0], 3);
  EXPECT_EQ(load_count[0], 0);
  EXPECT_EQ(table, (std::vector<std::int32_t>{5, -1, -1, 7}));
  EXPECT_EQ(total, 3u);

  // A corrupt table: the lowest of two slots holding 4 keeps it; the other is free and, unused,
  // keeps its value; a negative and a future position are emptied. An empty list attends only
  // the current token.
  table = {4, 4, -3, 100};
  set_list({4, 50}, 50);
  ref::elastic_plan(p);
  EXPECT_EQ(std::vector<std::int32_t>(attend.begin(), attend.begin() + 2), (std::vector<std::int32_t>{0, 4}));
  EXPECT_EQ(load_count[0], 0);
  EXPECT_EQ(table, (std::vector<std::int32_t>{4, 4, -1, -1}));
  set_list({}, 51);
  ref::elastic_plan(p);
  EXPECT_EQ(attend[0], 4);
  EXPECT_EQ(attend_count[0], 1);
  EXPECT_EQ(load_count[0], 0);

  // Too many past positions (5 > 4 slots, count 5 + 2 clamped to 5): the last is dropped.
  table = {-1, -1, -1, -1};
  set_list({1, 2, 3, 4, 5}, 60);
  count[0] = 7;
  ref::elastic_plan(p);
  EXPECT_EQ(attend, (std::vector<std::int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(load_count[0], 4);
  EXPECT_EQ(table, (std::vector<std::int32_t>{1, 2, 3, 4}));

  // A request whose slot row is out of range plans nothing.
  slots[0] = 1;
  ref::elastic_plan(p);
  EXPECT_EQ(attend_count[0], 0);
  EXPECT_EQ(load_count[0], 0);
  EXPECT_EQ(table, (std::vector<std::int32_t>{1, 2, 3, 4}));
}

// Gather and store on a 2-row, 1-head, 3-position, 2-layer host array with head_dim 2.
TEST(ElasticLoadReference, GatherAndStoreByHand) {
  ref::ElasticCopyShape s;
  s.host_positions = 3;
  s.host_layers = 2;
  s.layer_begin = 1;
  s.layer_end = 2;
  s.requests = 1;
  s.kv_heads = 1;
  s.max_requests = 2;
  s.slot_count = 2;
  s.head_dim = 2;
  // host[r][0][pos][layer][kv][d] = 1000 r + 100 pos + 10 layer + 2 kv + d
  std::vector<std::uint16_t> host(2 * 3 * 2 * 2 * 2);
  for (int r = 0; r < 2; ++r)
    for (int pos = 0; pos < 3; ++pos)
      for (int l = 0; l < 2; ++l)
        for (int kv = 0; kv < 2; ++kv)
          for (int d = 0; d < 2; ++d)
            host[static_cast<std::size_t>((((r * 3 + pos) * 2 + l) * 2 + kv) * 2 + d)] =
                static_cast<std::uint16_t>(1000 * r + 100 * pos + 10 * l + 2 * kv + d);
  // slots[layer][row][0][slot 0..2][d], all 7 to start with.
  std::vector<std::uint16_t> k(2 * 2 * 3 * 2, 7), v = k;
  const std::vector<std::int32_t> slots = {1}, load_pos = {2, 0}, load_slot = {1, 0}, load_count = {1};
  ref::elastic_gather(s, host.data(), k.data(), v.data(), slots.data(), load_pos.data(), load_slot.data(), load_count.data());
  // Only layer 1, row 1, slot 1 changed: K = 1000 + 200 + 10 + {0, 1}, V = the same + 2.
  std::vector<std::uint16_t> k_want(k.size(), 7), v_want(v.size(), 7);
  const std::size_t at = static_cast<std::size_t>(((1 * 2 + 1) * 3 + 1) * 2);
  k_want[at] = 1210, k_want[at + 1] = 1211;
  v_want[at] = 1212, v_want[at + 1] = 1213;
  EXPECT_EQ(k, k_want);
  EXPECT_EQ(v, v_want);

  // The current token (slot 2 of row 1) goes to position 1 of row 1, layer 1 only.
  const std::size_t cur_at = static_cast<std::size_t>(((1 * 2 + 1) * 3 + 2) * 2);
  k[cur_at] = 5, k[cur_at + 1] = 6, v[cur_at] = 8, v[cur_at + 1] = 9;
  const std::vector<std::int32_t> current = {1};
  std::vector<std::uint16_t> host_want = host;
  const std::size_t h_at = static_cast<std::size_t>((((1 * 3 + 1) * 2 + 1) * 2) * 2);
  host_want[h_at] = 5, host_want[h_at + 1] = 6, host_want[h_at + 2] = 8, host_want[h_at + 3] = 9;
  ref::elastic_store_current(s, host.data(), k.data(), v.data(), slots.data(), current.data());
  EXPECT_EQ(host, host_want);
}

}  // namespace specontext
