/**
 * Synthetic face identities rendered with sharp (SVG -> raster), with per-image nuisance and a
 * quality degradation whose ground-truth level is recorded. No face data set can be downloaded here,
 * and the ablations need identities with known quality (L2-softmax's norm/quality split).
 *
 * - Identity i is a fixed parameter vector drawn from hash(seed, i): face shape, jaw, skin tone, eyes,
 *   brows, nose, mouth, hair, marks. Adding identities never changes earlier ones.
 * - Image j of identity i draws nuisance (rotation, scale, translation, illumination, expression) and
 *   a degradation (blur, down-sampling, JPEG, noise, occlusion) with level in [0, 1] from hash(seed, i, j).
 * - Rendered once and cached under <project>/.cache/synthetic/<config hash>/ (images.u8 + meta.json),
 *   content-addressed by the options that determine the pixels; label noise (flips, splits, merges)
 *   is applied on load, so it does not re-render. Processes share the cache: one renders (under
 *   <hash>.lock, into a temporary folder renamed into place), the others wait and load its copy.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { projectRoot } from "../project";
import { checkInt, checkNumber, configError, type Dataset, type ImageSample } from "./dataset";
import { DEGRADATIONS, type Degradation, degradeRaw } from "./degrade";
import { hashInts, Rng } from "./rng";

/** Bump when the drawing changes, so old caches are not reused. */
const RENDER_VERSION = 1;

export { DEGRADATIONS, type Degradation } from "./degrade";

export interface LongTail {
  /** Images of the most frequent identity. */
  max: number;
  /** Images of the rarest identities (at least 1). */
  min: number;
  /** Zipf exponent: identity of rank r gets max * (r + 1)^-exponent images, at least min. */
  exponent: number;
}

export interface LabelNoise {
  /** Fraction of images whose label is replaced by a random other identity. */
  flip?: number;
  /** Fraction of identities split into two labels (half their images each). */
  split?: number;
  /** Fraction of identities merged into another identity's label. */
  merge?: number;
}

export interface SyntheticOptions {
  seed?: number;
  identities: number;
  /** Images per identity (ignored when longTail is set). Default 10. */
  imagesPerIdentity?: number;
  longTail?: LongTail;
  /** Output size in pixels (square). Default 32. */
  size?: number;
  /** 1 = grayscale, 3 = RGB. Default 1. */
  channels?: 1 | 3;
  /** Fraction of images that get a degradation (the rest are clean). Default 0.5. */
  degradedFraction?: number;
  /** Degradations to draw from. Default all five. */
  degradations?: Exclude<Degradation, "none">[];
  /** Strength of pose/illumination/expression nuisance, 0..1. Default 1. */
  nuisance?: number;
  labelNoise?: LabelNoise;
  /** Cache folder; default <project>/.cache/synthetic. `false` renders in memory without caching. */
  cacheDir?: string | false;
  /** Parallel renders (sharp runs on libuv threads). Default 4. */
  concurrency?: number;
  /** Sets larger than this (bytes of pixels) are kept on disk and read per image. Default 512 MiB. */
  inMemoryLimitBytes?: number;
  /** Called with (done, total) while rendering. */
  onProgress?: (done: number, total: number) => void;
}

export interface SyntheticMeta {
  version: number;
  hash: string;
  size: number;
  channels: 1 | 3;
  identities: number;
  count: number;
  /** True identity of each image (before label noise). */
  identity: number[];
  quality: number[];
  degradation: Degradation[];
  level: number[];
  renderSeconds: number;
}

export interface SyntheticDataset extends Dataset {
  readonly quality: Float32Array;
  /** True identity per image (labels differ from it where label noise was applied). */
  readonly identity: Int32Array;
  readonly degradation: readonly Degradation[];
  readonly level: Float32Array;
  readonly meta: SyntheticMeta;
  /** Where the cache lives (undefined when not cached), and whether this load rendered it. */
  readonly cachePath?: string;
  readonly rendered: boolean;
}

