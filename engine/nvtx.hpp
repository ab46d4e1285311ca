#pragma once
// NVTX 3 ranges in the `specontext` domain (DESIGN.md: step N > layer L > retrieval_head,
// select, prefetch, attention, mlp). RAII, as llm.c's NvtxRange; compiled out without CUDA.
#include <string>

#if defined(SPECONTEXT_HAVE_CUDA)
#include <nvtx3/nvToolsExt.h>
#endif

namespace specontext {

#if defined(SPECONTEXT_HAVE_CUDA)
class NvtxRange {
 public:
  explicit NvtxRange(const std::string& name) {
    nvtxEventAttributes_t a{};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = name.c_str();
    nvtxDomainRangePushEx(domain(), &a);
  }
  ~NvtxRange() { nvtxDomainRangePop(domain()); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;

 private:
  static nvtxDomainHandle_t domain() {
    static nvtxDomainHandle_t d = nvtxDomainCreateA("specontext");
    return d;
  }
};
#else
class NvtxRange {
 public:
  explicit NvtxRange(const std::string&) {}
};
#endif

}  // namespace specontext
