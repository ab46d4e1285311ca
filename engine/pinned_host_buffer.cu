#include "engine/pinned_host_buffer.cuh"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <cuda_runtime.h>

namespace specontext {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

[[noreturn]] void fail(const std::string& call, const std::string& why) {
  throw std::runtime_error("pinned host buffer: " + call + " failed: " + why);
}

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) fail(call, cudaGetErrorString(e));
}

}  // namespace

PinnedHostBuffer::PinnedHostBuffer(std::size_t bytes, HostPages pages) : bytes_(bytes), pages_(pages) {
  if (bytes == 0) return;
  if (pages == HostPages::Cuda) {
    check(cudaHostAlloc(&host_, bytes, cudaHostAllocMapped), "cudaHostAlloc");
  } else {
    // One spare huge page so the start can be aligned to one.
    mapping_bytes_ = (bytes + kHugePage - 1) / kHugePage * kHugePage + kHugePage;
    mapping_ = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping_ == MAP_FAILED) {
      mapping_ = nullptr;
      fail("mmap of " + std::to_string(mapping_bytes_) + " bytes", std::strerror(errno));
    }
    const auto at = reinterpret_cast<std::uintptr_t>(mapping_);
    host_ = reinterpret_cast<void*>((at + kHugePage - 1) / kHugePage * kHugePage);
    // Advice before the first touch: pages faulted in afterwards come as huge pages where the kernel
    // has them. EINVAL means a kernel without THP: the buffer still works, on base pages.
    if (madvise(host_, bytes, MADV_HUGEPAGE) != 0 && errno != EINVAL) {
      const std::string why = std::strerror(errno);
      release();
      fail("madvise(MADV_HUGEPAGE)", why);
    }
    // Fault every page in by writing it (one write per base page; a huge page takes one fault).
    const long base = sysconf(_SC_PAGESIZE);
    auto* p = static_cast<volatile unsigned char*>(host_);
    for (std::size_t off = 0; off < bytes; off += static_cast<std::size_t>(base > 0 ? base : 4096)) p[off] = 0;
    const cudaError_t e = cudaHostRegister(host_, bytes, cudaHostRegisterMapped);
    if (e != cudaSuccess) {
      release();
      fail("cudaHostRegister of " + std::to_string(bytes) + " bytes", cudaGetErrorString(e));
    }
    registered_ = true;
  }
  const cudaError_t e = cudaHostGetDevicePointer(&device_, host_, 0);
  if (e != cudaSuccess) {
    release();
    fail("cudaHostGetDevicePointer", cudaGetErrorString(e));
  }
}

void PinnedHostBuffer::release() noexcept {
  if (pages_ == HostPages::Cuda) {
    if (host_) cudaFreeHost(host_);
  } else if (mapping_) {
    if (registered_) cudaHostUnregister(host_);
    munmap(mapping_, mapping_bytes_);
  }
  host_ = device_ = mapping_ = nullptr;
  mapping_bytes_ = bytes_ = 0;
  registered_ = false;
}

PinnedHostBuffer::~PinnedHostBuffer() { release(); }

PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&& other) noexcept { *this = std::move(other); }

PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&& other) noexcept {
  if (this != &other) {
    release();
    std::swap(host_, other.host_);
    std::swap(device_, other.device_);
    std::swap(mapping_, other.mapping_);
    std::swap(mapping_bytes_, other.mapping_bytes_);
    std::swap(registered_, other.registered_);
    std::swap(bytes_, other.bytes_);
    std::swap(pages_, other.pages_);
  }
  return *this;
}

std::size_t PinnedHostBuffer::huge_page_bytes() const {
  if (!mapping_) return 0;
  const auto lo = reinterpret_cast<std::uintptr_t>(host_), hi = lo + bytes_;
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;  // the current smaps entry overlaps the buffer
  std::size_t kib = 0;
  while (std::getline(smaps, line)) {
    std::uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> start >> dash >> end && dash == '-') {  // an entry's header: "start-end perms ..."
      inside = start < hi && end > lo;
    } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      std::istringstream v(line.substr(14));
      std::size_t n = 0;
      if (v >> n) kib += n;
    }
  }
  return std::min(kib * 1024, bytes_);
}

}  // namespace specontext
