"""CduApp behaviour with fake sensors: modes, leak isolation, fail-safe, failover, alarms."""

from app_fakes import Clock, Events, Outputs, Sensors, default_bank

from rackfw import io_cdu as io
from rackfw import regs_cdu as R
from rackfw.cooling import modes as M
from rackfw.cooling.app import CduApp
from rackfw.events import EV_ALARM, EV_FAULT_RAISED, EV_MODE

NOMINAL = {
    io.S_T_SUPPLY: 3000,
    io.S_T_RETURN: 3500,
    io.S_T_FAC_IN: 2000,
    io.S_T_FAC_OUT: 2800,
    io.S_FLOW: 3000,
    io.S_P_SUPPLY: 2500,
    io.S_P_RETURN: 1500,
    io.S_LEVEL: 800,
    io.S_LEAK: 0,
}


class Cdu:
    """App + fakes; pumps turn when commanded unless listed in ``dead``."""

    def __init__(self, mode=None):
        self.s = Sensors()
        self.o = Outputs()
        self.ev = Events()
        self.clk = Clock(5000)
        self.bank = default_bank(R)
        if mode is not None:
            self.bank.hr[R.MODE_CMD] = mode
        self.s.v.update(NOMINAL)
        self.dead = set()
        self.amps = 400   # motor current of a turning pump, 0.01 A
        self.app = CduApp(self.bank, self.s, self.o, self.ev, self.clk)
        self.app.start()

    def step(self, n=1, dt=100):
        for _ in range(n):
            for i in range(2):
                cmd = self.o.read(io.O_PUMP_BASE + i)
                turning = cmd > 0 and i not in self.dead
                base = io.pump_s(i, 0)
                self.s.v[base + io.S_PUMP_RPM] = cmd * io.PUMP_RPM_MAX // 1000 if turning else 0
                self.s.v[base + io.S_PUMP_I] = self.amps if turning else 0
            self.s.v[io.S_VALVE_FB] = self.o.read(io.O_VALVE)
            self.clk.ms += dt
            self.app.tick(self.clk.ms)

    def write(self, addr, value):
        """What the board core does with a holding write: ask the app, then store."""
        c = self.app.on_write(addr, value)
        if c == 0:
            self.bank.set_hr(addr, value)
        return c

    def ir(self, addr):
        return self.bank.get_ir(addr)

    @property
    def speeds(self):
        return [self.o.read(io.O_PUMP_BASE), self.o.read(io.O_PUMP_BASE + 1)]

    @property
    def valve(self):
        return self.o.read(io.O_VALVE)


def test_boots_into_the_persisted_mode_and_runs_the_lead_pump():
    c = Cdu()
    c.step(20)
    assert c.ir(R.MODE) == M.AUTO  # mode_cmd default is auto
    assert c.speeds[0] > 0 and c.speeds[1] == 0
    assert c.ir(R.LEAD_PUMP) == 1
    assert c.ir(R.PUMP1_STATUS) & R.F_PUMP_STATUS_RUNNING
    assert c.ir(R.PUMP1_STATUS) & R.F_PUMP_STATUS_LEAD
    assert c.ir(R.T_SUPPLY) == 3000 and c.ir(R.DP) == 1000
    assert c.ir(R.HEAT_LOAD) == 1045  # 300 L/min x 5 K x 4.18 kJ/(L K) = 104.5 kW
    assert c.ir(R.ALARMS) == 0 and c.ir(R.SENSOR_FAULTS) == 0


def test_standby_stops_pumps_and_parks_the_valve():
    c = Cdu(mode=M.STANDBY)
    c.step(5)
    assert c.speeds == [0, 0]
    assert c.valve == c.bank.get_hr(R.VALVE_SAFE_POS)


