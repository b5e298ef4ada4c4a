// Entry point: wires the upload queue, the drop zone, the form flow and htmx error reporting to the page.
// Settings come from data-* attributes on <body> (no inline scripts: the page's CSP forbids them).

import { AttachForm } from "./attach-form.js";
import { connectDropzone } from "./dropzone.js";
import { localizeTimes, reportHtmxErrors } from "./page.js";
import { UploadQueue } from "./queue.js";
import { chooser, multipartTransport, rawPutTransport, tusTransport } from "./transports.js";

document.documentElement.classList.replace("no-js", "js");

/** Files larger than `data-tus-threshold` go by tus (resumable) when the page loaded tus-js-client. */
function resumableRules(config) {
  if (!config.tusUrl || !globalThis.tus?.isSupported) return [];
  const threshold = Number(config.tusThreshold);
  const transport = tusTransport({ endpoint: config.tusUrl, filesUrl: config.filesUrl, csrfToken: config.csrfToken });
  return [{ accepts: (file) => file.size > threshold, transport }];
}

function start(config) {
  const filesChanged = () => document.body.dispatchEvent(new CustomEvent(config.filesChanged, { bubbles: true }));
  const byId = (id) => document.getElementById(id);

  const queue = new UploadQueue({
    list: byId("upload-queue"),
    template: byId("upload-item-template"),
    pickTransport: chooser(rawPutTransport({ filesUrl: config.filesUrl, csrfToken: config.csrfToken }),
      resumableRules(config)),
    onUploaded: filesChanged,
  });
  connectDropzone(byId("upload-form"), byId("upload-input"), (files) => queue.add(files));

  new AttachForm({
    form: byId("attach-form"),
    input: byId("attach-input"),
    list: byId("attachments"),
    template: byId("attachment-template"),
    result: byId("attach-result"),
    transport: multipartTransport({ url: config.temporaryUrl, csrfToken: config.csrfToken }),
    persistUrl: config.persistUrl,
    csrfToken: config.csrfToken,
    onSaved: filesChanged,
  });

  reportHtmxErrors(byId("page-alert"));
  localizeTimes(document);
  document.body.addEventListener("htmx:afterSettle", () => localizeTimes(byId("file-rows")));
}

if (document.body.dataset.csrfToken) start(document.body.dataset);
