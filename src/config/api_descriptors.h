#pragma once

// The whole Envoy v3 API (every v3 proto of the pinned package and their imports) as a
// protobuf descriptor pool: the files with generated C++ from the generated classes' pool,
// the others loaded on first use from the descriptor set embedded in the binary. Any type
// URL in a config resolves here, whether or not C++ was generated for it.

#include <cstddef>
#include <string_view>

namespace google::protobuf {
class Descriptor;
class DescriptorPool;
class EnumDescriptor;
namespace util {
class TypeResolver;
}
}  // namespace google::protobuf

namespace sluice::config {

// The pool of the Envoy API's descriptors; lives for the process. It holds the files loaded
// so far: files with generated C++ (from the generated classes' pool, its underlay) and
// the files lookups through the functions below have loaded from the embedded set. Look
// types up with those, not with the pool's own Find* (which do not load).
const google::protobuf::DescriptorPool& envoyApiPool();

// A message or enum type of the API by its full name, loaded (with its file's imports) on
// first use; nullptr when the API has no such type. Thread-safe.
const google::protobuf::Descriptor* findApiMessageType(std::string_view full_name);
const google::protobuf::EnumDescriptor* findApiEnumType(std::string_view full_name);
// Loads the file that declares `symbol` (any name: a message, field, enum value, service,
// extension); false when the API has none. Then envoyApiPool()'s Find* see it.
bool loadApiSymbol(std::string_view symbol);

// Resolves "type.googleapis.com/<full name>" URLs against envoyApiPool() (loading as above),
// for google::protobuf::util::JsonToBinaryString and BinaryToJsonString.
google::protobuf::util::TypeResolver& envoyApiTypeResolver();

inline constexpr std::string_view kTypeUrlPrefix = "type.googleapis.com";

// The number of files in the embedded set (for diagnostics and tests).
int envoyApiFileCount();

}  // namespace sluice::config
