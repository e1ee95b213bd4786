-- extend: move the lease deadline of leased messages to now + ARGV[1] ms (current receipts only).
-- KEYS: leased (zset), receipts (hash)
-- ARGV: lease ms, then (id, receipt) per delivery
-- Returns the number of leases extended.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local deadline = now + tonumber(ARGV[1])
local extended = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    extended = extended + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, id)
  end
end
return extended
