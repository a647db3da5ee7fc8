"""One exit-code policy for every command (README, "Exit codes")."""

from __future__ import annotations

import signal

EXIT_OK = 0  # done: nothing left to crawl, max_pages reached, or a service stopped as asked
EXIT_FAILED = 1  # a failure stopped the command (Redis unreachable past its deadline, commits failing)
EXIT_USAGE = 2  # bad flags, configuration or input; nothing was crawled
EXIT_UNKNOWN = 3  # `crawler explain`: the URL is unknown to the crawl (never seen, queued, linked or recorded)


def interrupted(signal_name: str) -> int:
    """128 + the signal's number (130 for SIGINT, 143 for SIGTERM): the job stopped early and can resume."""
    return 128 + int(signal.Signals[signal_name])


def job_exit(final: dict[str, object]) -> int:
    """A crawl job's exit code from its final stats: done, interrupted by a signal, or failed."""
    reason = final.get("stopped")
    if isinstance(reason, str) and reason in signal.Signals.__members__:
        return EXIT_OK if final.get("finished") else interrupted(reason)
    return EXIT_OK if final.get("finished") else EXIT_FAILED


def service_exit(final: dict[str, object]) -> int:
    """A service's (`worker`) exit code: 0 when it finished or was stopped as asked, 1 after a failure."""
    reason = final.get("stopped")
    if final.get("finished") or reason is None or (isinstance(reason, str) and reason in signal.Signals.__members__):
        return EXIT_OK
    return EXIT_FAILED