/** Normalised options that determine the pixels (what the cache is keyed by). */
function renderKey(o: SyntheticOptions) {
  return {
    v: RENDER_VERSION,
    seed: o.seed ?? 0,
    identities: o.identities,
    imagesPerIdentity: o.longTail ? null : (o.imagesPerIdentity ?? 10),
    longTail: o.longTail ?? null,
    size: o.size ?? 32,
    channels: o.channels ?? 1,
    degradedFraction: o.degradedFraction ?? 0.5,
    degradations: o.degradations ?? DEGRADATIONS.slice(1),
    nuisance: o.nuisance ?? 1,
  };
}

export function syntheticHash(o: SyntheticOptions): string {
  return createHash("sha256")
    .update(JSON.stringify(renderKey(o)))
    .digest("hex")
    .slice(0, 16);
}

function validate(o: SyntheticOptions): void {
  if (o === null || typeof o !== "object") throw configError("synthetic options", o, "expected an object");
  checkInt("synthetic.identities", o.identities, 1);
  if (o.imagesPerIdentity !== undefined) checkInt("synthetic.imagesPerIdentity", o.imagesPerIdentity, 1);
  if (o.size !== undefined) checkInt("synthetic.size", o.size, 8, 512);
  if (o.channels !== undefined && o.channels !== 1 && o.channels !== 3) {
    throw configError("synthetic.channels", o.channels, "allowed are 1 (grayscale) and 3 (RGB)");
  }
  if (o.seed !== undefined) checkInt("synthetic.seed", o.seed, 0, 2 ** 32 - 1);
  if (o.degradedFraction !== undefined) checkNumber("synthetic.degradedFraction", o.degradedFraction, 0, 1);
  if (o.nuisance !== undefined) checkNumber("synthetic.nuisance", o.nuisance, 0, 2);
  for (const d of o.degradations ?? []) {
    if (!DEGRADATIONS.includes(d) || (d as Degradation) === "none") {
      throw configError("synthetic.degradations", d, `allowed are ${DEGRADATIONS.slice(1).join(", ")}`);
    }
  }
  if (o.longTail) {
    checkInt("synthetic.longTail.max", o.longTail.max, 1);
    checkInt("synthetic.longTail.min", o.longTail.min, 1, o.longTail.max);
    checkNumber("synthetic.longTail.exponent", o.longTail.exponent, 0, 10);
  }
  const n = o.labelNoise ?? {};
  if (n.flip !== undefined) checkNumber("synthetic.labelNoise.flip", n.flip, 0, 1);
  if (n.split !== undefined) checkNumber("synthetic.labelNoise.split", n.split, 0, 1);
  if (n.merge !== undefined) checkNumber("synthetic.labelNoise.merge", n.merge, 0, 1);
  if (o.concurrency !== undefined) checkInt("synthetic.concurrency", o.concurrency, 1, 256);
}

/** Images per identity: constant, or Zipf-like long tail (ranks shuffled by the seed). */
export function identityCounts(o: SyntheticOptions): number[] {
  const k = renderKey(o);
  if (!o.longTail) return new Array(k.identities).fill(k.imagesPerIdentity);
  const { max, min, exponent } = o.longTail;
  const counts = Array.from({ length: k.identities }, (_, r) => Math.max(min, Math.round(max * (r + 1) ** -exponent)));
  const rng = new Rng(hashInts(k.seed, 0x7a11));
  for (let i = counts.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [counts[i], counts[j]] = [counts[j], counts[i]];
  }
  return counts;
}

// ---------- identity and image parameters ----------

export interface IdentityParams {
  faceRx: number;
  faceRy: number;
  jaw: number;
  skin: [number, number, number];
  eyeSpacing: number;
  eyeY: number;
  eyeRx: number;
  eyeRy: number;
  iris: number;
  browY: number;
  browTilt: number;
  browThick: number;
  browLen: number;
  noseLen: number;
  noseW: number;
  noseStyle: number;
  mouthY: number;
  mouthW: number;
  mouthThick: number;
  mouthCurve: number;
  hairStyle: number;
  hairline: number;
  hair: [number, number, number];
  marks: { x: number; y: number; r: number }[];
  beard: number;
  glasses: number;
}

