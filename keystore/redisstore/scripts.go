package redisstore

import "github.com/redis/go-redis/v9"

// Every write is one Lua script: Redis runs a script to the end before anything else, and
// replicates and persists its effects as one transaction, so a crash or a failover never leaves
// half a record, an index without its record, or a change without its invalidation message.
//
// Scripts name every key they write in KEYS; the few keys they derive from stored data (an
// account's group grants, an owner's index) share the store's hash tag, so under Cluster they
// are in the same slot as the declared ones. Errors are replies "NOTFOUND what" and
// "EXISTS what", mapped to keystore's sentinels.

// loadPrincipal: KEYS[1] key; ARGV[1] prefix. Returns nil when the key is missing, {key} when
// its account is missing, else {key, account, owned, account grants, group, group grants, …}.
var loadPrincipal = redis.NewScript(`
local p = ARGV[1]
local key = redis.call('HGETALL', KEYS[1])
if #key == 0 then return false end
local account
for i = 1, #key, 2 do if key[i] == 'account' then account = key[i + 1] end end
local acct = redis.call('HGETALL', p .. 'a:' .. account)
if #acct == 0 then return {key} end
local groups = {}
for i = 1, #acct, 2 do if acct[i] == 'groups' then groups = cjson.decode(acct[i + 1]) end end
local out = {key, acct, redis.call('SMEMBERS', p .. 'oa:' .. account), redis.call('HGETALL', p .. 'g:account:' .. account)}
for _, g in ipairs(groups) do
  out[#out + 1] = g
  out[#out + 1] = redis.call('HGETALL', p .. 'g:group:' .. g)
end
return out
`)

// createAccount: KEYS account, accounts; ARGV name, json, groups, roles, disabled.
var createAccount = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS account') end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'groups', ARGV[3], 'roles', ARGV[4], 'disabled', ARGV[5])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`)

// updateAccount: KEYS account; ARGV channel, message, groups, roles, disabled.
var updateAccount = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND account') end
redis.call('HSET', KEYS[1], 'groups', ARGV[3], 'roles', ARGV[4], 'disabled', ARGV[5])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// changeAccount: KEYS account; ARGV channel, message, then groups, roles and disabled, each
// "" to leave as it is. It returns the account's hash as changed.
var changeAccount = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND account') end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'groups', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'roles', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'disabled', ARGV[5]) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
`)

// createKey: KEYS key, account, account's keys, all keys; ARGV id, json, account, revoked,
// last used, channel, message. The message evicts the id from replicas that remember it as
// unknown.
var createKey = redis.NewScript(createKeyBody)

// createKeyWithin is createKey refused when the account already holds the most live keys it
// may: ARGV as createKey's, then that limit, then the ids of the account's keys that were dead
// (revoked or expired, which they stay) when read. Every other key of the account's set is
// live, one created meanwhile too; it returns minus their count when they are the limit or
// more, and writes nothing.
var createKeyWithin = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOTFOUND account') end
local live = redis.call('SCARD', KEYS[3])
for i = 9, #ARGV do
  live = live - redis.call('SISMEMBER', KEYS[3], ARGV[i])
end
if live >= tonumber(ARGV[8]) then return -live end
` + createKeyBody)

const createKeyBody = `
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOTFOUND account') end
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS key') end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'account', ARGV[3], 'revoked', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_used', ARGV[5]) end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
`

