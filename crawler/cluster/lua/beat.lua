-- beat: KEYS = alive:W, workers; ARGV = W, ttl ms, heartbeat JSON, '1' for a new incarnation's first beat.
-- Renews W's heartbeat only while its key still exists: once it expired, W was (or will be) declared dead
-- and its leases handed to others, so W may not silently come back; it must join as a new incarnation.
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