export function identityParams(seed: number, id: number): IdentityParams {
  const r = new Rng(hashInts(seed, id, 0x1d));
  const tone = r.uniform(0.35, 0.95);
  const skin: [number, number, number] = [tone, tone * r.uniform(0.72, 0.9), tone * r.uniform(0.55, 0.8)];
  const hairTone = r.uniform(0.05, 0.8);
  const marks = Array.from({ length: r.int(3) }, () => ({
    x: r.uniform(-22, 22),
    y: r.uniform(-10, 25),
    r: r.uniform(1.5, 3.5),
  }));
  return {
    faceRx: r.uniform(26, 36),
    faceRy: r.uniform(34, 44),
    jaw: r.uniform(-0.3, 0.5),
    skin,
    eyeSpacing: r.uniform(9, 17),
    eyeY: r.uniform(-10, -2),
    eyeRx: r.uniform(3.5, 7.5),
    eyeRy: r.uniform(1.8, 4.5),
    iris: r.uniform(0, 0.5),
    browY: r.uniform(5, 10),
    browTilt: r.uniform(-0.35, 0.35),
    browThick: r.uniform(1, 4),
    browLen: r.uniform(7, 15),
    noseLen: r.uniform(7, 18),
    noseW: r.uniform(3, 9),
    noseStyle: r.int(3),
    mouthY: r.uniform(14, 25),
    mouthW: r.uniform(8, 20),
    mouthThick: r.uniform(1.2, 4.5),
    mouthCurve: r.uniform(-3, 5),
    hairStyle: r.int(4),
    hairline: r.uniform(-36, -20),
    hair: [hairTone, hairTone * r.uniform(0.6, 1), hairTone * r.uniform(0.3, 0.9)],
    marks,
    beard: r.next() < 0.25 ? r.uniform(0.3, 0.8) : 0,
    glasses: r.next() < 0.2 ? 1 : 0,
  };
}

export interface ImageParams {
  rotation: number;
  scale: number;
  dx: number;
  dy: number;
  light: number;
  lightAngle: number;
  lightStrength: number;
  smile: number;
  eyeOpen: number;
  browRaise: number;
  background: number;
  degradation: Degradation;
  level: number;
  occluder: { x: number; y: number; angle: number };
}

export function imageParams(seed: number, id: number, j: number, o: ReturnType<typeof renderKey>): ImageParams {
  const r = new Rng(hashInts(seed, id, j, 0x1a));
  const n = o.nuisance;
  const degraded = r.next() < o.degradedFraction;
  const degradation: Degradation = degraded ? r.pick(o.degradations) : "none";
  return {
    rotation: r.normal() * 8 * n,
    scale: 1 + r.normal() * 0.05 * n,
    dx: r.normal() * 3 * n,
    dy: r.normal() * 3 * n,
    light: 1 + r.normal() * 0.12 * n,
    lightAngle: r.uniform(0, 360),
    lightStrength: r.uniform(0, 0.35) * n,
    smile: r.normal() * 2.5 * n,
    eyeOpen: Math.min(1.3, Math.max(0.3, 1 + r.normal() * 0.2 * n)),
    browRaise: r.normal() * 1.5 * n,
    background: r.uniform(0.2, 0.8),
    degradation,
    level: degraded ? r.uniform(0.1, 1) : 0,
    occluder: { x: r.uniform(-20, 20), y: r.uniform(-20, 20), angle: r.uniform(0, 180) },
  };
}

const rgb = (c: readonly number[], k = 1) =>
  `rgb(${c.map((v) => Math.max(0, Math.min(255, Math.round(v * k * 255)))).join(",")})`;

