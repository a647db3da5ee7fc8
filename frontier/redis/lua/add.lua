-- add: ARGV = prefix, now, seen threshold (now - seen_ttl), seen PX ms, limits JSON, items JSON
-- (see plan_add). Returns {1, missing hosts...} without writing anything when a host needs limits,
-- else {0, queued, duplicates, over budget}.
local items = cjson.decode(ARGV[6])
local fresh, dup, missing = plan_add(ARGV[5], items, tonumber(ARGV[3]))
if #missing > 0 then
  table.insert(missing, 1, 1)
  return missing
end
local queued, over = apply_add(items, fresh, ARGV[2], ARGV[4])
settle()
return { 0, queued, dup, over }
