-- next_due: ARGV = prefix. The earliest host due time as Redis prints the score; 'inf' when URLs
-- are queued but every such host is at its concurrency limit; nil when nothing is queued.
local first = redis.call('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')
if first[1] then return first[2] end
local queued = tonumber(redis.call('HGET', K_COUNTERS, 'queued') or '0')
if queued > 0 then return 'inf' end
return false
