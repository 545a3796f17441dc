// MCU host: the Node side of rackhil.mcu.McuProcess.
//
// Protocol: one JSON object per line on stdin (request) and stdout (response).
//   request  {"id": n, "cmd": "...", ...}
//   response {"id": n, "ok": true, "result": ...} | {"id": n, "ok": false, "error": "..."}
// Bytes travel as hex strings; files for a board's filesystem as base64 in
// `files_b64` ({vm_path: base64}), so binary .mpy and text sources cross the pipe
// alike (a plain `files` map of text is still accepted). Each board runs in its own worker_thread
// (mcu_worker.mjs); a command naming several boards runs them in parallel and
// answers once, so the Python side pays one pipe round-trip per batch.
//
// Hangs: wasm cannot be interrupted from inside, so every worker request has a
// real-time deadline; when it passes, the worker is terminated and the board is
// rebooted as a watchdog reset. Flash and the virtual clock live in
// SharedArrayBuffers owned here, so both survive the terminated worker.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const RESET_POWER_ON = 1;
const RESET_WATCHDOG = 2; // reset_cause enum of common.toml
const WORKER = new URL('./mcu_worker.mjs', import.meta.url);

function resolveMicroPython() {
  const require = createRequire(import.meta.url);
  const candidates = [];
  if (process.env.RACKHIL_NODE_MODULES) {
    candidates.push(process.env.RACKHIL_NODE_MODULES); // explicit: the only place looked at
  } else {
    candidates.push(process.cwd());
    candidates.push(path.dirname(new URL(import.meta.url).pathname));
  }
  for (const base of candidates) {
    try {
      const pkg = require.resolve('@micropython/micropython-webassembly-pyscript/package.json', {
        paths: [base],
      });
      return pathToFileURL(path.join(path.dirname(pkg), 'micropython.mjs')).href;
    } catch (_e) {
      // try the next base
    }
  }
  return null;
}

const MP_MODULE = resolveMicroPython();

// {vm_path: Uint8Array} from a load request. Tight copies (not views on Buffer's
// shared pool), so cloning them into a worker copies only the file itself.
function decodeFiles(spec) {
  const out = {};
  for (const [p, text] of Object.entries(spec.files || {})) out[p] = new Uint8Array(Buffer.from(text, 'utf8'));
  for (const [p, b64] of Object.entries(spec.files_b64 || {})) out[p] = new Uint8Array(Buffer.from(b64, 'base64'));
  return out;
}

class BoardHost {
  constructor(name, spec) {
    this.name = name;
    this.spec = spec;
    this.hangMs = spec.hang_timeout_ms ?? 2000;
    // loading the wasm VM and importing the firmware is slow under load: a hang there
    // (a firmware import that never returns) is caught with a larger margin
    this.bootMs = Math.max(this.hangMs * 5, 10000);
    const size = spec.flash_size ?? 256 * 1024;
    this.flashSab = new SharedArrayBuffer(size);
    const flash = new Uint8Array(this.flashSab);
    flash.fill(0xff);
    if (spec.flash) flash.set(Buffer.from(spec.flash, 'hex').subarray(0, size));
    // float64 [now_us, heartbeat, booting_since_ms (wall clock, 0 = not booting)]
    this.stateSab = new SharedArrayBuffer(24);
    new Float64Array(this.stateSab)[0] = spec.start_us ?? 0;
    this.seq = 0;
    this.pending = new Map();
    this.worker = null;
    this.hangs = 0;
    this.sensors = new Map(); // kept here so a restarted worker gets them back
    this.files = decodeFiles(spec);
  }

  get now() {
    return new Float64Array(this.stateSab)[0];
  }