// revokeKey: KEYS key; ARGV channel, message.
var revokeKey = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND key') end
redis.call('HSET', KEYS[1], 'revoked', '1')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// deleteKeys: KEYS all keys, then for each key to remove its hash and its account's key set;
// ARGV channel, then for each key its id, its record ("json") as read before, and "1" when it
// had expired then at the store's clock. A key is removed only if it is still that record
// (whose expiry never changes) and is revoked or had expired; otherwise the script removes
// nothing and returns -i, i the first such key. Keys already gone are skipped. It returns how
// many it removed, and tells replicas each of them, or to empty their caches when many went.
var deleteKeys = redis.NewScript(`
local n = (#KEYS - 1) / 2
for i = 1, n do
  local key = KEYS[2 * i]
  if redis.call('EXISTS', key) == 1 then
    if redis.call('HGET', key, 'json') ~= ARGV[3 * i] then return -i end
    if redis.call('HGET', key, 'revoked') ~= '1' and ARGV[3 * i + 1] ~= '1' then return -i end
  end
end
local gone = {}
for i = 1, n do
  local id = ARGV[3 * i - 1]
  if redis.call('DEL', KEYS[2 * i]) == 1 then
    redis.call('SREM', KEYS[2 * i + 1], id)
    redis.call('ZREM', KEYS[1], id)
    gone[#gone + 1] = id
  end
end
if #gone > 32 then
  redis.call('PUBLISH', ARGV[1], '*')
else
  for _, id in ipairs(gone) do redis.call('PUBLISH', ARGV[1], 'k ' .. id) end
end
return #gone
`)

// touchKeys: KEYS keys; ARGV last-used times as zero-padded nanoseconds, which compare as
// strings exactly (Lua numbers would round them). Missing keys are skipped; times never move
// backwards.
var touchKeys = redis.NewScript(`
for i, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    local old = redis.call('HGET', k, 'last_used')
    if not old or old < ARGV[i] then redis.call('HSET', k, 'last_used', ARGV[i]) end
  end
end
return 1
`)

// A grant row is a field of the subject's hash: repository -> "pull,push", or
// "pull,push|END" when it ends, END in Unix nanoseconds (grantValue and parseGrantValue).
// Scripts split a row with grantParts.
const grantParts = `
local function parts(v)
  local i = string.find(v, '|', 1, true)
  if i then return string.sub(v, 1, i - 1), string.sub(v, i + 1) end
  return v, ''
end
`

// A write guarded by the owner of its repository (keystore.Guard) is given the ownership's key
// and the guard: empty to check nothing, "=" and the owner expected ("=" alone: nobody).
// guardHolds reads the reservation in the script that writes, so the two are one step.
const guardHolds = `
local function guard_holds(key, guard)
  if guard == '' then return true end
  local want = string.sub(guard, 2)
  local o = redis.call('GET', key)
  if not o then return want == '' end
  return cjson.decode(o)['owner'] == want
end
`