/** The SVG of one image (viewBox 100x100, face centred at 50,50). */
export function faceSvg(p: IdentityParams, q: ImageParams, size: number): string {
  const L = q.light;
  const bg = rgb([q.background, q.background, q.background]);
  const skin = rgb(p.skin, L);
  const dark = rgb(p.skin, L * 0.45);
  const hair = rgb(p.hair, L);
  const parts: string[] = [];
  // hair behind the face
  if (p.hairStyle >= 2)
    parts.push(`<ellipse cx="0" cy="${-4}" rx="${p.faceRx + 6}" ry="${p.faceRy + 4}" fill="${hair}"/>`);
  // face: an ellipse-like path whose chin is pointier or squarer per identity
  const rx = p.faceRx;
  const ry = p.faceRy;
  const jx = rx * (0.55 + 0.35 * p.jaw);
  parts.push(
    `<path d="M ${-rx} 0 C ${-rx} ${-ry * 1.3}, ${rx} ${-ry * 1.3}, ${rx} 0 C ${rx} ${ry * 0.6}, ${jx} ${ry}, 0 ${ry} C ${-jx} ${ry}, ${-rx} ${ry * 0.6}, ${-rx} 0 Z" fill="${skin}"/>`,
  );
  // hair on top
  const hl = p.hairline;
  if (p.hairStyle === 0)
    parts.push(
      `<path d="M ${-rx} ${hl + 8} Q 0 ${hl - 16} ${rx} ${hl + 8} L ${rx} ${hl} Q 0 ${hl - 24} ${-rx} ${hl} Z" fill="${hair}"/>`,
    );
  else if (p.hairStyle === 1)
    parts.push(
      `<path d="M ${-rx - 2} ${hl + 14} Q ${-rx * 0.5} ${hl - 14} ${rx + 2} ${hl + 4} L ${rx} ${hl - 10} Q 0 ${hl - 22} ${-rx} ${hl - 6} Z" fill="${hair}"/>`,
    );
  else
    parts.push(
      `<path d="M ${-rx} ${hl + 10} Q 0 ${hl + (p.hairStyle === 2 ? -6 : 4)} ${rx} ${hl + 10} L ${rx} ${hl - 14} Q 0 ${hl - 26} ${-rx} ${hl - 14} Z" fill="${hair}"/>`,
    );
  // beard
  if (p.beard > 0)
    parts.push(
      `<path d="M ${-jx} ${p.mouthY - 6} Q 0 ${ry + 6} ${jx} ${p.mouthY - 6} Q 0 ${p.mouthY + 8} ${-jx} ${p.mouthY - 6} Z" fill="${hair}" fill-opacity="${p.beard}"/>`,
    );
  // eyes
  for (const s of [-1, 1]) {
    const ex = s * p.eyeSpacing;
    parts.push(
      `<ellipse cx="${ex}" cy="${p.eyeY}" rx="${p.eyeRx}" ry="${p.eyeRy * q.eyeOpen}" fill="rgb(240,240,240)"/>`,
    );
    parts.push(
      `<circle cx="${ex}" cy="${p.eyeY}" r="${Math.min(p.eyeRx, p.eyeRy * q.eyeOpen) * 0.8}" fill="${rgb([p.iris, p.iris * 0.8, p.iris * 0.6])}"/>`,
    );
    // brows: tilt and thickness per identity, raise per expression
    const by = p.eyeY - p.browY - q.browRaise;
    const bx0 = ex - (s * p.browLen) / 2;
    const bx1 = ex + (s * p.browLen) / 2;
    parts.push(
      `<line x1="${bx0}" y1="${by + p.browTilt * p.browLen * 0.5}" x2="${bx1}" y2="${by - p.browTilt * p.browLen * 0.5}" stroke="${hair}" stroke-width="${p.browThick}" stroke-linecap="round"/>`,
    );
  }
  if (p.glasses) {
    for (const s of [-1, 1])
      parts.push(
        `<circle cx="${s * p.eyeSpacing}" cy="${p.eyeY}" r="${p.eyeRx + 2.5}" fill="none" stroke="rgb(30,30,30)" stroke-width="1.2"/>`,
      );
    parts.push(
      `<line x1="${-p.eyeSpacing + p.eyeRx + 2.5}" y1="${p.eyeY}" x2="${p.eyeSpacing - p.eyeRx - 2.5}" y2="${p.eyeY}" stroke="rgb(30,30,30)" stroke-width="1.2"/>`,
    );
  }
  // nose
  const ny = p.eyeY + 3;
  if (p.noseStyle === 0)
    parts.push(
      `<path d="M 0 ${ny} L ${-p.noseW / 2} ${ny + p.noseLen} L ${p.noseW / 2} ${ny + p.noseLen}" fill="none" stroke="${dark}" stroke-width="1.5"/>`,
    );
  else if (p.noseStyle === 1)
    parts.push(
      `<path d="M 0 ${ny} L ${-p.noseW / 2} ${ny + p.noseLen} L ${p.noseW / 2} ${ny + p.noseLen} Z" fill="${dark}" fill-opacity="0.6"/>`,
    );
  else
    parts.push(
      `<ellipse cx="0" cy="${ny + p.noseLen * 0.8}" rx="${p.noseW / 2}" ry="${p.noseW / 4 + 1}" fill="${dark}"/>`,
    );
  // mouth: width, thickness per identity; curvature = identity + expression
  const mw = p.mouthW / 2;
  const curve = p.mouthCurve + q.smile;
  parts.push(
    `<path d="M ${-mw} ${p.mouthY} Q 0 ${p.mouthY + curve * 2} ${mw} ${p.mouthY}" fill="none" stroke="${rgb([0.55, 0.15, 0.15], L)}" stroke-width="${p.mouthThick}" stroke-linecap="round"/>`,
  );
  for (const m of p.marks) parts.push(`<circle cx="${m.x}" cy="${m.y}" r="${m.r}" fill="${dark}"/>`);
  // occlusion: a bar or block across the face; its extent grows with the level
  if (q.degradation === "occlusion") {
    const w = 20 + 60 * q.level;
    const h = 8 + 30 * q.level;
    parts.push(
      `<rect x="${q.occluder.x - w / 2}" y="${q.occluder.y - h / 2}" width="${w}" height="${h}" transform="rotate(${q.occluder.angle} ${q.occluder.x} ${q.occluder.y})" fill="rgb(60,60,60)"/>`,
    );
  }
  // illumination: a directional shading gradient over everything
  const a = (q.lightAngle * Math.PI) / 180;
  const gx = 50 + 50 * Math.cos(a);
  const gy = 50 + 50 * Math.sin(a);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 100 100">` +
    `<defs><linearGradient id="l" gradientUnits="userSpaceOnUse" x1="${gx}" y1="${gy}" x2="${100 - gx}" y2="${100 - gy}">` +
    `<stop offset="0" stop-color="black" stop-opacity="0"/><stop offset="1" stop-color="black" stop-opacity="${q.lightStrength}"/></linearGradient></defs>` +
    `<rect width="100" height="100" fill="${bg}"/>` +
    `<g transform="translate(${50 + q.dx} ${50 + q.dy}) rotate(${q.rotation}) scale(${q.scale * 0.95})">${parts.join("")}</g>` +
    `<rect width="100" height="100" fill="url(#l)"/></svg>`
  );
}

