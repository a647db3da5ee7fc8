"""Fault points for the fault-injection tests: a process kills or pauses itself at a named step.

Off unless the environment variable `CRAWLER_FAULT` names a point, e.g.
`CRAWLER_FAULT=frontier:kill-after-claim` (SIGKILL right after leases were claimed, before they are
pushed to inboxes) or `CRAWLER_FAULT=frontier:stop-after-read` (SIGSTOP right after an outcome batch
was read, before it is applied) or `CRAWLER_FAULT=worker:stop-before-ack` (SIGSTOP as a worker is about
to send a batch of outcomes, after their records were written). `CRAWLER_FAULT_AFTER=N` fires at the
N-th time the point is reached (default 1). A point fires once per process. Costs one dict lookup when off.
"""

from __future__ import annotations

import os
import signal

_SIGNALS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}
_armed = os.environ.get("CRAWLER_FAULT", "")
_after = int(os.environ.get("CRAWLER_FAULT_AFTER", "1") or 1)
_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill or stop this process if `CRAWLER_FAULT` names `name` (e.g. `frontier:kill-after-claim`)."""
    if _armed != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] != _after:
        return
    action = name.split(":", 1)[-1].split("-", 1)[0]
    os.kill(os.getpid(), _SIGNALS[action])
