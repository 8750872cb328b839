// What every browser test needs before it starts: playwright-core's
// chromium driver, Debian's chromium binary, the tracemart binary and the
// screenshot directory. Exits 77 (skip) when the browser or the driver is
// missing, so a machine without them reports a skip, not a failure.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const here = path.dirname(new URL(import.meta.url).pathname);
export const CHROMIUM = process.env.TM_CHROMIUM || '/usr/bin/chromium';
export const BIN = process.env.TM_BINARY;
export const OUT = path.join(process.env.TM_BUILD_DIR || os.tmpdir(), 'e2e-screenshots');

let driver;
try {
  driver = createRequire(path.join(here, 'package.json'))('playwright-core').chromium;
} catch (e) {
  console.log('SKIP: playwright-core is not installed (run scripts/test-deps.sh)');
  process.exit(77);
}
if (!fs.existsSync(CHROMIUM)) {
  console.log('SKIP: ' + CHROMIUM + ' not found (scripts/deps.sh test installs chromium)');
  process.exit(77);
}
assert.ok(BIN && fs.existsSync(BIN), 'TM_BINARY must name the tracemart binary');
fs.mkdirSync(OUT, { recursive: true });

export const chromium = driver;
