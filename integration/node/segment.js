#!/usr/bin/env node
// Independent consumer of the medseg CC model, written from docs/onnx-integration.md alone.
//
// Usage: node segment.js CONTRACT.json CASE_DIR
//   CASE_DIR/case.json: {"height": H, "width": W, "planes": ["plane0.f32", ...]}
//   planes: raw (un-normalised) values on the network grid, float32 little-endian, row-major
//           [H][W]; points outside the image hold input.normalization.outside_image_value.
// Writes CASE_DIR/mask_node.u8: N x H x W bytes, 1 = corpus callosum.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function readFloat32(file) {
  const buffer = fs.readFileSync(file);
  return new Float32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4);
}

// numpy.percentile's default: linear interpolation between order statistics.
function percentile(sorted, p) {
  const position = (sorted.length - 1) * p / 100;
  const lower = Math.floor(position);
  const upper = Math.min(lower + 1, sorted.length - 1);
  const fraction = position - lower;
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

// Otsu threshold of a 128-bin histogram spanning min..max (contract: input.normalization.region).
function otsuThreshold(values) {
  let min = Infinity, max = -Infinity;
  for (const v of values) { if (v < min) min = v; if (v > max) max = v; }
  if (!(max > min)) return null;
  const bins = 128, hist = new Float64Array(bins), width = (max - min) / bins;
  for (const v of values) hist[Math.min(bins - 1, Math.floor((v - min) / width))] += 1;
  let weight = 0, mean = 0, totalW = 0, totalM = 0, best = -1, threshold = min;
  for (let i = 0; i < bins; i++) { totalW += hist[i]; totalM += hist[i] * (min + (i + 0.5) * width); }
  for (let i = 0; i < bins; i++) {
    const centre = min + (i + 0.5) * width;
    weight += hist[i]; mean += hist[i] * centre;
    const denominator = Math.max(weight * (totalW - weight), 1e-12);
    const between = (mean * totalW - weight * totalM) ** 2 / denominator;
    if (between > best) { best = between; threshold = centre; }
  }
  return threshold;
}

function normalisePlane(plane, norm) {
  const threshold = otsuThreshold(plane);
  let selected = threshold === null ? [] : Array.from(plane).filter((v) => v > threshold);
  if (selected.length <= 50) selected = Array.from(plane);
  const sorted = Float64Array.from(selected).sort();
  const lo = percentile(sorted, norm.lower_percentile);
  const hi = percentile(sorted, norm.upper_percentile);
  const scale = hi > lo ? hi - lo : 1.0;
  return Float32Array.from(plane, (v) => (v - lo) / scale);
}

async function main() {
  const [contractPath, caseDir] = process.argv.slice(2);
  const contract = JSON.parse(fs.readFileSync(contractPath, 'utf8'));
  if (contract.contract_version.split('.')[0] !== '1') {
    throw new Error(`unsupported contract version ${contract.contract_version}`);
  }
  const spec = JSON.parse(fs.readFileSync(path.join(caseDir, 'case.json'), 'utf8'));
  const { height, width } = spec;
  const norm = contract.input.normalization;

  const n = spec.planes.length;
  const input = new Float32Array(n * height * width);
  spec.planes.forEach((name, i) => {
    input.set(normalisePlane(readFloat32(path.join(caseDir, name)), norm), i * height * width);
  });

  const modelPath = path.join(path.dirname(contractPath), contract.file);
  const digest = crypto.createHash('sha256').update(fs.readFileSync(modelPath)).digest('hex');
  if (digest !== contract.sha256) {
    throw new Error(`${contract.file}: sha256 ${digest} is not the contract's ${contract.sha256}`);
  }
  const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'] });
  const feeds = {};
  feeds[contract.input.name] = new ort.Tensor('float32', input, [n, 1, height, width]);
  const logits = (await session.run(feeds))[contract.output.name].data;

  const threshold = contract.output.threshold;
  const mask = new Uint8Array(n * height * width);
  for (let i = 0; i < n; i++) {
    const base = i * 2 * height * width;
    for (let j = 0; j < height * width; j++) {
      const l0 = logits[base + j];
      const l1 = logits[base + height * width + j];
      const p = 1 / (1 + Math.exp(l0 - l1)); // softmax over 2 channels
      mask[i * height * width + j] = p > threshold ? 1 : 0;
    }
  }
  fs.writeFileSync(path.join(caseDir, 'mask_node.u8'), mask);
  console.log(`wrote ${n} mask(s) of ${height}x${width}`);
}

main().catch((error) => { console.error(error.message); process.exit(1); });
