// The browser API of cht in one screen: create a run, train in chunks (each chunk is recorded on
// the device with no readback; the promise-returning calls read back once), evaluate, and read the
// topology metrics. The demo page (app.js) is the same calls plus drawing.
import init, { Demo } from './pkg/cht_web.js';

const out = document.getElementById('out');
const log = (line) => {
  out.textContent += `${line}\n`;
};

async function main() {
  await init(); // loads the wasm module
  const response = await fetch('data/mnist-subset.bin'); // written by `cht data web-subset`
  if (!response.ok) throw new Error(`data/mnist-subset.bin: HTTP ${response.status}`);
  const data = new Uint8Array(await response.arrayBuffer());

  // Every option has a default (see Demo.create); these make a small, quick run.
  const demo = await Demo.create(
    { method: 'chts', hidden: 128, hiddenLayers: 2, density: 0.05, updateEvery: 25, epochs: 1, batch: 32 },
    data,
  );
  log(`backend: ${demo.backend()}`);

  let chunk;
  do {
    chunk = demo.train(50); // records up to 50 steps, returns at once
    const m = await demo.metrics(); // one readback: the loss since the last call
    log(`step ${chunk.step}: train loss ${m.loss.toFixed(4)}, ${chunk.updates} topology updates`);
  } while (!chunk.finished && chunk.step < 300);

  const test = await demo.evaluate();
  const topology = await demo.topology(); // reads the masks back: densities, ANP, ITOP
  const densities = topology.layers.map((l) => `${(100 * l.density).toFixed(2)} %`).join(', ');
  log(`test accuracy ${(100 * test.acc).toFixed(1)} %`);
  log(`layer densities ${densities}; ANP ${topology.anp.toFixed(3)}; ITOP ${topology.itop.toFixed(3)}`);
  if (chunk.updates < 1) throw new Error('no topology update happened');
  document.body.dataset.status = 'ok';
}

main().catch((e) => {
  log(`error: ${e && e.message ? e.message : e}`);
  document.body.dataset.status = 'error';
});
