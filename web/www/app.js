// The page: loads the wasm build of cht and the MNIST subset, runs the training loop in chunks
// (each chunk is recorded on the device, then one readback hands control back to the browser),
// and draws curves, the evolving adjacency matrices, surviving neurons and CH scores.
import init, { Demo } from './pkg/cht_web.js';

// What the end-to-end test (web/e2e) reads.
const state = (window.chtState = {
  ready: false, running: false, backend: '', step: 0, epoch: 0, testAcc: null,
  topologyVersion: 0, error: null,
});

const $ = (id) => document.getElementById(id);
const CHUNK_MS = 60;          // target wall time of one training chunk
const EVAL_EVERY_MS = 1500;   // test-set evaluation cadence while training

let data = null;
let demo = null;
let chunk = 4;
let history = null;
let lastEval = 0;
let loopDone = Promise.resolve();
// Calls into the demo never overlap: each waits for the previous one.
let queue = Promise.resolve();
const exclusive = (fn) => (queue = queue.then(fn, fn));

function fail(message) {
  state.error = message;
  state.ready = false;
  state.running = false;
  $('error').textContent = message;
  $('error').hidden = false;
  $('backend').textContent = 'not running';
  for (const id of ['start', 'pause', 'reset']) $(id).disabled = true;
}

function options() {
  const num = (id) => Number($(id).value);
  return {
    method: $('method').value, hidden: num('hidden'), density: num('density'), zeta: num('zeta'),
    updateEvery: num('updateEvery'), temperature: $('temperature').value, epochs: num('epochs'),
    seed: num('seed'), backend: $('backendChoice').value, batch: 32, lr: 0.025,
  };
}

async function boot() {
  try {
    await init();
  } catch (e) {
    fail('Could not load the WebAssembly build (pkg/cht_web.js). Build it with `bash scripts/web.sh build`.\n' + e);
    return;
  }
  let resp = null;
  try {
    resp = await fetch('data/mnist-subset.bin');
  } catch (e) { /* reported below */ }
  if (!resp || !resp.ok) {
    fail('The MNIST subset is missing (web/www/data/mnist-subset.bin).\n' +
         'Create it with `cht data web-subset` — `bash scripts/web.sh serve` does it for you.');
    return;
  }
  data = new Uint8Array(await resp.arrayBuffer());
  await exclusive(create);
}

async function create() {
  state.ready = false;
  const opts = options();
  if (demo) { demo.free(); demo = null; }
  try {
    demo = await Demo.create(opts, data);
  } catch (e) {
    fail('Could not start: ' + (e && e.message ? e.message : e));
    return;
  }
  $('error').hidden = true;
  state.error = null;
  state.backend = demo.backend();
  let badge = state.backend;
  if (state.backend.startsWith('CPU') && opts.backend !== 'cpu') {
    badge += ' — no WebGPU adapter here (Chromium needs --enable-unsafe-webgpu); the CPU twins run instead';
  }
  $('backend').textContent = badge;
  Object.assign(state, { step: 0, epoch: 0, testAcc: null });
  history = { step: [], loss: [], accStep: [], acc: [] };
  chunk = 4;
  lastEval = performance.now();
  for (const id of ['s-loss', 's-acc', 's-rate']) $(id).textContent = '–';
  await refreshTopology(); // create() always runs inside exclusive()
  drawCurves();
  state.ready = true;
  $('start').disabled = false;
  $('reset').disabled = false;
  $('pause').disabled = true;
}

