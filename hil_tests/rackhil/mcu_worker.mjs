// One board = one worker_thread = one MicroPython WebAssembly VM.
//
// Why a worker per board: the pyscript port's loader sets globalThis.Module, so a
// JS realm holds exactly one live VM. The worker owns the VM, the JS side of the
// firmware HAL (module `jshal`) and the board's virtual clock; the main thread
// (mcu_host.mjs) owns the flash image and the clock value through
// SharedArrayBuffers so that both survive when a hung worker must be terminated.
//
// Virtual time: advance(until, rx) runs a discrete-event loop. Events are RX byte
// arrivals (pushed into the UART FIFO), the end of a transmission (tx_done turns
// true), the wake time returned by board.poll() and the watchdog deadline. Each
// event sets the clock and calls poll() once. Nothing here reads wall-clock time.
import { parentPort, workerData } from 'node:worker_threads';

const TICKS_PERIOD = 0x40000000; // MicroPython time.ticks_* wrap at 2**30 (small ints)
const RESET_POWER_ON = 1;
const RESET_WATCHDOG = 2; // reset_cause enum of common.toml

const W = workerData;
const { loadMicroPython } = await import(W.mpModule);
const flash = new Uint8Array(W.flashSab);
// [0] = virtual now (µs), [1] = heartbeat, [2] = wall-clock ms a boot started (0: none)
const shared = new Float64Array(W.stateSab);

// ---------------------------------------------------------------- board state
const st = {
  mp: null,
  board: null,
  poll: null,
  resetRequest: 0,
  cutBudget: -1, // bytes flash may still program/erase before power is lost (-1: no cut)
  powerLost: false,
  crashed: null, // traceback text once the firmware raised
  rx: [], // UART RX FIFO (bytes)
  rxq: [], // pending arrivals: [t_us, byte], sorted by t
  rxqHead: 0,
  txEnd: -1, // µs at which the current transmission ends (-1: idle)
  txBusy: false,
  wake: 0,
  lastFeed: 0,
  wdtMs: W.config.wdt_ms ?? 2000,
  byteUs: 0,
  sensors: new Map(),
  outputs: new Map(),
  // per-advance capture
  tx: [],
  de: [],
  outChanges: [],
  printed: [],
  resets: [],
};

function now() {
  return shared[0];
}
function setNow(t) {
  shared[0] = t;
}

function pyBytes(addr, n) {
  const m = st.mp._module;
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = m.getValue(addr + i, 'i8') & 255;
  return out;
}

// The JS half of the HAL. Every function takes and returns ints only (never
// undefined, which would come back as a JsProxy object), so calls from the
// firmware's request path do not allocate on the MicroPython heap.
function makeHal(config) {
  const cfgJson = JSON.stringify(config);
  return {
    config_json: () => cfgJson,
    ticks_us: () => Math.floor(now()) % TICKS_PERIOD,
    ticks_ms: () => Math.floor(now() / 1000) % TICKS_PERIOD,
    uart_any: () => st.rx.length,
    uart_read: () => (st.rx.length ? st.rx.shift() : -1),
    uart_send: (addr, n) => {
      if (st.powerLost) return 0;
      const data = pyBytes(addr, n);
      const t = now();
      if (st.txBusy && st.tx.length) {
        // queued behind the current frame: continue the same transmission
        const last = st.tx[st.tx.length - 1];
        last[1] = Buffer.concat([last[1], data]);
        st.txEnd += n * st.byteUs;
      } else {
        st.tx.push([t, data]);
        st.txEnd = t + n * st.byteUs;
      }
      st.txBusy = n > 0;
      return 0;
    },
    uart_tx_done: () => (st.txBusy ? 0 : 1),
    de_value: (v) => {
      if (st.powerLost) return 0;
      st.de.push([now(), v ? 1 : 0]);
      return 0;
    },
    sensor_read: (ch) => st.sensors.get(ch) ?? 0,
    output_write: (ch, v) => {
      if (st.powerLost) return 0;
      if ((st.outputs.get(ch) ?? 0) !== v) st.outChanges.push([now(), ch, v]);
      st.outputs.set(ch, v);
      return 0;
    },
    output_read: (ch) => st.outputs.get(ch) ?? 0,
    flash_size: () => flash.length,
    flash_read: (off, addr, n) => {
      if (off < 0 || off + n > flash.length) return -1;
      const m = st.mp._module;
      for (let i = 0; i < n; i++) m.setValue(addr + i, flash[off + i], 'i8');
      return n;
    },
    flash_write: (off, addr, n) => {
      if (off < 0 || off + n > flash.length) return -1;
      const m = st.mp._module;
      const ok = cutBudget(n);
      // NOR flash programs by clearing bits: a write can only turn 1s into 0s.
      for (let i = 0; i < ok; i++) flash[off + i] &= m.getValue(addr + i, 'i8') & 255;
      return n;
    },
    flash_erase: (off, n) => {
      if (off < 0 || off + n > flash.length || off % 4096 || n % 4096) return -1;
      const ok = cutBudget(n);
      flash.fill(0xff, off, off + ok);
      return n;
    },
    wdt_feed: () => {
      st.lastFeed = now();
      return 0;
    },
    request_reset: (cause) => {
      st.resetRequest = cause || 4;
      return 0;
    },
  };
}

