#pragma once
// Pinned host memory mapped into the GPU's address space, for KV rows that kernels read directly
// (the elastic gathers: zero-copy, no staging copy).
//
// Two ways to get it:
// - HostPages::Cuda: cudaHostAlloc(cudaHostAllocMapped), what the engine has always used; the pages
//   are the kernel's base pages (4 KiB).
// - HostPages::Huge: an anonymous mapping aligned to 2 MiB, advised MADV_HUGEPAGE before any page is
//   touched (transparent huge pages in "madvise" mode back it with 2 MiB pages where they can), then
//   cudaHostRegister(cudaHostRegisterMapped). Why try it: a gather reads a few hundred random 512 B
//   rows from each of up to 256 stretches of tens of MB, so nearly every row touches a page no
//   translation cache holds; with 2 MiB pages there are 512 times fewer of them (peers pinning large
//   KV stores -- LMCache, mori -- use huge pages for the same reason, and registration gets faster).
//   Whether the GPU's mapping of the buffer uses the larger pages is the driver's choice: only a
//   measurement (bench/gather_footprint --host-pages) says whether the reads get faster.
// huge_page_bytes() reports how much of the buffer the kernel really backed with huge pages (0 where
// THP is off, or for HostPages::Cuda), so a measurement can say what it ran on.
#include <cstddef>
#include <stdexcept>
#include <string>

namespace specontext {

enum class HostPages { Cuda, Huge };

// "cuda" or "huge"; anything else throws std::invalid_argument naming `what` (a flag or field).
// Inline: builds without CUDA parse the flag too.
inline HostPages parse_host_pages(const std::string& text, const std::string& what) {
  if (text == "cuda") return HostPages::Cuda;
  if (text == "huge") return HostPages::Huge;
  throw std::invalid_argument(what + ": expected 'cuda' or 'huge', got '" + text + "'");
}
inline const char* to_string(HostPages pages) { return pages == HostPages::Huge ? "huge" : "cuda"; }

class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  // Throws std::runtime_error naming the call that failed (mmap, madvise, cudaHostRegister, ...).
  PinnedHostBuffer(std::size_t bytes, HostPages pages);
  ~PinnedHostBuffer();
  PinnedHostBuffer(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer& operator=(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;

  void* host() const { return host_; }
  void* device() const { return device_; }  // the same bytes, as GPU kernels address them
  std::size_t bytes() const { return bytes_; }
  HostPages pages() const { return pages_; }
  // Bytes of this buffer backed by transparent huge pages (/proc/self/smaps, AnonHugePages).
  std::size_t huge_page_bytes() const;

 private:
  void release() noexcept;
  void* host_ = nullptr;
  void* device_ = nullptr;
  void* mapping_ = nullptr;  // Huge: the whole mmap (host_ is its 2 MiB-aligned start)
  std::size_t mapping_bytes_ = 0;
  bool registered_ = false;  // Huge: cudaHostRegister succeeded (release() must unregister)
  std::size_t bytes_ = 0;
  HostPages pages_ = HostPages::Cuda;
};

}  // namespace specontext
