// An Anshim board for tests and training: the real MicroPython (the official WebAssembly
// port) behind a serial line, speaking the REPL and raw REPL like a board.
//
//   node tools/crew/emulator.mjs --fs DIR [--heap BYTES] [--button] [--control FD]
//                                [--radio FILE] [--idle-ms MS]
//
// stdin/stdout are the board's USB serial line (bytes); tools/crew/emulator.py puts a
// pseudo-terminal in front of them. stderr carries one line per event ("boot repl",
// "boot provisioning", "provisioning ended: end", "transmit <hex>").
//
// What it emulates:
// * Flash: the MicroPython file system, loaded from DIR at start and written back to it
//   on every reboot and at exit; ESP32 NVS as DIR/nvs.json (an `esp32.NVS` shim).
// * The REPL: friendly and raw (Ctrl-A/B/C/D as on a board); Ctrl-D at an empty prompt
//   is a soft reboot ("MPY: soft reboot", a fresh interpreter, raw mode kept); raw-paste
//   (Ctrl-E A Ctrl-A) is declined with "R\x00", as a board without it does, so mpremote
//   falls back to plain raw REPL.
// * `machine.reset()`: a hard reset. The emulated board does not run the role's main.py
//   (there is no radio or pins); at boot it looks at its button like main.py does: held
//   (--button, or "button 1" on the control fd) means provisioning mode, which runs
//   firmware/lib/provision.py's `service_mode` over the serial line until it ends, then
//   the board reboots.
// * The radio: a field test's frame is appended as hex to --radio FILE.
//
// Control lines on --control FD: "button 1", "button 0", "power-cycle", "quit".

import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

function usage(message) {
    process.stderr.write(`emulator: ${message}\n`);
    process.exit(2);
}

let fsDir = null;
let heapsize = 2 << 20;
let button = false;
let controlFd = null;
let radioFile = null;
let idleMs = 180000;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--fs") fsDir = args[++i] ?? usage("--fs needs a folder");
    else if (a === "--heap") heapsize = Number(args[++i]);
    else if (a === "--button") button = true;
    else if (a === "--control") controlFd = Number(args[++i]);
    else if (a === "--radio") radioFile = args[++i] ?? usage("--radio needs a file");
    else if (a === "--idle-ms") idleMs = Number(args[++i]);
    else usage(`unexpected argument ${a}`);
}
if (fsDir === null) usage("--fs DIR is required");
fs.mkdirSync(fsDir, { recursive: true });

const SKIP = new Set(["tmp", "home", "dev", "proc"]); // Emscripten's own folders
const FLASH = path.join(fsDir, "flash");
const NVS_FILE = path.join(fsDir, "nvs.json");

function log(line) {
    process.stderr.write(line + "\n");
}

// --- flash: host folder <-> Emscripten FS ---------------------------------------------

function loadFlash() {
    const files = new Map();
    function walk(host, dev) {
        for (const name of fs.readdirSync(host)) {
            const h = path.join(host, name);
            const d = dev + "/" + name;
            if (fs.statSync(h).isDirectory()) {
                files.set(d, null);
                walk(h, d);
            } else files.set(d, new Uint8Array(fs.readFileSync(h)));
        }
    }
    if (fs.existsSync(FLASH)) walk(FLASH, "");
    return files;
}

function snapshot(FS) {
    const files = new Map();
    function walk(dir) {
        for (const name of FS.readdir(dir)) {
            if (name === "." || name === "..") continue;
            if (dir === "/" && SKIP.has(name)) continue;
            const p = (dir === "/" ? "" : dir) + "/" + name;
            const st = FS.stat(p);
            if (FS.isDir(st.mode)) {
                files.set(p, null);
                walk(p);
            } else files.set(p, FS.readFile(p));
        }
    }
    walk("/");
    return files;
}

function restore(FS, files) {
    for (const [p, data] of files) {
        if (data === null) {
            try {
                FS.mkdir(p);
            } catch {
                // already there
            }
        }
    }
    for (const [p, data] of files) if (data !== null) FS.writeFile(p, data);
}

function saveFlash(files) {
    const tmp = FLASH + ".new";
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    for (const [p, data] of files) {
        const h = path.join(tmp, p);
        if (data === null) fs.mkdirSync(h, { recursive: true });
        else {
            fs.mkdirSync(path.dirname(h), { recursive: true });
            fs.writeFileSync(h, data);
        }
    }
    fs.rmSync(FLASH, { recursive: true, force: true });
    fs.renameSync(tmp, FLASH);
    fs.writeFileSync(NVS_FILE, JSON.stringify(nvs));
}

