-- publish: store a batch of messages of one queue and ring its doorbell.
-- KEYS: ready (zset), delayed (zset), bodies (hash), priorities (hash), sequence (string)
-- ARGV: doorbell channel, then (priority, delay_ms, body) per message
-- Returns {number of messages stored, dropped garbage}.
guard({'zset', 'zset', 'hash', 'hash', 'string'})
local count = (#ARGV - 1) / 3
-- Ids are '%016d' of the sequence. A sequence that is not such a number (garbage), or that
-- is gone while messages are stored (deleted, evicted), restarts from the clock in
-- microseconds: above every id handed out before, so no stored message is overwritten.
local last = redis.call('GET', KEYS[5])
local valid = last and string.match(last, '^[1-9]%d*$') and tonumber(last) < 9e15
if not valid and (last or redis.call('HLEN', KEYS[3]) > 0) then
  local time = redis.call('TIME')
  redis.call('SET', KEYS[5], string.format('%d', tonumber(time[1]) * 1000000 + tonumber(time[2])))
  drop('sequence ' .. KEYS[5] .. ' was ' .. (last or 'gone') .. ': restarted from the clock')
end
last = redis.call('INCRBY', KEYS[5], count)
local now = now_ms()
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
return {count, dropped}
