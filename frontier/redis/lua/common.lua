-- Prepended to every frontier script at load time: key names and host bookkeeping.
-- ARGV[1] is always the job prefix `crawl:{job}:`; frontier/redis_keys.py documents the layout.
-- Batches arrive as one JSON argument each (cheaper to send than thousands of arguments).
-- Scripts validate nothing after their first write (Redis does not roll a failed script back):
-- the Python side checks arguments before calling.
-- Leader fence: a caller that passes a key (KEYS[1]) is acting as the job's frontier leader; that key must
-- still hold the caller's id (the last argument) or nothing runs, so a deposed leader changes nothing.
local NARGV = #ARGV
if #KEYS == 1 then
  NARGV = NARGV - 1
  if redis.call('GET', KEYS[1]) ~= ARGV[NARGV + 1] then
    return redis.error_reply('FENCED not the leader')
  end
end
local P = ARGV[1]
local K_DUE = P .. 'due'
local K_ITEMS = P .. 'items'
local K_LEASES = P .. 'leases'
local K_LEASE = P .. 'lease'
local K_DEAD = P .. 'dead'
local K_COUNTERS = P .. 'counters'
local K_FETCHED = P .. 'fetched'
local K_VALID = P .. 'valid'

local function k_host(h) return P .. 'host:' .. h end
local function k_q(h) return P .. 'q:' .. h end
local function k_retry(h) return P .. 'retry:' .. h end
local function k_seen(x) return P .. 'seen:' .. x end

-- Lua's unpack() is limited to a few thousand values; variadic commands go out in chunks.
local CHUNK = 1000

