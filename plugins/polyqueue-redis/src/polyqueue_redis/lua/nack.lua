-- nack: give leased messages back, ready now or after a delay; stale receipts do nothing.
-- KEYS: ready, leased, delayed (zsets), receipts, priorities (hashes)
-- ARGV: doorbell channel, delay ms, then (id, receipt) per delivery
-- Returns {number of messages given back, dropped garbage}.
guard({'zset', 'zset', 'zset', 'hash', 'hash'})
local delay = tonumber(ARGV[2])
local now = now_ms()
local moved = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] and redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZREM', KEYS[2], id)
    if delay > 0 then
      redis.call('ZADD', KEYS[3], now + delay, id)
    else
      redis.call('ZADD', KEYS[1], 0 - priority_of(KEYS[5], id), id)
    end
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('PUBLISH', ARGV[1], '1')
end
return {moved, dropped}
