-- publish: store a batch of messages of one queue and ring its doorbell.
-- KEYS: ready (zset), delayed (zset), bodies (hash), priorities (hash), sequence (string)
-- ARGV: doorbell channel, then (priority, delay_ms, body) per message
-- Returns the number of messages stored.
local count = (#ARGV - 1) / 3
local last = redis.call('INCRBY', KEYS[5], count)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for i = 0, count - 1 do
  local priority = tonumber(ARGV[2 + i * 3])
  local delay = tonumber(ARGV[3 + i * 3])
  local id = string.format('%016d', last - count + 1 + i)
  redis.call('HSET', KEYS[3], id, ARGV[4 + i * 3])
  if priority ~= 0 then
    redis.call('HSET', KEYS[4], id, priority)
  end
  if delay > 0 then
    redis.call('ZADD', KEYS[2], now + delay, id)
  else
    redis.call('ZADD', KEYS[1], 0 - priority, id)
  end
end
redis.call('PUBLISH', ARGV[1], '1')
return count