/** Renders one image to raw HWC uint8 with its degradation applied. */
export async function renderImage(
  p: IdentityParams,
  q: ImageParams,
  size: number,
  channels: 1 | 3,
  noiseSeed: number,
): Promise<Uint8Array> {
  let img = sharp(Buffer.from(faceSvg(p, q, size))).removeAlpha();
  if (channels === 1) img = img.grayscale();
  const raw = await img.raw().toBuffer();
  const pixels = new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
  // occlusion is drawn into the SVG above; the other degradations act on the pixels
  return degradeRaw(pixels, size, size, channels, q.degradation, q.level, noiseSeed);
}

/** Applies label noise to true identities; returns training labels and the number of classes. */
export function applyLabelNoise(
  identity: Int32Array,
  identities: number,
  noise: LabelNoise | undefined,
  seed: number,
): { labels: Int32Array; numClasses: number } {
  const labels = Int32Array.from(identity);
  if (!noise) return { labels, numClasses: identities };
  const r = new Rng(hashInts(seed, 0x2015e));
  let numClasses = identities;
  // merge: identity i takes the label of another identity (two people, one label: "conflict")
  if (noise.merge) {
    const target = new Int32Array(identities).map((_, i) => i);
    for (let i = 0; i < identities; i++)
      if (r.next() < noise.merge && identities > 1) target[i] = (i + 1 + r.int(identities - 1)) % identities;
    for (let k = 0; k < labels.length; k++) labels[k] = target[labels[k]];
  }
  // split: every second image of a chosen identity gets a new label (one person, two labels)
  if (noise.split) {
    const split = new Map<number, number>();
    for (let i = 0; i < identities; i++) if (r.next() < noise.split) split.set(i, numClasses++);
    const seen = new Map<number, number>();
    for (let k = 0; k < labels.length; k++) {
      const id = identity[k];
      const extra = split.get(id);
      if (extra === undefined) continue;
      const n = seen.get(id) ?? 0;
      seen.set(id, n + 1);
      if (n % 2 === 1) labels[k] = extra;
    }
  }
  if (noise.flip) {
    for (let k = 0; k < labels.length; k++) {
      if (r.next() < noise.flip && numClasses > 1) labels[k] = (labels[k] + 1 + r.int(numClasses - 1)) % numClasses;
    }
  }
  return { labels, numClasses };
}

