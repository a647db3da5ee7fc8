"""The output folder's lock: one crawling process per folder, and who holds it (without taking it)."""

from __future__ import annotations

import os
from pathlib import Path

#: Held with `flock` by the process crawling the folder (`crawler.app.embedded.folder_lock`).
LOCK_FILE = ".lock"


def folder_holder(out: Path) -> int | None:
    """The pid of the process holding `out`'s lock (a crawl running there), from /proc/locks (Linux).

    Only looks: taking the lock, even for a moment, could make a crawl starting then fail. Returns None
    when nobody holds it, and -1 when that cannot be known (no /proc/locks, or no lock file yet).
    """
    try:
        st = (out / LOCK_FILE).stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return -1
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 5223 fe:00:2179238 0 EOF" (a blocked waiter's line has "->" after "1:")
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return int(fields[4])
    return None
