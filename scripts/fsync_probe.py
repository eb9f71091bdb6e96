#!/usr/bin/env python3
"""fdatasync latency on this disk: appending (the file grows, so its size is committed through
the journal too) against overwriting zeros written beforehand (data only). Why the log's
segments keep zeros written ahead of their records (BENCHMARKS.md, the write-ahead log).

    python3 scripts/fsync_probe.py [directory]   # default: the current directory
"""
import os
import sys
import time

ROUNDS = 300
RECORD = b"x" * 80 * 40  # a batch of 40 records of 80 bytes


def probe(directory: str, ahead: bool) -> float:
    path = os.path.join(directory, "fsync-probe.bin")
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        if ahead:
            os.write(fd, b"\0" * (4 << 20))
            os.fsync(fd)
        start = time.perf_counter()
        for i in range(ROUNDS):
            if ahead:
                os.pwrite(fd, RECORD, i * len(RECORD))
            else:
                os.write(fd, RECORD)
            os.fdatasync(fd)
        return (time.perf_counter() - start) / ROUNDS * 1e3
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    where = sys.argv[1] if len(sys.argv) > 1 else "."
    for _ in range(2):
        print(f"append + fdatasync:              {probe(where, False):.2f} ms")
        print(f"overwrite zeros + fdatasync:     {probe(where, True):.2f} ms")
