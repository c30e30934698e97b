// End-to-end test of the cht browser demo in headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core; no browser is ever downloaded).
//
//   node web/e2e/e2e.mjs --url http://127.0.0.1:PORT/ [--webgpu|--no-webgpu] [--threshold 0.9]
//                        [--timeout 120] [--screenshot FILE] [--chromium /usr/bin/chromium]
//
// The page contract: `window.chtState = { ready, running, backend, step, epoch, testAcc,
// topologyVersion, error }`, a `#start` button and a `#method` <select> (chts | set | dense,
// CHTs selected by default). The test loads the page, waits for `ready`, checks the backend
// (`WebGPU…` with --webgpu, which passes --enable-unsafe-webgpu; `CPU…` with --no-webgpu), clicks
// #start and waits until `testAcc >= threshold` and `topologyVersion` has grown (at most --timeout
// seconds for loading, and again for training), then checks that the pixels of the adjacency
// images (`#layers canvas`) changed. Any console.error, uncaught page error or
// `chtState.error` fails it. Prints `e2e: PASS …` and exits 0, or `e2e: FAIL …` and exits 1.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const USAGE =
  'usage: node web/e2e/e2e.mjs --url URL [--webgpu|--no-webgpu] [--threshold 0.9] ' +
  '[--timeout 120] [--screenshot FILE] [--chromium /usr/bin/chromium]';

class Failure extends Error {}

function parseArgs(argv) {
  const opts = {
    url: null,
    webgpu: true,
    threshold: 0.9,
    timeout: 120,
    screenshot: null,
    chromium: '/usr/bin/chromium',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Failure(`${arg} needs a value\n${USAGE}`);
      return argv[++i];
    };
    const number = () => {
      const v = Number(value());
      if (!Number.isFinite(v) || v <= 0) throw new Failure(`${arg} needs a positive number\n${USAGE}`);
      return v;
    };
    switch (arg) {
      case '--url': opts.url = value(); break;
      case '--webgpu': opts.webgpu = true; break;
      case '--no-webgpu': opts.webgpu = false; break;
      case '--threshold': opts.threshold = number(); break;
      case '--timeout': opts.timeout = number(); break;
      case '--screenshot': opts.screenshot = value(); break;
      case '--chromium': opts.chromium = value(); break;
      case '-h': case '--help': console.log(USAGE); process.exit(0); break;
      default: throw new Failure(`unknown argument ${arg}\n${USAGE}`);
    }
  }
  if (!opts.url) throw new Failure(`--url is required\n${USAGE}`);
  return opts;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fmt = (state) => JSON.stringify(state);