async function refreshTopology() {
  const t = await demo.topology();
  const box = $('layers');
  if (box.children.length !== t.layers.length) {
    box.innerHTML = '';
    t.layers.forEach((l, i) => {
      const fig = document.createElement('figure');
      fig.innerHTML = `<figcaption>layer ${i + 1}: ${l.cols} → ${l.rows} <span></span></figcaption>` +
        `<canvas class="pixels" width="${l.cols}" height="${l.rows}"></canvas>`;
      box.appendChild(fig);
    });
    if (!t.layers.length) box.innerHTML = '<p class="sub">Dense training: every link exists, nothing evolves.</p>';
  }
  t.layers.forEach((l, i) => {
    const fig = box.children[i];
    fig.querySelector('span').textContent = `· ${l.nnz.toLocaleString()} links (${(100 * l.density).toFixed(2)} %)`;
    paint(fig.querySelector('canvas'), l.cols, l.rows, l.image);
  });
  const neurons = $('neurons');
  if (neurons.children.length !== t.alive.length) {
    neurons.innerHTML = '';
    t.alive.forEach((a) => {
      const row = document.createElement('div');
      row.className = 'neuron-row';
      row.innerHTML = '<i></i>'.repeat(a.length);
      neurons.appendChild(row);
    });
  }
  t.alive.forEach((a, i) => {
    const dots = neurons.children[i].children;
    for (let k = 0; k < a.length; k++) dots[k].classList.toggle('dead', a[k] === 0);
  });
  if (t.inputs && t.inputs.length === 784) {
    const rgba = new Uint8Array(784 * 4);
    // Dark: the pixel lost every link; bright: the busiest input.
    t.inputs.forEach((v, i) => rgba.set([v, Math.round(v * 0.9), Math.round(30 + v * 0.5), 255], 4 * i));
    paint($('inputs'), 28, 28, rgba);
  }
  $('inputs').hidden = !t.inputs;
  if (t.scores) {
    const c = $('scores');
    c.width = t.scores.cols; c.height = t.scores.rows;
    paint(c, t.scores.cols, t.scores.rows, t.scores.image);
  }
  const pct = (x) => (x === null || x === undefined ? '–' : (100 * x).toFixed(1) + ' %');
  $('s-anp').textContent = pct(t.anp);
  $('s-itop').textContent = pct(t.itop);
  $('s-density').textContent = t.layers.length
    ? t.layers.map((l) => (100 * l.density).toFixed(1)).join(' / ') + ' %' : '100 %';
  state.topologyVersion += 1;
}

function paint(canvas, w, h, rgba) {
  const ctx = canvas.getContext('2d');
  ctx.putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), w, h), 0, 0);
}

async function trainChunk() {
  const t0 = performance.now();
  const r = demo.train(chunk);
  const m = await demo.metrics(); // the chunk's one readback: waits for the device
  const dt = Math.max(1, performance.now() - t0);
  chunk = Math.max(1, Math.min(500, Math.round(chunk * Math.min(2, CHUNK_MS / dt))));
  if (m.samples > 0) {
    history.step.push(r.step); history.loss.push(m.loss);
    $('s-loss').textContent = m.loss.toFixed(3);
    $('s-rate').textContent = Math.round((1000 * m.samples) / dt).toLocaleString();
  }
  state.step = r.step; state.epoch = r.epoch;
  $('s-step').textContent = r.step.toLocaleString();
  $('s-epoch').textContent = r.epoch.toFixed(2);
  $('s-updates').textContent = r.updates;
  if (r.newUpdates > 0) await refreshTopology();
  if (r.finished || performance.now() - lastEval > EVAL_EVERY_MS) {
    const ev = await demo.evaluate();
    lastEval = performance.now();
    state.testAcc = ev.acc;
    history.accStep.push(r.step); history.acc.push(ev.acc);
    $('s-acc').textContent = (100 * ev.acc).toFixed(2) + ' %';
  }
  drawCurves();
  return r.finished;
}

async function loop() {
  while (state.running) {
    let finished = false;
    try {
      finished = await exclusive(trainChunk);
    } catch (e) {
      fail('Training stopped: ' + (e && e.message ? e.message : e));
      return;
    }
    if (finished) {
      state.running = false;
      $('start').disabled = true; $('pause').disabled = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 0)); // let the page breathe
  }
}

function drawCurves() {
  const c = $('curves'); const ctx = c.getContext('2d');
  const W = c.width, H = c.height, pad = 34;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = '#2b3558'; ctx.lineWidth = 1;
  ctx.strokeRect(pad, 8, W - 2 * pad, H - pad - 8);
  ctx.fillStyle = '#8d96b0'; ctx.font = '11px system-ui';
  ctx.fillText('step', W / 2, H - 8);
  const maxStep = Math.max(10, ...history.step, ...history.accStep);
  const x = (s) => pad + ((W - 2 * pad) * s) / maxStep;
  const maxLoss = Math.max(0.5, ...history.loss.slice(2));
  const yl = (v) => 8 + (H - pad - 8) * (1 - Math.min(v, maxLoss) / maxLoss);
  const ya = (v) => 8 + (H - pad - 8) * (1 - Math.max(0, v - 0.5) / 0.5);
  ctx.fillText(maxLoss.toFixed(1), 4, 16); ctx.fillText('0', 18, H - pad);
  ctx.fillText('100%', W - pad + 3, 16); ctx.fillText('50%', W - pad + 3, H - pad);
  const line = (xs, ys, f, color) => {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    xs.forEach((s, i) => (i ? ctx.lineTo(x(s), f(ys[i])) : ctx.moveTo(x(s), f(ys[i]))));
    ctx.stroke();
  };
  line(history.step, history.loss, yl, '#f4a261');
  line(history.accStep, history.acc, ya, '#40e080');
  ctx.fillStyle = '#f4a261'; ctx.fillText('train loss', pad + 6, 22);
  ctx.fillStyle = '#40e080'; ctx.fillText('test accuracy', pad + 70, 22);
}

