-- receive: lease up to ARGV[1] messages from one or more queues, best first.
-- Before taking, each queue's expired leases and due delayed messages go back to ready.
-- KEYS: per queue, 6 keys: ready, leased, delayed (zsets), bodies, receipts, priorities (hashes)
-- ARGV: max messages, lease ms, sweep limit, receipt token (unique per call)
-- Returns {now_ms, next_due_ms or -1, dropped garbage, then per queue the number of messages
-- taken from it, then one string of every message's id and body, queue by queue, each as
-- `<length>:<bytes>`}. The n-th message's receipt is the token, ':' and n (counted from 1
-- over the whole call), so it is not sent back. The client reads a reply field by field in
-- Python: one string for all the messages is read in one go.
guard({'zset', 'zset', 'zset', 'hash', 'hash', 'hash'})
local wanted = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local token = ARGV[4]
local now = now_ms()
local result = {now, -1, dropped}
local messages = {}
local taken = 0

local function back_to_ready(from, ready, priorities)
  local due = redis.call('ZRANGEBYSCORE', from, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', from, id)
    redis.call('ZADD', ready, 0 - priority_of(priorities, id), id)
  end
end

local function note_next_due(key)
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local due = head[2] and tonumber(head[2])
  if due and due < math.huge then  -- a +inf score (garbage) never comes due
    if result[2] < 0 or due < result[2] then
      result[2] = due
    end
  end
end

-- Pop ready ids until `wanted` are leased or the queue is empty. An id without a body
-- (garbage) is dropped and does not count, so it never hides the messages behind it; at
-- most `limit` of them per queue and call, to bound the script's run time.
local function take(ready, leased, bodies, receipts, priorities)
  local budget = limit
  while taken < wanted and budget > 0 do
    local popped = redis.call('ZPOPMIN', ready, math.min(wanted - taken, budget))
    if #popped == 0 then
      return
    end
    for i = 1, #popped, 2 do
      local id = popped[i]
      local body = redis.call('HGET', bodies, id)
      if body then
        taken = taken + 1
        local receipt = token .. ':' .. taken
        redis.call('HSET', receipts, id, receipt)
        redis.call('ZADD', leased, now + lease, id)
        table.insert(messages, #id .. ':' .. id .. #body .. ':' .. body)
      else
        budget = budget - 1
        redis.call('HDEL', receipts, id)
        redis.call('HDEL', priorities, id)
        drop('id ' .. id .. ' in ' .. ready .. ' had no body: dropped')
      end
    end
  end
end

for q = 0, #KEYS / 6 - 1 do
  local k = q * 6
  back_to_ready(KEYS[k + 2], KEYS[k + 1], KEYS[k + 6])
  back_to_ready(KEYS[k + 3], KEYS[k + 1], KEYS[k + 6])
  local before = taken
  if taken < wanted then
    take(KEYS[k + 1], KEYS[k + 2], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6])
  end
  table.insert(result, taken - before)  -- this queue's count, after the header
  note_next_due(KEYS[k + 2])
  note_next_due(KEYS[k + 3])
end
table.insert(result, table.concat(messages))
return result
