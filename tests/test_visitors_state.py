"""The pure part of the visitor state: vids, their keys and the first cycle a minted vid was shown."""

from hypothesis import given, strategies as st

from rotation import next_banner, permutation
from visitor_state import cycle_seed, first_state, is_minted, is_vid, new_vid, state_key

SECRET = "test-secret"


def test_visitor_state_minted_vid_is_recognised_only_with_its_secret():
    vid = new_vid(SECRET)
    assert is_vid(vid) and len(vid) == 30
    assert is_minted(SECRET, vid)
    assert not is_minted("another-secret", vid)
    assert not is_minted(SECRET, vid[:-1] + ("A" if vid[-1] != "A" else "B"))
    assert not is_minted(SECRET, "x" * 30)


def test_visitor_state_vid_shape_is_checked():
    assert is_vid("a" * 22) and is_vid("A-_9" * 16)
    assert not is_vid("a" * 21) and not is_vid("a" * 65) and not is_vid("a" * 21 + "!")
    assert not is_vid(None) and not is_vid("a" * 22 + "\n")


def test_visitor_state_key_differs_by_site_vid_and_secret():
    vid = new_vid(SECRET)
    keys = {state_key(SECRET, "", vid), state_key(SECRET, "https://a.example", vid),
            state_key(SECRET, "https://b.example", vid), state_key("other", "", vid), state_key(SECRET, "", new_vid(SECRET))}
    assert len(keys) == 5
    assert vid not in "".join(keys)


@given(st.sets(st.integers(1, 10**12), min_size=1, max_size=12), st.integers(1, 10**6), st.randoms())
def test_visitor_state_rebuilt_first_view_continues_the_cycle_without_repeat(banners, campaign, rng):
    """A minted vid's first view showed permutation(seed)[0]; the rebuilt state goes on through that cycle."""
    vid = new_vid(SECRET)
    seed = cycle_seed(SECRET, "", vid, campaign)
    first = permutation(banners, seed)[0]
    state = first_state(banners, seed)
    shown = [first]
    for _ in range(2 * len(banners)):
        banner, state = next_banner(list(banners), state, rng)
        shown.append(banner)
    assert sorted(shown[:len(banners)]) == sorted(banners)
    assert len(banners) == 1 or all(a != b for a, b in zip(shown, shown[1:]))


def test_visitor_state_cycle_seed_is_stable_and_per_campaign():
    vid = new_vid(SECRET)
    assert cycle_seed(SECRET, "", vid, 1) == cycle_seed(SECRET, "", vid, 1)
    seeds = {cycle_seed(SECRET, "", vid, c) for c in range(50)}
    assert len(seeds) > 45 and all(0 <= s < 2**32 for s in seeds)


def test_visitor_state_a_vid_is_minted_for_the_site_it_was_made_on_only():
    vid = new_vid(SECRET, "https://a.example")
    assert is_minted(SECRET, vid, "https://a.example")
    assert not is_minted(SECRET, vid, "https://b.example")
    assert not is_minted(SECRET, vid)
