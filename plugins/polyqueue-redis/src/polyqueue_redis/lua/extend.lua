-- extend: move the lease deadline of leased messages to now + ARGV[1] ms (current receipts only).
-- KEYS: leased (zset), receipts (hash)
-- ARGV: lease ms, then (id, receipt) per delivery
-- Returns {number of leases extended, dropped garbage}.
guard({'zset', 'hash'})
local deadline = now_ms() + tonumber(ARGV[1])
local extended = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    extended = extended + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, id)
  end
end
return {extended, dropped}
