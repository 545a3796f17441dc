"""The board object: injected hardware in, a cooperative main loop out.

``Board`` owns everything every rackctl board has -- the Modbus RTU server, the
register bank, the common registers (identity, status, link counters, unlock,
event-log window, update mailbox, fault clear, board commands), the config
store and the event log -- and drives the application (power shelf or CDU)
through the App contract in docs/contracts.md.

The loop is tick based: ``poll()`` does whatever is due (RX bytes, frame end,
TX completion, the control tick, flash housekeeping) and returns how many
microseconds may pass before it must be called again. Nothing blocks, nothing
is threaded. Flash is programmed only while the bus is idle and never in the
request path, so a reply is never delayed by an erase.

The watchdog is fed from the control tick only while the loop is healthy: the
tick ran within ``WDT_LATE_MS`` of its deadline and the RS-485 transmitter is
not wedged. A stuck app tick, a runaway request or a dead UART therefore ends
in a hardware reset rather than a board that answers nothing.
"""

from array import array

from micropython import const

from rackfw import events as ev
from rackfw.config import ConfigStore
from rackfw.crc import crc16
from rackfw.devid import DeviceId
from rackfw.eventlog import EventLog
from rackfw.evwindow import EventWindow
from rackfw.modbus import ModbusServer
from rackfw.regbank import RegBank
from rackfw.rtu import RtuLink
from rackfw.timebase import Uptime, ticks_add, ticks_diff
from rackfw.unlock import Unlock
from rackfw.update import UpdateMailbox
from rackfw.version import APP_NAME, FW_VERSION, VENDOR, VENDOR_URL

# flash layout (offsets into the flash HAL, 4 KiB sectors)
CONFIG_BASE = const(0)  # two sectors: config copies A and B
EVLOG_BASE = const(2 * 4096)
EVLOG_SECTORS = const(4)  # 1024 events
UPDATE_BASE = const(6 * 4096)  # staging area for a firmware image: the rest of the flash
UPDATE_POLL_US = const(1000)  # housekeeping pace while an update operation is pending

DEFAULT_PERIOD_MS = const(100)
CONFIG_SAVE_DELAY_MS = const(1000)  # debounce: one flash write per burst of settings
WDT_LATE_MS = const(500)
_APP_BASE = const(100)  # board-specific holding registers start here

BAUDS = (9600, 19200, 38400, 57600, 115200)  # index = value of the `baud` register

CMD_SAVE_CONFIG = const(1)
CMD_REBOOT = const(2)
CMD_FACTORY_DEFAULTS = const(3)


class _NoWdt:
    def feed(self):
        pass


def map_signature(regs):
    """CRC over the holding-register write tables: changes when the map layout does."""
    buf = bytearray(4)
    c = 0xFFFF
    for a in range(regs.HR_SIZE):
        lo = regs.HR_MIN[a] & 0xFFFF
        hi = regs.HR_MAX[a] & 0xFFFF
        buf[0] = lo >> 8
        buf[1] = hi & 0xFF
        buf[2] = regs.HR_ACCESS[a]
        buf[3] = (hi >> 8) ^ (lo & 0xFF)
        c = crc16(buf, 0, 4, c)
    return c