async function renderAll(
  o: SyntheticOptions,
  k: ReturnType<typeof renderKey>,
  counts: number[],
  hash: string,
  sink: (index: number, raw: Uint8Array) => void,
): Promise<SyntheticMeta> {
  const total = counts.reduce((a, b) => a + b, 0);
  const identity: number[] = [];
  const jobs: { id: number; j: number; idx: number }[] = [];
  for (let id = 0; id < counts.length; id++) {
    for (let j = 0; j < counts[id]; j++) {
      jobs.push({ id, j, idx: identity.length });
      identity.push(id);
    }
  }
  const quality = new Array<number>(total);
  const degradation = new Array<Degradation>(total);
  const level = new Array<number>(total);
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  let cachedId = -1;
  let cachedParams: IdentityParams | undefined;
  const params = (id: number) => {
    if (id !== cachedId) {
      cachedParams = identityParams(k.seed, id);
      cachedId = id;
    }
    return cachedParams!;
  };
  const worker = async () => {
    while (next < jobs.length) {
      const { id, j, idx } = jobs[next++];
      const q = imageParams(k.seed, id, j, k);
      const raw = await renderImage(params(id), q, k.size, k.channels, hashInts(k.seed, id, j, 0x0153));
      sink(idx, raw);
      degradation[idx] = q.degradation;
      level[idx] = q.level;
      quality[idx] = 1 - q.level;
      done++;
      if (o.onProgress && (done % 256 === 0 || done === total)) o.onProgress(done, total);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 4 }, worker));
  const meta: SyntheticMeta = {
    version: RENDER_VERSION,
    hash,
    size: k.size,
    channels: k.channels as 1 | 3,
    identities: k.identities,
    count: total,
    identity,
    quality,
    degradation,
    level,
    renderSeconds: (performance.now() - t0) / 1000,
  };
  return meta;
}

