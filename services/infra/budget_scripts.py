"""The Lua scripts of a broker call's admission (services/infra/ratelimit.py): a token bucket,
and the whole admission (the account's 429 gate, services/infra/cooldown.py, and its budgets)
in one round trip. They share their pieces: Valkey's clock and a bucket's reservation."""

# `now`: Valkey's clock in ms (one clock for every worker).
NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# A bucket at `now`: its tokens refilled, what would be left after `cost`, and how long (ms)
# until that is covered. Writes nothing.
_RESERVE = """
local function reserve(key, capacity, per_ms, cost)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or capacity
  local ts = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + (now - ts) * per_ms)
  local after = tokens - cost
  local wait = 0
  if after < 0 then wait = math.ceil(-after / per_ms) end
  return tokens, after, wait
end
"""

# One bucket: ARGV capacity, refill per ms, cost, longest wait (ms). Returns the wait, or minus
# the wait when it is longer than allowed (nothing spent).
BUCKET_SCRIPT = (
    NOW
    + _RESERVE
    + """
local capacity, per_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, after, wait = reserve(KEYS[1], capacity, per_ms, tonumber(ARGV[3]))
if wait > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  return -wait
end
redis.call('HSET', KEYS[1], 'tokens', tostring(after), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 60000)
return wait
"""
)


# One broker call's admission in one round trip: the account's 429 gate when ARGV[1] > 0
# (KEYS[1]; ARGV[1] = how long a probe's answer is waited for, ms), then every token bucket in
# the remaining KEYS (four ARGV each, as BUCKET_SCRIPT). Nothing is spent, and no probe is
# taken, unless every part admits the call. The gate alone (AccountGate.admit) is this script
# with its key only.
# Returns {1, wait}: the gate is closed; {2, wait, i}: bucket i would make the call wait longer
# than its limit; {0, probe, wait, ...}: admitted (probe = 1: the gate's probe), each bucket's
# wait in ms.
ADMISSION_SCRIPT = (
    NOW
    + _RESERVE
    + """
local answer_ms = tonumber(ARGV[1])
local first = 1
local probe = 0
if answer_ms > 0 then
  first = 2
  local next_at = tonumber(redis.call('HGET', KEYS[1], 'next'))
  if next_at then
    if now < next_at then return {1, next_at - now} end
    probe = 1
  end
end
local result = {0, probe}
local spend = {}
for i = first, #KEYS do
  local a = 2 + (i - first) * 4
  local capacity, per_ms = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local _, after, wait = reserve(KEYS[i], capacity, per_ms, tonumber(ARGV[a + 2]))
  if wait > tonumber(ARGV[a + 3]) then return {2, wait, i - first} end
  spend[#spend + 1] = {KEYS[i], after, math.ceil(capacity / per_ms) + 60000}
  result[#result + 1] = wait
end
if probe == 1 then redis.call('HSET', KEYS[1], 'next', now + answer_ms) end
for _, s in ipairs(spend) do
  redis.call('HSET', s[1], 'tokens', tostring(s[2]), 'ts', now)
  redis.call('PEXPIRE', s[1], s[3])
end
return result
"""
)