// Torn-write fault: after cutBudget bytes the board loses power. The firmware cannot be
// stopped mid-poll from here, so from the cut on flash ignores everything (the chip
// is unpowered), UART/DE/outputs ignore it too, and the worker reboots the board as
// soon as the poll is over.
function cutBudget(n) {
  if (st.powerLost) return 0;
  if (st.cutBudget < 0) return n;
  const ok = Math.min(n, st.cutBudget);
  st.cutBudget -= ok;
  if (ok < n) {
    st.powerLost = true; // like rackhil.fake_hal.FakeFlash.cut_after
    st.cutBudget = -1;
  }
  return ok;
}

function tracebackOf(err) {
  if (err && err.name === 'PythonError') return String(err.message);
  return String((err && err.stack) || err);
}

// An exception raised while the heap is locked (micropython.heap_lock() in a
// no-allocation test) cannot be turned into a traceback and leaves the VM spinning.
// Every entry from JS therefore goes through this guard, which unlocks the heap
// fully before the exception propagates. (heap_unlock at depth 0 wraps to 32767 in
// this build, so lock once more and unlock down to exactly 0.)
const GUARD = `
import micropython as _mcu_mp
def _mcu_unlock():
    _mcu_mp.heap_lock()
    while _mcu_mp.heap_unlock():
        pass
def _mcu_guard(f):
    def guarded():
        try:
            return f()
        except BaseException:
            _mcu_unlock()
            raise
    return guarded
def _mcu_exec(src):
    try:
        exec(src, globals())
    except BaseException:
        _mcu_unlock()
        raise
`;

// (Re)boot the VM: RAM is lost, flash (shared) and sensors survive.
async function boot(resetCause) {
  if (st.mp) st.mp = null; // drop the old VM; a fresh loader call replaces globalThis.Module
  st.board = null;
  st.poll = null;
  st.crashed = null;
  st.resetRequest = 0;
  st.powerLost = false;
  st.rx = [];
  st.txBusy = false;
  st.txEnd = -1;
  st.lastFeed = now();
  st.wake = now();
  for (const [ch, v] of st.outputs) if (v !== 0) st.outChanges.push([now(), ch, 0]);
  st.outputs = new Map();
  const config = Object.assign({}, W.config, { reset_cause: resetCause });
  // character time at 8E1 (11 bits), whole µs like rackhil.wire.LineSettings.byte_us
  st.byteUs = config.byte_us || Math.max(1, Math.round(11e6 / (config.baud || 115200)));
  const stdout = (line) => st.printed.push(line);
  shared[2] = Date.now(); // the host allows a boot more time than a poll
  const mp = await loadMicroPython({ stdout, stderr: stdout, linebuffer: true });
  st.mp = mp;
  mp.registerJsModule('jshal', makeHal(config));
  // W.files: {vm_path: Uint8Array} — written byte for byte (sources and .mpy alike)
  for (const [path, data] of Object.entries(W.files)) {
    const dir = path.substring(0, path.lastIndexOf('/'));
    if (dir) mp.FS.mkdirTree(dir);
    mp.FS.writeFile(path, data);
  }
  if (W.seed !== undefined && W.seed !== null) {
    try {
      mp.runPython('import random\nrandom.seed(' + (W.seed | 0) + ')');
    } catch (_e) {
      // random may be absent from a build; the seed is best effort
    }
  }
  mp.runPython(GUARD);
  try {
    if (W.main) {
      const mod = mp.pyimport(W.main);
      const board = mod.board;
      if (board !== undefined && board !== null) {
        st.board = board;
        mp.globals.set('_mcu_board', board);
        mp.runPython('_mcu_poll = _mcu_guard(_mcu_board.poll)');
        st.poll = mp.globals.get('_mcu_poll');
      }
    }
  } catch (err) {
    st.crashed = tracebackOf(err);
  }
  shared[2] = 0;
  shared[1]++;
}

// Earliest virtual time at which this board can do anything observable. Until
// then an advance is a pure clock move, which the Python side may skip.
function nextEvent() {
  let t = Infinity;
  if (st.rxqHead < st.rxq.length) t = st.rxq[st.rxqHead][0];
  if (st.txBusy && st.txEnd < t) t = st.txEnd;
  if (st.poll !== null && st.crashed === null && st.wake < t) t = st.wake;
  if (st.board && st.wdtMs > 0 && st.lastFeed + st.wdtMs * 1000 < t) t = st.lastFeed + st.wdtMs * 1000;
  return t === Infinity ? null : t;
}

function takeCapture() {
  const out = {
    now: now(),
    next: nextEvent(),
    tx: st.tx.map(([t, d]) => [t, d.toString('hex')]),
    de: st.de,
    outputs: st.outChanges,
    printed: st.printed,
    resets: st.resets,
    crashed: st.crashed,
  };
  st.tx = [];
  st.de = [];
  st.outChanges = [];
  st.printed = [];
  st.resets = [];
  return out;
}

