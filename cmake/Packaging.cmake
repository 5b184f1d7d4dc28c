#===- cmake/Packaging.cmake - install layout, CMake package, .deb --------===#
#
# `cmake --install build --prefix P` lays out (components in brackets):
#   bin/attnc, bin/attn-opt                                    [compiler]
#   lib/libattn_runtime.so*, include/attn/{runtime,version}.h,
#   lib/pkgconfig/attn_runtime.pc                              [runtime]
#   lib/libattn_jit.so*, include/attn/JIT/Compiler.h,
#   include/attn/{Signature,npy}.h                             [jit]
#   lib/cmake/attnc/ (attncConfig.cmake, targets, attnc_add_kernel)
#                                                              [runtime]
#   share/attnc/docs, share/attnc/examples                     [compiler]
# The package is relocatable (paths relative to the config file). CPack
# builds one .deb per component: scripts/package-deb.sh.
#
#===----------------------------------------------------------------------===#

include(CMakePackageConfigHelpers)

# The config looks for the JIT's LLVM/MLIR where this build found them
# (LLVM_LIBRARY_DIR, from LLVMConfig.cmake).
file(STRINGS ${ATTN_SOURCE_DIR}/runtime/include/attn/runtime.h
     ATTN_ABI_LINE REGEX "^#define ATTN_ABI_VERSION ")
string(REGEX REPLACE ".*ATTN_ABI_VERSION ([0-9]+).*" "\\1" ATTN_ABI_VERSION
       "${ATTN_ABI_LINE}")
set(ATTN_INSTALL_EXAMPLESDIR ${ATTN_INSTALL_DATADIR}/examples)
configure_package_config_file(
  ${ATTN_SOURCE_DIR}/cmake/attncConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/attncConfig.cmake
  INSTALL_DESTINATION ${ATTN_INSTALL_CMAKEDIR}
  PATH_VARS ATTN_INSTALL_EXAMPLESDIR)
write_basic_package_version_file(
  ${CMAKE_BINARY_DIR}/cmake/attncConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  # Before 1.0, a minor release may break compatibility.
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/attncConfig.cmake
              ${CMAKE_BINARY_DIR}/cmake/attncConfigVersion.cmake
              ${ATTN_SOURCE_DIR}/cmake/attncAddKernel.cmake
  DESTINATION ${ATTN_INSTALL_CMAKEDIR} COMPONENT runtime)
install(EXPORT attncRuntimeTargets NAMESPACE attnc::
  DESTINATION ${ATTN_INSTALL_CMAKEDIR} COMPONENT runtime)
install(EXPORT attncCompilerTargets NAMESPACE attnc::
  DESTINATION ${ATTN_INSTALL_CMAKEDIR} COMPONENT compiler)
if(TARGET attn_jit)
  install(EXPORT attncJitTargets NAMESPACE attnc::
    DESTINATION ${ATTN_INSTALL_CMAKEDIR} COMPONENT jit)
endif()

# The language docs and the examples, including the AOT and JIT host
# programs the README shows.
install(FILES ${ATTN_SOURCE_DIR}/docs/language.md
              ${ATTN_SOURCE_DIR}/docs/architecture.md
              ${ATTN_SOURCE_DIR}/docs/reliability.md
              ${ATTN_SOURCE_DIR}/README.md
  DESTINATION ${ATTN_INSTALL_DATADIR}/docs COMPONENT compiler)
install(DIRECTORY ${ATTN_SOURCE_DIR}/examples/
  DESTINATION ${ATTN_INSTALL_EXAMPLESDIR} COMPONENT compiler
  FILES_MATCHING PATTERN "*.attn" PATTERN "*.c" PATTERN "*.cpp")

#---- CPack: one .deb per component -----------------------------------------#
set(CPACK_PACKAGE_NAME attnc)
set(CPACK_PACKAGE_VENDOR "attnc")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "attnc: a compiler for attention variants (.attn specs to CPU/CUDA/ROCm kernels)")
set(CPACK_PACKAGE_CONTACT "attnc developers <attnc@localhost>")
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime compiler jit)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libattn-runtime)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "libc6, libstdc++6, libdlpack-dev")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "attnc runtime: runs kernels compiled by attnc (C ABI, no LLVM/MLIR), with headers, pkg-config and CMake package files")
set(CPACK_DEBIAN_COMPILER_PACKAGE_NAME attnc)
set(CPACK_DEBIAN_COMPILER_PACKAGE_DEPENDS
    "libattn-runtime (= ${PROJECT_VERSION}), libmlir-22, libllvm22, lld-22")
set(CPACK_COMPONENT_COMPILER_DESCRIPTION
    "attnc compiler: attnc and attn-opt, attnc_add_kernel, docs and examples")
set(CPACK_DEBIAN_JIT_PACKAGE_NAME libattn-jit)
set(CPACK_DEBIAN_JIT_PACKAGE_DEPENDS
    "libattn-runtime (= ${PROJECT_VERSION}), libmlir-22, libllvm22, lld-22")
set(CPACK_COMPONENT_JIT_DESCRIPTION
    "attnc JIT: compile .attn specs at run time from C++ (attn::Compiler)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
