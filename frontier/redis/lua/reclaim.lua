-- reclaim: ARGV = prefix, now. Hands back every lease with expires_at <= now; their tokens die, so
-- late outcomes for them are stale. Returns how many.
return unlease(redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', ARGV[2]))