let flash = loadFlash();
let nvs = fs.existsSync(NVS_FILE) ? JSON.parse(fs.readFileSync(NVS_FILE, "utf8")) : {};

// --- output to the serial line, batched -------------------------------------------------

let outBuf = [];
let outScheduled = false;
let muted = false;
function flushOut() {
    outScheduled = false;
    if (outBuf.length) {
        process.stdout.write(Buffer.from(outBuf));
        outBuf = [];
    }
}
function emit(bytes) {
    if (muted) return;
    for (const b of bytes) outBuf.push(b);
    if (!outScheduled) {
        outScheduled = true;
        setImmediate(flushOut);
    }
}
function emitText(text) {
    emit(Buffer.from(text, "latin1"));
}

// --- the board --------------------------------------------------------------------------

const SHIMS = `
import sys
import _emu

class _RTC:
    _mem = b""
    def memory(self, data=None):
        if data is None:
            return _RTC._mem
        _RTC._mem = bytes(data)

class _Machine:
    PWRON_RESET = 1
    HARD_RESET = 2
    SOFT_RESET = 5
    RTC = _RTC
    def reset(self):
        _emu.reset()
        raise SystemExit
    def soft_reset(self):
        raise SystemExit
    def unique_id(self):
        return b"EMU\\x00\\x00\\x01"
    def reset_cause(self):
        return _emu.cause()

class _NVS:
    def __init__(self, ns):
        self._ns = ns
    def set_blob(self, key, data):
        import binascii
        _emu.nvs_set(self._ns, key, binascii.hexlify(bytes(data)).decode())
    def get_blob(self, key, buf):
        import binascii
        h = _emu.nvs_get(self._ns, key)
        if h is None:
            raise OSError(2)
        data = binascii.unhexlify(h)
        if len(data) > len(buf):
            raise OSError(12)
        buf[0:len(data)] = data
        return len(data)
    def erase_key(self, key):
        if not _emu.nvs_erase(self._ns, key):
            raise OSError(2)
    def commit(self):
        pass

class _Esp32:
    NVS = _NVS

sys.modules["machine"] = _Machine()
sys.modules["esp32"] = _Esp32()
`;

const PROVISIONING = `
import binascii
import json
import _emu
import provision

try:
    with open("/board.json") as f:
        board = json.load(f)
except (OSError, ValueError):
    board = None
store = provision.open_store(board)

class _Pin:
    def value(self):
        return 0 if _emu.button() else 1   # active low, like the boards' boot button

class _Service:
    """The field test on the emulated board: storage check, and a real test ALARM."""
    def selftest(self):
        return {"ok": True, "checks": {"storage": store.load_config() is not None, "radio": "emulated"}}
    def send_test(self):
        import codec
        cfg = store.load_config()
        c = codec.Codec(int(cfg["device_id"], 16), binascii.unhexlify(cfg["key"]))
        store.open()
        n = store.next_uplink()
        frame = bytes(c.encode_alarm(n, codec.FLAG_TEST | codec.FLAG_RX_OPEN, 0, 1, 3600, 0))
        _emu.transmit(binascii.hexlify(frame).decode())
        return {"type": "alarm", "counter": n, "test": True}

def _read():
    s = _emu.read()
    return s.encode() if s else None

_pin = _Pin()
if provision.held_at_boot(_pin, hold_ms=0, sleep_ms=lambda ms: None):
    _reason = await provision.service_mode(
        board, lambda: _pin.value() == 0, service=_Service(), read=_read, ble=False,
        store=store, idle_ms=${idleMs})
    _emu.ended(_reason)
`;

let mp = null;
let generation = 0;
let mode = "off"; // "repl" | "provisioning"
let raw = false;
let resetRequested = false;
let resetCause = 1;
let usbIn = [];
let pasteState = 0; // bytes of "\x05A\x01" seen at a raw prompt

