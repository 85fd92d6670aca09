"""The Lua scripts of the Redis/Valkey storage (one round trip and one atomic step per call).

Keys under the prefix ``P`` (docs/backend.md "Redis/Valkey"):

- ``P e:<key>``  hash: variant -> 8-byte big-endian expiry (Unix ms) + span bytes; the hash
  expires (PEXPIREAT) when its last variant does;
- ``P lru``      sorted set: key -> last use (Unix seconds);
- ``P sizes``, ``P counts``  hashes: key -> bytes / entries of its variants (kept when Redis
  expires the entry hash, so the totals can be corrected afterwards);
- ``P totals``   hash: entries, bytes, evicted, expired.

Every script takes KEYS = (lru, sizes, counts, totals, ...) and reaches the entry hashes of other
keys by name (prefix in ARGV), so the storage runs on one Redis/Valkey primary, not a Cluster.
"""

_COMMON = """
local lru, sizes, counts, totals = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function forget(k, e)
  local n = tonumber(redis.call('HGET', counts, k) or '0')
  local b = tonumber(redis.call('HGET', sizes, k) or '0')
  redis.call('DEL', e)
  redis.call('HDEL', counts, k)
  redis.call('HDEL', sizes, k)
  redis.call('ZREM', lru, k)
  if n ~= 0 then redis.call('HINCRBY', totals, 'entries', -n) end
  if b ~= 0 then redis.call('HINCRBY', totals, 'bytes', -b) end
  return n
end
local function expiry(v)
  local b1, b2, b3, b4, b5, b6, b7, b8 = string.byte(v, 1, 8)
  return ((((((b1 * 256 + b2) * 256 + b3) * 256 + b4) * 256 + b5) * 256 + b6) * 256 + b7) * 256 + b8
end
"""

#: KEYS: lru sizes counts totals e:key; ARGV: key variant value expires_ms now max_bytes max_entries prefix
#: max_variants; returns {evicted, expired}. Past max_variants, the key's other variants that expire
#: first go (counted as evicted).
INSERT = _COMMON + """
local ekey = KEYS[5]
local key, variant, value = ARGV[1], ARGV[2], ARGV[3]
local max_bytes, max_entries, prefix = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local evicted, expired = 0, 0
if redis.call('EXISTS', ekey) == 0 and redis.call('HEXISTS', counts, key) == 1 then
  expired = expired + forget(key, ekey)
end
local size = string.len(value) - 8
local old = redis.call('HSTRLEN', ekey, variant)
local new_entries, new_bytes = 1, size
if old > 0 then new_entries, new_bytes = 0, size - (old - 8) end
redis.call('HSET', ekey, variant, value)
redis.call('PEXPIREAT', ekey, ARGV[4], 'NX')
redis.call('PEXPIREAT', ekey, ARGV[4], 'GT')
redis.call('HINCRBY', sizes, key, new_bytes)
redis.call('HINCRBY', counts, key, new_entries)
redis.call('HINCRBY', totals, 'entries', new_entries)
redis.call('HINCRBY', totals, 'bytes', new_bytes)
redis.call('ZADD', lru, 'GT', ARGV[5], key)
local max_variants = tonumber(ARGV[9])
if new_entries == 1 and tonumber(redis.call('HGET', counts, key)) > max_variants then
  local fields = redis.call('HGETALL', ekey)
  local others = {}
  for j = 1, #fields, 2 do
    if fields[j] ~= variant then
      others[#others + 1] = {fields[j], expiry(fields[j + 1]), string.len(fields[j + 1]) - 8}
    end
  end
  table.sort(others, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] > b[1]
  end)
  local drop = (#others + 1) - max_variants
  for j = 1, drop do
    redis.call('HDEL', ekey, others[j][1])
    redis.call('HINCRBY', sizes, key, -others[j][3])
    redis.call('HINCRBY', counts, key, -1)
    redis.call('HINCRBY', totals, 'entries', -1)
    redis.call('HINCRBY', totals, 'bytes', -others[j][3])
    evicted = evicted + 1
  end
end
while true do
  local entries = tonumber(redis.call('HGET', totals, 'entries') or '0')
  local bytes = tonumber(redis.call('HGET', totals, 'bytes') or '0')
  if entries <= max_entries and bytes <= max_bytes then break end
  local victim = redis.call('ZRANGE', lru, 0, 0)[1]
  if not victim then break end
  local e = prefix .. 'e:' .. victim
  if redis.call('EXISTS', e) == 1 then
    evicted = evicted + forget(victim, e)
  else
    expired = expired + forget(victim, e)
  end
end
if evicted > 0 then redis.call('HINCRBY', totals, 'evicted', evicted) end
if expired > 0 then redis.call('HINCRBY', totals, 'expired', expired) end
return {evicted, expired}
"""

#: KEYS: e:key lru; ARGV: key now. Returns every stored value (expiry prefix + span).
LOOKUP = """
local values = redis.call('HVALS', KEYS[1])
if #values > 0 then redis.call('ZADD', KEYS[2], 'XX', 'GT', ARGV[2], ARGV[1]) end
return values
"""

#: KEYS: lru sizes counts totals; ARGV: prefix key... Returns entries deleted.
INVALIDATE = _COMMON + """
local deleted, expired = 0, 0
for i = 2, #ARGV do
  local e = ARGV[1] .. 'e:' .. ARGV[i]
  if redis.call('EXISTS', e) == 1 then
    deleted = deleted + forget(ARGV[i], e)
  else
    expired = expired + forget(ARGV[i], e)
  end
end
if expired > 0 then redis.call('HINCRBY', totals, 'expired', expired) end
return deleted
"""

#: KEYS: lru sizes counts totals; ARGV: prefix now_ms key... Removes expired variants of the keys
#: (and the accounting of hashes Redis already expired). Returns entries removed.
SWEEP = _COMMON + """
local prefix, now_ms, removed = ARGV[1], tonumber(ARGV[2]), 0
for i = 3, #ARGV do
  local key = ARGV[i]
  local e = prefix .. 'e:' .. key
  if redis.call('EXISTS', e) == 0 then
    removed = removed + forget(key, e)
  else
    local fields = redis.call('HGETALL', e)
    local gone, gone_bytes = 0, 0
    for j = 1, #fields, 2 do
      local v = fields[j + 1]
      if expiry(v) <= now_ms then
        redis.call('HDEL', e, fields[j])
        gone, gone_bytes = gone + 1, gone_bytes + string.len(v) - 8
      end
    end
    if gone * 2 == #fields then
      removed = removed + forget(key, e)
    elseif gone > 0 then
      redis.call('HINCRBY', counts, key, -gone)
      redis.call('HINCRBY', sizes, key, -gone_bytes)
      redis.call('HINCRBY', totals, 'entries', -gone)
      redis.call('HINCRBY', totals, 'bytes', -gone_bytes)
      removed = removed + gone
    end
  end
end
if removed > 0 then redis.call('HINCRBY', totals, 'expired', removed) end
return removed
"""
