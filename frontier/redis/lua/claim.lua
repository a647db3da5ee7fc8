-- claim: ARGV = prefix, now, expires_at, limit. Leases the oldest eligible URL of each of up to
-- `limit` due hosts, oldest-due first. Returns {token, item JSON, token, item JSON, ...}.
local now_s, expires_s = ARGV[2], ARGV[3]
local now = tonumber(now_s)
local due = redis.call('ZRANGEBYSCORE', K_DUE, '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[4]))
if #due == 0 then return {} end
local token = redis.call('HINCRBY', K_COUNTERS, 'token', #due) - #due
local tokens, ids, lease_rows, lease_times = {}, {}, {}, {}
for _, h in ipairs(due) do
  local st = load_host(h)
  local q = k_q(h)
  if st.waiting > 0 then
    -- Retries whose time has come rejoin the queue at their old place (score = id).
    local ready = redis.call('ZRANGEBYSCORE', k_retry(h), '-inf', now_s)
    if #ready > 0 then
      local args = {}
      for _, id in ipairs(ready) do
        args[#args + 1] = tonumber(id)
        args[#args + 1] = id
      end
      chunked('ZADD', q, args)
      redis.call('ZREMRANGEBYSCORE', k_retry(h), '-inf', now_s)
      st.waiting = st.waiting - #ready
      st.queued = st.queued + #ready
    end
  end
  local top = redis.call('ZPOPMIN', q)
  if top[1] then
    token = token + 1
    local tok = string.format('%d', token)
    tokens[#tokens + 1] = token
    ids[#ids + 1] = top[1]
    lease_rows[#lease_rows + 1] = tok
    lease_rows[#lease_rows + 1] = top[1] .. ' ' .. h
    lease_times[#lease_times + 1] = expires_s
    lease_times[#lease_times + 1] = tok
    st.queued = st.queued - 1
    st.inflight = st.inflight + 1
    st.polite = now + st.spacing
  end
end
settle()
local n = #tokens
if n == 0 then return {} end
chunked('HSET', K_LEASE, lease_rows)
chunked('ZADD', K_LEASES, lease_times)
local payloads = chunked('HMGET', K_ITEMS, ids)
redis.call('HINCRBY', K_COUNTERS, 'queued', -n)
redis.call('HINCRBY', K_COUNTERS, 'leased', n)
local out = {}
for k = 1, n do
  out[#out + 1] = tokens[k]
  out[#out + 1] = payloads[k]
end
return out
