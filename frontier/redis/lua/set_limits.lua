-- set_limits: ARGV = prefix, host, concurrency, spacing, budget or ''. Creates the host if new.
local h = ARGV[2]
local budget = false
if ARGV[5] ~= '' then budget = tonumber(ARGV[5]) end
local st = load_host(h)
if not st then st = new_host(h, 1, 0, false) end
st.concurrency = tonumber(ARGV[3])
st.spacing = tonumber(ARGV[4])
st.budget = budget
if not budget then redis.call('HDEL', k_host(h), 'budget') end
settle()
return 1
