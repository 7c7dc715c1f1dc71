-- Token-bucket rate limiter.
--
-- A bucket is a hash at KEYS[1] with fields `tokens` and `ts` (ms).  It holds
-- at most ARGV[1] tokens (the capacity) and refills at ARGV[2] tokens per
-- second; a bucket that is full again expires, so idle buckets cost nothing.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function clamp(x, lo, hi)
  return math.max(lo, math.min(hi, x))
end

-- Capacity and refill rate from ARGV[1] and ARGV[2], both positive numbers.
local function params(argv)
  local capacity, rate = tonumber(argv[1]), tonumber(argv[2])
  if not (capacity and rate and capacity > 0 and rate > 0) then
    error('capacity and rate must be positive numbers')
  end
  return capacity, rate
end

-- The bucket's level after refilling up to `now`; a missing bucket is full.
local function level(key, capacity, rate, now)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or capacity
  local ts = tonumber(state[2]) or now
  return clamp(tokens + (now - ts) * rate / 1000, 0, capacity)
end

--@function allow
-- Take `cost` tokens (default 1) from `bucket`, which holds at most `capacity`
-- tokens and refills at `rate` tokens per second.  Returns 1 if they were
-- taken, 0 if the bucket holds too few (then nothing is taken).
--@keys bucket
--@args capacity rate cost?
local capacity, rate = params(ARGV)
local cost = tonumber(ARGV[3] or 1)
local now = now_ms()
local tokens = level(KEYS[1], capacity, rate, now)
local allowed = tokens >= cost
if allowed then
  tokens = tokens - cost
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1)
return allowed and 1 or 0

--@function remaining
-- Whole tokens left in `bucket`, without taking any: read-only, so it runs
-- with EVALSHA_RO and may run on a replica.
--@keys bucket
--@args capacity rate
--@readonly
local capacity, rate = params(ARGV)
return math.floor(level(KEYS[1], capacity, rate, now_ms()))