function queueRx(rx) {
  let added = false;
  for (const [t0, byteUs, hex] of rx) {
    const data = Buffer.from(hex, 'hex');
    for (let i = 0; i < data.length; i++) st.rxq.push([t0 + (i + 1) * byteUs, data[i]]);
    added = true;
  }
  if (added) {
    st.rxq = st.rxq.slice(st.rxqHead).sort((a, b) => a[0] - b[0]);
    st.rxqHead = 0;
  }
}

async function advance(until, rx) {
  queueRx(rx);
  for (;;) {
    let t = until;
    const nextRx = st.rxqHead < st.rxq.length ? st.rxq[st.rxqHead][0] : Infinity;
    if (nextRx < t) t = nextRx;
    if (st.txBusy && st.txEnd < t) t = st.txEnd;
    const alive = st.poll !== null && st.crashed === null;
    if (alive && st.wake < t) t = st.wake;
    const wdtDeadline = st.wdtMs > 0 && st.board ? st.lastFeed + st.wdtMs * 1000 : Infinity;
    if (wdtDeadline < t) t = wdtDeadline;
    if (t > until) t = until;
    // bytes may arrive stamped in the past (the bus hands them over at a step
    // boundary): they are shifted in now; the clock never runs backwards
    if (t < now()) t = now();
    else setNow(t);
    // deliver every byte that has arrived by now (a halted MCU still shifts them in)
    let gotRx = false;
    while (st.rxqHead < st.rxq.length && st.rxq[st.rxqHead][0] <= t) {
      st.rx.push(st.rxq[st.rxqHead][1]);
      st.rxqHead++;
      gotRx = true;
    }
    let txEnded = false;
    if (st.txBusy && st.txEnd <= t) {
      st.txBusy = false;
      txEnded = true;
    }
    if (st.rx.length > 4096) st.rx.splice(0, st.rx.length - 4096); // FIFO overrun
    if (wdtDeadline <= t) {
      st.resets.push([t, RESET_WATCHDOG, 'watchdog']);
      await boot(RESET_WATCHDOG);
      continue;
    }
    if (alive && (gotRx || txEnded || st.wake <= t)) {
      let delay;
      shared[1]++; // progress marker: the host's hang detector sees polls returning
      try {
        delay = st.poll();
      } catch (err) {
        if (!st.powerLost) {
          st.crashed = tracebackOf(err);
          continue;
        }
      }
      if (st.powerLost) {
        st.powerLost = false;
        st.resets.push([t, RESET_POWER_ON, 'power_cut']);
        await boot(RESET_POWER_ON);
        continue;
      }
      if (st.resetRequest) {
        const cause = st.resetRequest;
        st.resetRequest = 0;
        st.resets.push([t, cause, 'software']);
        await boot(cause);
        continue;
      }
      delay = Number(delay);
      if (!(delay >= 1)) delay = 1; // poll() must not spin virtual time at zero
      st.wake = t + delay;
    }
    if (t >= until && !(st.rxqHead < st.rxq.length && st.rxq[st.rxqHead][0] <= until)) break;
  }
  if (st.rxqHead > 1024) {
    st.rxq = st.rxq.slice(st.rxqHead);
    st.rxqHead = 0;
  }
  return takeCapture();
}

function runCode(code) {
  st.printed = st.printed || [];
  const mark = st.printed.length;
  let error = null;
  try {
    st.mp.globals.set('_mcu_src', code);
    st.mp.runPython('_mcu_exec(_mcu_src)');
  } catch (err) {
    error = tracebackOf(err);
  }
  const printed = st.printed.splice(mark);
  return { printed, error };
}

async function handle(msg) {
  switch (msg.op) {
    case 'boot':
      if (msg.reason) st.resets.push([now(), msg.resetCause, msg.reason]);
      await boot(msg.resetCause);
      return takeCapture();
    case 'advance':
      for (const [ch, v] of msg.sensors || []) st.sensors.set(ch, v);
      return advance(msg.until, msg.rx || []);
    case 'set_sensors':
      for (const [ch, v] of msg.values) st.sensors.set(ch, v);
      return {};
    case 'flash_cut':
      st.cutBudget = msg.after;
      st.powerLost = false;
      return {};
    case 'get_outputs':
      return { outputs: Array.from(st.outputs.entries()) };
    case 'exec':
      return runCode(msg.code);
    case 'eval': {
      const r = runCode('__mcu_r = repr(' + msg.expr + ')');
      if (r.error) return r;
      r.value = st.mp.globals.get('__mcu_r');
      return r;
    }
    default:
      throw new Error('unknown op ' + msg.op);
  }
}

let chain = Promise.resolve();
parentPort.on('message', (msg) => {
  chain = chain.then(async () => {
    try {
      const result = await handle(msg);
      parentPort.postMessage({ seq: msg.seq, ok: true, result });
    } catch (err) {
      parentPort.postMessage({ seq: msg.seq, ok: false, error: String((err && err.stack) || err) });
    }
  });
});
