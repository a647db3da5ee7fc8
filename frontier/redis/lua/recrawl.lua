-- recrawl: ARGV = prefix, now, threshold (now - seen_ttl), seen PX ms, candidates JSON: flat [fetched
-- member, url hash, host, item JSON without validators, ...] as read from `fetched` by the caller.
-- Each candidate still fetched before the threshold leaves `fetched`; it is queued again (tail of its
-- host queue, attempts 0, validators from `valid` appended to its item JSON, seen at now) unless its
-- seen entry is fresh. Returns {queued, queued with validators}.
local cands = cjson.decode(ARGV[5])
local now_s, threshold, seen_px = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local gone, accepted, taken = {}, {}, {}
local conditional = 0
for i = 1, #cands, 4 do
  local member, h16, host = cands[i], cands[i + 1], cands[i + 2]
  local score = redis.call('ZSCORE', K_FETCHED, member)
  -- Fetched again since the caller read it (score moved on), or gone: not this recrawl's to queue.
  if score and tonumber(score) < threshold then
    gone[#gone + 1] = member
    local at = redis.call('GET', k_seen(h16))
    local st = load_host(host)  -- hosts are never deleted, so a fetched URL's host exists
    -- `taken`: one URL may sit in `fetched` twice (fetched at two depths); it is queued once.
    if st and not taken[h16] and not (at and tonumber(at) >= threshold) then
      taken[h16] = true
      local payload = cands[i + 3]
      local v = redis.call('HGET', K_VALID, h16)
      if v then
        -- '[url,host,depth,0]' + '["etag","lm"]' -> '[url,host,depth,0,"etag","lm"]'
        payload = string.sub(payload, 1, -2) .. ',' .. string.sub(v, 2)
        conditional = conditional + 1
        redis.call('HDEL', K_VALID, h16)
      end
      st.queued = st.queued + 1
      accepted[#accepted + 1] = { h16, host, payload }
    end
  end
end
if #gone > 0 then chunked('ZREM', K_FETCHED, gone) end
local n = #accepted
if n == 0 then
  return { 0, 0 }
end
local id = redis.call('HINCRBY', K_COUNTERS, 'seq', n) - n
local rows, per_host = {}, {}
for _, a in ipairs(accepted) do
  id = id + 1
  local sid = string.format('%d', id)
  redis.call('SET', k_seen(a[1]), now_s, 'PX', seen_px)
  rows[#rows + 1] = sid
  rows[#rows + 1] = a[3]
  local q = push(per_host, a[2])
  q[#q + 1] = id
  q[#q + 1] = sid
end
chunked('HSET', K_ITEMS, rows)
for h, q in pairs(per_host) do chunked('ZADD', k_q(h), q) end
settle()
redis.call('HINCRBY', K_COUNTERS, 'queued', n)
redis.call('HINCRBY', K_COUNTERS, 'seen', n)
return { n, conditional }
