-- Reliable work queue: claimed items stay on a processing list until acked.
--
-- A queue is a pending list, a processing list and a leases sorted set
-- (item -> deadline in ms); each function says which of them it takes.
-- Items are JSON objects {"id": n, "body": payload}; ids come from a counter.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

--@function push
-- Enqueue the payloads on the pending list; `ids` is the id counter (a
-- demo_pkg.counters counter).  Returns the new items' ids.
--@keys pending ids
--@args payloads...
local last = CALL.demo_pkg.counters.incr({KEYS[2]}, {#ARGV})
local ids = {}
for i, body in ipairs(ARGV) do
  ids[i] = last - #ARGV + i
  redis.call('LPUSH', KEYS[1], cjson.encode({id = ids[i], body = body}))
end
return ids

--@function claim
-- Move the oldest pending item to the processing list, leased for `lease_ms`
-- in `leases`; returns the item, or nil if none is pending.
--@keys pending processing leases
--@args lease_ms
local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
if not item then
  return false
end
redis.call('ZADD', KEYS[3], now_ms() + tonumber(ARGV[1]), item)
return item

--@function ack
-- Mark `item` done: drop it from the processing list and its lease.
-- Returns 1, or 0 if it was not being processed.
--@keys processing leases
--@args item
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('LREM', KEYS[1], 1, ARGV[1])

--@function requeue_expired
-- Move items whose lease has run out from the processing list back to the
-- front of the pending list, at most `limit` of them (default 100), so they
-- are claimed next.  Returns how many were requeued.
--@keys pending processing leases
--@args limit?
local limit = tonumber(ARGV[1] or 100)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms(), 'LIMIT', 0, limit)
local requeued = 0
for _, item in ipairs(expired) do
  if redis.call('LREM', KEYS[2], 1, item) > 0 then
    redis.call('RPUSH', KEYS[1], item)
    requeued = requeued + 1
  end
  redis.call('ZREM', KEYS[3], item)
end
return requeued
