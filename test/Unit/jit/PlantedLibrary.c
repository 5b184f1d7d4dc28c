/*===- PlantedLibrary.c - a library a cache must never load --------------===*\
|*                                                                            *|
|* KernelCacheTest plants this library in kernel caches under a kernel's     *|
|* name. Its constructor creates the file $ATTN_TEST_MARKER, so a test sees  *|
|* whether anything ever loaded it.                                          *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void attnTestPlantedLibraryLoaded(void) {
  const char *marker = getenv("ATTN_TEST_MARKER");
  if (!marker)
    return;
  int fd = open(marker, O_WRONLY | O_CREAT, 0600);
  if (fd >= 0)
    close(fd);
}
