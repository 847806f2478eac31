#include "config/api_descriptors.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include "common/assert.h"

// Emitted by the assembler from the descriptor set (cmake/EnvoyApi.cmake).
extern "C" const char sluice_envoy_api_descriptors[];
extern "C" const char sluice_envoy_api_descriptors_end[];

namespace sluice::config {
namespace {

// The pool builds a file's descriptors the first time something in it (or in a file that
// imports it) is looked up: a config touches a few dozen of the API's files, and building all
// of them up front was most of the start-up time.
struct Api {
  Api() {
    google::protobuf::FileDescriptorSet set;
    const size_t size = sluice_envoy_api_descriptors_end - sluice_envoy_api_descriptors;
    SLUICE_RELEASE_ASSERT(set.ParseFromArray(sluice_envoy_api_descriptors, static_cast<int>(size)),
                          "the embedded Envoy API descriptor set does not parse");
    file_count = set.file_size();
    while (set.file_size() > 0) {  // handed over, not copied
      SLUICE_RELEASE_ASSERT(database.AddAndOwn(set.mutable_file()->ReleaseLast()),
                            "the embedded Envoy API descriptor set repeats a file");
    }
    resolver.reset(google::protobuf::util::NewTypeResolverForDescriptorPool(
        std::string(kTypeUrlPrefix), &pool));
  }
  google::protobuf::SimpleDescriptorDatabase database;  // declared before the pool that reads it
  google::protobuf::DescriptorPool pool{&database};
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
