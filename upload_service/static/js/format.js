// Sizes and speeds as people read them (decimal units, like the server-rendered list).

const UNITS = ["bytes", "KB", "MB", "GB", "TB", "PB"];

export function humanSize(size) {
  let value = size;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  if (unit === 0) return size === 1 ? "1 byte" : `${size} bytes`;
  return `${value < 100 ? value.toFixed(1) : value.toFixed(0)} ${UNITS[unit]}`;
}

export function humanSpeed(bytesPerSecond) {
  return `${humanSize(Math.round(bytesPerSecond))}/s`;
}

/** Bytes per second over the last `window` milliseconds of progress samples (null until there is enough). */
export class SpeedMeter {
  constructor(window = 1500, least = 250) {
    this.window = window;
    this.least = least;
    this.samples = [];
  }

  add(loaded, now = performance.now()) {
    this.samples.push([now, loaded]);
    while (this.samples.length > 2 && now - this.samples[0][0] > this.window) this.samples.shift();
    const [[firstTime, firstLoaded]] = this.samples;
    const elapsed = now - firstTime;
    return elapsed >= this.least ? ((loaded - firstLoaded) * 1000) / elapsed : null;
  }
}
