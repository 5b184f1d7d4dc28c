//===- NpyFuzzer.cpp - libFuzzer target: the .npy reader ------------------===//
//
// Arbitrary bytes as a .npy image, both in memory (parseNpy) and as a file
// (readNpy on a memfd, through /proc/self/fd, so no temp file is left
// behind). Checks: no crash or sanitizer report; errors are one line; a
// file and a buffer with the same bytes give the same result; an accepted
// array is consistent (bytes == numel * element size, no negative dim) and
// survives serializeNpy -> parseNpy unchanged.
//
//===----------------------------------------------------------------------===//

#include "FuzzCommon.h"

#include "attn/npy.h"

#include <cstdint>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

using ::attn::HostArray;
using ::attn::fuzz::invariantFailed;
using ::attn::fuzz::isOneLine;

namespace {

bool sameArray(const HostArray &a, const HostArray &b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
}

/// readNpy on a memfd holding \p data. Returns false when the memfd cannot
/// be made (then the file half of the check is skipped).
bool readThroughFile(const uint8_t *data, size_t size, std::string &err,
                     HostArray &out) {
  int fd = memfd_create("attn-npy-fuzz", MFD_CLOEXEC);
  if (fd < 0)
    return false;
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) {
      close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  err = ::attn::readNpy("/proc/self/fd/" + std::to_string(fd), out);
  close(fd);
  return true;
}

void checkAccepted(const HostArray &a) {
  int64_t numel = 1;
  for (int64_t d : a.shape) {
    if (d < 0)
      invariantFailed("parseNpy accepted a negative dim: " + a.shapeString());
    numel *= d;
  }
  if (numel != a.numel() ||
      a.bytes.size() != static_cast<size_t>(numel) * ::attn::dtypeSize(a.dtype))
    invariantFailed("parseNpy returned " + std::to_string(a.bytes.size()) +
                    " bytes for shape " + a.shapeString() + " of " +
                    ::attn::dtypeName(a.dtype));
  if (a.dtype == ::attn::DType::BF16)
    invariantFailed("parseNpy returned bfloat16, which has no .npy descr");

  std::vector<uint8_t> image;
  if (std::string err = ::attn::serializeNpy(a, image); !err.empty())
    invariantFailed("an accepted array does not serialize", err);
  HostArray again;
  if (std::string err = ::attn::parseNpy(image.data(), image.size(), again);
      !err.empty())
    invariantFailed("a serialized array does not parse", err);
  if (!sameArray(a, again))
    invariantFailed("serializeNpy -> parseNpy changed the array");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  HostArray parsed;
  std::string parseErr = ::attn::parseNpy(data, size, parsed);
  if (!isOneLine(parseErr))
    invariantFailed("a parseNpy error is not one line", parseErr);
  if (parseErr.empty())
    checkAccepted(parsed);

  std::string readErr;
  HostArray read;
  if (!readThroughFile(data, size, readErr, read))
    return 0;
  if (!isOneLine(readErr))
    invariantFailed("a readNpy error is not one line", readErr);
  if (readErr.empty() != parseErr.empty())
    invariantFailed("readNpy and parseNpy disagree on the same bytes",
                    "parseNpy: '" + parseErr + "'\nreadNpy: '" + readErr + "'");
  if (readErr.empty() && !sameArray(parsed, read))
    invariantFailed("readNpy and parseNpy return different arrays");
  return 0;
}
