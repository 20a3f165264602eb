// Reads image dimensions and shrinks PNG/JPEG images until their encoded size fits a byte budget.

import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';

export type RasterMime = 'image/png' | 'image/jpeg';

export interface ImageSize {
  width: number;
  height: number;
}

export interface FittedImage {
  data: Buffer;
  mime: RasterMime;
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
  /** False when the input already fitted and is returned untouched. */
  downscaled: boolean;
}

interface Raster {
  width: number;
  height: number;
  /** RGBA, 8 bits per channel. */
  pixels: Uint8Array;
  opaque: boolean;
}

// Decoding allocates width × height × 4 bytes; past this an image is refused rather than risk the process.
const MAX_DECODE_PIXELS = 100_000_000;
const JPEG_QUALITIES = [85, 70, 55, 40, 25];
const MIN_SIDE = 16;

export function isRasterMime(mime: string): mime is RasterMime {
  return mime === 'image/png' || mime === 'image/jpeg';
}

/** Width and height read from the file header (no decoding), or null when the bytes are not that format. */
export function imageSize(buffer: Buffer, mime: string): ImageSize | null {
  if (mime === 'image/png') return pngSize(buffer);
  if (mime === 'image/jpeg') return jpegSize(buffer);
  return null;
}

function pngSize(b: Buffer): ImageSize | null {
  const signature = '89504e470d0a1a0a';
  if (b.length < 24 || b.subarray(0, 8).toString('hex') !== signature || b.toString('latin1', 12, 16) !== 'IHDR') return null;
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

function jpegSize(b: Buffer): ImageSize | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let i = 2;
  while (i + 3 < b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1] ?? 0;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    // Markers without a length field.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2;
      continue;
    }
    const length = b.readUInt16BE(i + 2);
    // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (i + 9 > b.length) return null;
      return { width: b.readUInt16BE(i + 7), height: b.readUInt16BE(i + 5) };
    }
    i += 2 + length;
  }
  return null;
}

function decode(buffer: Buffer, mime: RasterMime): Raster {
  const size = imageSize(buffer, mime);
  if (!size) throw new Error(`the data is not a valid ${mime} file`);
  if (size.width * size.height > MAX_DECODE_PIXELS) {
    throw new Error(`${size.width}x${size.height} is too many pixels to decode safely (limit ${MAX_DECODE_PIXELS / 1e6} MP)`);
  }
  if (mime === 'image/png') {
    const png = PNG.sync.read(buffer);
    return { width: png.width, height: png.height, pixels: png.data, opaque: !png.alpha || allOpaque(png.data) };
  }
  const img = jpeg.decode(buffer, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_DECODE_PIXELS / 1e6 });
  return { width: img.width, height: img.height, pixels: img.data, opaque: true };
}

function allOpaque(rgba: Uint8Array): boolean {
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] !== 255) return false;
  return true;
}

/** For each destination index, the source indices it covers and the share of each (they sum to 1). */
function areaWeights(srcLength: number, dstLength: number): Array<{ first: number; weights: Float64Array }> {
  const scale = srcLength / dstLength;
  const out: Array<{ first: number; weights: Float64Array }> = [];
  for (let d = 0; d < dstLength; d++) {
    const start = d * scale;
    const end = Math.min(srcLength, (d + 1) * scale);
    const first = Math.floor(start);
    const last = Math.min(srcLength - 1, Math.ceil(end) - 1);
    const weights = new Float64Array(last - first + 1);
    for (let s = first; s <= last; s++) weights[s - first] = (Math.min(end, s + 1) - Math.max(start, s)) / scale;
    out.push({ first, weights });
  }
  return out;
}

/**
 * Box (area-average) resample: every destination pixel is the mean of the source area it covers. Colours
 * are averaged premultiplied by alpha so transparent pixels do not bleed their (meaningless) colour.
 * Works one destination row at a time, so memory stays proportional to a row, not the image.
 */
