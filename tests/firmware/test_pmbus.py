"""PMBus driver and PSU sensors HAL against fake PSUs on a fake I2C bus.

The fake (``FAKE_SRC``) is MicroPython-compatible source, run both here under CPython
and inside the MicroPython WebAssembly VM, where the per-tick path
(``PsuBus.service`` + every ``sensors.read``/``outputs.write`` the app does) runs under
``micropython.heap_lock()``.  LINEAR11/LINEAR16 words are produced by an
independent reference encoder (``Fraction`` arithmetic) from hypothesis-generated
values; decoding must land within the format's resolution.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from app_fakes import Clock, Events, default_bank
from hypothesis import given
from hypothesis import strategies as st

from rackfw import io_power as io
from rackfw import pmbus as pm
from rackfw import pmbus_sensors as ps
from rackfw import regs_power_shelf as R
from rackfw.power.app import SETTLE_TICKS, PowerShelfApp

FAKE_SRC = r'''
def pec8(crc, data, n):
    for i in range(n):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 7) & 255 if crc & 128 else (crc << 1) & 255
    return crc


class FakePsu:
    """One PMBus PSU: word registers, VOUT_MODE, MFR strings, fault switches."""

    def __init__(self, addr):
        self.addr = addr
        self.words = {0x79: 0, 0x8B: 0, 0x8C: 0, 0x88: 0, 0x89: 0, 0x8D: 0, 0x8E: 0,
                      0x90: 0, 0x96: 0, 0x97: 0}
        self.vout_mode = 0x17          # LINEAR16, exponent -9
        self.blocks = {0x9E: b"SN-0000", 0x9A: b"CRPS-3000"}
        self.writes = {0x01: -1, 0x21: -1, 0x3B: -1}
        self.nwrites = 0
        self.bad_pec_writes = 0
        self.nack = False
        self.corrupt = False           # flip the PEC byte of every read
        self.hdr = bytearray(3)


class FakeI2C:
    """machine.I2C memory API over FakePsu objects; a missing/nacking device raises OSError."""

    def __init__(self, pec=True):
        self.devs = {}
        self.pec = pec
        self.reads = 0
        self.pec_on = pec

    def _dev(self, addr):
        d = self.devs.get(addr)
        if d is None or d.nack:
            raise OSError(5)           # like machine.I2C: a fresh EIO (heap-locked: emergency object)
        return d

    def _crc(self, d, cmd, read, buf, n):
        h = d.hdr
        h[0] = (d.addr << 1) & 255
        h[1] = cmd
        h[2] = h[0] | 1
        return pec8(pec8(0, h, 3 if read else 2), buf, n)

    def readfrom_mem_into(self, addr, cmd, buf):
        d = self._dev(addr)
        self.reads += 1
        if cmd == 0x20:
            buf[0] = d.vout_mode
            n = 1
        elif cmd == 0x9E or cmd == 0x9A:
            s = d.blocks[cmd]
            buf[0] = len(s)
            for i in range(len(s)):
                buf[1 + i] = s[i]
            n = 1 + len(s)
        else:
            w = d.words[cmd]
            buf[0] = w & 255
            buf[1] = w >> 8
            n = 2
        if self.pec_on and n < len(buf):
            p = self._crc(d, cmd, True, buf, n)
            buf[n] = p ^ 0x5A if d.corrupt else p
            n += 1
        for i in range(n, len(buf)):
            buf[i] = 255

    def writeto_mem(self, addr, cmd, buf):
        d = self._dev(addr)
        n = len(buf) - (1 if self.pec_on else 0)
        if self.pec_on and self._crc(d, cmd, False, buf, n) != buf[n]:
            d.bad_pec_writes += 1
            return
        d.nwrites += 1
        d.writes[cmd] = buf[0] if n == 1 else buf[0] | (buf[1] << 8)
'''

_ns: dict = {}
exec(FAKE_SRC, _ns)  # noqa: S102 - the fake must be the same source in CPython and the VM
FakePsu = _ns["FakePsu"]
FakeI2C = _ns["FakeI2C"]


# ---------------------------------------------------------------- reference codec
def ref_linear11(value: Fraction) -> tuple[int, int]:
    """Reference LINEAR11 encoder: (word, exponent) with the finest exponent that fits."""
    for n in range(-16, 16):
        m = round(value / Fraction(2) ** n)
        if -1024 <= m <= 1023:
            return ((n & 0x1F) << 11) | (m & 0x7FF), n
    raise ValueError(value)


def ref_value11(word: int) -> Fraction:
    y = word & 0x7FF
    y = y - 0x800 if y & 0x400 else y
    n = (word >> 11) & 0x1F
    n = n - 0x20 if n & 0x10 else n
    return Fraction(y) * Fraction(2) ** n


def in_sat(x: Fraction) -> bool:
    return pm.SAT_LO <= x <= pm.SAT_HI


@given(st.integers(-1024, 1023), st.integers(-16, 15), st.sampled_from([1, 10, 100]))
def test_linear11_decodes_every_word_to_nearest_scaled_int(y, n, mul):
    word = ((n & 0x1F) << 11) | (y & 0x7FF)
    exact = Fraction(y) * Fraction(2) ** n * mul
    got = pm.linear11(word, mul)
    if in_sat(exact):
        assert abs(got - exact) <= Fraction(1, 2)
    else:
        assert got == (pm.SAT_HI if exact > 0 else pm.SAT_LO)


@given(st.fractions(min_value=-2000, max_value=2000, max_denominator=1000),
       st.sampled_from([1, 10, 100]))
def test_linear11_reference_encoded_values_decode_within_resolution(value, mul):
    word, n = ref_linear11(value)
    got = pm.linear11(word, mul)
    if not in_sat(ref_value11(word) * mul):
        assert got in (pm.SAT_HI, pm.SAT_LO)
        return
    # format resolution (half an LSB) plus rounding to the io unit
    assert abs(Fraction(got, mul) - value) <= Fraction(2) ** n / 2 + Fraction(1, 2 * mul)


@given(st.integers(0, 65535), st.integers(-16, 15), st.sampled_from([1, 10, 100]))
def test_linear16_decodes_with_vout_mode_exponent(raw, exp, mul):
    mode = exp & 0x1F                      # mode bits 7..5 = 000: linear
    assert pm.vout_exponent(mode) == exp
    exact = Fraction(raw) * Fraction(2) ** exp * mul
    got = pm.linear16(raw, exp, mul)
    if in_sat(exact):
        assert abs(got - exact) <= Fraction(1, 2)
    else:
        assert got == pm.SAT_HI


def test_vout_mode_other_than_linear_is_rejected():
    assert pm.vout_exponent(0x40 | 0x17) is None   # VID mode
    assert pm.vout_exponent(0x20) is None          # direct mode


@given(st.integers(0, 6000), st.integers(-13, -8))
def test_linear16_encode_round_trips_a_setpoint(centivolts, exp):
    raw = pm.linear16_encode(centivolts, 100, exp)
    if Fraction(centivolts, 100) / Fraction(2) ** exp > 65535:
        assert raw == 0xFFFF
        return
    assert abs(Fraction(raw) * Fraction(2) ** exp - Fraction(centivolts, 100)) <= Fraction(2) ** exp / 2
    assert pm.linear16(raw, exp, 100) == centivolts or abs(pm.linear16(raw, exp, 100) - centivolts) <= 1


@given(st.integers(-30000, 30000), st.sampled_from([1, 10, 100]))
def test_linear11_encode_round_trips(value, div):
    word = pm.linear11_encode(value, div)
    exact = Fraction(value, div)
    got = ref_value11(word)
    _, n_ref = ref_linear11(exact)
    assert abs(got - exact) <= Fraction(2) ** max(n_ref, -12) / 2 + Fraction(2) ** -12


def test_pec_is_smbus_crc8():
    assert pm.crc8(0, b"123456789", 9) == 0xF4        # CRC-8/SMBUS check value
    assert pm.crc8(0, b"", 0) == 0
    hdr = bytes([0x58 << 1, 0x79, (0x58 << 1) | 1, 0x34, 0x12])
    assert pm.crc8(pm.crc8(0, hdr, 3), hdr[3:], 2) == pm.crc8(0, hdr, 5)


# ---------------------------------------------------------------- STATUS_WORD
@pytest.mark.parametrize(("bits", "flags"), [
    (0, R.F_PSU_STATUS_ON | R.F_PSU_STATUS_POWER_GOOD),
    (pm.SW_OFF, 0),
    (pm.SW_OFF | pm.SW_POWER_GOOD_N, 0),
    (pm.SW_POWER_GOOD_N, R.F_PSU_STATUS_ON),
    (pm.SW_VOUT_OV | pm.SW_OFF, R.F_PSU_STATUS_OV),
    (pm.SW_IOUT_OC | pm.SW_OFF, R.F_PSU_STATUS_OC),
    (pm.SW_TEMPERATURE, R.F_PSU_STATUS_ON | R.F_PSU_STATUS_POWER_GOOD | R.F_PSU_STATUS_OT_WARNING),
    (pm.SW_FANS, R.F_PSU_STATUS_ON | R.F_PSU_STATUS_POWER_GOOD | R.F_PSU_STATUS_FAN_FAIL),
    (pm.SW_INPUT | pm.SW_OFF, R.F_PSU_STATUS_AC_FAIL),
    (pm.SW_VIN_UV | pm.SW_OFF | pm.SW_POWER_GOOD_N, R.F_PSU_STATUS_AC_FAIL),
    (pm.SW_IOUT_POUT, R.F_PSU_STATUS_ON | R.F_PSU_STATUS_POWER_GOOD | R.F_PSU_STATUS_CURRENT_LIMIT),
    (pm.SW_CML, R.F_PSU_STATUS_ON | R.F_PSU_STATUS_POWER_GOOD | R.F_PSU_STATUS_COMMS),
    (pm.SW_MFR | pm.SW_OTHER | pm.SW_UNKNOWN | pm.SW_BUSY | pm.SW_NONE_OF_ABOVE,
     R.F_PSU_STATUS_ON | R.F_PSU_STATUS_POWER_GOOD),
])
def test_status_word_maps_to_psu_status_flags(bits, flags):
    assert pm.status_flags(bits) == flags
    assert pm.ac_ok(bits) == (0 if bits & (pm.SW_INPUT | pm.SW_VIN_UV) else 1)


def test_status_flag_literals_match_the_register_map():
    for name in ("ON", "POWER_GOOD", "OV", "OC", "FAN_FAIL", "AC_FAIL", "COMMS",
                 "OT_WARNING", "CURRENT_LIMIT"):
        assert getattr(pm, "PS_" + name) == getattr(R, "F_PSU_STATUS_" + name)


# ---------------------------------------------------------------- driver over the fake bus
def lin11(v: float) -> int:
    return ref_linear11(Fraction(v).limit_denominator(1000))[0]


def psu(addr: int, vout=54.0, iout=20.0, vin=230.0, iin=5.0, t1=30.0, t2=60.0, rpm=9000,
        pin=1150, pout=1080, status=0) -> object:
    d = FakePsu(addr)
    d.words.update({0x8B: round(vout * 512), 0x8C: lin11(iout), 0x88: lin11(vin), 0x89: lin11(iin),
                    0x8D: lin11(t1), 0x8E: lin11(t2), 0x90: lin11(rpm), 0x97: lin11(pin),
                    0x96: lin11(pout), 0x79: status})
    return d


def shelf(slots=(0, 1, 2, 3, 4, 5), pec=True, present=None):
    i2c = FakeI2C(pec)
    for i in slots:
        i2c.devs[0x58 + i] = psu(0x58 + i, vout=54.0 + i / 100, iout=10.0 + i)
    bus = ps.PsuBus(i2c, pec=pec, present=present)
    bus.probe()
    return i2c, bus, ps.PsuSensors(bus), ps.PsuOutputs(bus)


def ch(slot, member):
    return io.psu_s(slot, member)


@pytest.mark.parametrize("pec", [True, False])
def test_probe_finds_psus_and_reads_scaled_telemetry(pec):
    i2c, bus, sn, _ = shelf(slots=(0, 2, 5), pec=pec)
    assert [sn.read(ch(i, io.S_PSU_PRESENT)) for i in range(6)] == [1, 0, 1, 0, 0, 1]
    assert sn.read(ch(2, io.S_PSU_OUT_V)) == 5402
    assert sn.read(ch(5, io.S_PSU_OUT_I)) == 1500
    assert sn.read(ch(0, io.S_PSU_IN_V)) == 2300
    assert sn.read(ch(0, io.S_PSU_IN_I)) == 500
    assert sn.read(ch(0, io.S_PSU_T_INLET)) == 300
    assert sn.read(ch(0, io.S_PSU_T_HOT)) == 600
    assert abs(sn.read(ch(0, io.S_PSU_FAN_RPM)) - 9000) <= 8   # LINEAR11 step at 9000 rpm: 16
    assert sn.read(ch(0, io.S_PSU_AC_OK)) == 1
    assert abs(bus.pin_w[0] - 1150) <= 1 and abs(bus.pout_w[0] - 1080) <= 1
    assert sn.read(ch(1, io.S_PSU_OUT_V)) == io.SENSOR_OPEN       # empty slot
    assert bus.serial[0] == "SN-0000" and bus.model[5] == "CRPS-3000" and bus.serial[1] == ""
    assert bus.pm.pec_errors == 0


def test_vout_uses_each_psus_own_vout_mode():
    i2c = FakeI2C()
    d = psu(0x58)
    d.vout_mode = 0x16            # exponent -10
    d.words[0x8B] = round(53.5 * 1024)
    i2c.devs[0x58] = d
    bus = ps.PsuBus(i2c, count=1)
    bus.probe()
    assert bus.value(0, io.S_PSU_OUT_V) == 5350


def test_service_does_at_most_n_transfers_and_round_robins_all_slots():
    i2c, bus, sn, _ = shelf()
    i2c.reads = 0
    bus.service(6)
    assert i2c.reads == 6
    # one full sweep of every slot = SEQ_LEN x 6 transfers refreshes every value
    i2c.devs[0x5B].words[0x8E] = lin11(77.0)
    bus.service(ps.SEQ_LEN * 6)
    assert sn.read(ch(3, io.S_PSU_T_HOT)) == 770


def test_pec_error_keeps_old_value_then_reads_open_then_recovers():
    i2c, bus, sn, _ = shelf()
    d = i2c.devs[0x58]
    d.words[0x8B] = round(40.0 * 512)
    d.corrupt = True
    bus.service(6 * (ps.COMMS_AFTER - 1))         # fewer than COMMS_AFTER failures for slot 0
    assert bus.pm.pec_errors >= 1
    assert sn.read(ch(0, io.S_PSU_OUT_V)) == 5400  # corrupted data never lands
    bus.service(6 * 20)
    assert sn.read(ch(0, io.S_PSU_OUT_V)) == io.SENSOR_OPEN
    assert sn.read(ch(0, io.S_PSU_PRESENT)) == 1   # a comms fault, not a removal
    d.corrupt = False
    bus.service(6 * ps.SEQ_LEN)
    assert sn.read(ch(0, io.S_PSU_OUT_V)) == 4000


def test_nacking_address_is_absent_and_a_silent_psu_goes_comms_then_absent():
    i2c, bus, sn, _ = shelf(slots=(0, 1))
    assert sn.read(ch(3, io.S_PSU_PRESENT)) == 0
    i2c.devs[0x59].nack = True
    bus.service(6 * ps.COMMS_AFTER)
    assert sn.read(ch(1, io.S_PSU_PRESENT)) == 1
    assert sn.read(ch(1, io.S_PSU_OUT_V)) == io.SENSOR_OPEN
    assert sn.read(ch(0, io.S_PSU_OUT_V)) == 5400   # the others keep working
    bus.service(6 * ps.ABSENT_AFTER)
    assert sn.read(ch(1, io.S_PSU_PRESENT)) == 0
    # reinserted: a full sweep (plus VOUT_MODE and the probe read) before it is present again
    i2c.devs[0x59].nack = False
    bus.service(6 * 2)
    assert sn.read(ch(1, io.S_PSU_PRESENT)) == 0
    bus.service(6 * (ps.SEQ_LEN + 1))
    assert sn.read(ch(1, io.S_PSU_PRESENT)) == 1
    assert sn.read(ch(1, io.S_PSU_OUT_V)) == 5401


def test_with_presence_pins_a_nacking_psu_is_a_comms_fault_forever():
    pins = [1, 1, 0, 0, 0, 0]
    i2c, bus, sn, _ = shelf(slots=(0, 1), present=lambda i: pins[i])
    i2c.devs[0x58].nack = True
    bus.service(6 * (ps.ABSENT_AFTER + 5))
    assert sn.read(ch(0, io.S_PSU_PRESENT)) == 1
    assert sn.read(ch(0, io.S_PSU_OUT_V)) == io.SENSOR_OPEN
    pins[1] = 0
    i2c.reads = 0
    bus.service(6)
    assert sn.read(ch(1, io.S_PSU_PRESENT)) == 0
    assert i2c.reads == 0         # no read reaches the pulled slot; the nacking one never completes


def test_with_presence_pins_a_new_psu_is_present_only_once_read():
    pins = [1, 0, 0, 0, 0, 0]
    i2c, bus, sn, _ = shelf(slots=(0,), present=lambda i: pins[i])
    i2c.devs[0x59] = psu(0x59, vout=53.0)
    pins[1] = 1
    seen = []
    for _ in range(ps.SEQ_LEN + 3):
        bus.service(6)
        seen.append((sn.read(ch(1, io.S_PSU_PRESENT)), sn.read(ch(1, io.S_PSU_OUT_V))))
    assert (0, io.SENSOR_OPEN) in seen and seen[-1] == (1, 5300)
    assert (1, io.SENSOR_OPEN) not in seen          # no comms flicker on insertion
    pins[2] = 1                                     # seated but silent: comms
    bus.service(6 * ps.COMMS_AFTER)
    assert (sn.read(ch(2, io.S_PSU_PRESENT)), sn.read(ch(2, io.S_PSU_OUT_V))) == (1, io.SENSOR_OPEN)


def test_status_word_drives_ac_ok():
    i2c, bus, sn, _ = shelf()
    i2c.devs[0x5A].words[0x79] = pm.SW_INPUT | pm.SW_OFF
    bus.service(6 * ps.SEQ_LEN)
    assert sn.read(ch(2, io.S_PSU_AC_OK)) == 0
    assert pm.status_flags(bus.status[2]) & R.F_PSU_STATUS_AC_FAIL


def test_outputs_send_commands_once_on_change():
    i2c, bus, _, out = shelf(slots=(0,))
    d = i2c.devs[0x58]
    out.write(io.psu_o(0, io.O_PSU_VSET), 5350)
    out.write(io.psu_o(0, io.O_PSU_ON), 1)
    out.write(io.psu_o(0, io.O_PSU_FAN), 45)
    out.write(io.psu_o(0, io.O_PSU_ILIM), 5000)
    bus.service(6 * 3)
    assert d.writes[0x01] == pm.OP_ON
    assert abs(d.writes[0x21] / 512 - 53.5) <= 1 / 1024
    assert ref_value11(d.writes[0x3B]) == 45
    assert out.read(io.psu_o(0, io.O_PSU_ILIM)) == 5000
    sent = d.nwrites
    for _ in range(5):                              # the app rewrites every tick
        out.write(io.psu_o(0, io.O_PSU_VSET), 5350)
        out.write(io.psu_o(0, io.O_PSU_ON), 1)
        bus.service(6)
    assert d.nwrites == sent
    out.write(io.psu_o(0, io.O_PSU_ON), 0)
    bus.service(1)                                  # jumps the polling queue
    assert d.writes[0x01] == pm.OP_OFF
    assert d.bad_pec_writes == 0


def test_commands_are_resent_when_a_psu_reappears():
    i2c, bus, _, out = shelf(slots=(0,))
    d = i2c.devs[0x58]
    out.write(io.psu_o(0, io.O_PSU_ON), 1)
    bus.service(6 * 2)
    d.nack = True
    bus.service(6 * (ps.ABSENT_AFTER + 1))
    d.nack = False
    d.writes[0x01] = -1
    bus.service(6 * (ps.SEQ_LEN + 4))
    assert d.writes[0x01] == pm.OP_ON


def test_non_psu_channels_go_to_the_board_objects():
    class Other:
        def __init__(self):
            self.w = {}

        def read(self, ch):
            return 1234 if ch == io.S_BUS_V else 0

        def write(self, ch, v):
            self.w[ch] = v

    i2c = FakeI2C()
    bus = ps.PsuBus(i2c)
    o = Other()
    assert ps.PsuSensors(bus, o).read(io.S_BUS_V) == 1234
    ps.PsuOutputs(bus, o).write(io.O_ALARM, 1)
    assert o.w == {io.O_ALARM: 1}


def test_power_shelf_app_runs_on_the_pmbus_hal():
    i2c, bus, sn, out = shelf(slots=(0, 1, 2, 3))
    bank = default_bank(R)
    clk = Clock(1000)
    app = PowerShelfApp(bank, sn, out, Events(), clk)
    app.start()
    for _ in range(SETTLE_TICKS + 3):
        clk.ms += 100
        bus.service(40)
        app.tick(clk.ms)
    assert bank.get_ir(R.PSUS_PRESENT) == 4
    base = R.PSU_BASE + 2 * R.PSU_STRIDE
    assert bank.get_ir(base + R.PSU_OUT_V) == 5402
    assert bank.get_ir(base + R.PSU_OUT_I) == 1200
    assert bank.get_ir(base + R.PSU_STATUS) & R.F_PSU_STATUS_PRESENT
    assert not bank.get_ir(base + R.PSU_STATUS) & R.F_PSU_STATUS_COMMS
    assert i2c.devs[0x5A].writes[0x01] == pm.OP_ON    # the app's on_cmd default reached the PSU
    i2c.devs[0x5A].nack = True
    for _ in range(3):
        clk.ms += 100
        bus.service(40)
        app.tick(clk.ms)
    assert bank.get_ir(base + R.PSU_STATUS) & R.F_PSU_STATUS_COMMS


# ---------------------------------------------------------------- in the MicroPython VM
VM_CODE = FAKE_SRC + r'''
import micropython
from rackfw import io_power as io
from rackfw import pmbus as pm
from rackfw import pmbus_sensors as ps

i2c = FakeI2C(True)
for a in range(0x58, 0x5E):
    d = FakePsu(a)
    d.words[0x8B] = 27648
    d.words[0x8C] = 0xD280       # LINEAR11 10.0 A (N = -6, Y = 640)
    i2c.devs[a] = d
bus = ps.PsuBus(i2c)
bus.probe()
sn = ps.PsuSensors(bus)
out = ps.PsuOutputs(bus)
chans = list(range(io.S_PSU_BASE, io.S_PSU_BASE + 60))
ochans = list(range(0, 24))

def tick(k):
    bus.service(10)
    acc = 0
    for c in chans:
        acc += sn.read(c)
    for c in ochans:
        out.write(c, 5300 + (k & 1) if c % 4 == 1 else 1)
    return acc

for k in range(20):
    tick(k)
i2c.devs[0x5A].corrupt = True
i2c.devs[0x5B].nack = True
err = None
micropython.heap_lock()
try:
    for k in range(200):
        tick(k)
except Exception as e:
    err = e
micropython.heap_unlock()
ctl = None
micropython.heap_lock()
try:
    ctl = [k, k]                 # control: the lock really traps allocation
except MemoryError:
    ctl = "trapped"
micropython.heap_unlock()
print("RESULT", ctl, repr(err), bus.pm.pec_errors > 0, bus.pm.nacks > 0,
      sn.read(io.S_PSU_BASE + io.S_PSU_OUT_V), sn.read(io.S_PSU_BASE + 2 * 10 + io.S_PSU_OUT_V),
      i2c.devs[0x58].nwrites)
'''


@pytest.mark.vm
@pytest.mark.slow
def test_per_tick_path_runs_under_heap_lock_in_the_vm():
    mcu_mod = pytest.importorskip("rackhil.mcu")
    try:
        proc = mcu_mod.McuProcess()
    except mcu_mod.McuUnavailable as exc:
        pytest.skip(str(exc))
    with proc:
        node = mcu_mod.VmNode.emulated(proc, "pmbus", {"board": "power_shelf", "unit_id": 1})
        printed = node.exec(VM_CODE)
    line = next(ln for ln in printed.splitlines() if ln.startswith("RESULT "))
    ctl, err, pec_seen, nack_seen, v0, v2, nwrites = line.split()[1:]
    assert ctl == "trapped"
    assert err == "None", printed
    assert pec_seen == "True" and nack_seen == "True"
    assert int(v0) == 5400                   # 27648 / 512 V
    assert int(v2) == io.SENSOR_OPEN         # PEC-corrupted PSU reads open
    assert int(nwrites) > 100                # setpoint toggled every tick: writes went out locked


# ---------------------------------------------------------------- RP2040 board file wiring
def test_pico_shelf_wires_i2c0_and_publishes_psu_identity(monkeypatch):
    """The board file's power-shelf variant with a stand-in ``machine``: I2C0 on GP4/GP5
    at 100 kHz, probe at build time, PSU channels from PMBus, identity into the bank."""
    import importlib.util
    import sys
    import types
    from pathlib import Path

    from rackfw.regbank import RegBank

    made = {}

    class Pin:
        IN = OUT = PULL_UP = 0

        def __init__(self, n, *a, **k):
            self.n = n

        def value(self, *a):
            return 1

    class ADC:
        def __init__(self, n):
            pass

        def read_u16(self):
            return 14000

    def i2c(bus_id, scl, sda, freq):
        made.update(bus=bus_id, scl=scl.n, sda=sda.n, freq=freq)
        bus = FakeI2C()
        for a in (0x58, 0x5C):
            bus.devs[a] = psu(a)
        bus.devs[0x5C].blocks[0x9E] = b"SN-5"
        made["i2c"] = bus
        return bus

    machine = types.ModuleType("machine")
    machine.Pin, machine.ADC, machine.I2C = Pin, ADC, i2c  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "machine", machine)
    path = Path(__file__).resolve().parents[2] / "firmware/boards/rp2040_pico/main.py"
    spec = importlib.util.spec_from_file_location("pico_main_pmbus", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    app, sensors, outputs = mod._shelf()
    assert app is PowerShelfApp
    assert made["bus"] == 0 and (made["sda"], made["scl"], made["freq"]) == (4, 5, 100_000)
    assert [sensors.read(ch(i, io.S_PSU_PRESENT)) for i in range(6)] == [1, 0, 0, 0, 1, 0]
    assert sensors.read(ch(4, io.S_PSU_OUT_V)) == 5400
    assert sensors.read(io.S_BUS_V) == io.SENSOR_OPEN       # not wired on a Pico
    outputs.write(io.psu_o(0, io.O_PSU_ON), 1)
    mod._psus[0].service(1)
    assert made["i2c"].devs[0x58].writes[0x01] == pm.OP_ON

    board = types.SimpleNamespace(bank=RegBank(R.IR_SIZE, R.HR_SIZE, R.COIL_SIZE, R.DI_SIZE))
    mod._publish_psu_identity(board, mod._psus[0])
    base = R.PSU_BASE + 4 * R.PSU_STRIDE + R.PSU_SERIAL
    assert list(board.bank.ir[base:base + 3]) == [ord("S") << 8 | ord("N"), ord("-") << 8 | ord("5"), 0]


class _RecordingI2C:
    def __init__(self, nack=False):
        self.writes = []
        self.nack = nack

    def writeto_mem(self, addr, cmd, buf):
        if self.nack:
            raise OSError(5)
        self.writes.append((addr, cmd, bytes(buf)))


@pytest.mark.parametrize("pec", [True, False])
def test_send_byte_sends_the_command_code_and_only_the_pec(pec):
    i2c = _RecordingI2C()
    bus = pm.Pmbus(i2c, pec=pec)
    assert bus.send_byte(0x58, 0x03) is True  # CLEAR_FAULTS
    header = bytes(((0x58 << 1) & 255, 0x03))
    want = bytes((_ns["pec8"](0, header, 2),)) if pec else b""
    assert i2c.writes == [(0x58, 0x03, want)]
    assert bus.err == pm.ERR_NONE


def test_send_byte_to_a_missing_device_is_a_counted_nack():
    bus = pm.Pmbus(_RecordingI2C(nack=True), pec=True)
    assert bus.send_byte(0x59, 0x03) is False
    assert bus.err == pm.ERR_NACK and bus.nacks == 1