def test_rack_leak_latches_an_alarm_without_isolating():
    c = Cdu()
    c.step(5)
    c.s.v[io.S_LEAK] = 1 << io.LEAK_RACK_A
    c.step()
    assert c.ir(R.ALARMS) & R.F_ALARMS_LEAK
    assert c.ir(R.MODE) == M.AUTO and c.speeds[0] > 0
    assert (0, 1 << io.LEAK_RACK_A) in c.ev.of(EV_ALARM)
    c.s.v[io.S_LEAK] = 0
    c.step(10)
    assert c.ir(R.ALARMS) & R.F_ALARMS_LEAK  # latched after drying
    assert c.ir(R.LEAK_ZONES) == 1 << io.LEAK_RACK_A
    c.app.clear_faults()
    c.step()
    assert not c.ir(R.ALARMS) & R.F_ALARMS_LEAK
    assert (0, 0) in c.ev.of(EV_ALARM)


def test_leak_at_the_cdu_isolates_pumps_off_valve_closed():
    c = Cdu()
    c.step(10)
    c.s.v[io.S_LEAK] = 1 << io.LEAK_CDU_TRAY
    c.step()
    assert c.ir(R.MODE) == M.FAULT
    assert c.speeds == [0, 0] and c.valve == 0
    assert c.ir(R.ALARMS) & R.F_ALARMS_LEAK_ISOLATED
    c.app.clear_faults()  # still wet: stays isolated
    c.step(3)
    assert c.ir(R.MODE) == M.FAULT and c.speeds == [0, 0]
    c.s.v[io.S_LEAK] = 0
    c.step(3)
    assert c.ir(R.MODE) == M.FAULT  # dry, but nobody cleared it
    c.app.clear_faults()
    c.step(3)
    assert c.ir(R.MODE) == M.AUTO and c.speeds[0] > 0
    assert (M.FAULT, M.AUTO) in c.ev.of(EV_MODE) and (M.AUTO, M.FAULT) in c.ev.of(EV_MODE)


def test_isolation_is_configurable_per_zone():
    c = Cdu()
    c.bank.set_hr(R.LEAK_ISOLATE_MASK, 1 << io.LEAK_RACK_B)
    c.step(5)
    c.s.v[io.S_LEAK] = 1 << io.LEAK_CDU_TRAY  # no longer isolating
    c.step()
    assert c.ir(R.MODE) == M.AUTO
    c.s.v[io.S_LEAK] = 1 << io.LEAK_RACK_B
    c.step()
    assert c.ir(R.MODE) == M.FAULT and c.speeds == [0, 0]


def test_bad_supply_temperature_goes_fail_safe_instead_of_acting_on_it():
    c = Cdu()
    c.step(20)
    c.s.v[io.S_T_SUPPLY] = io.SENSOR_OPEN  # would read as 327 degC: valve would slam open
    c.step()
    assert c.ir(R.MODE) == M.FAULT
    assert c.valve == c.bank.get_hr(R.VALVE_SAFE_POS)
    assert c.speeds[0] == c.bank.get_hr(R.PUMP_SAFE_SPEED)
    assert c.ir(R.SENSOR_FAULTS) == R.F_SENSORS_T_SUPPLY
    assert c.ir(R.ALARMS) & R.F_ALARMS_SENSOR_FAULT
    assert (0x200, 1) in c.ev.of(EV_FAULT_RAISED)  # sensor 0, open circuit


def test_fail_safe_with_a_changed_safe_position():
    c = Cdu()
    c.bank.set_hr(R.VALVE_SAFE_POS, 400)
    c.bank.set_hr(R.PUMP_SAFE_SPEED, 650)
    c.step(5)
    c.s.v[io.S_P_RETURN] = io.SENSOR_SHORT
    c.step()
    assert (c.valve, c.speeds[0]) == (400, 650)


