#pragma once

// The whole Envoy v3 API (every v3 proto of the pinned package and their imports) as a
// protobuf descriptor pool, built once from the descriptor set embedded in the binary. Any
// type URL in a config resolves here, whether or not C++ was generated for it.

#include <cstddef>
#include <string_view>

namespace google::protobuf {
class DescriptorPool;
namespace util {
class TypeResolver;
}
}  // namespace google::protobuf

namespace sluice::config {

// Built on first use (thread-safe); lives for the process.
const google::protobuf::DescriptorPool& envoyApiPool();

// Resolves "type.googleapis.com/<full name>" URLs against envoyApiPool(), for
// google::protobuf::util::JsonToBinaryString and BinaryToJsonString.
google::protobuf::util::TypeResolver& envoyApiTypeResolver();

inline constexpr std::string_view kTypeUrlPrefix = "type.googleapis.com";

// The number of files in the embedded set (for diagnostics and tests).
int envoyApiFileCount();

// Unmaps the resident pages of the read-only descriptor data the binary carries: the
// embedded set (500 KiB, all of it read by start-up's index walk) and protobuf's generated
// descriptors (section protodesc_cold, parsed once at static initialisation). They stay in
// the page cache, and a later read (a lookup of a file not built yet) maps them again. Call
// once the config is loaded; returns the bytes released.
size_t releaseDescriptorPages();

}  // namespace sluice::config