local function chunked(cmd, key, args)
  local out = {}
  for s = 1, #args, CHUNK do
    local r = redis.call(cmd, key, unpack(args, s, math.min(s + CHUNK - 1, #args)))
    if type(r) == 'table' then
      for _, v in ipairs(r) do out[#out + 1] = v end
    end
  end
  return out
end

local function push(t, k)
  local list = t[k]
  if not list then
    list = {}
    t[k] = list
  end
  return list
end

-- Host states loaded (or created) by this run; `settle` writes all of them back at the end.
local hosts = {}

local function load_host(h)
  local st = hosts[h]
  if st then return st end
  local v = redis.call('HMGET', k_host(h), 'concurrency', 'spacing', 'budget', 'admitted', 'inflight',
    'polite_at', 'queued', 'waiting', 'next_at')
  if not v[1] then return nil end
  st = {
    concurrency = tonumber(v[1]), spacing = tonumber(v[2]), budget = v[3] and tonumber(v[3]) or false,
    admitted = tonumber(v[4]), inflight = tonumber(v[5]), polite = tonumber(v[6]), queued = tonumber(v[7]),
    waiting = tonumber(v[8]), next_at = v[9] and tonumber(v[9]) or false,
  }
  st.was_active = st.queued + st.waiting > 0 or st.inflight > 0
  hosts[h] = st
  return st
end

local function new_host(h, concurrency, spacing, budget)
  local st = { concurrency = concurrency, spacing = spacing, budget = budget, admitted = 0, inflight = 0,
    polite = 0, queued = 0, waiting = 0, next_at = false, was_active = false }
  hosts[h] = st
  return st
end

-- Persist every loaded host, keep the active-host counter, and keep the host in `due` at its exact
-- due time: max(polite_at, the earliest retry_at if no URL is eligible yet), or out of `due` when it
-- has nothing queued or is at its concurrency limit.
local function settle()
  local delta = 0
  for h, st in pairs(hosts) do
    local active = st.queued + st.waiting > 0 or st.inflight > 0
    if active ~= st.was_active then
      if active then delta = delta + 1 else delta = delta - 1 end
    end
    local due = false
    if st.queued + st.waiting > 0 and st.inflight < st.concurrency then
      due = st.polite
      if st.queued == 0 then
        local at = tonumber(redis.call('ZRANGE', k_retry(h), 0, 0, 'WITHSCORES')[2])
        if at > due then due = at end
      end
    end
    if due ~= st.next_at then
      if due then redis.call('ZADD', K_DUE, due, h) else redis.call('ZREM', K_DUE, h) end
    end
    local args = { 'concurrency', st.concurrency, 'spacing', st.spacing, 'admitted', st.admitted,
      'inflight', st.inflight, 'polite_at', st.polite, 'queued', st.queued, 'waiting', st.waiting }
    if st.budget then
      args[#args + 1] = 'budget'
      args[#args + 1] = st.budget
    end
    if due then
      args[#args + 1] = 'next_at'
      args[#args + 1] = due
    elseif st.next_at then
      redis.call('HDEL', k_host(h), 'next_at')
    end
    redis.call('HSET', k_host(h), unpack(args))
  end
  if delta ~= 0 then redis.call('HINCRBY', K_COUNTERS, 'hosts', delta) end
end

-- End the leases of `tokens` (strings) that are still out, each once. Returns {token, item id, host}
-- per ended lease, in order; the others are stale.
local function end_leases(tokens)
  local ended = {}
  if #tokens == 0 then return ended end
  local values = chunked('HMGET', K_LEASE, tokens)
  local used, gone = {}, {}
  for k, v in ipairs(values) do
    local token = tokens[k]
    if v and not used[token] then
      used[token] = true
      gone[#gone + 1] = token
      local id, h = string.match(v, '^(%d+) (.*)$')
      ended[#ended + 1] = { token, id, h }
    end
  end
  if #gone > 0 then
    chunked('HDEL', K_LEASE, gone)
    chunked('ZREM', K_LEASES, gone)
  end
  return ended
end

-- Hand leases back unfetched: each item returns to its old place (its id) in its host queue.
local function unlease(tokens)
  local ended = end_leases(tokens)
  local per_host = {}
  for _, e in ipairs(ended) do
    local st = load_host(e[3])
    st.inflight = st.inflight - 1
    st.queued = st.queued + 1
    local q = push(per_host, e[3])
    q[#q + 1] = tonumber(e[2])
    q[#q + 1] = e[2]
  end
  for h, q in pairs(per_host) do chunked('ZADD', k_q(h), q) end
  settle()
  local n = #ended
  if n > 0 then
    redis.call('HINCRBY', K_COUNTERS, 'queued', n)
    redis.call('HINCRBY', K_COUNTERS, 'leased', -n)
  end
  return n
end

-- Plan an add. `limits_json`: flat [host, concurrency, spacing, budget or -1, ...] for hosts Redis
-- may not know; `items`: flat {url hash, host, item JSON, ...}. Reads only. Returns the indexes in
-- `items` of entries not seen since `threshold`, the duplicate count, and the hosts that exist
-- nowhere and came without limits.
local function plan_add(limits_json, items, threshold)
  local limits = {}
  local l = cjson.decode(limits_json)
  for i = 1, #l, 4 do
    local budget = l[i + 3]
    if budget < 0 then budget = false end
    limits[l[i]] = { l[i + 1], l[i + 2], budget }
  end
  local fresh, missing, asked = {}, {}, {}
  local dup = 0
  local keys = {}
  for i = 1, #items, 3 do keys[#keys + 1] = k_seen(items[i]) end
  local seen = {}
  for s = 1, #keys, CHUNK do
    local r = redis.call('MGET', unpack(keys, s, math.min(s + CHUNK - 1, #keys)))
    for k = 1, #r do seen[s + k - 1] = r[k] end
  end
  for k = 1, #keys do
    local at = seen[k]
    if at and tonumber(at) >= threshold then
      dup = dup + 1
    else
      local j = 3 * k - 2
      fresh[#fresh + 1] = j
      local h = items[j + 1]
      if not load_host(h) and not asked[h] then
        local lim = limits[h]
        if lim then
          new_host(h, lim[1], lim[2], lim[3])
        else
          asked[h] = true
          missing[#missing + 1] = h
        end
      end
    end
  end
  return fresh, dup, missing
end

-- Queue the planned items within their hosts' budgets and mark them seen. Returns (queued, over budget).
local function apply_add(items, fresh, now, seen_px)
  local accepted = {}
  local over = 0
  for _, j in ipairs(fresh) do
    local st = hosts[items[j + 1]]
    if st.budget and st.admitted >= st.budget then
      over = over + 1
    else
      st.admitted = st.admitted + 1
      st.queued = st.queued + 1
      accepted[#accepted + 1] = j
    end
  end
  local n = #accepted
  if n == 0 then return 0, over end
  local id = redis.call('HINCRBY', K_COUNTERS, 'seq', n) - n
  local rows, per_host = {}, {}
  for _, j in ipairs(accepted) do
    id = id + 1
    local sid = string.format('%d', id)
    redis.call('SET', k_seen(items[j]), now, 'PX', seen_px)
    rows[#rows + 1] = sid
    rows[#rows + 1] = items[j + 2]
    local q = push(per_host, items[j + 1])
    q[#q + 1] = id
    q[#q + 1] = sid
  end
  chunked('HSET', K_ITEMS, rows)
  for h, q in pairs(per_host) do chunked('ZADD', k_q(h), q) end
  redis.call('HINCRBY', K_COUNTERS, 'queued', n)
  redis.call('HINCRBY', K_COUNTERS, 'seen', n)
  return n, over
end
