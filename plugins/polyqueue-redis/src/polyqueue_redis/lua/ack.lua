-- ack: forget leased messages whose receipt is current; stale receipts do nothing.
-- KEYS: leased (zset), bodies, receipts, priorities (hashes)
-- ARGV: (id, receipt) per delivery
-- Returns {number of messages removed, dropped garbage}.
guard({'zset', 'hash', 'hash', 'hash'})
local removed = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    removed = removed + 1
  end
end
return {removed, dropped}
