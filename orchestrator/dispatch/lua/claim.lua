-- Atomically take the best ready experiment across the ready sets a worker may take from
-- (classes its capability satisfies x lanes it serves: its owner's, its pools' users').
-- KEYS[1] lease zset, KEYS[2] fence counter, KEYS[3..] ready zsets
-- ARGV[1] now (ms), ARGV[2] lease length (ms), ARGV[3] worker id, ARGV[4] random token part,
-- ARGV[5] lease hash key prefix
local best_key, best_member, best_score = nil, nil, nil
for i = 3, #KEYS do
  local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if head[1] then
    local score = tonumber(head[2])
    if best_score == nil or score < best_score then
      best_key, best_member, best_score = KEYS[i], head[1], score
    end
  end
end
if best_member == nil then
  return nil
end
redis.call('ZREM', best_key, best_member)
local fence = redis.call('INCR', KEYS[2])
local token = fence .. '-' .. ARGV[4]
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), best_member)
redis.call('HSET', ARGV[5] .. best_member, 'token', token, 'worker', ARGV[3])
return {best_member, token}
