# attncAddKernel.cmake - the ahead-of-time door of attnc as one CMake call.
#
#   attnc_add_kernel(<target> <spec.attn>
#                    [TARGET_ARCH cpu|cpu:NAME|cuda[:sm_XX,...]|rocm[:gfxNNN,...]]
#                    [PARAMS name=value ...]
#                    [NAME <name>])
#
# Runs `attnc <spec> --target=<arch> [--param name=value]... -o <name>.o
# --header <name>.h` at build time into
# ${CMAKE_CURRENT_BINARY_DIR}/attnc_kernels/<name>/, adds the object to
# <target>'s sources, that folder to its include path (so `#include
# "<name>.h"`) and links attnc::runtime. The rule reruns when the spec or the
# attnc executable changes. <name> defaults to the spec file's stem; it
# names the files only (the kernel's functions are named by the spec:
# attn_run_<spec name> for the CPU, attn_cuda_run_<spec name> for CUDA, ...).
# TARGET_ARCH defaults to `cpu`, the machine that builds (attnc's own
# default); say `cpu:x86-64-v3` or similar when the binary runs elsewhere.

function(attnc_add_kernel target spec)
  cmake_parse_arguments(PARSE_ARGV 2 ARG "" "TARGET_ARCH;NAME" "PARAMS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "attnc_add_kernel: unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TARGET ${target})
    message(FATAL_ERROR "attnc_add_kernel: '${target}' is not a target")
  endif()
  if(NOT TARGET attnc::attnc)
    message(FATAL_ERROR "attnc_add_kernel needs find_package(attnc ... COMPONENTS compiler)")
  endif()
  get_filename_component(spec_abs "${spec}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${spec_abs}")
    message(FATAL_ERROR "attnc_add_kernel: no spec file ${spec_abs}")
  endif()
  set(name "${ARG_NAME}")
  if(NOT name)
    get_filename_component(name "${spec}" NAME_WE)
  endif()
  if(NOT name MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "attnc_add_kernel: NAME '${name}' must be a C identifier")
  endif()
  set(arch "${ARG_TARGET_ARCH}")
  if(NOT arch)
    set(arch cpu)
  endif()
  set(outdir "${CMAKE_CURRENT_BINARY_DIR}/attnc_kernels/${name}")
  set(obj "${outdir}/${name}.o")
  set(hdr "${outdir}/${name}.h")
  set(args "${spec_abs}" "--target=${arch}" -o "${obj}" --header "${hdr}")
  foreach(p IN LISTS ARG_PARAMS)
    list(APPEND args --param "${p}")
  endforeach()
  add_custom_command(
    OUTPUT "${obj}" "${hdr}"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${outdir}"
    COMMAND attnc::attnc ${args}
    DEPENDS "${spec_abs}" "$<TARGET_FILE:attnc::attnc>"
    COMMENT "attnc: compiling ${spec} (${arch}) ahead of time"
    VERBATIM)
  set_source_files_properties("${obj}" PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  target_sources(${target} PRIVATE "${obj}" "${hdr}")
  target_include_directories(${target} PRIVATE "${outdir}")
  target_link_libraries(${target} PRIVATE attnc::runtime)
endfunction()
