-- bury: KEYS = leader, alive:W, outcomes, assigned:W, inbox:W, workers; ARGV = leader id, W.
-- Forgets worker W once its heartbeat key is gone and no answer waits to be applied; returns the lease
-- messages it held (the caller releases them), or false when W may not be buried (yet).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED not the leader')
end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('LLEN', KEYS[3]) > 0 then
  return false
end
local held = redis.call('HVALS', KEYS[4])
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('HDEL', KEYS[6], ARGV[2])
return held
