# Build helpers: one library target per component, one test target per *_test.cc.
#
#   keel_cc_library(NAME common SRCS a.cc HDRS a.h DEPS fmt::fmt PRIVATE_DEPS spdlog::spdlog)
#     -> target keel_common, alias keel::common. Includes are rooted at the repository
#        (#include "keel/common/status.h") and at the build tree (generated headers).
#   keel_cc_tests(DEPS keel::common)
#     -> one executable per *_test.cc in the current folder, each registered with CTest
#        test by test (gtest_discover_tests).

# Warnings apply to project code only; third-party headers come in as system includes.
add_library(keel_warnings INTERFACE)
# -Wno-missing-field-initializers: GCC 12 flags designated initializers that leave fields at
# their defaults (`Options{.listen = "..."}`), which is how keel's options structs are meant
# to be used.
target_compile_options(keel_warnings INTERFACE -Wall -Wextra -Werror
                                               -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  # Clang enforces the KEEL_GUARDED_BY / KEEL_REQUIRES annotations of keel/common/mutex.h.
  target_compile_options(keel_warnings INTERFACE -Wthread-safety)
endif()

if(KEEL_SANITIZE)
  string(REPLACE "," ";" _keel_sanitizers "${KEEL_SANITIZE}")
  foreach(_s IN LISTS _keel_sanitizers)
    add_compile_options(-fsanitize=${_s})
    add_link_options(-fsanitize=${_s})
  endforeach()
  add_compile_options(-fno-omit-frame-pointer -fno-sanitize-recover=all)
endif()

function(keel_cc_library NAME)
  cmake_parse_arguments(ARG "" "" "SRCS;HDRS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(keel_${NAME} STATIC ${ARG_SRCS} ${ARG_HDRS})
  add_library(keel::${NAME} ALIAS keel_${NAME})
  target_include_directories(keel_${NAME} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(keel_${NAME} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS} keel_warnings)
endfunction()

function(keel_cc_tests)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB _tests CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc")
  file(RELATIVE_PATH _dir ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  string(REPLACE "/" "_" _prefix "${_dir}")
  foreach(_src IN LISTS _tests)
    get_filename_component(_name ${_src} NAME_WE)
    set(_target ${_prefix}_${_name})
    add_executable(${_target} ${_src})
    target_link_libraries(${_target} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock
                                             GTest::gtest_main keel_warnings)
    gtest_discover_tests(${_target} DISCOVERY_TIMEOUT 60
                         PROPERTIES ENVIRONMENT "KEEL_BUILD_DIR=${PROJECT_BINARY_DIR}")
  endforeach()
endfunction()

# keel_proto_library(NAME rpc_proto PROTOS keel.proto): C++ + gRPC code for .proto files.
# Generated code is compiled without -Werror (it is not ours to fix).
function(keel_proto_library NAME)
  cmake_parse_arguments(ARG "" "" "PROTOS" ${ARGN})
  set(_out ${PROJECT_BINARY_DIR})
  file(RELATIVE_PATH _rel ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  set(_srcs)
  foreach(_proto IN LISTS ARG_PROTOS)
    get_filename_component(_we ${_proto} NAME_WE)
    set(_base ${_out}/${_rel}/${_we})
    set(_gen ${_base}.pb.cc ${_base}.pb.h ${_base}.grpc.pb.cc ${_base}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${_gen}
      COMMAND protobuf::protoc ARGS --proto_path=${PROJECT_SOURCE_DIR} --cpp_out=${_out}
              --grpc_out=${_out} --plugin=protoc-gen-grpc=${KEEL_GRPC_CPP_PLUGIN}
              ${CMAKE_CURRENT_SOURCE_DIR}/${_proto}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${_proto} protobuf::protoc
      COMMENT "protoc ${_rel}/${_proto}")
    list(APPEND _srcs ${_gen})
  endforeach()
  add_library(keel_${NAME} STATIC ${_srcs})
  add_library(keel::${NAME} ALIAS keel_${NAME})
  target_include_directories(keel_${NAME} SYSTEM PUBLIC ${_out})
  target_link_libraries(keel_${NAME} PUBLIC protobuf::libprotobuf gRPC::grpc++)
endfunction()
