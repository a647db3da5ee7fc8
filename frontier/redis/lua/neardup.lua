-- Near-duplicate lookup and insert in one atomic step (permuted blocks, Manku et al.).
-- KEYS: the block sets of this fingerprint (one per block); members are "<16 hex fp> <url>".
-- ARGV[1]: the fingerprint as 16 hex digits, ARGV[2]: its URL, ARGV[3]: max Hamming distance.
-- Returns the URL of the closest stored fingerprint within the distance, or false after storing this one.
-- Lua numbers are doubles, so the 64 bits are compared as four 16-bit chunks.
local function chunks(hex)
  return {tonumber(string.sub(hex, 1, 4), 16), tonumber(string.sub(hex, 5, 8), 16),
          tonumber(string.sub(hex, 9, 12), 16), tonumber(string.sub(hex, 13, 16), 16)}
end

local function popcount(x)
  local n = 0
  while x ~= 0 do
    x = bit.band(x, x - 1)
    n = n + 1
  end
  return n
end

local mine = chunks(ARGV[1])
local limit = tonumber(ARGV[3])
local best, best_d = false, limit + 1
for _, key in ipairs(KEYS) do
  for _, member in ipairs(redis.call('SMEMBERS', key)) do
    local hex, url = string.match(member, '^(%x+) (.*)$')
    if hex and url ~= ARGV[2] then
      local other = chunks(hex)
      local d = 0
      for i = 1, 4 do
        d = d + popcount(bit.bxor(mine[i], other[i]))
        if d >= best_d then break end
      end
      if d < best_d then
        best, best_d = url, d
      end
    end
  end
end
if best then
  return best
end
local member = ARGV[1] .. ' ' .. ARGV[2]
for _, key in ipairs(KEYS) do
  redis.call('SADD', key, member)
end
return false
