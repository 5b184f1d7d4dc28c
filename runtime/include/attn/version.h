/*===- attn/version.h - attnc's version ------------------------------------===*
 *
 * The one project version: CMake reads it from here (project(VERSION)), the
 * runtime reports it (attn_runtime_version()), attnc --version prints it.
 *
 *===----------------------------------------------------------------------===*/

#ifndef ATTN_VERSION_H
#define ATTN_VERSION_H

#include "attn/runtime.h"

#define ATTN_VERSION_MAJOR 0
#define ATTN_VERSION_MINOR 6
#define ATTN_VERSION_PATCH 0
#define ATTN_VERSION_STRING "0.6.0"

#ifdef __cplusplus
extern "C" {
#endif

/* The runtime's version, "MAJOR.MINOR.PATCH" (ATTN_VERSION_STRING when it
   was built), and the kernel ABI version it accepts (ATTN_ABI_VERSION when
   it was built): a program linked against one runtime and run with another
   can compare them with these headers'. */
ATTN_RUNTIME_API const char *attn_runtime_version(void);
ATTN_RUNTIME_API uint32_t attn_runtime_abi_version(void);

#ifdef __cplusplus
}
#endif

#endif
