-- One visitor's view in one call: the next banner of each asked campaign's rotation (rotation.py's rule, in
-- Redis' Lua), the rotations saved, and the view's event commands run; atomic, so two tabs of one visitor
-- racing each other take consecutive steps of the same cycle.
--
-- KEYS[1]: the visitor's rotations, a hash: campaign -> set_key, seed, position and tick (4-byte little-endian
--   unsigned ints) then the last banner's id in decimal, and "#" -> the last tick given (the campaign seen longest
--   ago is dropped past the bound); KEYS[2..]: each event command's key.
-- ARGV: lifetime in seconds, the most campaigns kept, the number of slots; per slot: the campaign, its set key,
--   32 random bits, the seed of a minted vid's first cycle or "", the number of banners, then each banner's id and
--   code by ascending id; then per event command: its argument count, its name and its arguments after the key,
--   where "\1" stands for the first slot's banner.
-- Returns each slot's banner id.
local M32 = 4294967296
local SEED_TRIES = 64
local MAX_BANNERS = 1048576 -- 2^20: a cycle's sort key (rank * 2^20 + index) stays exact below 2^52
local bxor, rshift, sort, floor = bit.bxor, bit.rshift, table.sort, math.floor

local function mul(a, b) -- (a * b) mod 2^32, exact in doubles: no product passes 2^49
  local a_lo = a % 65536
  return (a_lo * b + (((a - a_lo) / 65536 * (b % 65536)) % 65536) * 65536) % M32
end

local function mix(x) -- rotation.mix: MurmurHash3's 32-bit finaliser
  x = bxor(x, rshift(x, 16)) % M32
  x = mul(x, 0x85EBCA6B)
  x = bxor(x, rshift(x, 13)) % M32
  x = mul(x, 0xC2B2AE35)
  return bxor(x, rshift(x, 16)) % M32
end

local function read_banners(at, count) -- the slot's count ids and codes from ARGV[at]: id, code, id, code...
  local ids, codes = {}, {}
  for i = 1, count do
    ids[i] = ARGV[at + 2 * i - 2]
    codes[i] = tonumber(ARGV[at + 2 * i - 1])
  end
  return ids, codes
end

local function permutation(ids, codes, seed) -- rotation.permutation: ids ordered by mix(code ^ mix(seed)), then index
  local base, order, cycle = mix(seed), {}, {}
  for i = 1, #ids do
    order[i] = mix(bxor(codes[i], base) % M32) * MAX_BANNERS + i -- one number per banner: sorted without a comparator
  end
  sort(order)
  for i = 1, #order do cycle[i] = ids[order[i] % MAX_BANNERS] end
  return cycle
end

local function new_cycle_seed(ids, codes, last, first) -- rotation.new_cycle_seed
  local seed = first
  for _ = 1, SEED_TRIES do
    if #ids == 1 or permutation(ids, codes, seed)[1] ~= last then return seed end
    seed = mix((seed + 0x9E3779B9) % M32)
  end
  return first
end

local function next_banner(ids, codes, key, state, first) -- rotation.next_banner; state {key, last, seed, position}
  local last = state and state[2]
  if state and state[1] == key and state[4] > 0 and state[4] < #ids then
    local cycle = permutation(ids, codes, state[3])
    if cycle[state[4]] == last then
      return cycle[state[4] + 1], {key, cycle[state[4] + 1], state[3], state[4] + 1}
    end
  end
  local seed = new_cycle_seed(ids, codes, last, first)
  local banner = permutation(ids, codes, seed)[1]
  return banner, {key, banner, seed, 1}
end

local PACKED = '<I4I4I4I4'

local function write_state(state, tick) -- 16 bytes and the id: about half the bytes of the numbers in decimal
  return struct.pack(PACKED, state[1], state[3], state[4], tick) .. state[2]
end

local function read_state(value)
  if not value or #value < 17 then return nil end
  local last = string.sub(value, 17)
  if not string.match(last, '^%d+$') then return nil end
  local key, seed, position = struct.unpack(PACKED, value)
  return {key, last, seed, position}
end

local function tick_of(value)
  return #value >= 16 and select(4, struct.unpack(PACKED, value)) or 0
end

-- A visitor kept as the msgpack map of earlier releases ({campaign: [set_key, last, seed, position]}): each campaign
-- keeps only its last banner (the next view starts a new cycle that does not begin with it).
local function upgrade(key)
  local old = redis.pcall('GET', key)
  local ok, rotations = pcall(cmsgpack.unpack, type(old) == 'string' and old or '')
  redis.call('DEL', key)
  if ok and type(rotations) == 'table' then
    for campaign, state in pairs(rotations) do
      if type(state) == 'table' and type(state[2]) == 'number' and state[2] >= 0 then
        redis.call('HSET', key, tostring(campaign), write_state({0, string.format('%.0f', state[2]), 0, 0}, 0))
      end
    end
  end
end

local visitor, lifetime, most, slots = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local tick, shown, at = nil, {}, 4
for s = 1, slots do
  local campaign, key, first, minted, count = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), ARGV[at + 3],
    tonumber(ARGV[at + 4])
  local ids, codes = read_banners(at + 5, count)
  at = at + 5 + 2 * count
  local stored = redis.pcall('HGET', visitor, campaign)
  if type(stored) == 'table' and stored.err then
    upgrade(visitor)
    stored = redis.call('HGET', visitor, campaign)
  end
  local state = read_state(stored)
  if not state and minted ~= '' then -- the unstored first view of a vid we minted showed its cycle's first banner
    local seed = tonumber(minted)
    state = {key, permutation(ids, codes, seed)[1], seed, 1}
  end
  local banner, new = next_banner(ids, codes, key, state, first)
  if not tick then
    tick = redis.pcall('HINCRBY', visitor, '#', 1)
    if type(tick) == 'table' then -- a tick that is not a number (written by hand): start counting again
      redis.call('HSET', visitor, '#', 1)
      tick = 1
    end
  end
  local added = redis.call('HSET', visitor, campaign, write_state(new, tick))
  if added == 1 and redis.call('HLEN', visitor) > most + 1 then
    local all, oldest, oldest_tick = redis.call('HGETALL', visitor), nil, nil
    for i = 1, #all, 2 do
      local seen = all[i] ~= '#' and tick_of(all[i + 1])
      if seen and (not oldest_tick or seen < oldest_tick) then oldest, oldest_tick = all[i], seen end
    end
    redis.call('HDEL', visitor, oldest)
  end
  shown[s] = banner
end
redis.call('EXPIRE', visitor, lifetime)
for k = 2, #KEYS do
  local count, args = tonumber(ARGV[at]), {}
  for i = 1, count do args[i] = string.gsub(ARGV[at + 1 + i], '\1', shown[1]) end
  redis.call(ARGV[at + 1], KEYS[k], unpack(args))
  at = at + 2 + count
end
return shown