class Board:
    def __init__(
        self,
        uart,
        de,
        clock,
        sensors,
        outputs,
        flash,
        wdt,
        app=None,
        unit_id=0,
        regs=None,
        serial="0000",
        hw_rev=1,
        reset_cause=0,
        model=None,
        temp_channel=0,
        reset=None,
    ):
        if regs is None:
            regs = app.REGS if app is not None else None
        if regs is None:
            from rackfw import regs_common as regs
        self.regs = regs
        self.clock = clock
        self.sensors = sensors
        self.flash = flash
        self.wdt = wdt if wdt is not None else _NoWdt()
        self.reset = reset
        self.temp_channel = temp_channel
        now_ms = clock.ticks_ms()
        self.uptime = Uptime(now_ms)
        self.bank = bank = RegBank(regs.IR_SIZE, regs.HR_SIZE, regs.COIL_SIZE, regs.DI_SIZE)
        self.events = EventLog(flash, EVLOG_BASE, EVLOG_SECTORS, self.uptime)
        self.events.log(ev.EV_RESET, reset_cause, self.events.boot)
        self.unlock = Unlock(self.events)

        defaults = getattr(regs, "HR_DEFAULT", None)
        if defaults is not None:
            for a in range(regs.HR_SIZE):
                bank.hr[a] = defaults[a] & 0xFFFF
        board_type = 0
        self.app = None
        self.period_ms = DEFAULT_PERIOD_MS
        if app is not None:
            self.app = app(bank, sensors, outputs, self.events, clock)
            self.period_ms = app.PERIOD_MS
            board_type = app.BOARD_TYPE
        self._defaults = array("H", bank.hr)  # factory defaults (after the app set its own)

        self._load_config(regs, flash, now_ms)
        self._link_setup(regs, uart, de, unit_id)

        if model is None:
            model = "rackctl-core"
            if board_type == 1:
                model = "rackctl-shelf"
            elif board_type == 2:
                model = "rackctl-cdu"
        self._identity(regs, model, serial, hw_rev, board_type, reset_cause)
        devid = DeviceId(
            VENDOR,
            model,
            "%d.%d" % (FW_VERSION >> 8, FW_VERSION & 0xFF),
            VENDOR_URL,
            "rackctl controller board",
            model,
            APP_NAME,
        )
        self.server = ModbusServer(
            self.link, bank, regs.HR_MIN, regs.HR_MAX, regs.HR_ACCESS, regs.HR_SIGNED,
            self, devid, self.unit_id,
        )
        self.window = EventWindow(bank, self.events, regs)
        staging = flash.size() - UPDATE_BASE
        self.update = UpdateMailbox(bank, regs, flash, UPDATE_BASE, staging if staging > 0 else 0,
                                    self.events)

        # loop state
        self.ticks = 0
        self.tick_overruns = 0
        self.wdt_withheld = 0
        self._next_tick = now_ms
        self._late_ms = 0
        if self.app is not None:
            self.app.start()
        self._publish_status(now_ms)
        self.window.refresh()

    # ------------------------------------------------------------------ init
    def _load_config(self, regs, flash, now_ms):
        """Pick the persistent holding registers and restore them from the config store."""
        self._persist = bytearray(regs.HR_SIZE)
        persist = getattr(regs, "HR_PERSIST", None)
        addrs = []
        for a in range(regs.HR_SIZE):
            if persist is not None:
                p = persist[a]
            else:
                p = a >= _APP_BASE and regs.HR_ACCESS[a] != 0
            if p:
                self._persist[a] = 1
                addrs.append(a)
        self._persist_addrs = array("H", addrs)
        self.config = ConfigStore(flash, CONFIG_BASE, map_signature(regs), len(addrs))
        if self.config.load(self._restore):
            self.events.log(ev.EV_CONFIG, ev.CFG_LOADED, self.config.seq & 0xFFFF)
        else:
            self.events.log(ev.EV_CONFIG, ev.CFG_DEFAULTS, self.config.seq & 0xFFFF)
        self._cfg_dirty = False
        self._cfg_dirty_at = now_ms
        self._command = 0

    def _link_setup(self, regs, uart, de, unit_id):
        """RTU link and unit id: an explicit unit id (board file, straps) wins over the stored one."""
        r_addr = getattr(regs, "MODBUS_ADDRESS", -1)
        r_baud = getattr(regs, "BAUD", -1)
        if not unit_id:
            unit_id = self.bank.hr[r_addr] if r_addr >= 0 and self.bank.hr[r_addr] else 1
        baud = uart.baud
        if r_baud >= 0 and hasattr(uart, "set_baud"):
            # optional HAL method: boards whose UART can change speed honour the setting
            b = self.bank.hr[r_baud]
            if b < len(BAUDS) and BAUDS[b] != baud:
                baud = BAUDS[b]
                uart.set_baud(baud)
        self.link = RtuLink(uart, de, baud)
        self.unit_id = unit_id
        self._r_addr = r_addr
        self._r_baud = r_baud
        # the registers show the link as it runs, not the map defaults: a host that
        # saves the config must not move the board to another id or speed by accident
        if r_addr >= 0:
            self.bank.hr[r_addr] = unit_id
        if r_baud >= 0:
            for i in range(len(BAUDS)):
                if BAUDS[i] == baud:
                    self.bank.hr[r_baud] = i

    def _restore(self, addr, value):
        regs = self.regs
        if addr >= regs.HR_SIZE or not self._persist[addr]:
            return
        v = value
        if regs.HR_SIGNED[addr] and v & 0x8000:
            v -= 0x10000
        if regs.HR_MIN[addr] <= v <= regs.HR_MAX[addr]:
            self.bank.hr[addr] = value

    def _identity(self, regs, model, serial, hw_rev, board_type, reset_cause):
        b = self.bank
        b.set_ir_str(regs.VENDOR, 8, VENDOR)
        b.set_ir_str(regs.MODEL, 8, model)
        b.set_ir_str(regs.SERIAL, 8, serial)
        b.set_ir(regs.HW_REV, hw_rev)
        b.set_ir(regs.FW_VERSION, FW_VERSION)
        b.set_ir(regs.BOARD_TYPE, board_type)
        b.set_ir(regs.MAP_VERSION, regs.REGMAP_VERSION)
        b.set_ir(regs.RESET_CAUSE, reset_cause)

    # ------------------------------------------------------------ the loop
    def poll(self):
        """Do all due work; return microseconds until the next poll is needed."""
        clock = self.clock
        now_us = clock.ticks_us()
        link = self.link
        n = link.service(now_us)
        while n:
            self._publish_link()  # CRC/framing errors seen before this frame
            m = self.server.handle(n)
            self._publish_link()
            if m:
                link.send(m, now_us)
                break
            n = link.service(now_us)
        now_ms = clock.ticks_ms()
        wait_ms = ticks_diff(self._next_tick, now_ms)
        if wait_ms <= 0:
            self._tick(now_ms, -wait_ms)
            wait_ms = ticks_diff(self._next_tick, now_ms)
        if not link.transmitting and not link.rx_len:
            self._housekeeping(now_ms)
        d = link.next_us(now_us)
        t = wait_ms * 1000
        if t < 0:
            t = 0
        if self.update.busy() and t > UPDATE_POLL_US:
            t = UPDATE_POLL_US
        if d < 0 or d > t:
            d = t
        return d

    def _tick(self, now_ms, late_ms):
        self.ticks += 1
        self._late_ms = late_ms
        self._next_tick = ticks_add(self._next_tick, self.period_ms)
        if late_ms >= self.period_ms:  # fell behind: skip the missed ticks, count it
            self.tick_overruns += 1
            self._next_tick = ticks_add(now_ms, self.period_ms)
        self.unlock.poll(now_ms)
        if self.app is not None:
            self.app.tick(now_ms)
            if getattr(self.app, "save_request", False):
                # the app changed a persisted register itself (CDU run hours): save it
                # like a host write -- debounced, and only while the bus is idle
                self.app.save_request = False
                self._cfg_dirty = True
                self._cfg_dirty_at = now_ms
        self._publish_status(now_ms)
        if self.window.changed():
            self.window.refresh()
        if late_ms <= WDT_LATE_MS and not self.link.wedged(self.clock.ticks_us()):
            self.wdt.feed()
        else:
            self.wdt_withheld += 1

    def _housekeeping(self, now_ms):
        """Flash work, only while the bus is idle (never inside a request)."""
        cmd = self._command
        if cmd:
            self._command = 0
            self.bank.hr[self.regs.COMMAND] = 0
            if cmd == CMD_FACTORY_DEFAULTS:
                hr = self.bank.hr
                for a in self._persist_addrs:
                    hr[a] = self._defaults[a]
                cmd = CMD_SAVE_CONFIG
            if cmd == CMD_SAVE_CONFIG:
                self.save_config()
            elif cmd == CMD_REBOOT:
                self.save_config()
                self.events.flush()
                if self.reset is not None:
                    self.reset()
        if self._cfg_dirty and ticks_diff(now_ms, self._cfg_dirty_at) >= CONFIG_SAVE_DELAY_MS:
            self.save_config()
        if self.update.busy():
            self.update.service()
        if self.events.pending():
            self.events.flush()
            if self.window.changed():
                self.window.refresh()

    def save_config(self):
        """Write the persistent holding registers now (also the save_config command)."""
        self._cfg_dirty = False
        seq = self.config.save(self.bank.hr, self._persist_addrs, len(self._persist_addrs))
        self.events.log(ev.EV_CONFIG, ev.CFG_SAVED, seq & 0xFFFF)
        self.bank.ir[self.regs.CONFIG_VERSION] = seq & 0xFFFF

    def _publish_link(self):
        regs = self.regs
        ir = self.bank.ir
        link = self.link
        srv = self.server
        ir[regs.CRC_ERRORS] = link.crc_errors & 0xFFFF
        ir[regs.FRAMING_ERRORS] = link.framing_errors & 0xFFFF
        ir[regs.MESSAGES] = (srv.server_msgs >> 16) & 0xFFFF
        ir[regs.MESSAGES + 1] = srv.server_msgs & 0xFFFF
        ir[regs.EXCEPTIONS] = srv.exceptions & 0xFFFF

    def _publish_status(self, now_ms):
        regs = self.regs
        b = self.bank
        s = self.uptime.update(now_ms)
        b.ir[regs.UPTIME] = (s >> 16) & 0xFFFF
        b.ir[regs.UPTIME + 1] = s & 0xFFFF
        b.ir[regs.CONFIG_VERSION] = self.config.seq & 0xFFFF
        unlocked = self.unlock.unlocked(now_ms)
        b.ir[regs.LOCK_STATE] = 1 if unlocked else 0
        b.ir[regs.UNLOCK_REMAINING] = self.unlock.remaining_s(now_ms)
        if self.temp_channel >= 0:
            b.set_ir(regs.BOARD_TEMP, self.sensors.read(self.temp_channel))
        if b.di_size > 2:
            b.di[1] = 1 if unlocked else 0
        self._publish_link()

    # ------------------------------------------- the server's device interface
    def unlocked(self):
        return self.unlock.unlocked(self.clock.ticks_ms())

    def busy(self):
        return self.update.busy()

    def write_coil(self, addr, bit):
        self.bank.coils[addr] = bit
        return 0

    def write_hr(self, addr, raw):
        """Store an already range/access-checked holding write (or refuse it)."""
        regs = self.regs
        if addr >= _APP_BASE:
            c = self.app.on_write(addr, raw) if self.app is not None else 0
            if c:
                return c
        elif addr == regs.UNLOCK_KEY:
            c = self.unlock.write_key(raw, self.clock.ticks_ms())
            self.bank.hr[addr] = 0  # the key never reads back
            self._publish_status(self.clock.ticks_ms())
            return c
        elif addr == regs.FAULT_CLEAR:
            if raw == 1 and self.app is not None:
                self.app.clear_faults()
            return 0  # reads 0
        elif addr == regs.EVENT_SELECT:
            self.window.select(raw)
            return 0
        elif addr == regs.COMMAND:
            if raw == CMD_REBOOT and self.reset is None:
                return 4
            self._command = raw
        elif addr == regs.UPDATE_COMMAND:
            self.update.command(raw)
            return 0  # the outcome is in update_result; the command register reads 0
        self.bank.hr[addr] = raw
        if self._persist[addr]:
            self._cfg_dirty = True
            self._cfg_dirty_at = self.clock.ticks_ms()
        return 0
