"""The rotation step in Redis (webapp/rotation_step.lua) against rotation.py's rule, on the real Redis server."""

import random
import struct

import msgspec
import pytest
import redis as redis_lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REDIS_URL
from rotation import MAX_ROTATIONS, mix, next_banner, permutation, set_key
from webapp.visitors import ROTATION_STEP, rotation_set

LIFETIME = 1800
# Ids as the ingest takes them (up to 2**63 - 1): past 2**53 Lua's numbers could not hold them; ids 2**32 apart share
# their low bits, and 2 and 2**32 + 3 share their code (their tie in a cycle is broken by their order).
banner_ids = st.one_of(st.integers(1, 40), st.integers(2**53 - 5, 2**53 + 5), st.integers(2**63 - 20, 2**63 - 1),
                       st.sampled_from([7, 7 + 2**32, 7 + 2**33, 2**32 - 1, 2**32, 2, 2**32 + 3]))
banner_sets = st.sets(banner_ids, min_size=1, max_size=10)


@pytest.fixture(scope="module")
def step():
    client = redis_lib.Redis.from_url(REDIS_URL)
    return client, client.register_script(ROTATION_STEP)


def run_step(step, key, slots, commands=(), most=MAX_ROTATIONS):
    """One call: slots are (campaign, banner_ids, random_seed, minted_seed or ""); returns the banners (ints)."""
    client, script = step
    args = [LIFETIME, most, len(slots)]
    for campaign, banners, seed, minted in slots:
        fingerprint, ordered = rotation_set(tuple(banners))
        args += [campaign, fingerprint, seed, minted, *ordered]
    for name, _, *rest in commands:
        args += [len(rest), name, *rest]
    return [int(b) for b in script(keys=[key, *(c[1] for c in commands)], args=args)]


def stored_state(value) -> list:
    """[set_key, last, seed, position] from a kept rotation: four little-endian uint32 (the fourth the tick), the id."""
    key, seed, position, _ = struct.unpack("<4I", value[:16])
    return [key, int(value[16:]), seed, position]


class Draws:
    """An rng whose getrandbits(32) gives the seeds the script was given, in order."""

    def __init__(self, seeds):
        self.seeds = list(seeds)

    def getrandbits(self, bits):
        assert bits == 32
        return self.seeds.pop(0)


