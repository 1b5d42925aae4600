"""The adapter registry's Lua scripts: each change of a name's versions, aliases and history is one script,
so two admins (or two ingress replicas) can never interleave halfway.

Every script gets the same keys (``AdapterRegistry._keys``) and the adapter's name as ARGV[1]:

    KEYS[1] versions  hash   version number -> record (JSON)
    KEYS[2] digests   hash   content digest -> version number
    KEYS[3] aliases   hash   alias -> version number
    KEYS[4] history   list   JSON entries, newest first, capped
    KEYS[5] legacy    hash   name -> record: the registry before versions were kept (one record a name)
    KEYS[6] names     set    every registered name
    KEYS[7] counters  hash   name -> last version given (only grows, kept after a delete)
    KEYS[8] lora ids  string last LoRA id given (only grows)

History entries come from Python as a JSON object without ``from`` and ``to``, which the script appends (the
versions are known only inside it).
"""

from __future__ import annotations

HISTORY_CAP = 500

# A name still in the legacy hash moves into the versioned keys on first touch: its record becomes its version
# and the stable alias points at it (the behaviour it had). Idempotent.
PRELUDE = f"""
local legacy = redis.call('HGET', KEYS[5], ARGV[1])
if legacy then
  local version = tostring(cjson.decode(legacy)['version'])
  redis.call('HSETNX', KEYS[1], version, legacy)
  redis.call('HSETNX', KEYS[3], 'stable', version)
  redis.call('SADD', KEYS[6], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
end
local function log(entry, from, to)
  redis.call('LPUSH', KEYS[4], string.sub(entry, 1, -2) .. ', "from": ' .. from .. ', "to": ' .. to .. '}}')
  redis.call('LTRIM', KEYS[4], 0, {HISTORY_CAP - 1})
end
"""

# ARGV: name. The name's versions and aliases as two flat [field, value, ...] lists.
SNAPSHOT = PRELUDE + """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[3])}
"""

# ARGV: name, kind (alias | version | digest), value. {'ok', record} or {reason, whether the name exists}.
RESOLVE = PRELUDE + """
local version = ARGV[3]
if ARGV[2] == 'alias' then
  version = redis.call('HGET', KEYS[3], ARGV[3])
  if not version then return {'no-alias', redis.call('EXISTS', KEYS[1])} end
elseif ARGV[2] == 'digest' then
  local found = false
  for _, digest in ipairs(redis.call('HKEYS', KEYS[2])) do
    if string.sub(digest, 1, #ARGV[3]) == ARGV[3] then
      if found then return {'ambiguous', 1} end
      found = redis.call('HGET', KEYS[2], digest)
    end
  end
  if not found then return {'no-version', redis.call('EXISTS', KEYS[1])} end
  version = found
end
local record = redis.call('HGET', KEYS[1], version)
if not record then return {'no-version', redis.call('EXISTS', KEYS[1])} end
return {'ok', record}
"""

# ARGV: name, record (JSON without version and lora_id, which the script appends), digest, alias to move onto
# the new version ('' for none), history entry. Content already registered under the name is a no-op:
# {0, its record}; else {1, the new record}.
REGISTER = PRELUDE + """
local existing = redis.call('HGET', KEYS[2], ARGV[3])
if existing and redis.call('HEXISTS', KEYS[1], existing) == 1 then
  return {0, redis.call('HGET', KEYS[1], existing)}
end
local version = redis.call('HINCRBY', KEYS[7], ARGV[1], 1)
local lora_id = redis.call('INCR', KEYS[8])
local record = string.sub(ARGV[2], 1, -2) .. ', "version": ' .. version .. ', "lora_id": ' .. lora_id .. '}'
redis.call('HSET', KEYS[1], version, record)
redis.call('HSET', KEYS[2], ARGV[3], version)
redis.call('SADD', KEYS[6], ARGV[1])
local from = 'null'
if ARGV[4] ~= '' then
  from = redis.call('HGET', KEYS[3], ARGV[4]) or 'null'
  redis.call('HSET', KEYS[3], ARGV[4], version)
end
log(ARGV[5], from, version)
return {1, record}
"""

# ARGV: name, alias, source kind (version | alias), source value, expected current version of the alias ('*':
# any, '' : unset), history entry, and optionally the version the source alias must still point at (an automatic
# promote judged that version). Moves the alias onto the version (or onto the source alias's version) if that
# version exists and both aliases still point where the caller saw them. {status, current before, version}.
MOVE = PRELUDE + """
local version = ARGV[4]
if ARGV[3] == 'alias' then
  version = redis.call('HGET', KEYS[3], ARGV[4])
  if not version then return {'no-source', '', ''} end
  if ARGV[7] and ARGV[7] ~= '' and version ~= ARGV[7] then return {'source-changed', '', version} end
end
if redis.call('HEXISTS', KEYS[1], version) == 0 then return {'no-version', '', version} end
local current = redis.call('HGET', KEYS[3], ARGV[2]) or ''
if ARGV[5] ~= '*' and current ~= ARGV[5] then return {'changed', current, version} end
if current == version then return {'same', current, version} end
redis.call('HSET', KEYS[3], ARGV[2], version)
local from = current
if from == '' then from = 'null' end
log(ARGV[6], from, version)
return {'ok', current, version}
"""

# ARGV: name, alias, history entry. 1 when the alias was removed, 0 when it was not set.
UNALIAS = PRELUDE + """
local current = redis.call('HGET', KEYS[3], ARGV[2])
if not current then return 0 end
redis.call('HDEL', KEYS[3], ARGV[2])
log(ARGV[3], current, 'null')
return 1
"""

# ARGV: name, version, history entry. {'ok'}, {'no-version'} or {'aliased', 'alias,alias'}: a version an alias
# points at stays. The last version gone, the name goes too (its history stays).
DELETE_VERSION = PRELUDE + """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return {'no-version', ''} end
local held = {}
local aliases = redis.call('HGETALL', KEYS[3])
for i = 1, #aliases, 2 do
  if aliases[i + 1] == ARGV[2] then table.insert(held, aliases[i]) end
end
if #held > 0 then return {'aliased', table.concat(held, ',')} end
redis.call('HDEL', KEYS[1], ARGV[2])
local digests = redis.call('HGETALL', KEYS[2])
for i = 1, #digests, 2 do
  if digests[i + 1] == ARGV[2] then redis.call('HDEL', KEYS[2], digests[i]) end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('SREM', KEYS[6], ARGV[1])
end
log(ARGV[3], ARGV[2], 'null')
return {'ok', ''}
"""

# ARGV: name, history entry. Every version and alias of the name; 1 when it existed. Its history stays (an
# audit log outlives what it audits) and its version counter too (a later version never reuses a number).
DELETE = PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[6], ARGV[1])
log(ARGV[2], 'null', 'null')
return 1
"""