// putGrant: KEYS subject's grants, subjects, repository's subjects, repository's ownership;
// ARGV channel, message, subject, repository, guard, end (empty for none), actions…. A row
// whose end differs is replaced only by a put naming every action it holds
// (keystore.MergeGrant); otherwise "CONFLICT grant". A guard that does not hold is "CONFLICT
// owner".
var putGrant = redis.NewScript(grantParts + guardHolds + `
if not guard_holds(KEYS[4], ARGV[5]) then return redis.error_reply('CONFLICT owner') end
local set = {}
local cur = redis.call('HGET', KEYS[1], ARGV[4])
for i = 7, #ARGV do set[ARGV[i]] = true end
if cur then
  local acts, fin = parts(cur)
  for a in string.gmatch(acts, '[^,]+') do
    if fin == ARGV[6] then
      set[a] = true
    elseif not set[a] then
      return redis.error_reply('CONFLICT grant')
    end
  end
end
local list = {}
for a in pairs(set) do list[#list + 1] = a end
table.sort(list)
local v = table.concat(list, ',')
if ARGV[6] ~= '' then v = v .. '|' .. ARGV[6] end
redis.call('HSET', KEYS[1], ARGV[4], v)
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// removeGrant: same KEYS as putGrant; ARGV channel, message, subject, repository, guard,
// actions… (none: the whole row). What is left keeps the row's end.
var removeGrant = redis.NewScript(grantParts + guardHolds + `
if not guard_holds(KEYS[4], ARGV[5]) then return redis.error_reply('CONFLICT owner') end
local cur = redis.call('HGET', KEYS[1], ARGV[4])
if not cur then return redis.error_reply('NOTFOUND grant') end
local acts, fin = parts(cur)
local left = {}
if #ARGV > 5 then
  local drop = {}
  for i = 6, #ARGV do drop[ARGV[i]] = true end
  for a in string.gmatch(acts, '[^,]+') do if not drop[a] then left[#left + 1] = a end end
end
if #left == 0 then
  redis.call('HDEL', KEYS[1], ARGV[4])
  redis.call('SREM', KEYS[3], ARGV[3])
  if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[3]) end
else
  local v = table.concat(left, ',')
  if fin ~= '' then v = v .. '|' .. fin end
  redis.call('HSET', KEYS[1], ARGV[4], v)
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// reserve: KEYS ownership, owner's repositories, repositories, owner account; ARGV channel,
// message, repository, json, the most reservations the owner may hold (0: no limit).
var reserve = redis.NewScript(`
if redis.call('EXISTS', KEYS[4]) == 0 then return redis.error_reply('NOTFOUND account') end
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS repository') end
local max = tonumber(ARGV[5])
if max > 0 and redis.call('SCARD', KEYS[2]) >= max then return redis.error_reply('LIMIT reservations') end
redis.call('SET', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// release: KEYS ownership, repositories, the repository's subjects, subjects; ARGV channel,
// prefix, repository, guard. It removes the reservation and every grant row whose repository is exactly
// the released name, whoever holds it, and tells replicas who changed: each subject, or
// everyone when many did (one message each would make every replica scan its cache as often).
var release = redis.NewScript(guardHolds + `
local o = redis.call('GET', KEYS[1])
if not o then return redis.error_reply('NOTFOUND repository') end
if not guard_holds(KEYS[1], ARGV[4]) then return redis.error_reply('CONFLICT owner') end
local owner = cjson.decode(o)['owner']
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('SREM', ARGV[2] .. 'oa:' .. owner, ARGV[3])
local subjects = redis.call('SMEMBERS', KEYS[3])
for _, sub in ipairs(subjects) do
  local rows = ARGV[2] .. 'g:' .. sub
  redis.call('HDEL', rows, ARGV[3])
  if redis.call('EXISTS', rows) == 0 then redis.call('ZREM', KEYS[4], sub) end
end
redis.call('DEL', KEYS[3])
if #subjects > 32 then
  redis.call('PUBLISH', ARGV[1], '*')
  return 1
end
redis.call('PUBLISH', ARGV[1], 'a ' .. owner)
for _, sub in ipairs(subjects) do
  local kind, name = string.match(sub, '^(%a+):(.*)$')
  if kind == 'group' then
    redis.call('PUBLISH', ARGV[1], 'g ' .. name)
  else
    redis.call('PUBLISH', ARGV[1], 'a ' .. name)
  end
end
return 1
`)

// createSession: KEYS session, the account's sessions; ARGV json, ttl ms, now ms, end ms, most
// sessions per account (0: no bound), prefix, id. Sessions of the index that have ended leave
// it; past the bound, those that end first end now (the lowest scores, then ids). The index
// expires with its last session, by the store's clock as the sessions do.
var createSession = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS session') end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local max = tonumber(ARGV[5])
if max > 0 then
  local over = redis.call('ZCARD', KEYS[2]) - max + 1
  if over > 0 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
      redis.call('DEL', ARGV[6] .. 's:' .. id)
    end
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[7])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[2], math.max(1, tonumber(last[2]) - tonumber(ARGV[3])))
return 1
`)

// confirmMarker: KEYS marker. A write of no meaning, gone a second later, that Confirm waits
// for.
var confirmMarker = redis.NewScript(`
redis.call('SET', KEYS[1], '1', 'PX', 1000)
return 1
`)

// deleteSession: KEYS session; ARGV prefix, id. Ending a session that is gone is not an error.
var deleteSession = redis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, sess = pcall(cjson.decode, raw)
if ok and type(sess) == 'table' and type(sess['account']) == 'string' then
  redis.call('ZREM', ARGV[1] .. 'sa:' .. sess['account'], ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
`)
