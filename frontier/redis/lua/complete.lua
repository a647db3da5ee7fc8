-- complete: ARGV = prefix, now, seen threshold, seen PX ms, outcomes JSON, then limits JSON and
-- items JSON for the links (see plan_add). Outcomes: flat [token, kind d|r|x, host_due, retry_at,
-- data, url hash, validators, ...]; data is the item JSON with attempts + 1 (retry), the dead-letter
-- JSON (dead), or the `fetched` member "<depth> <host> <url>" (done; '' for a sitemap, not listed), whose
-- validators JSON is kept under the url hash ('': none, and older ones are deleted).
-- Returns {1, missing hosts...} without writing anything when a link's host needs limits, else
-- {0, stale}. Stale outcomes (token not leased) change nothing; their links are still added.
local outs = cjson.decode(ARGV[5])
local items = cjson.decode(ARGV[7])
local fresh, _, missing = plan_add(ARGV[6], items, tonumber(ARGV[3]))
if #missing > 0 then
  table.insert(missing, 1, 1)
  return missing
end
local W = 7
local n = #outs / W
local tokens, by_token = {}, {}
for k = 0, n - 1 do
  local tok = string.format('%d', outs[W * k + 1])
  tokens[#tokens + 1] = tok
  if not by_token[tok] then by_token[tok] = W * k + 1 end  -- a repeated token: its first outcome counts
end
local ended = end_leases(tokens)
local done, dead, retried = 0, 0, 0
local gone_items, retry_rows, dead_rows, retry_by_host = {}, {}, {}, {}
local fetched_rows, valid_rows, unvalid = {}, {}, {}
local now_s = ARGV[2]
for _, e in ipairs(ended) do
  local b = by_token[e[1]]
  local id, h = e[2], e[3]
  local st = load_host(h)
  st.inflight = st.inflight - 1
  local host_due = outs[b + 2]
  if host_due > st.polite then st.polite = host_due end
  local kind = outs[b + 1]
  if kind == 'd' then
    gone_items[#gone_items + 1] = id
    done = done + 1
    if outs[b + 4] ~= '' then  -- '': a sitemap, which is not on the fetched list
      fetched_rows[#fetched_rows + 1] = now_s
      fetched_rows[#fetched_rows + 1] = outs[b + 4]
      if outs[b + 6] ~= '' then
        valid_rows[#valid_rows + 1] = outs[b + 5]
        valid_rows[#valid_rows + 1] = outs[b + 6]
      else
        unvalid[#unvalid + 1] = outs[b + 5]
      end
    end
  elseif kind == 'r' then
    retry_rows[#retry_rows + 1] = id
    retry_rows[#retry_rows + 1] = outs[b + 4]
    local w = push(retry_by_host, h)
    w[#w + 1] = outs[b + 3]
    w[#w + 1] = id
    st.waiting = st.waiting + 1
    retried = retried + 1
  else
    gone_items[#gone_items + 1] = id
    dead_rows[#dead_rows + 1] = outs[b + 4]
    dead = dead + 1
  end
end
if #gone_items > 0 then chunked('HDEL', K_ITEMS, gone_items) end
if #fetched_rows > 0 then chunked('ZADD', K_FETCHED, fetched_rows) end
if #valid_rows > 0 then chunked('HSET', K_VALID, valid_rows) end
-- A page fetched without validators now may have had some before (one check per call when none exist).
if #unvalid > 0 and redis.call('EXISTS', K_VALID) == 1 then chunked('HDEL', K_VALID, unvalid) end
if #retry_rows > 0 then chunked('HSET', K_ITEMS, retry_rows) end
for h, w in pairs(retry_by_host) do chunked('ZADD', k_retry(h), w) end
if #dead_rows > 0 then chunked('RPUSH', K_DEAD, dead_rows) end
apply_add(items, fresh, ARGV[2], ARGV[4])
settle()
if #ended > 0 then
  redis.call('HINCRBY', K_COUNTERS, 'leased', -#ended)
  if retried > 0 then redis.call('HINCRBY', K_COUNTERS, 'queued', retried) end
  if done > 0 then redis.call('HINCRBY', K_COUNTERS, 'done', done) end
  if dead > 0 then redis.call('HINCRBY', K_COUNTERS, 'dead', dead) end
end
return { 0, #tokens - #ended }