/** A finished cache folder (the rename into place is the last step of writing one). */
function cached(dir: string): boolean {
  return existsSync(path.join(dir, "meta.json")) && existsSync(path.join(dir, "images.u8"));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The right to render `dir`: `<dir>.lock` created exclusively, holding the owner's pid. While another
 * live process (or this one, in another call) holds it, waits until it is released; a lock whose
 * owner died is taken over, and that owner's half-written temporary folders are removed.
 */
async function acquireRenderLock(dir: string): Promise<{ release(): void }> {
  const lockFile = `${dir}.lock`;
  mkdirSync(path.dirname(dir), { recursive: true });
  for (;;) {
    try {
      const fdLock = openSync(lockFile, "wx");
      writeSync(fdLock, String(process.pid));
      closeSync(fdLock);
      return { release: () => rmSync(lockFile, { force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let owner = Number.NaN;
    try {
      owner = Number(readFileSync(lockFile, "utf8"));
    } catch {
      continue; // released between our attempt and the read: try again
    }
    if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
      const parent = path.dirname(dir);
      const stale = `${path.basename(dir)}.tmp-${owner}-`;
      for (const f of readdirSync(parent))
        if (f.startsWith(stale)) rmSync(path.join(parent, f), { recursive: true, force: true });
      rmSync(lockFile, { force: true });
      continue;
    }
    // an empty lock file is one being written this instant; a live owner is rendering: wait
    await new Promise((r) => setTimeout(r, 100));
    if (cached(dir)) return { release: () => undefined };
  }
}

/**
 * Renders (or loads from the cache) a synthetic identity set. Deterministic from the options: the same
 * options give the same pixels, labels and qualities on every machine with the same sharp/librsvg.
 */
export async function syntheticFaces(options: SyntheticOptions): Promise<SyntheticDataset> {
  validate(options);
  const k = renderKey(options);
  const hash = syntheticHash(options);
  const counts = identityCounts(options);
  const dir =
    options.cacheDir === false
      ? undefined
      : path.join(options.cacheDir ?? path.join(projectRoot, ".cache", "synthetic"), hash);
  const pixels = k.size * k.size * k.channels;
  const total = counts.reduce((x, y) => x + y, 0);
  // sets larger than this stay on disk and are read per image (100k identities at 112x112 do not fit in memory)
  const onDisk = dir !== undefined && total * pixels > (options.inMemoryLimitBytes ?? 512 * 2 ** 20);
  let data: Uint8Array | undefined;
  let fd: number | undefined;
  let meta: SyntheticMeta;
  let rendered = false;
  const file = dir ? path.join(dir, "images.u8") : "";
  // one process renders a set; others (worker processes of an ablation, a second seed's run) wait for it
  const lock = dir && !cached(dir) ? await acquireRenderLock(dir) : undefined;
  try {
    if (dir && cached(dir)) {
      meta = JSON.parse(readFileSync(path.join(dir, "meta.json"), "utf8")) as SyntheticMeta;
      const expected = meta.count * pixels;
      if (statSync(file).size !== expected) {
        throw new Error(
          `${file}: cache has ${statSync(file).size} bytes, expected ${expected}; delete ${dir} to re-render.`,
        );
      }
      if (!onDisk) {
        data = new Uint8Array(expected);
        const f = openSync(file, "r");
        try {
          readSync(f, data, 0, expected, 0);
        } finally {
          closeSync(f);
        }
      }
    } else {
      rendered = true;
      // atomic: render into a temporary folder, then rename it into place
      const tmp = dir ? `${dir}.tmp-${process.pid}-${Date.now()}` : undefined;
      if (tmp) mkdirSync(tmp, { recursive: true });
      try {
        if (onDisk) {
          const out = openSync(path.join(tmp!, "images.u8"), "w");
          try {
            meta = await renderAll(options, k, counts, hash, (i, raw) => {
              writeSync(out, raw, 0, raw.length, i * pixels);
            });
          } finally {
            closeSync(out);
          }
        } else {
          const mem = new Uint8Array(total * pixels);
          meta = await renderAll(options, k, counts, hash, (i, raw) => mem.set(raw, i * pixels));
          data = mem;
          if (tmp) writeFileSync(path.join(tmp, "images.u8"), mem);
        }
        if (tmp && dir) {
          writeFileSync(path.join(tmp, "meta.json"), JSON.stringify(meta));
          try {
            renameSync(tmp, dir);
          } catch (e) {
            if (!cached(dir)) throw e; // else a writer that took no lock finished first: its copy is identical
          }
        }
      } finally {
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    }
  } finally {
    lock?.release();
  }
  if (!data) fd = openSync(file, "r");
  const identity = Int32Array.from(meta.identity);
  const { labels, numClasses } = applyLabelNoise(identity, meta.identities, options.labelNoise, k.seed);
  const channels = meta.channels;
  const size = meta.size;
  return {
    name: `synthetic-${hash}`,
    size: meta.count,
    numClasses,
    labels,
    shape: [size, size, channels] as const,
    quality: Float32Array.from(meta.quality),
    identity,
    degradation: meta.degradation,
    level: Float32Array.from(meta.level),
    meta,
    cachePath: dir,
    rendered,
    async get(i: number): Promise<ImageSample> {
      if (!(i >= 0 && i < meta.count))
        throw new RangeError(`synthetic image index ${i} is out of range [0, ${meta.count})`);
      let px: Uint8Array;
      if (data) px = data.subarray(i * pixels, (i + 1) * pixels);
      else {
        px = new Uint8Array(pixels);
        readSync(fd!, px, 0, pixels, i * pixels);
      }
      return {
        data: px,
        width: size,
        height: size,
        channels,
        label: labels[i],
      };
    },
  };
}