def test_fault_from_a_sensor_recovers_bumplessly_after_clear():
    c = Cdu()
    c.step(5)
    c.s.v[io.S_T_SUPPLY] = 9500  # out of range
    c.step(3)
    c.s.v[io.S_T_SUPPLY] = 3000
    c.step(30)  # past the recovery delay
    assert c.ir(R.MODE) == M.FAULT
    safe = c.valve
    c.app.clear_faults()
    c.step()
    assert c.ir(R.MODE) == M.AUTO
    assert abs(c.valve - safe) <= 5  # no jump when the loop takes over
    assert not c.ir(R.ALARMS) & R.F_ALARMS_SENSOR_FAULT


def test_non_control_sensor_fault_alarms_but_keeps_control():
    c = Cdu()
    c.step(5)
    c.s.v[io.S_T_FAC_IN] = io.SENSOR_OPEN
    c.step()
    assert c.ir(R.MODE) == M.AUTO
    assert c.ir(R.SENSOR_FAULTS) == R.F_SENSORS_T_FAC_IN
    assert c.ir(R.ALARMS) & R.F_ALARMS_SENSOR_FAULT


def test_lead_pump_failure_fails_over_within_the_delay():
    c = Cdu()
    c.step(20)
    c.dead.add(0)
    delay = c.bank.get_hr(R.FAILOVER_DELAY)
    ticks = 0
    while c.speeds[1] == 0:
        c.step()
        ticks += 1
        assert ticks * 100 <= delay + 200
    assert c.speeds[0] == 0
    assert c.ir(R.LEAD_PUMP) == 2
    assert c.ir(R.PUMP1_STATUS) & R.F_PUMP_STATUS_FAILED
    assert c.ir(R.PUMP1_STATUS) & R.F_PUMP_STATUS_NO_TACH
    assert c.ir(R.ALARMS) & R.F_ALARMS_PUMP_FAILOVER
    assert (2, 2) in c.ev.of(EV_ALARM)  # pump_failover, new lead = pump 2
    assert c.write(R.LEAD_SELECT, 1) == 4  # cannot make the failed pump lead


def test_both_pumps_failed_is_a_fault():
    c = Cdu()
    c.step(5)
    c.dead.update((0, 1))
    c.step(60)
    assert c.ir(R.MODE) == M.FAULT
    assert c.ir(R.ALARMS) & R.F_ALARMS_PUMP_FAULT


def test_manual_mode_applies_manual_outputs_and_returns_bumplessly():
    c = Cdu()
    c.step(50)
    assert c.write(R.MANUAL_VALVE_POS, 420) == 0
    assert c.write(R.MANUAL_PUMP_SPEED, 550) == 0
    assert c.write(R.MODE_CMD, M.MANUAL) == 0
    c.step()
    assert (c.valve, c.speeds[0]) == (420, 550)
    assert c.ir(R.MODE) == M.MANUAL
    c.write(R.MODE_CMD, M.AUTO)
    c.step()
    assert abs(c.valve - 420) <= 5 and abs(c.speeds[0] - 550) <= 5
    assert (M.MANUAL, M.AUTO) in c.ev.of(EV_MODE) and (M.AUTO, M.MANUAL) in c.ev.of(EV_MODE)


def test_low_level_alarm_after_its_delay_and_clears_with_the_process():
    c = Cdu()
    c.step(5)
    c.s.v[io.S_LEVEL] = 100
    c.step(49)
    assert not c.ir(R.ALARMS) & R.F_ALARMS_LOW_LEVEL
    c.step(2)
    assert c.ir(R.ALARMS) & R.F_ALARMS_LOW_LEVEL
    c.s.v[io.S_LEVEL] = 800
    c.step()
    assert not c.ir(R.ALARMS) & R.F_ALARMS_LOW_LEVEL


def test_gains_come_from_the_registers():
    c = Cdu()
    c.s.v[io.S_T_SUPPLY] = 3300  # 3 K above setpoint
    c.bank.set_hr(R.TEMP_KI, 0)
    c.bank.set_hr(R.TEMP_KP, 10000)  # 10 % per K -> 30 %
    c.step(30)
    assert c.valve == 300
    c.bank.set_hr(R.TEMP_KP, 20000)
    c.step(30)
    assert c.valve == 600