@given(st.lists(st.tuples(st.integers(1, 3), banner_sets, st.integers(0, 2**32 - 1)), min_size=1, max_size=40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rotation_step_in_redis_chooses_what_the_rule_in_python_chooses(step, redis_prefix, views):
    """Any sequence of views over up to three campaigns whose sets change at will: the script's banners and kept states
    are the rule's, view for view (the rule's own tests then hold for the script)."""
    key = redis_prefix + "visitor:same"
    step[0].delete(key)
    states = {}
    for campaign, banners, seed in views:
        expected, states[campaign] = next_banner(banners, states.get(campaign), Draws([seed]))
        assert run_step(step, key, [(campaign, banners, seed, "")]) == [expected]
        assert stored_state(step[0].hget(key, campaign)) == states[campaign]


@given(banner_sets, st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rotation_step_any_kept_state_is_read_as_the_rule_reads_it(step, redis_prefix, banners, data):
    """Kept states the rule never wrote (damaged, forged, of another set, a position past the cycle's end): the script
    decides as next_banner does, so a state that would repeat the last banner starts a fresh cycle."""
    ordered = sorted(banners)
    key = data.draw(st.sampled_from([set_key(banners), 0, 12345]))
    last = data.draw(st.sampled_from(ordered) | st.integers(1, 2**63 - 1))
    state = [key, last, data.draw(st.integers(0, 2**32 - 1)), data.draw(st.integers(0, len(banners) + 1))]
    seed = data.draw(st.integers(0, 2**32 - 1))
    visitor = redis_prefix + "visitor:kept"
    step[0].delete(visitor)
    step[0].hset(visitor, "1", struct.pack("<4I", state[0], state[2], state[3], 1) + str(last).encode())
    expected, _ = next_banner(banners, state, Draws([seed]))
    assert run_step(step, visitor, [(1, banners, seed, "")]) == [expected]


@given(banner_sets, st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_rotation_step_permutation_matches_the_rules(banners, seed):
    """A minted vid's first view is rebuilt from its seed: the script's cycle must start where Python's does."""
    client, script = redis_lib.Redis.from_url(REDIS_URL), None
    key = f"bstest:perm:{seed}:{len(banners)}"
    try:
        [shown] = run_step((client, client.register_script(ROTATION_STEP)), key, [(1, banners, 0, seed)])
    finally:
        client.delete(key)
    cycle = permutation(banners, seed)
    assert shown == (cycle[1] if len(cycle) > 1 else cycle[0])  # the minted view showed cycle[0]; this is the next


def test_rotation_step_mix_is_murmur3s_finaliser():
    # MurmurHash3_x86_32 of the empty input with seed 1 is fmix32(1): 0x514E28B7 (the published test vector).
    assert mix(1) == 0x514E28B7 and mix(0) == 0


def test_rotation_step_cycle_order_is_the_same_in_every_process_and_release():
    # A visitor's rotation is a seed; another web replica, or the next release, must read the same cycle from it.
    banners = {3, 1, 4, 15, 9, 2, 6, 10**12}
    assert permutation(banners, 2024) == permutation(set(banners), 2024)
    assert permutation(banners, 2024) == [1, 10**12, 4, 2, 3, 15, 9, 6]
    assert set_key([3, 1, 2]) == set_key({1, 2, 3}) == 294211051  # crc32 of "1,2,3"


def test_rotation_step_keeps_the_64_most_recently_seen_campaigns(step, redis_prefix):
    key, rng = redis_prefix + "visitor:many", random.Random(4)
    for campaign in range(1, 66):
        run_step(step, key, [(campaign, [1, 2, 3], rng.getrandbits(32), "")])
        if campaign == 64:
            assert step[0].hlen(key) == 64 + 1  # 64 campaigns and the tick: none dropped
    run_step(step, key, [(2, [1, 2, 3], 5, "")])  # seen again: now the most recent
    run_step(step, key, [(66, [1, 2, 3], 5, "")])
    fields = {f.decode() for f in step[0].hkeys(key)} - {"#"}
    assert len(fields) == 64 and "1" not in fields and "3" not in fields and "2" in fields and "66" in fields
    assert 0 < step[0].ttl(key) <= LIFETIME


def test_rotation_step_a_visitor_of_10000_campaigns_keeps_64_and_a_held_one_goes_on_without_a_repeat(step, redis_prefix):
    key, rng = redis_prefix + "visitor:wide", random.Random(5)
    slots = [(c, [c, c + 1, c + 2], rng.getrandbits(32), "") for c in range(1, 10_001)]
    shown = {}
    for start in range(0, len(slots), 50):
        batch = slots[start:start + 50]
        shown.update(zip((c for c, *_ in batch), run_step(step, key, batch)))
    assert step[0].hlen(key) == 64 + 1 and step[0].memory_usage(key) < 4096
    held = [shown[9_990]] + [run_step(step, key, [(9_990, [9_990, 9_991, 9_992], rng.getrandbits(32), "")])[0]
                             for _ in range(8)]
    assert all(a != b for a, b in zip(held, held[1:]))
    assert sorted(held[:3]) == sorted(held[3:6]) == [9_990, 9_991, 9_992]  # cycles go on from the batch's view


def test_rotation_step_two_slots_of_one_campaign_are_consecutive_steps(step, redis_prefix):
    key = redis_prefix + "visitor:twice"
    first, second = run_step(step, key, [(1, [1, 2], 9, ""), (1, [1, 2], 10, "")])
    assert {first, second} == {1, 2}


def test_rotation_step_upgrades_a_state_kept_by_earlier_releases_without_repeating_its_last_banner(step, redis_prefix):
    """Before the step ran in Redis a visitor's rotations were a msgpack map {campaign: [set_key, last, seed,
    position]}: the first view after an upgrade must read the last banner from it, not fail or repeat it."""
    for seed in range(30):
        key = f"{redis_prefix}visitor:old{seed}"
        step[0].set(key, msgspec.msgpack.encode({"1": [set_key([1, 2]), 2, 77, 1], "9": [5, 2**40, 1, 1]}))
        assert run_step(step, key, [(1, [1, 2], seed, "")]) == [1]
        assert step[0].type(key) == b"hash" and stored_state(step[0].hget(key, "9"))[1] == 2**40
    for garbage in (b"\xc1not msgpack", b"\x93\x01\x02\x03"):
        key = redis_prefix + "visitor:garbage"
        step[0].set(key, garbage)
        assert run_step(step, key, [(1, [1, 2], 3, "")])[0] in (1, 2)
        assert step[0].type(key) == b"hash"


def test_rotation_step_runs_the_event_commands_with_the_banner_it_chose(step, redis_prefix):
    key, stream, counter = redis_prefix + "visitor:ev", redis_prefix + "events", redis_prefix + "counter"
    commands = [("XADD", stream, "*", "e", "impression|c=1|b=\1|end"), ("HINCRBY", counter, "1", 1),
                ("EXPIRE", counter, 60)]
    [banner] = run_step(step, key, [(1, [5, 6, 7], 1, "")], commands)
    [(_, fields)] = step[0].xrange(stream)
    assert fields == {b"e": f"impression|c=1|b={banner}|end".encode()}
    assert step[0].hget(counter, "1") == b"1" and 0 < step[0].ttl(counter) <= 60


def test_rotation_step_goes_on_past_a_damaged_tick_or_a_key_of_another_type(step, redis_prefix):
    key = redis_prefix + "visitor:damaged"
    step[0].hset(key, mapping={"#": "not a number", "1": b"short"})
    assert run_step(step, key, [(1, [1, 2], 3, "")])[0] in (1, 2)
    assert step[0].hget(key, "#") == b"1"
    step[0].delete(key)
    step[0].rpush(key, "a list")
    assert run_step(step, key, [(1, [1, 2], 3, "")])[0] in (1, 2) and step[0].type(key) == b"hash"
