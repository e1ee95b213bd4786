-- nack: give leased messages back, ready now or after a delay; stale receipts do nothing.
-- KEYS: ready, leased, delayed (zsets), receipts, priorities (hashes)
-- ARGV: doorbell channel, delay ms, then (id, receipt) per delivery
-- Returns the number of messages given back.
local delay = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local moved = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] and redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZREM', KEYS[2], id)
    if delay > 0 then
      redis.call('ZADD', KEYS[3], now + delay, id)
    else
      local priority = tonumber(redis.call('HGET', KEYS[5], id)) or 0
      redis.call('ZADD', KEYS[1], 0 - priority, id)
    end
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('PUBLISH', ARGV[1], '1')
end
return moved
