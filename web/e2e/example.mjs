// Runs web/www/example.html (the browser API example) in headless Chromium and checks that it
// finishes: `document.body.dataset.status` becomes "ok" (printing the page's log), never "error",
// with no console error, within --timeout seconds.
//
//   node web/e2e/example.mjs --url http://127.0.0.1:PORT/example.html [--timeout 180]
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const url = arg('--url', null);
const timeout = Number(arg('--timeout', '180')) * 1000;
if (!url) {
  console.log('usage: node web/e2e/example.mjs --url URL [--timeout 180]');
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--no-first-run'],
});
let status = 1;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => document.body.dataset.status, null, { timeout });
  const result = await page.evaluate(() => document.body.dataset.status);
  console.log(await page.evaluate(() => document.getElementById('out').textContent));
  if (result === 'ok' && errors.length === 0) {
    console.log('example: PASS');
    status = 0;
  } else {
    console.log(`example: FAIL (status ${result}; ${errors.length} console errors${errors.length ? `, first: ${errors[0]}` : ''})`);
  }
} catch (e) {
  console.log(`example: FAIL (${e.message.split('\n')[0]})`);
} finally {
  await browser.close();
}
process.exit(status);
