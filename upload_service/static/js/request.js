// The public upload page of a file request: picked or dropped files upload at once, one row each with progress
// and cancel, with the uploader's name and note (percent-encoded, so any script fits in a header); large files
// go by tus and resume after a dropped connection or a reload.

import { connectDropzone } from "./dropzone.js";
import { UploadQueue } from "./queue.js";
import { chooser, rawPutTransport, tusTransport } from "./transports.js";

/** Files larger than `data-tus-threshold` go by tus (resumable) when the page loaded tus-js-client. */
function resumableRules(form, extraHeaders) {
  if (!form.dataset.tusUrl || !globalThis.tus?.isSupported) return [];
  const threshold = Number(form.dataset.tusThreshold);
  const transport = tusTransport({
    endpoint: form.dataset.tusUrl, extraHeaders,
    describe: (file) => ({ filename: file.name, size: file.size }),
  });
  return [{ accepts: (file) => file.size > threshold, transport }];
}

function start(form) {
  const byId = (id) => document.getElementById(id);
  const note = (id) => encodeURIComponent(byId(id).value.trim());
  const extraHeaders = () => ({ "X-Uploader-Name": note("request-name"), "X-Uploader-Note": note("request-note") });
  const queue = new UploadQueue({
    list: byId("request-queue"),
    template: byId("upload-item-template"),
    pickTransport: chooser(rawPutTransport({ filesUrl: form.dataset.putUrl, extraHeaders }),
      resumableRules(form, extraHeaders)),
    onUploaded: () => {},
  });
  connectDropzone(form, byId("request-files"), (files) => queue.add(files));
}

const form = document.querySelector(".request-form[data-put-url]");
if (form) start(form);
