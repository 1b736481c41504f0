// Runs a Python script in the real MicroPython interpreter (the official WebAssembly
// port, npm @micropython/micropython-webassembly-pyscript) with firmware modules in /lib.
//
//   node tests/micropython/mp_host.mjs [--lib FILE]... [--put FSPATH=FILE]... \
//        [--heap BYTES] SCRIPT
//
// --lib copies FILE to /lib/<basename> (sys.path includes /lib, as on a device);
// --put copies FILE anywhere in the Emscripten file system (vectors, fixtures).
// The script's stdout is printed as it runs. An uncaught Python exception prints
// MicroPython's traceback on stderr and exits 1; usage errors exit 2.

import { readFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

function usage(message) {
    process.stderr.write(`mp_host: ${message}\n`);
    process.exit(2);
}

const libs = [];
const puts = [];
let heapsize = 4 << 20; // 4 MiB: room for allocation tests that run with gc disabled
let script = null;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--lib") {
        libs.push(args[++i] ?? usage("--lib needs a file"));
    } else if (arg === "--put") {
        const spec = args[++i] ?? usage("--put needs FSPATH=FILE");
        const eq = spec.indexOf("=");
        if (eq <= 0 || !spec.startsWith("/")) usage(`--put ${spec}: expected /FSPATH=FILE`);
        puts.push([spec.slice(0, eq), spec.slice(eq + 1)]);
    } else if (arg === "--heap") {
        heapsize = Number(args[++i]);
        if (!Number.isInteger(heapsize) || heapsize <= 0) usage("--heap needs a byte count");
    } else if (script === null && !arg.startsWith("--")) {
        script = arg;
    } else {
        usage(`unexpected argument ${arg}`);
    }
}
if (script === null) usage("no script given");

const mp = await loadMicroPython({
    heapsize,
    linebuffer: true,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
});

function mkdirs(path) {
    let at = "";
    for (const part of path.split("/").filter(Boolean)) {
        at += "/" + part;
        try {
            mp.FS.mkdir(at);
        } catch {
            // already there
        }
    }
}

mkdirs("/lib"); // not created by the port; sys.path = ['', '.frozen', '/lib']
for (const file of libs) mp.FS.writeFile("/lib/" + basename(file), readFileSync(file));
for (const [fsPath, file] of puts) {
    mkdirs(dirname(fsPath));
    mp.FS.writeFile(fsPath, readFileSync(file));
}

// Run the script under a wrapper that prints MicroPython's own traceback (with file
// names and line numbers) before re-raising, so a failure is readable from pytest.
mp.FS.writeFile("/main.py", readFileSync(script));
const runner = [
    "import sys",
    "_src = open('/main.py').read()",
    "try:",
    "    exec(compile(_src, 'main.py', 'exec'), {'__name__': '__main__'})",
    "except BaseException as _e:",
    "    sys.print_exception(_e, sys.stderr)",
    "    raise",
].join("\n");
try {
    mp.runPython(runner);
} catch (err) {
    // The traceback is already on stderr; the JS error only repeats it.
    process.exitCode = 1;
}
