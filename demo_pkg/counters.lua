-- Named integer counters, one Redis string per counter.
--
-- The values stay plain integers, so GET and INCRBY keep working on them
-- from anywhere; these functions add argument checks and batching.

-- ARGV values arrive as strings: the integer in `value`, or `default` if absent.
local function amount(value, default)
  if value == nil or value == '' then
    return default
  end
  local n = tonumber(value)
  if n == nil or n ~= math.floor(n) then
    error('amount must be an integer, got ' .. tostring(value))
  end
  return n
end

--@function incr
-- Add `by` (default 1) to `counter`; returns its new value.
--@keys counter
--@args by?
return redis.call('INCRBY', KEYS[1], amount(ARGV[1], 1))

--@function get
-- The values of the counters, with 0 for a counter never set.
--@keys counters...
local values = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do
  values[i] = tonumber(values[i]) or 0
end
return values

--@function incr_many
-- Add `by` (default 1) to every counter; returns the new values, in order.
--@keys counters...
--@args by?
local by = amount(ARGV[1], 1)
local values = {}
for i, key in ipairs(KEYS) do
  values[i] = CALL.incr({key}, {by})
end
return values
