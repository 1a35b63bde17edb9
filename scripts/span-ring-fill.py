#!/usr/bin/env python3
"""Samples how full a running sonde's span ring buffer is, from outside the process.

Usage: scripts/span-ring-fill.py PID SECONDS [INTERVAL_MS]

Prints the largest share of the ring buffer that was written and not yet read at any sample
(0.00-1.00), then the mean. The reader normally drains at a quarter (the BPF program's wakeup);
a peak near 1 means the reader stalled and spans were close to being lost (issue 7: an export
thread in the idle scheduling class once blocked the reader that way). Needs root: it takes a
copy of sonde's ring buffer descriptor (pidfd_getfd, Linux 5.6+) and maps the two pages where the
kernel keeps the consumer's and the producer's positions, read-only; sonde is not disturbed.
"""
import ctypes
import mmap
import os
import struct
import sys
import time

SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438
RINGBUF_MAP_TYPE = "27"  # BPF_MAP_TYPE_RINGBUF


def span_ring(pid):
    """(descriptor number in sonde, size in bytes) of its largest ring buffer: the span ring
    (the process-event ring of one sonde per machine is smaller)."""
    found = None
    for entry in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{entry}") as info:
                fields = dict(line.split(":\t", 1) for line in info.read().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("map_type", "").strip() == RINGBUF_MAP_TYPE:
            size = int(fields["max_entries"])
            if found is None or size > found[1]:
                found = (int(entry), size)
    if found is None:
        sys.exit(f"span-ring-fill: process {pid} holds no BPF ring buffer (is it sonde, attached?)")
    return found


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.split("\n\n")[1])
    pid, seconds = int(sys.argv[1]), float(sys.argv[2])
    interval = (float(sys.argv[3]) if len(sys.argv) == 4 else 5) / 1000
    remote, size = span_ring(pid)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    descriptor = libc.syscall(SYS_PIDFD_GETFD, pidfd, remote, 0) if pidfd >= 0 else -1
    if descriptor < 0:
        sys.exit(f"span-ring-fill: cannot take sonde's ring buffer descriptor: {os.strerror(ctypes.get_errno())}")
    page = mmap.PAGESIZE
    # The consumer's page, then the producer's, each beginning with that side's position.
    positions = mmap.mmap(descriptor, 2 * page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
    peak = total = 0.0
    samples = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        # The consumer's position first: it never passes the producer's, read after it.
        consumed = struct.unpack_from("Q", positions, 0)[0]
        produced = struct.unpack_from("Q", positions, page)[0]
        unread = (produced - consumed) / size
        peak, total, samples = max(peak, unread), total + unread, samples + 1
        time.sleep(interval)
    print(f"{peak:.2f} {total / max(samples, 1):.3f}")


if __name__ == "__main__":
    main()
