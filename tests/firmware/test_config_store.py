"""Config store: two copies with seq + CRC; a write torn at any byte keeps the last good one."""

from __future__ import annotations

from array import array

import pytest
from fwsim import FakeFlash, PowerCut
from hypothesis import given
from hypothesis import strategies as st

from rackfw.config import SECTOR, ConfigStore

SIG = 0x1234
ADDRS = array("H", [100, 101, 105, 200, 201])


def hr_with(values: dict[int, int]) -> array:
    hr = array("H", bytes(2 * 256))
    for a, v in values.items():
        hr[a] = v
    return hr


def load(flash: FakeFlash, sig: int = SIG) -> tuple[ConfigStore, dict[int, int]]:
    store = ConfigStore(flash, 0, sig, len(ADDRS))
    got: dict[int, int] = {}
    store.load(lambda a, v: got.__setitem__(a, v))
    return store, got


def test_empty_flash_loads_nothing(flash):
    store, got = load(flash)
    assert got == {} and store.seq == 0 and store.slot == -1


def test_roundtrip_and_slots_alternate(flash):
    store, _ = load(flash)
    a = dict(zip(ADDRS, [1, 2, 3, 4, 5], strict=True))
    b = dict(zip(ADDRS, [10, 20, 30, 40, 50], strict=True))
    assert store.save(hr_with(a), ADDRS, len(ADDRS)) == 1
    assert store.slot == 0
    assert store.save(hr_with(b), ADDRS, len(ADDRS)) == 2
    assert store.slot == 1
    store2, got = load(flash)
    assert got == b and store2.seq == 2 and store2.slot == 1
    # the next save overwrites the older copy (slot 0), never the newest
    assert store2.save(hr_with(a), ADDRS, len(ADDRS)) == 3
    assert store2.slot == 0
    assert load(flash)[1] == a


def test_corrupt_newest_falls_back_to_older(flash):
    store, _ = load(flash)
    store.save(hr_with({100: 7}), ADDRS, len(ADDRS))
    store.save(hr_with({100: 8}), ADDRS, len(ADDRS))  # slot 1
    flash.mem[SECTOR + 14] ^= 0x01  # flip a bit in a value of the newest copy
    store2, got = load(flash)
    assert got[100] == 7 and store2.seq == 1
    # and saving again replaces the corrupt slot, not the good one
    store2.save(hr_with({100: 9}), ADDRS, len(ADDRS))
    assert store2.slot == 1 and load(flash)[1][100] == 9


def test_other_map_signature_is_not_restored(flash):
    store, _ = load(flash)
    store.save(hr_with({100: 7}), ADDRS, len(ADDRS))
    store2, got = load(flash, sig=SIG + 1)
    assert got == {}
    assert store2.seq == 1  # but sequencing continues, so the next save is newest
    assert store2.save(hr_with({100: 9}), ADDRS, len(ADDRS)) == 2


def _save_cost(n_pairs: int) -> int:
    """Bytes a save erases + programs: the sector, the body, then the magic."""
    return SECTOR + (12 + 4 * n_pairs + 2) + 4


@pytest.mark.parametrize("history", [1, 2])
def test_torn_write_at_every_byte_keeps_last_good(history):
    """Cut power after k erased/programmed bytes for every k: the old config survives."""
    base = FakeFlash(2 * SECTOR)
    store, _ = load(base)
    good = {100: 1, 101: 2, 105: 3, 200: 4, 201: 5}
    for i in range(history):  # history=2: the target slot holds an older valid copy
        store.save(hr_with({a: v + i for a, v in good.items()}), ADDRS, len(ADDRS))
    good = {a: v + history - 1 for a, v in good.items()}
    new = {100: 900, 101: 901, 105: 902, 200: 903, 201: 904}
    total = _save_cost(len(ADDRS))
    snapshot = bytes(base.mem)
    for k in range(total + 1):
        flash = FakeFlash(2 * SECTOR)
        flash.mem[:] = snapshot
        s, _ = load(flash)
        flash.cut_after = k
        try:
            s.save(hr_with(new), ADDRS, len(ADDRS))
            completed = True
        except PowerCut:
            completed = False
        flash.cut_after = None
        after, got = load(flash)
        if completed:
            assert k == total and got == new and after.seq == history + 1
        else:
            assert got == good, f"cut at byte {k} lost the last good config"
            assert after.seq == history
            # the board keeps working: the next save lands and wins
            after.save(hr_with(new), ADDRS, len(ADDRS))
            assert load(flash)[1] == new


@given(st.lists(st.integers(0, 0xFFFF), min_size=len(ADDRS), max_size=len(ADDRS)),
       st.integers(1, 20))
def test_roundtrip_property(values, saves):
    flash = FakeFlash(2 * SECTOR)
    store, _ = load(flash)
    want = dict(zip(ADDRS, values, strict=True))
    for _ in range(saves):
        store.save(hr_with(want), ADDRS, len(ADDRS))
    store2, got = load(flash)
    assert got == want and store2.seq == saves
