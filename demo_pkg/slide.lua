-- Sliding-window log limiter: at most `limit` requests in any `window_ms`.
--
-- `log` is a sorted set of recent requests scored by time in microseconds.
-- Returns {allowed (1 or 0), requests in the window, ms until the next free slot}.
-- A single script: call the module itself, demo_pkg.slide(client, log=..., ...).
--@keys log
--@args window_ms limit

local window_us = tonumber(ARGV[1]) * 1000
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window_us)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  -- The count keeps members unique even if two requests share a microsecond.
  redis.call('ZADD', KEYS[1], now, string.format('%.0f:%d', now, count))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait_us = tonumber(oldest[2]) + window_us - now
return {0, count, math.ceil(wait_us / 1000)}
