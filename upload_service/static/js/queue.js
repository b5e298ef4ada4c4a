// The upload queue: one row per file with a progress bar, percent, speed, a cancel button and an error line.

import { humanSize, humanSpeed, SpeedMeter } from "./format.js";
import { refusalText } from "./http.js";

class UploadRow {
  constructor(file, template) {
    this.file = file;
    this.controller = new AbortController();
    this.meter = new SpeedMeter();
    this.element = template.content.firstElementChild.cloneNode(true);
    this.part = (name) => this.element.querySelector(`.upload-${name}`);
    this.part("name").textContent = file.name;
    this.part("size").textContent = humanSize(file.size);
    this.part("bar").setAttribute("aria-label", `Upload progress of ${file.name}`);
    this.part("cancel").setAttribute("aria-label", `Cancel upload of ${file.name}`);
    this.part("cancel").addEventListener("click", () => this.controller.abort());
    this.state("Waiting");
  }

  state(text, kind = "") {
    this.part("state").textContent = text;
    this.element.dataset.state = kind || text.toLowerCase();
  }

  progress(loaded, total) {
    const percent = total ? Math.floor((loaded / total) * 100) : 0;
    this.part("bar").value = percent;
    this.part("percent").textContent = `${percent} %`;
    const speed = this.meter.add(loaded);
    this.part("speed").textContent = speed === null ? "" : humanSpeed(speed);
  }

  finished(started) {
    const seconds = Math.max((performance.now() - started) / 1000, 0.001);
    this.part("bar").value = 100;
    this.part("percent").textContent = "100 %";
    this.part("speed").textContent = `${humanSpeed(this.file.size / seconds)} average`;
    this.part("cancel").hidden = true;
    this.state("Done");
  }

  failed(error) {
    this.part("cancel").hidden = true;
    this.part("speed").textContent = "";
    if (error.cancelled) {
      this.state("Cancelled");
      return;
    }
    this.state("Refused", "failed");
    this.part("bar").hidden = true;
    this.part("percent").hidden = true;
    const line = this.part("error");
    line.textContent = refusalText(error);
    line.hidden = false;
  }
}

export class UploadQueue {
  /** `pickTransport(file)` returns the transport for a file; `onUploaded(description)` runs after each success. */
  constructor({ list, template, pickTransport, onUploaded, concurrency = 3 }) {
    Object.assign(this, { list, template, pickTransport, onUploaded, concurrency });
    this.waiting = [];
    this.running = 0;
  }

  add(files) {
    for (const file of files) {
      const row = new UploadRow(file, this.template);
      this.list.prepend(row.element);
      this.waiting.push(row);
    }
    this.pump();
  }

  pump() {
    while (this.running < this.concurrency && this.waiting.length) {
      this.running += 1;
      this.run(this.waiting.shift()).finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  async run(row) {
    const started = performance.now();
    row.state("", "uploading");
    try {
      const transport = this.pickTransport(row.file);
      const described = await transport.upload(row.file, {
        onProgress: (loaded, total) => row.progress(loaded, total ?? row.file.size),
        signal: row.controller.signal,
      });
      row.finished(started);
      this.onUploaded(described);
    } catch (error) {
      row.failed(error);
    }
  }
}
