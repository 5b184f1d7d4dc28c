"""Splits a clang offload bundle (attnc --emit=hipfb) into its entries.

  split_bundle.py BUNDLE OUTDIR

Prints one line per entry, "<id> <size> <alignment ok>", and writes each
non-empty entry to OUTDIR/<id>.hsaco. Checks the layout hipModuleLoadData
reads: the magic, the entry table, entries inside the file.
"""
import os
import struct
import sys

MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"


def main():
    data = open(sys.argv[1], "rb").read()
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    if not data.startswith(MAGIC):
        raise SystemExit("not an offload bundle")
    pos = len(MAGIC)
    (count,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    print("entries %d" % count)
    for _ in range(count):
        offset, size, idlen = struct.unpack_from("<QQQ", data, pos)
        pos += 24
        ident = data[pos:pos + idlen].decode()
        pos += idlen
        if offset + size > len(data):
            raise SystemExit("entry %s past the end" % ident)
        body = data[offset:offset + size]
        aligned = size == 0 or offset % 4096 == 0
        elf = body[:4] == b"\x7fELF"
        print("%s size %s aligned %d elf %d" %
              (ident, "0" if size == 0 else "nonzero", aligned, elf))
        if size:
            with open(os.path.join(out, ident + ".hsaco"), "wb") as f:
                f.write(body)


if __name__ == "__main__":
    main()
