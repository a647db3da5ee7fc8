-- top_hosts: ARGV = prefix, limit, start, count. Read-only: one bounded slice of a scan of the active hosts,
-- so no call holds Redis for long (`RedisStore.top_hosts` walks the slices and merges them).
-- A host with queued URLs (eligible or waiting retries) is in `due`, or at its concurrency limit and then
-- holds a lease. count > 0: the hosts ranked start .. start+count-1 in `due`; count = 0: the leased hosts
-- not in `due`. Returns {more (1 if `due` may go on), host, n, host, n, ...}: the slice's `limit` hosts with
-- the most URLs queued, n > 0, in no particular order.
local limit, start, count = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local top = {} -- at most `limit` {host, n}; `low` indexes the one that would go first

-- Whether (h, n) ranks before `other`: more queued, then the smaller name (the caller's final order).
local function before(h, n, other)
  return n > other[2] or (n == other[2] and h < other[1])
end

local low = nil
local function consider(h)
  local v = redis.call('HMGET', k_host(h), 'queued', 'waiting')
  local n = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  if n == 0 then return end
  if #top < limit then
    top[#top + 1] = { h, n }
  elseif before(h, n, top[low]) then
    top[low] = { h, n }
  else
    return
  end
  if #top == limit then
    low = 1
    for i = 2, #top do
      if before(top[low][1], top[low][2], top[i]) then low = i end
    end
  end
end

local more = 0
if count > 0 then
  local slice = redis.call('ZRANGE', K_DUE, start, start + count - 1)
  for _, h in ipairs(slice) do consider(h) end
  if #slice == count then more = 1 end
else
  local looked = {}
  for _, v in ipairs(redis.call('HVALS', K_LEASE)) do
    local h = string.match(v, '^%d+ (.*)$')
    if not looked[h] then
      looked[h] = true
      if not redis.call('ZSCORE', K_DUE, h) then consider(h) end
    end
  end
end
local out = { more }
for _, e in ipairs(top) do
  out[#out + 1] = e[1]
  out[#out + 1] = e[2]
end
return out
