-- guard: prepended to every script. Garbage written by hand under the broker's prefix never
-- makes a script fail: a key of the wrong type is deleted before the script touches it, a
-- priority that is not a finite number counts as 0, and each repair is named in `dropped`,
-- which the script returns for the broker to log.
local dropped = {}

local function drop(what)
  table.insert(dropped, what)
end

-- Delete each of KEYS whose type is not `types[i]` (the list repeats, one entry per key of
-- a queue: receive passes several queues' keys in a row).
local function guard(types)
  for i = 1, #KEYS do
    local expected = types[(i - 1) % #types + 1]
    local kind = redis.call('TYPE', KEYS[i])['ok']
    if kind ~= 'none' and kind ~= expected then
      redis.call('DEL', KEYS[i])
      drop(KEYS[i] .. ' held a ' .. kind .. ', not a ' .. expected .. ': deleted')
    end
  end
end

-- The priority of `id` in the `priorities` hash: 0 when absent or not a finite number.
local function priority_of(priorities, id)
  local raw = redis.call('HGET', priorities, id)
  local priority = tonumber(raw)
  if priority == nil or priority ~= priority or priority == math.huge or priority == -math.huge then
    if raw then
      redis.call('HDEL', priorities, id)
      drop('priority ' .. raw .. ' of id ' .. id .. ' in ' .. priorities .. ': deleted')
    end
    return 0
  end
  return priority
end

-- The server clock in milliseconds.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- The script itself follows.
