#include "config/api_descriptors.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/type.pb.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include "common/assert.h"

// Emitted by the assembler from the descriptor set (cmake/EnvoyApi.cmake).
extern "C" const char sluice_envoy_api_descriptors[];
extern "C" const char sluice_envoy_api_descriptors_end[];

namespace sluice::config {
namespace {

namespace pb = google::protobuf;

// Protobuf wire format, just enough to walk a FileDescriptorSet without parsing it: each
// call reads one field of the message in [p, end) and advances p past it.
struct WireField {
  uint32_t number = 0;
  std::string_view bytes;  // the payload of a length-delimited field; empty otherwise
};

bool readVarint(const char*& p, const char* end, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const auto b = static_cast<uint8_t>(*p++);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

bool nextField(const char*& p, const char* end, WireField& f) {
  uint64_t tag, n;
  if (!readVarint(p, end, tag)) return false;
  f.number = static_cast<uint32_t>(tag >> 3);
  f.bytes = {};
  switch (tag & 7) {
    case 0:
      return readVarint(p, end, n);
    case 1:
      n = 8;
      break;
    case 5:
      n = 4;
      break;
    case 2:
      if (!readVarint(p, end, n) || n > static_cast<uint64_t>(end - p)) return false;
      f.bytes = {p, static_cast<size_t>(n)};
      break;
    default:
      return false;
  }
  if (n > static_cast<uint64_t>(end - p)) return false;
  p += n;
  return true;
}

// Field 1 of an encoded message (the name, in DescriptorProto, EnumDescriptorProto,
// ServiceDescriptorProto, FieldDescriptorProto and FileDescriptorProto).
std::string_view nameOf(std::string_view msg) {
  const char* p = msg.data();
  const char* end = p + msg.size();
  WireField f;
  while (p < end && nextField(p, end, f)) {
    if (f.number == 1) return f.bytes;
  }
  return {};
}

// A descriptor database over the embedded set that parses a file only when the pool asks for
// it. Construction walks the wire format for each file's name, package and top-level symbols
// (messages, enums, services, extensions): parsing all the files into FileDescriptorProtos up
// front was a fifth of start-up, and kept them (1.5 MiB) for the life of the process.
class LazyDatabase : public pb::DescriptorDatabase {
 public:
  LazyDatabase(const char* begin, const char* end) {
    const char* p = begin;
    WireField f;
    while (p < end) {
      SLUICE_RELEASE_ASSERT(nextField(p, end, f),
                            "the embedded Envoy API descriptor set does not parse");
      if (f.number == 1) indexFile(f.bytes);  // FileDescriptorSet.file
    }
  }

  size_t fileCount() const { return files_.size(); }

  bool FindFileByName(const std::string& filename, pb::FileDescriptorProto* output) override {
    auto it = by_name_.find(filename);
    return it != by_name_.end() && parse(it->second, output);
  }

  // Like protobuf's own databases: a symbol belongs to the file that declares it or the
  // top-level symbol it is nested in ("pkg.Msg.Inner.field" -> "pkg.Msg").
  bool FindFileContainingSymbol(const std::string& symbol,
                                pb::FileDescriptorProto* output) override {
    std::string_view s = symbol;
    while (!s.empty()) {
      auto it = by_symbol_.find(s);
      if (it != by_symbol_.end()) return parse(it->second, output);
      const size_t dot = s.rfind('.');
      if (dot == std::string_view::npos) break;
      s = s.substr(0, dot);
    }
    return false;
  }

  // Extensions are looked up by number rarely (if ever, for a config): these go through a full
  // index of every file, built on first use.
  bool FindFileContainingExtension(const std::string& containing_type, int field_number,
                                   pb::FileDescriptorProto* output) override {
    return full().FindFileContainingExtension(containing_type, field_number, output);
  }
  bool FindAllExtensionNumbers(const std::string& extendee, std::vector<int>* output) override {
    return full().FindAllExtensionNumbers(extendee, output);
  }
  bool FindAllFileNames(std::vector<std::string>* output) override {
    for (std::string_view f : files_) output->emplace_back(nameOf(f));
    return true;
  }

 private:
  void indexFile(std::string_view file) {
    const size_t index = files_.size();
    files_.push_back(file);
    std::string_view name, package;
    std::vector<std::string_view> symbols;
    const char* p = file.data();
    const char* end = p + file.size();
    WireField f;
    while (p < end) {
      SLUICE_RELEASE_ASSERT(nextField(p, end, f), "an embedded Envoy API file does not parse");
      switch (f.number) {
        case 1:
          name = f.bytes;
          break;
        case 2:
          package = f.bytes;
          break;
        case 4:  // message_type
        case 5:  // enum_type
        case 6:  // service
        case 7:  // extension
          symbols.push_back(nameOf(f.bytes));
          break;
        default:
          break;
      }
    }
    SLUICE_RELEASE_ASSERT(by_name_.emplace(name, index).second,
                          "the embedded Envoy API descriptor set repeats a file");
    for (std::string_view s : symbols) {
      std::string full = package.empty() ? std::string(s)
                                         : std::string(package) + "." + std::string(s);
      by_symbol_.emplace(std::move(full), index);
    }
  }

  bool parse(size_t index, pb::FileDescriptorProto* output) const {
    return output->ParseFromArray(files_[index].data(), static_cast<int>(files_[index].size()));
  }

  pb::DescriptorDatabase& full() {
    std::call_once(full_once_, [this] {
      full_ = std::make_unique<pb::EncodedDescriptorDatabase>();
      for (std::string_view f : files_) full_->Add(f.data(), static_cast<int>(f.size()));
    });
    return *full_;
  }

  std::vector<std::string_view> files_;  // each file's encoded FileDescriptorProto
  std::unordered_map<std::string_view, size_t> by_name_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::unordered_map<std::string, size_t, Hash, std::equal_to<>> by_symbol_;
  std::once_flag full_once_;
  std::unique_ptr<pb::EncodedDescriptorDatabase> full_;
};

// The pool sits over the generated classes' pool: a file with C++ (and its descriptors,
// which the generated classes' reflection and validation build anyway) comes from there;
// any other file is built here from the embedded set, with its imports, when a lookup first
// needs it. (With the embedded set as the pool's fallback database instead, every file a
// config touched was built a second time in this pool: half of start-up, and 1 MiB.) A pool
// over an underlay has no fallback database and no lock of its own: `mu` serialises the
// loading and the lookups.
struct Api {
  Api()
      : database(sluice_envoy_api_descriptors, sluice_envoy_api_descriptors_end),
        pool(pb::DescriptorPool::generated_pool()),
        resolver(pb::util::NewTypeResolverForDescriptorPool(std::string(kTypeUrlPrefix), &pool)) {}

  // Loads the file declaring `symbol` (a message, enum, field, service...) if the pool does
  // not have it yet.
  bool loadSymbolLocked(const std::string& symbol) {
    if (pool.FindFileContainingSymbol(symbol) != nullptr) return true;
    pb::FileDescriptorProto proto;
    return database.FindFileContainingSymbol(symbol, &proto) && loadFileLocked(proto, 0);
  }

  bool loadFileLocked(const pb::FileDescriptorProto& proto, int depth) {
    if (depth > 100) return false;  // an import cycle; protoc rejects those
    for (const std::string& dep : proto.dependency()) {
      if (pool.FindFileByName(dep) != nullptr) continue;
      pb::FileDescriptorProto dep_proto;
      if (!database.FindFileByName(dep, &dep_proto) || !loadFileLocked(dep_proto, depth + 1)) {
        return false;
      }
    }
    return pool.BuildFile(proto) != nullptr;
  }

  LazyDatabase database;
  pb::DescriptorPool pool;
  std::unique_ptr<pb::util::TypeResolver> resolver;  // over `pool`; call it under `mu`
  std::mutex mu;
};

Api& api() {
  static Api* a = new Api();  // never destroyed: descriptors are used until exit
  return *a;
}

// Loads a URL's type before the resolver over the pool looks at it. The resolver asks for
// each nested message type by URL, so each is loaded on its turn.
class LoadingResolver : public pb::util::TypeResolver {
 public:
  pb::util::Status ResolveMessageType(const std::string& type_url, pb::Type* type) override {
    Api& a = api();
    std::lock_guard lock(a.mu);
    a.loadSymbolLocked(std::string(typeNameOfUrl(type_url)));
    return a.resolver->ResolveMessageType(type_url, type);
  }
  pb::util::Status ResolveEnumType(const std::string& type_url, pb::Enum* enum_type) override {
    Api& a = api();
    std::lock_guard lock(a.mu);
    a.loadSymbolLocked(std::string(typeNameOfUrl(type_url)));
    return a.resolver->ResolveEnumType(type_url, enum_type);
  }

 private:
  static std::string_view typeNameOfUrl(std::string_view url) {
    const size_t slash = url.rfind('/');
    return slash == std::string_view::npos ? url : url.substr(slash + 1);
  }
};

}  // namespace

const pb::DescriptorPool& envoyApiPool() { return api().pool; }

pb::util::TypeResolver& envoyApiTypeResolver() {
  static auto* resolver = new LoadingResolver();
  return *resolver;
}

int envoyApiFileCount() { return static_cast<int>(api().database.fileCount()); }

bool loadApiSymbol(std::string_view symbol) {
  Api& a = api();
  std::lock_guard lock(a.mu);
  return a.loadSymbolLocked(std::string(symbol));
}

namespace {

// Loads the file that defines `full_name` (if any) into the pool, then looks it up there.
template <class Find>
auto findLoaded(std::string_view full_name, Find find) {
  Api& a = api();
  std::lock_guard lock(a.mu);
  const std::string name(full_name);
  a.loadSymbolLocked(name);
  return find(a.pool, name);
}

}  // namespace

const pb::Descriptor* findApiMessageType(std::string_view full_name) {
  return findLoaded(full_name, [](const pb::DescriptorPool& pool, const std::string& name) {
    return pool.FindMessageTypeByName(name);
  });
}

const pb::EnumDescriptor* findApiEnumType(std::string_view full_name) {
  return findLoaded(full_name, [](const pb::DescriptorPool& pool, const std::string& name) {
    return pool.FindEnumTypeByName(name);
  });
}

}  // namespace sluice::config
