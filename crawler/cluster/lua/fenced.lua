-- fenced: KEYS[1] = leader key; ARGV[1] = the caller's leader id, ARGV[2] = JSON [[command, arg, ...], ...].
-- Runs the commands only while the caller still leads the job: a deposed leader changes nothing.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED not the leader')
end
for _, c in ipairs(cjson.decode(ARGV[2])) do
  redis.call(unpack(c))
end
return 1
