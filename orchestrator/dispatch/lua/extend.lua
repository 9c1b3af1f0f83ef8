-- Extend (or, after Redis lost it, restore) a lease whose token the database confirmed.
-- A different token already in Redis wins: a newer claim must never be overwritten.
-- KEYS[1] lease zset, KEYS[2] lease hash; ARGV[1] token, ARGV[2] expiry (ms), ARGV[3] member,
-- ARGV[4] worker id
local current = redis.call('HGET', KEYS[2], 'token')
if current and current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[2], 'token', ARGV[1], 'worker', ARGV[4])
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[3])
return 1