function emuModule(gen) {
    const live = () => gen === generation;
    return {
        read: () => {
            if (!live()) throw new Error("stale interpreter");
            if (!usbIn.length) return null;
            const s = String.fromCharCode(...usbIn);
            usbIn = [];
            return s;
        },
        button: () => button,
        reset: () => {
            if (live()) resetRequested = true;
        },
        cause: () => resetCause,
        transmit: (hex) => {
            log(`transmit ${hex}`);
            if (radioFile) fs.appendFileSync(radioFile, hex + "\n");
        },
        ended: (reason) => log(`provisioning ended: ${reason}`),
        nvs_get: (ns, key) => (nvs[ns] && key in nvs[ns] ? nvs[ns][key] : null),
        nvs_set: (ns, key, hex) => {
            (nvs[ns] ??= {})[key] = hex;
        },
        nvs_erase: (ns, key) => {
            if (!nvs[ns] || !(key in nvs[ns])) return false;
            delete nvs[ns][key];
            return true;
        },
    };
}

async function boot(cause) {
    if (mp !== null) {
        flash = snapshot(mp.FS);
        saveFlash(flash);
    }
    generation += 1;
    const gen = generation;
    resetRequested = false;
    resetCause = cause;
    usbIn = [];
    muted = false;
    mp = await loadMicroPython({
        heapsize,
        linebuffer: false,
        stdout: (bytes) => gen === generation && emit(bytes),
        stderr: (bytes) => gen === generation && emit(bytes),
    });
    restore(mp.FS, flash);
    try {
        mp.FS.mkdir("/lib");
    } catch {
        // kept from the flash
    }
    mp.registerJsModule("_emu", emuModule(gen));
    mp.runPython(SHIMS);
    if (button && cause !== 5) {
        mode = "provisioning";
        log("boot provisioning");
        runProvisioning(gen);
        return;
    }
    mode = "repl";
    if (cause === 5 && raw) {
        // a soft reboot from the raw REPL comes back to the raw REPL, without a banner
        muted = true;
        mp.replInit();
        muted = false;
        raw = false;
        await feed(0x01);
    } else {
        raw = false;
        mp.replInit();
    }
    log("boot repl");
}

async function runProvisioning(gen) {
    try {
        await mp.runPythonAsync(PROVISIONING);
    } catch (err) {
        if (gen !== generation) return;
        log(`provisioning failed: ${String(err.message ?? err).split("\n").slice(-2).join(" ")}`);
    }
    if (gen !== generation) return;
    flushOut();
    // Like main.py: machine.reset() after provisioning; the button is usually let go.
    await boot(2);
}

async function feed(b) {
    if (!raw && b === 0x01) raw = true;
    else if (raw && b === 0x02) raw = false;
    const r = await mp.replProcessCharWithAsyncify(b);
    if (resetRequested) {
        muted = true;
        await boot(2);
        return;
    }
    if (r !== 0) {
        flushOut();
        emitText("MPY: soft reboot\r\n");
        await boot(5);
    }
}

// Bytes arrive in chunks; one pump handles them in order.
const queue = [];
let pumping = false;
async function pump() {
    if (pumping) return;
    pumping = true;
    try {
        while (queue.length) {
            const b = queue.shift();
            if (mode === "provisioning") {
                usbIn.push(b);
                continue;
            }
            if (mode !== "repl") continue;
            // Decline raw-paste mode: after "\x05A\x01" at a raw prompt answer "R\x00".
            const seq = [0x05, 0x41, 0x01];
            if (raw && b === seq[pasteState]) {
                pasteState += 1;
                if (pasteState === 3) {
                    pasteState = 0;
                    emitText("R\x00");
                }
                continue;
            }
            if (pasteState) {
                const held = seq.slice(0, pasteState);
                pasteState = 0;
                for (const h of held) await feed(h);
            }
            await feed(b);
        }
    } finally {
        pumping = false;
        flushOut();
    }
}

process.stdin.on("data", (data) => {
    for (const b of data) queue.push(b);
    pump();
});

let quitting = false;
function quit() {
    if (quitting) return;
    quitting = true;
    flushOut();
    if (mp !== null) flash = snapshot(mp.FS);
    saveFlash(flash);
    log("quit");
    process.exit(0);
}

process.stdin.on("end", quit);
process.on("SIGTERM", quit);

if (controlFd !== null) {
    let pending = "";
    const control = fs.createReadStream(null, { fd: controlFd });
    control.on("data", async (data) => {
        pending += data.toString();
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
            const line = pending.slice(0, nl).trim();
            pending = pending.slice(nl + 1);
            if (line === "button 1") button = true;
            else if (line === "button 0") button = false;
            else if (line === "power-cycle") {
                queue.length = 0;
                raw = false;
                await boot(1);
            } else if (line === "quit") quit();
            else log(`control: unknown command ${line}`);
            log(`control ok ${line}`);
        }
    });
    control.on("end", quit);
}

await boot(1);
