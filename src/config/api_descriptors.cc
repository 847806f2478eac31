#include "config/api_descriptors.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include "common/assert.h"

// Emitted by the assembler from the descriptor set (cmake/EnvoyApi.cmake).
extern "C" const char sluice_envoy_api_descriptors[];
extern "C" const char sluice_envoy_api_descriptors_end[];

namespace sluice::config {
namespace {

struct Api {
  Api() {
    google::protobuf::FileDescriptorSet set;
    const size_t size = sluice_envoy_api_descriptors_end - sluice_envoy_api_descriptors;
    SLUICE_RELEASE_ASSERT(set.ParseFromArray(sluice_envoy_api_descriptors, static_cast<int>(size)),
                          "the embedded Envoy API descriptor set does not parse");
    // --include_imports lists dependencies before the files that import them.
    for (const auto& file : set.file()) {
      SLUICE_RELEASE_ASSERT(pool.BuildFile(file) != nullptr,
                            "the embedded Envoy API descriptor set does not build");
    }
    file_count = set.file_size();
    resolver.reset(google::protobuf::util::NewTypeResolverForDescriptorPool(
        std::string(kTypeUrlPrefix), &pool));
  }
  google::protobuf::DescriptorPool pool;
  std::unique_ptr<google::protobuf::util::TypeResolver> resolver;
  int file_count{0};
};

Api& api() {
  static Api* a = new Api();  // never destroyed: descriptors are used until exit
  return *a;
}

}  // namespace

const google::protobuf::DescriptorPool& envoyApiPool() { return api().pool; }
google::protobuf::util::TypeResolver& envoyApiTypeResolver() { return *api().resolver; }
int envoyApiFileCount() { return api().file_count; }

}  // namespace sluice::config