// A page whose main thread is busy (a long wasm call) answers evaluate() late; bound every call so
// a hung page fails the test instead of hanging it.
async function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`${what}: no answer from the page in ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const mode = opts.webgpu ? 'webgpu' : 'no-webgpu';
  const args = [
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
  ];
  if (opts.webgpu) args.push('--enable-unsafe-webgpu');

  const errors = [];
  const browser = await chromium
    .launch({ executablePath: opts.chromium, headless: true, args })
    .catch((e) => {
      throw new Failure(`cannot start ${opts.chromium} (apt-get install -y chromium): ${e.message.split('\n')[0]}`);
    });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const loc = msg.location();
      const where = loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : '';
      const line = `console.error: ${msg.text()}${where}`;
      errors.push(line);
      console.log(`e2e[${mode}]: ${line}`);
    });
    page.on('pageerror', (err) => {
      const line = `page error: ${err.stack || err.message || err}`;
      errors.push(line);
      console.log(`e2e[${mode}]: ${line}`);
    });
    const state = () => bounded(page.evaluate(() => (window.chtState ? { ...window.chtState } : null)), 30000, 'reading window.chtState');
    const check = (s) => {
      if (errors.length) throw new Failure(`${errors.length} error(s) in the page, first: ${errors[0]}`);
      if (s && s.error) throw new Failure(`chtState.error: ${s.error}`);
    };

    // Waits until pred(state) holds, failing on errors and after `seconds`; prints the state every
    // 10 s. Returns the last state.
    const waitFor = async (what, seconds, pred) => {
      const t0 = Date.now();
      let lastPrint = t0;
      for (;;) {
        const s = await state();
        check(s);
        if (s && pred(s)) return s;
        const now = Date.now();
        if (now - t0 > seconds * 1000) throw new Failure(`timed out after ${seconds} s waiting for ${what}; last state ${fmt(s)}`);
        if (now - lastPrint >= 10000) {
          lastPrint = now;
          console.log(`e2e[${mode}]: ${((now - t0) / 1000).toFixed(0)} s waiting for ${what}: ${fmt(s)}`);
        }
        await sleep(250);
      }
    };

    const tLoad = Date.now();
    const response = await page.goto(opts.url, { waitUntil: 'load', timeout: opts.timeout * 1000 });
    if (!response || !response.ok()) {
      throw new Failure(`GET ${opts.url}: ${response ? `HTTP ${response.status()}` : 'no response'}`);
    }
    const ready = await waitFor('chtState.ready', opts.timeout, (s) => s.ready === true);
    const backend = String(ready.backend ?? '');
    console.log(`e2e[${mode}]: ready after ${((Date.now() - tLoad) / 1000).toFixed(1)} s, backend "${backend}"`);
    const want = opts.webgpu ? 'WebGPU' : 'CPU';
    if (!backend.startsWith(want)) throw new Failure(`backend is "${backend}", expected it to start with "${want}"`);

    const methods = await page.$$eval('#method option', (os) => os.map((o) => o.value));
    const method = await page.$eval('#method', (m) => m.value);
    for (const m of ['chts', 'set', 'dense']) {
      if (!methods.includes(m)) throw new Failure(`#method has no option "${m}" (options: ${methods.join(', ')})`);
    }
    if (method !== 'chts') throw new Failure(`#method defaults to "${method}", expected "chts"`);

    // A digest of the adjacency images' pixels, to check that topology updates redraw them
    // differently (not just that a counter moved).
    const digest = () =>
      page.evaluate(() =>
        Array.from(document.querySelectorAll('#layers canvas'))
          .map((c) => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let h = 2166136261;
            for (let i = 0; i < d.length; i += 4) h = Math.imul(h ^ (d[i] + 3 * d[i + 1] + 7 * d[i + 2]), 16777619);
            return (h >>> 0).toString(16);
          })
          .join(','),
      );
    const images0 = await digest();
    if (!images0) throw new Failure('the page shows no adjacency images');

    await page.click('#start', { timeout: 10000 });
    const tStart = Date.now();
    const started = await state();
    check(started);
    const v0 = Number(started?.topologyVersion ?? 0);
    console.log(`e2e[${mode}]: started training (topologyVersion ${v0})`);

    const done = await waitFor(
      `testAcc >= ${opts.threshold} and topologyVersion > ${v0}`,
      opts.timeout,
      (s) => typeof s.testAcc === 'number' && s.testAcc >= opts.threshold && Number(s.topologyVersion) > v0,
    );
    const seconds = (Date.now() - tStart) / 1000;
    const images1 = await digest();
    if (images1 === images0) throw new Failure('the adjacency images did not change after topology updates');

    if (opts.screenshot) {
      mkdirSync(dirname(opts.screenshot), { recursive: true });
      await page.screenshot({ path: opts.screenshot, fullPage: true });
      console.log(`e2e[${mode}]: screenshot ${opts.screenshot}`);
    }
    check(await state());
    console.log(
      `e2e: PASS backend=${JSON.stringify(backend)} acc=${done.testAcc.toFixed(4)} seconds=${seconds.toFixed(1)} ` +
        `epoch=${done.epoch} step=${done.step} topologyVersion=${v0}->${done.topologyVersion}`,
    );
  } finally {
    await browser.close().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    // Playwright's messages already say what failed and carry a call log; its stack adds nothing.
    const msg = e instanceof Error ? e.message : String(e);
    console.log(`e2e: FAIL ${msg}`);
    process.exit(1);
  },
);
