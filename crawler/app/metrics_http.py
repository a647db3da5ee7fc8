"""The HTTP side of the metrics endpoint: prometheus_client's server on a thread of its own.

A thread rather than an aiohttp server on the event loop: a scrape must answer while the loop is busy
(a big page being parsed, a long SQLite commit), and reading counters needs no loop. The thread takes the
GIL between the loop's steps, so a scrape costs the crawl a few milliseconds at most; gauges the loop
refreshes (queue sizes) show their last values while it is busy. The server is owned by the exit stack
of the command that opened it, which shuts it down.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from crawler.core.config import MetricsSettings
from crawler.core.errors import ConfigError

if TYPE_CHECKING:
    from crawler.app.metrics import Metrics

log = logging.getLogger("crawler.metrics")


async def open_metrics(stack: AsyncExitStack, settings: MetricsSettings) -> Metrics | None:
    """Serve a new `Metrics` on http://HOST:PORT/metrics until `stack` closes; None when the port is 0.

    Raises ConfigError (exit 2) when the address cannot be listened on (a port in use, an unknown host).
    """
    if not settings.port:
        return None
    # Here, not at the top: prometheus_client takes ~60 ms to import, and most crawls run without it.
    from prometheus_client import start_http_server

    from crawler.app.metrics import Metrics

    metrics = Metrics(settings)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    where = f"{host}:{settings.port}"
    try:
        server, thread = start_http_server(settings.port, addr=settings.host, registry=metrics.registry)
    except OSError as exc:  # address in use, permission denied, or a host that does not resolve (gaierror)
        reason = exc.strerror or str(exc)
        raise ConfigError(f"--metrics-port {settings.port}: cannot listen on {where}: {reason}") from None

    async def stop() -> None:
        # shutdown() waits for the serving loop's next poll (up to 0.5 s): not on the event loop.
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join(timeout=5)

    stack.push_async_callback(stop)
    log.info("metrics on http://%s/metrics", where)
    return metrics
