"""The cluster protocol's atomic steps: one Lua script each, in `crawler/cluster/lua/`.

`fenced` and `bury` run only while the caller holds the frontier leadership; `beat` and `ack` only while
the calling worker's heartbeat key exists (a worker declared dead can neither re-join silently nor have
its answers applied).
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

_LUA = Path(__file__).resolve().parent / "lua"


class ClusterScripts:
    """The protocol's scripts registered on one client (redis-py reloads them after a Redis restart)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.fenced: AsyncScript = redis.register_script((_LUA / "fenced.lua").read_text())
        self.bury: AsyncScript = redis.register_script((_LUA / "bury.lua").read_text())
        self.beat: AsyncScript = redis.register_script((_LUA / "beat.lua").read_text())
        self.ack: AsyncScript = redis.register_script((_LUA / "ack.lua").read_text())