  spawn() {
    const w = new Worker(WORKER, {
      workerData: {
        name: this.name,
        files: this.files,
        main: this.spec.main || null,
        config: this.spec.config || {},
        seed: this.spec.seed,
        flashSab: this.flashSab,
        stateSab: this.stateSab,
        mpModule: MP_MODULE,
      },
    });
    w.on('message', (m) => {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
    w.on('error', (err) => {
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      this.pending.clear();
    });
    this.worker = w;
  }

  // Send one request to the worker; resolves {hung: true} when the worker makes no
  // progress (no poll() returned, no answer) for hangMs of real time. A long advance
  // that keeps polling is not a hang, however slow the machine is.
  call(msg, limitMs = this.hangMs) {
    const seq = ++this.seq;
    const state = new Float64Array(this.stateSab);
    return new Promise((resolve, reject) => {
      const p = { resolve, reject, timer: null, beat: state[1] };
      const check = () => {
        const booting = state[2] > 0 && Date.now() - state[2] < this.bootMs;
        if (state[1] !== p.beat || booting) {
          p.beat = state[1];
          p.timer = setTimeout(check, limitMs);
          return;
        }
        this.pending.delete(seq);
        resolve({ hung: true });
      };
      p.timer = setTimeout(check, limitMs);
      this.pending.set(seq, p);
      this.worker.postMessage(Object.assign({ seq }, msg));
    });
  }

  async restart(resetCause, reason) {
    if (this.worker) await this.worker.terminate();
    this.spawn();
    if (this.sensors.size) await this.call({ op: 'set_sensors', values: Array.from(this.sensors.entries()) });
    const r = await this.call({ op: 'boot', resetCause, reason }, this.bootMs);
    if (r.hung) throw new Error(`board ${this.name} hangs while booting`);
    return r;
  }

  // Run a worker request; a hang turns into a watchdog reboot reported in the result.
  async guarded(msg) {
    for (const [ch, v] of msg.sensors || []) this.sensors.set(ch, v);
    const t = this.now;
    const r = await this.call(msg);
    if (!r.hung) return r;
    this.hangs++;
    const boot = await this.restart(RESET_WATCHDOG, 'hang');
    boot.hung_at = t;
    boot.hung_op = msg.op;
    if (msg.op === 'advance') {
      // continue to the requested time on the fresh VM (bytes sent to the hung MCU are lost)
      const rest = await this.call({ op: 'advance', until: msg.until, rx: [] });
      if (rest.hung) throw new Error(`board ${this.name} hangs again after reset`);
      for (const k of ['tx', 'de', 'outputs', 'printed', 'resets']) boot[k] = boot[k].concat(rest[k]);
      boot.now = rest.now;
      boot.crashed = rest.crashed;
    }
    return boot;
  }

  readFlash() {
    return Buffer.from(new Uint8Array(this.flashSab)).toString('hex');
  }

  async close() {
    if (this.worker) await this.worker.terminate();
    this.worker = null;
  }
}

const boards = new Map();

function board(name) {
  const b = boards.get(name);
  if (!b) throw new Error(`unknown board ${name}`);
  return b;
}

async function perBoard(names, fn) {
  const entries = await Promise.all(names.map(async (n) => [n, await fn(board(n))]));
  return Object.fromEntries(entries);
}

const commands = {
  async ping() {
    return { mp: MP_MODULE, node: process.versions.node };
  },
  async load(req) {
    if (boards.has(req.board)) await boards.get(req.board).close();
    const b = new BoardHost(req.board, req);
    boards.set(req.board, b);
    b.spawn();
    const r = await b.call({ op: 'boot', resetCause: req.config?.reset_cause ?? RESET_POWER_ON }, b.bootMs);
    if (r.hung) {
      await b.close();
      boards.delete(req.board);
      throw new Error(`board ${req.board} hangs while booting`);
    }
    return r;
  },
  async load_many(req) {
    const entries = await Promise.all(req.boards.map(async (spec) => [spec.board, await commands.load(spec)]));
    return Object.fromEntries(entries);
  },
  async advance(req) {
    // req.boards: {name: {until, rx: [[t0, byte_us, hex], ...]}}
    return perBoard(Object.keys(req.boards), (b) =>
      b.guarded({
        op: 'advance',
        until: req.boards[b.name].until,
        rx: req.boards[b.name].rx || [],
        sensors: req.boards[b.name].sensors || [],
      }),
    );
  },
  async set_sensors(req) {
    // req.boards: {name: [[ch, value], ...]}
    return perBoard(Object.keys(req.boards), (b) => {
      for (const [ch, v] of req.boards[b.name]) b.sensors.set(ch, v);
      return b.call({ op: 'set_sensors', values: req.boards[b.name] });
    });
  },
  async get_outputs(req) {
    return perBoard(req.boards, (b) => b.call({ op: 'get_outputs' }));
  },
  async exec(req) {
    return board(req.board).guarded({ op: 'exec', code: req.code });
  },
  async eval(req) {
    return board(req.board).guarded({ op: 'eval', expr: req.expr });
  },
  async power_cycle(req) {
    const b = board(req.board);
    if (!req.keep_flash) new Uint8Array(b.flashSab).fill(0xff);
    const cause = req.reset_cause ?? RESET_POWER_ON;
    // a fresh VM in the same worker is ~10x cheaper than a new worker
    const r = await b.call({ op: 'boot', resetCause: cause, reason: 'power_cycle' }, b.bootMs);
    return r.hung ? b.restart(cause, 'power_cycle') : r;
  },
  async flash_cut(req) {
    return board(req.board).call({ op: 'flash_cut', after: req.after });
  },
  async read_flash(req) {
    return { flash: board(req.board).readFlash() };
  },
  async now(req) {
    return { now: board(req.board).now };
  },
  async unload(req) {
    const b = boards.get(req.board);
    if (b) await b.close();
    boards.delete(req.board);
    return {};
  },
  async close() {
    await Promise.all(Array.from(boards.values()).map((b) => b.close()));
    boards.clear();
    return {};
  },
};

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

if (!MP_MODULE) {
  send({ id: 0, ok: false, error: 'node_modules/@micropython/micropython-webassembly-pyscript not found: run `make setup`' });
  process.exit(3);
}
send({ id: 0, ok: true, result: { mp: MP_MODULE, node: process.versions.node } }); // hello

// Requests are served one at a time, in order: the Python side waits for each answer.
const rl = createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
      const fn = commands[req.cmd];
      if (!fn) throw new Error(`unknown command ${req.cmd}`);
      const result = await fn(req);
      send({ id: req.id, ok: true, result });
      if (req.cmd === 'close') process.exit(0);
    } catch (err) {
      send({ id: req ? req.id : null, ok: false, error: String((err && err.message) || err) });
    }
  });
});
rl.on('close', async () => {
  await queue;
  await commands.close();
  process.exit(0);
});
