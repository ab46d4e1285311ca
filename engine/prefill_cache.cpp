#include "engine/prefill_cache.hpp"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace specontext {
namespace {

constexpr char kMagic[8] = {'S', 'P', 'C', 'P', 'R', 'E', 'F', '2'};  // 2: feature layers before the bulk
constexpr std::uint64_t kFnvOffset = 1469598103934665603ull, kFnvPrime = 1099511628211ull;

std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

std::string hex(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Little helpers over a binary stream; a short read throws, naming the file and what was read.
struct Writer {
  std::ofstream& out;
  void u64(std::uint64_t v) { out.write(reinterpret_cast<const char*>(&v), sizeof v); }
  template <typename T>
  void array(const std::vector<T>& a) {
    u64(a.size());
    out.write(reinterpret_cast<const char*>(a.data()), static_cast<std::streamsize>(a.size() * sizeof(T)));
  }
};

struct Reader {
  std::ifstream& in;
  const std::filesystem::path& path;
  std::uint64_t remaining;  // bytes left in the file: a corrupt size cannot make us allocate past it
  [[noreturn]] void truncated(const char* what) const {
    throw std::runtime_error(path.string() + ": truncated prefill cache entry (reading " + what + "); delete the file");
  }
  void bytes(void* dst, std::uint64_t n, const char* what) {
    if (n > remaining || !in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n))) truncated(what);
    remaining -= n;
  }
  std::uint64_t u64(const char* what) {
    std::uint64_t v = 0;
    bytes(&v, sizeof v, what);
    return v;
  }
  template <typename T>
  std::vector<T> array(const char* what) {
    const std::uint64_t n = u64(what);
    if (n > remaining / sizeof(T)) truncated(what);
    std::vector<T> a(n);
    bytes(a.data(), n * sizeof(T), what);
    return a;
  }
};

}  // namespace

PrefillCache::PrefillCache(std::filesystem::path dir, std::uint64_t model_key) : dir_(std::move(dir)), model_key_(model_key) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec || !std::filesystem::is_directory(dir_))
    throw std::runtime_error(dir_.string() + ": cannot create the prefill cache folder" + (ec ? ": " + ec.message() : std::string()));
}

std::filesystem::path PrefillCache::path_for(const std::vector<int>& tokens) const {
  return dir_ / (hex(model_key_) + "-" + hex(fnv1a(kFnvOffset, tokens.data(), tokens.size() * sizeof(int))) + ".prefill");
}

std::optional<PrefilledRequest> PrefillCache::load(const std::vector<int>& tokens, const std::vector<int>& feature_layers) {
  const std::filesystem::path path = path_for(tokens);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ++misses_;
    return std::nullopt;
  }
  // The size of the file opened, not of the name (another process may rename a new entry over it).
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size < 0 || !in) throw std::runtime_error(path.string() + ": cannot read the prefill cache entry");
  Reader r{in, path, static_cast<std::uint64_t>(size)};
  char magic[sizeof kMagic];
  r.bytes(magic, sizeof magic, "the magic");
  if (std::memcmp(magic, kMagic, sizeof magic) != 0) throw std::runtime_error(path.string() + ": not a prefill cache entry (bad magic); delete the file");
  if (r.u64("the model key") != model_key_ || r.array<int>("the prompt") != tokens) {  // a hash collision
    ++misses_;
    return std::nullopt;
  }
  PrefilledRequest e;
  // The feature layers come before the bulk, so that an entry without the wanted ones is a miss
  // decided without reading its keys and values.
  e.feature_layers = r.array<int>("the feature layers");
  if (!feature_layers.empty() && e.feature_layers != feature_layers) {
    ++misses_;
    return std::nullopt;
  }
  const std::uint64_t layers = r.u64("the layer count");
  if (layers > r.remaining) r.truncated("the layer count");
  for (std::uint64_t l = 0; l < layers; ++l) {
    e.k.push_back(r.array<float>("keys"));
    e.v.push_back(r.array<float>("values"));
  }
  e.features = r.array<float>("the features");
  e.logits = r.array<float>("the logits");
  if (r.remaining != 0) throw std::runtime_error(path.string() + ": " + std::to_string(r.remaining) + " bytes past the prefill cache entry's end; delete the file");
  if (feature_layers.empty()) {
    e.feature_layers.clear();
    e.features.clear();
  }
  ++hits_;
  return e;
}

void PrefillCache::store(const std::vector<int>& tokens, const PrefilledRequest& entry) {
  const std::filesystem::path path = path_for(tokens);
  // A name of this writer's own: runs of a sweep may store the same prompt at once (processes of
  // other hosts too, where the folder is shared, hence the random part beside the PID).
  const std::filesystem::path tmp = path.string() + "." + std::to_string(::getpid()) + "-" + hex(std::random_device{}()) + ".tmp";
  const auto fail = [&](const std::string& what) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw std::runtime_error(what);
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(tmp.string() + ": cannot write the prefill cache entry");
    Writer w{out};
    out.write(kMagic, sizeof kMagic);
    w.u64(model_key_);
    w.array(tokens);
    w.array(entry.feature_layers);
    w.u64(entry.k.size());
    for (std::size_t l = 0; l < entry.k.size(); ++l) {
      w.array(entry.k[l]);
      w.array(entry.v[l]);
    }
    w.array(entry.features);
    w.array(entry.logits);
    if (!out.flush()) fail(tmp.string() + ": writing the prefill cache entry failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(path.string() + ": cannot move the prefill cache entry into place: " + ec.message());
}

std::uint64_t content_fingerprint(const std::vector<std::filesystem::path>& files) {
  std::uint64_t h = kFnvOffset;
  std::vector<char> buf(1 << 20);
  for (const std::filesystem::path& f : files) {
    const std::string name = f.filename().string();
    h = fnv1a(h, name.data(), name.size() + 1);
    std::ifstream in(f, std::ios::binary);
    if (!in) throw std::runtime_error(f.string() + ": cannot read (fingerprinting the model for the prefill cache)");
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      h = fnv1a(h, buf.data(), static_cast<std::size_t>(in.gcount()));
    }
  }
  return h;
}

}  // namespace specontext
