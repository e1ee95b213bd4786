-- receive: lease up to ARGV[1] messages from one or more queues, best first.
-- Before taking, each queue's expired leases and due delayed messages go back to ready.
-- KEYS: per queue, 6 keys: ready, leased, delayed (zsets), bodies, receipts, priorities (hashes)
-- ARGV: max messages, lease ms, sweep limit, receipt token (unique per call)
-- Returns {now_ms, next_due_ms or -1, then (queue index, id, receipt, body) per message}.
local wanted = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local token = ARGV[4]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local result = {now, -1}
local taken = 0

local function back_to_ready(from, ready, priorities)
  local due = redis.call('ZRANGEBYSCORE', from, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', from, id)
    local priority = tonumber(redis.call('HGET', priorities, id)) or 0
    redis.call('ZADD', ready, 0 - priority, id)
  end
end

local function note_next_due(key)
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[2] then
    local due = tonumber(head[2])
    if result[2] < 0 or due < result[2] then
      result[2] = due
    end
  end
end

local function take(q, ready, leased, bodies, receipts, priorities)
  local popped = redis.call('ZPOPMIN', ready, wanted - taken)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local body = redis.call('HGET', bodies, id)
    if body then
      taken = taken + 1
      local receipt = token .. ':' .. taken
      redis.call('HSET', receipts, id, receipt)
      redis.call('ZADD', leased, now + lease, id)
      table.insert(result, q)
      table.insert(result, id)
      table.insert(result, receipt)
      table.insert(result, body)
    else
      redis.call('HDEL', receipts, id)  -- an id without a body: drop the orphan
      redis.call('HDEL', priorities, id)
    end
  end
end

for q = 0, #KEYS / 6 - 1 do
  local k = q * 6
  back_to_ready(KEYS[k + 2], KEYS[k + 1], KEYS[k + 6])
  back_to_ready(KEYS[k + 3], KEYS[k + 1], KEYS[k + 6])
  if taken < wanted then
    take(q, KEYS[k + 1], KEYS[k + 2], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6])
  end
  note_next_due(KEYS[k + 2])
  note_next_due(KEYS[k + 3])
end
return result