function resample(src: Raster, width: number, height: number): Raster {
  const xs = areaWeights(src.width, width);
  const ys = areaWeights(src.height, height);
  const out = new Uint8Array(width * height * 4);
  const acc = new Float64Array(width * 4);
  const p = src.pixels;
  for (let dy = 0; dy < height; dy++) {
    acc.fill(0);
    const yw = ys[dy]!;
    for (let k = 0; k < yw.weights.length; k++) {
      const wy = yw.weights[k]!;
      const rowBase = (yw.first + k) * src.width * 4;
      for (let dx = 0; dx < width; dx++) {
        const xw = xs[dx]!;
        let r = 0, g = 0, b = 0, a = 0;
        for (let j = 0; j < xw.weights.length; j++) {
          const w = xw.weights[j]!;
          const i = rowBase + (xw.first + j) * 4;
          const alpha = p[i + 3]! * w;
          r += p[i]! * alpha;
          g += p[i + 1]! * alpha;
          b += p[i + 2]! * alpha;
          a += alpha;
        }
        const o = dx * 4;
        acc[o] = acc[o]! + r * wy;
        acc[o + 1] = acc[o + 1]! + g * wy;
        acc[o + 2] = acc[o + 2]! + b * wy;
        acc[o + 3] = acc[o + 3]! + a * wy;
      }
    }
    const rowOut = dy * width * 4;
    for (let dx = 0; dx < width; dx++) {
      const o = dx * 4;
      const a = acc[o + 3]!;
      if (a > 0) {
        out[rowOut + o] = Math.round(acc[o]! / a);
        out[rowOut + o + 1] = Math.round(acc[o + 1]! / a);
        out[rowOut + o + 2] = Math.round(acc[o + 2]! / a);
      }
      out[rowOut + o + 3] = Math.round(a);
    }
  }
  return { width, height, pixels: out, opaque: src.opaque };
}

function encodePng(r: Raster): Buffer {
  const png = new PNG({ width: r.width, height: r.height });
  png.data = Buffer.from(r.pixels.buffer, r.pixels.byteOffset, r.pixels.byteLength);
  // Opaque images drop the alpha channel: a quarter fewer bytes to compress.
  return PNG.sync.write(png, { colorType: r.opaque ? 2 : 6, inputColorType: 6, inputHasAlpha: true, deflateLevel: 9 });
}

function encodeJpeg(r: Raster, quality: number): Buffer {
  let pixels = r.pixels;
  if (!r.opaque) {
    // JPEG has no alpha: composite over white, which is how notebooks show transparent figures.
    pixels = new Uint8Array(r.pixels);
    for (let i = 0; i < pixels.length; i += 4) {
      const a = pixels[i + 3]! / 255;
      pixels[i] = Math.round(pixels[i]! * a + 255 * (1 - a));
      pixels[i + 1] = Math.round(pixels[i + 1]! * a + 255 * (1 - a));
      pixels[i + 2] = Math.round(pixels[i + 2]! * a + 255 * (1 - a));
      pixels[i + 3] = 255;
    }
  }
  return jpeg.encode({ width: r.width, height: r.height, data: pixels }, quality).data;
}

/**
 * The image re-encoded to at most `maxBytes` bytes: untouched when it already fits, else area-averaged
 * down (PNG stays PNG while it can, then JPEG at falling quality). Null when even a tiny version does not
 * fit. Throws when the bytes cannot be decoded as `mime`.
 */
export function downscaleImage(buffer: Buffer, mime: string, maxBytes: number): FittedImage | null {
  if (!isRasterMime(mime)) throw new Error(`cannot downscale ${mime}: only image/png and image/jpeg are supported`);
  const size = imageSize(buffer, mime);
  if (!size) throw new Error(`the data is not a valid ${mime} file`);
  const original = { originalWidth: size.width, originalHeight: size.height };
  if (buffer.length <= maxBytes) return { data: buffer, mime, width: size.width, height: size.height, ...original, downscaled: false };
  const src = decode(buffer, mime);
  // Encoded size grows roughly with pixel count, so the first guess scales the area by the byte ratio.
  let scale = Math.min(1, Math.sqrt(maxBytes / buffer.length) * 0.95);
  for (let attempt = 0; attempt < 12; attempt++) {
    const width = Math.max(1, Math.round(src.width * scale));
    const height = Math.max(1, Math.round(src.height * scale));
    const raster = width === src.width && height === src.height ? src : resample(src, width, height);
    let smallest = Infinity;
    const fitted = (data: Buffer, outMime: RasterMime): FittedImage => ({ data, mime: outMime, width, height, ...original, downscaled: true });
    if (mime === 'image/png') {
      const png = encodePng(raster);
      if (png.length <= maxBytes) return fitted(png, 'image/png');
      smallest = png.length;
    }
    for (const quality of JPEG_QUALITIES) {
      const jpg = encodeJpeg(raster, quality);
      if (jpg.length <= maxBytes) return fitted(jpg, 'image/jpeg');
      smallest = Math.min(smallest, jpg.length);
      // Far over budget: lowering quality will not close the gap, shrinking will.
      if (jpg.length > maxBytes * 3) break;
    }
    if (width <= MIN_SIDE && height <= MIN_SIDE) return null;
    scale *= Math.min(0.85, Math.max(0.3, Math.sqrt(maxBytes / smallest) * 0.95));
  }
  return null;
}
