-- End a lease held with ARGV[1]; with ARGV[3] set, put the experiment back in a ready set.
-- A lease now held under another token is left alone (returns 0).
-- KEYS[1] lease zset, KEYS[2] lease hash, KEYS[3] ready zset (may be unused)
-- ARGV[1] token, ARGV[2] member, ARGV[3] requeue score or ''
local current = redis.call('HGET', KEYS[2], 'token')
if current and current ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), ARGV[2])
end
return 1
