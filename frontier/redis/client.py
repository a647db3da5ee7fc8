"""A redis-py client that counts what it sends: one place that sees every command, script and pipeline.

The frontier store and the cluster's coordination (`crawler.cluster`) both talk through it, so the
metrics endpoint can show a process's Redis round trips without each caller counting its own. It
overrides two public methods of `redis.asyncio.Redis` (`execute_command`, `pipeline`) and one of
`Pipeline` (`execute`); counting costs a few hundred nanoseconds against a network round trip.
`tests/test_redis_traffic.py` pins what is counted, so a redis-py change that bypasses these shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

__all__ = ["CountingRedis", "RedisTraffic"]

_SCRIPT_COMMANDS = frozenset({"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"})


@dataclass(slots=True)
class RedisTraffic:
    """What one client sent: round trips by kind (a single command, a script call, a pipeline) and
    the commands that travelled inside pipelines."""

    commands: int = 0
    scripts: int = 0
    pipelines: int = 0
    pipelined_commands: int = 0

    @property
    def round_trips(self) -> int:
        """Requests that waited for a reply: every command or script call, and one per pipeline."""
        return self.commands + self.scripts + self.pipelines


class _CountingPipeline(Pipeline):
    """A pipeline that adds itself to its client's traffic when it is sent."""

    def __init__(self, traffic: RedisTraffic, *args: Any) -> None:
        super().__init__(*args)
        self.traffic = traffic

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stacked = len(self.command_stack)
        if stacked:
            self.traffic.pipelines += 1
            self.traffic.pipelined_commands += stacked
        return await super().execute(raise_on_error)


class CountingRedis(Redis):
    """`redis.asyncio.Redis` that counts into `self.traffic` (use `from_url` or a connection pool as usual)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.traffic = RedisTraffic()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] in _SCRIPT_COMMANDS:  # redis-py spells command names in capitals
            self.traffic.scripts += 1
        else:
            self.traffic.commands += 1
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _CountingPipeline(self.traffic, self.connection_pool, self.response_callbacks, transaction, shard_hint)
