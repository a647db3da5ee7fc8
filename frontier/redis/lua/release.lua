-- release: ARGV = prefix, token... Hands the leases back at their old place; the hosts keep their
-- politeness time. Unknown (stale) tokens are ignored. Returns how many were released.
local tokens = {}
for i = 2, NARGV do tokens[#tokens + 1] = ARGV[i] end
return unlease(tokens)
