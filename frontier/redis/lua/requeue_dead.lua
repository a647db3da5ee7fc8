-- requeue_dead: ARGV = prefix, now, '1' to filter by error type or '0' for all, error type.
-- Moves the matching dead letters, oldest first, to the tail of their host queues with attempts 0.
-- Returns how many. Reads the whole dead list: an operator action, not a hot path.
local filter, etype = ARGV[3] == '1', ARGV[4]
local entries = redis.call('LRANGE', K_DEAD, 0, -1)
local moved, keep = {}, {}
for _, e in ipairs(entries) do
  local d = cjson.decode(e)
  if not filter or d[7] == etype then moved[#moved + 1] = d else keep[#keep + 1] = e end
end
local n = #moved
if n == 0 then return 0 end
redis.call('DEL', K_DEAD)
for s = 1, #keep, 500 do redis.call('RPUSH', K_DEAD, unpack(keep, s, math.min(s + 499, #keep))) end
local id = redis.call('HINCRBY', K_COUNTERS, 'seq', n) - n
for _, d in ipairs(moved) do
  id = id + 1
  local sid = string.format('%d', id)
  local h = d[2]
  -- d[8], d[9]: a sitemap's kind and a lastmod, present only when set; in `items` they follow the (null)
  -- validator slots, as `_payload` writes them.
  local payload = { d[1], h, d[3], 0 }
  if d[8] ~= nil then payload = { d[1], h, d[3], 0, cjson.null, cjson.null, d[8], d[9] } end
  redis.call('HSET', K_ITEMS, sid, cjson.encode(payload))
  redis.call('ZADD', k_q(h), id, sid)
  -- Hosts are never deleted, so the host of a dead letter exists.
  local st = load_host(h)
  st.queued = st.queued + 1
end
settle()
redis.call('HINCRBY', K_COUNTERS, 'queued', n)
redis.call('HINCRBY', K_COUNTERS, 'dead', -n)
return n
