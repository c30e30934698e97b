// Takes the README's picture of the demo: trains CHTs on WebGPU for a while, draws a digit on the
// pad, and saves a full-page screenshot.
//   node web/e2e/screenshot.mjs --url http://127.0.0.1:8000/ [--seconds 90] [--out docs/img/web-demo.png]
import { chromium } from 'playwright-core';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const url = arg('url', 'http://127.0.0.1:8000/');
const seconds = Number(arg('seconds', '90'));
const out = arg('out', 'docs/img/web-demo.png');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  await page.waitForFunction(() => window.chtState && (window.chtState.ready || window.chtState.error));
  await page.click('#start');
  await page.waitForTimeout(seconds * 1000);
  if (await page.locator('#pause').isEnabled()) await page.click('#pause');
  // A "7": a top bar and a diagonal stroke.
  const box = await page.locator('#pad').boundingBox();
  const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
  for (const stroke of [[[0.25, 0.22], [0.75, 0.22]], [[0.75, 0.22], [0.42, 0.82]]]) {
    await page.mouse.move(...at(...stroke[0]));
    await page.mouse.down();
    for (let k = 1; k <= 12; k++) {
      const t = k / 12;
      await page.mouse.move(...at(stroke[0][0] + t * (stroke[1][0] - stroke[0][0]),
        stroke[0][1] + t * (stroke[1][1] - stroke[0][1])));
    }
    await page.mouse.up();
  }
  await page.waitForTimeout(1500);
  await page.screenshot({ path: out, fullPage: true });
  const s = await page.evaluate(() => window.chtState);
  console.log(`screenshot ${out}: ${JSON.stringify(s)}`);
} finally {
  await browser.close();
}