// ----- drawing a digit -----
const pad = $('pad');
const pctx = pad.getContext('2d');
let drawing = false;
function clearPad() {
  pctx.fillStyle = '#000'; pctx.fillRect(0, 0, pad.width, pad.height);
  $('probs').innerHTML = '';
}
clearPad();
pad.addEventListener('pointerdown', (e) => { drawing = true; stroke(e); });
pad.addEventListener('pointermove', (e) => drawing && stroke(e));
window.addEventListener('pointerup', () => { if (drawing) { drawing = false; predictDrawn(); } });
$('clear').addEventListener('click', clearPad);
function stroke(e) {
  const r = pad.getBoundingClientRect();
  pctx.fillStyle = '#fff'; pctx.beginPath();
  pctx.arc(e.clientX - r.left, e.clientY - r.top, 9, 0, 2 * Math.PI); pctx.fill();
}

// MNIST-style preprocessing: fit the ink's bounding box into 20×20, centre it by mass in 28×28.
function drawnPixels() {
  const src = pctx.getImageData(0, 0, pad.width, pad.height).data;
  let x0 = pad.width, y0 = pad.height, x1 = -1, y1 = -1;
  for (let y = 0; y < pad.height; y++) for (let x = 0; x < pad.width; x++) {
    if (src[4 * (y * pad.width + x)] > 30) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  }
  if (x1 < 0) return null;
  const box = document.createElement('canvas'); box.width = 28; box.height = 28;
  const b = box.getContext('2d');
  const w = x1 - x0 + 1, h = y1 - y0 + 1, s = 20 / Math.max(w, h);
  b.fillStyle = '#000'; b.fillRect(0, 0, 28, 28);
  b.imageSmoothingEnabled = true;
  b.drawImage(pad, x0, y0, w, h, 14 - (w * s) / 2, 14 - (h * s) / 2, w * s, h * s);
  const img = b.getImageData(0, 0, 28, 28).data;
  const px = new Float32Array(784);
  let m = 0, mx = 0, my = 0;
  for (let i = 0; i < 784; i++) { px[i] = img[4 * i] / 255; m += px[i]; mx += px[i] * (i % 28); my += px[i] * Math.floor(i / 28); }
  const dx = Math.round(14 - mx / m), dy = Math.round(14 - my / m);
  const out = new Float32Array(784);
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
    const sx = x - dx, sy = y - dy;
    if (sx >= 0 && sx < 28 && sy >= 0 && sy < 28) out[y * 28 + x] = px[sy * 28 + sx];
  }
  return out;
}

async function predictDrawn() {
  if (!demo || !state.ready) return;
  const px = drawnPixels();
  if (!px) return;
  let p;
  try { p = await exclusive(() => demo.predict(px)); } catch (e) { return; }
  const best = p.indexOf(Math.max(...p));
  $('probs').innerHTML = Array.from(p).map((v, d) =>
    `<b>${d}</b><div class="bar${d === best ? ' top' : ''}" style="width:${(100 * v).toFixed(1)}%"></div>`).join('');
}

// ----- controls -----
$('start').addEventListener('click', () => {
  if (state.running || !state.ready) return;
  state.running = true;
  $('start').disabled = true; $('pause').disabled = false;
  loopDone = loop();
});
$('pause').addEventListener('click', async () => {
  state.running = false;
  await loopDone;
  $('start').disabled = false; $('pause').disabled = true;
});
async function reset() {
  state.running = false;
  await loopDone;
  await exclusive(create);
}
$('reset').addEventListener('click', reset);
for (const id of ['method', 'hidden', 'density', 'zeta', 'updateEvery', 'temperature', 'epochs', 'seed', 'backendChoice']) {
  $(id).addEventListener('change', () => { if (data) reset(); });
}

// URL parameters preset the controls, e.g. ?method=set&density=0.05&seed=3
for (const [key, value] of new URLSearchParams(location.search)) {
  const el = $(key);
  if (el && (el.tagName === 'INPUT' || el.tagName === 'SELECT')) el.value = value;
}
boot();
