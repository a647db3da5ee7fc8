-- ack: KEYS = alive:W, outcomes; ARGV = messages. Queues W's answers only while W's heartbeat key exists,
-- so answers of a worker already declared dead never reach the frontier. Returns 1, or 0 when refused.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for s = 1, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, s, math.min(s + 999, #ARGV)))
end
return 1
