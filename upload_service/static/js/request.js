// The public upload page of a file request: picked or dropped files upload at once, one row each with progress
// and cancel, with the uploader's name and note (percent-encoded, so any script fits in a header).

import { connectDropzone } from "./dropzone.js";
import { UploadQueue } from "./queue.js";
import { rawPutTransport } from "./transports.js";

function start(form) {
  const byId = (id) => document.getElementById(id);
  const note = (id) => encodeURIComponent(byId(id).value.trim());
  const queue = new UploadQueue({
    list: byId("request-queue"),
    template: byId("upload-item-template"),
    pickTransport: () => rawPutTransport({
      filesUrl: form.dataset.putUrl,
      extraHeaders: () => ({ "X-Uploader-Name": note("request-name"), "X-Uploader-Note": note("request-note") }),
    }),
    onUploaded: () => {},
  });
  connectDropzone(form, byId("request-files"), (files) => queue.add(files));
}

const form = document.querySelector(".request-form[data-put-url]");
if (form) start(form);
