# The Envoy v3 API: pinned protos from npm (scripts/envoy-api), C++ for the files listed in
# api/cc_protos.txt and their imports, and a descriptor set of the whole v3 API embedded in
# the binary. All of it is one object library, so every message registers at start.

# SLUICE_API_FROM: another build tree of this source whose compiled API this tree links
# instead of generating and compiling its own. The API is compiled alike in every tree
# (-O1, no sanitizer) except under TSan, so `make test-asan` passes the release tree and
# the ASan build skips protoc and the generated code's compile (about a third of a build).
set(SLUICE_API_FROM "" CACHE PATH "Build tree whose compiled Envoy API to link (not for TSan)")
if(SLUICE_API_FROM)
  if(SANITIZE STREQUAL "thread")
    message(FATAL_ERROR "SLUICE_API_FROM: under TSan the API must be compiled with -fsanitize=thread")
  endif()
  file(GLOB_RECURSE api_objects CONFIGURE_DEPENDS
       ${SLUICE_API_FROM}/CMakeFiles/sluice_api.dir/*.o)
  if(NOT api_objects OR NOT EXISTS ${SLUICE_API_FROM}/gen)
    message(FATAL_ERROR "SLUICE_API_FROM=${SLUICE_API_FROM}: no compiled API there (build it first)")
  endif()
  add_library(sluice_api OBJECT IMPORTED GLOBAL)
  set_target_properties(sluice_api PROPERTIES IMPORTED_OBJECTS "${api_objects}")
  target_include_directories(sluice_api SYSTEM INTERFACE ${SLUICE_API_FROM}/gen)
  target_link_libraries(sluice_api INTERFACE sluice_protobuf)
  return()
endif()

set(API_DIR ${CMAKE_BINARY_DIR}/api)
execute_process(COMMAND ${CMAKE_SOURCE_DIR}/scripts/envoy-api ${API_DIR}
  RESULT_VARIABLE api_rc)
if(NOT api_rc EQUAL 0)
  message(FATAL_ERROR "scripts/envoy-api failed: the Envoy API protos are not available")
endif()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  ${CMAKE_SOURCE_DIR}/api/envoy-api.lock ${CMAKE_SOURCE_DIR}/api/cc_protos.txt
  ${CMAKE_SOURCE_DIR}/scripts/envoy-api)

file(STRINGS ${API_DIR}/include_dirs.txt API_INCLUDE_DIRS)
file(STRINGS ${API_DIR}/cc.txt API_CC_LINES)
file(STRINGS ${API_DIR}/all_v3.txt API_ALL_V3)
set(API_GEN ${CMAKE_BINARY_DIR}/gen)
set(protoc_includes)
foreach(d ${API_INCLUDE_DIRS})
  list(APPEND protoc_includes -I${d})
endforeach()

set(api_protos)
set(api_sources)
set(api_headers)
foreach(line ${API_CC_LINES})
  string(REPLACE " " ";" parts "${line}")
  list(GET parts 0 root)
  list(GET parts 1 rel)
  list(APPEND api_protos ${API_DIR}/proto/${root}/${rel})
  string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
  list(APPEND api_sources ${API_GEN}/${stem}.pb.cc)
  list(APPEND api_headers ${API_GEN}/${stem}.pb.h)
endforeach()
set(api_rel)
foreach(line ${API_CC_LINES})
  string(REPLACE " " ";" parts "${line}")
  list(GET parts 1 rel)
  list(APPEND api_rel ${rel})
endforeach()

add_custom_command(
  OUTPUT ${api_sources} ${api_headers}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${API_GEN}
  COMMAND ${PROTOC} ${protoc_includes} --cpp_out=${API_GEN} ${api_rel}
  DEPENDS ${api_protos} ${API_DIR}/stamp
  COMMENT "protoc: C++ for the Envoy API files the code reads"
  VERBATIM)

set(API_DESCRIPTORS ${API_DIR}/envoy_api.pb)
add_custom_command(
  OUTPUT ${API_DESCRIPTORS}
  COMMAND ${PROTOC} ${protoc_includes} --include_imports --descriptor_set_out=${API_DESCRIPTORS} ${API_ALL_V3}
  DEPENDS ${API_DIR}/stamp
  COMMENT "protoc: descriptor set of the whole Envoy v3 API"
  VERBATIM)
set(api_embed ${API_GEN}/envoy_api_descriptors.S)
file(WRITE ${api_embed}.in
  "  .section .rodata\n"
  "  .global sluice_envoy_api_descriptors\n"
  "  .global sluice_envoy_api_descriptors_end\n"
  "  .balign 16\n"
  "sluice_envoy_api_descriptors:\n"
  "  .incbin \"${API_DESCRIPTORS}\"\n"
  "sluice_envoy_api_descriptors_end:\n"
  "  .section .note.GNU-stack,\"\",@progbits\n")
configure_file(${api_embed}.in ${api_embed} COPYONLY)
set_source_files_properties(${api_embed} PROPERTIES OBJECT_DEPENDS ${API_DESCRIPTORS})
enable_language(ASM)

add_library(sluice_api OBJECT ${api_sources} ${api_embed})
target_include_directories(sluice_api SYSTEM PUBLIC ${API_GEN})
target_compile_options(sluice_api PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-O1 -w -g0>)
target_link_libraries(sluice_api PUBLIC sluice_protobuf)
