"""The Redis frontier store: key catalogue and one Lua script per atomic step."""
