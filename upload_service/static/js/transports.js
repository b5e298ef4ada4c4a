// Upload transports: each sends one File and reports progress, with one shape:
//   transport.upload(file, { onProgress(loaded, total), signal }) -> Promise<file description>
// so a resumable transport (tus-js-client for large files) can replace or join these without touching the UI.

import { problemError, RequestError, send } from "./http.js";

/** Raw `PUT <files url>/<name>`: the file is the request body, streamed, no encoding overhead. */
export function rawPutTransport({ filesUrl, csrfToken = "", temporary = false, extraHeaders = () => ({}) }) {
  return {
    name: "put",
    upload(file, { onProgress, signal } = {}) {
      const query = temporary ? "?temporary=1" : "";
      return send({
        method: "PUT",
        url: `${filesUrl}/${encodeURIComponent(file.name)}${query}`,
        body: file,
        headers: { "X-CSRF-Token": csrfToken, "Content-Type": file.type || "application/octet-stream",
          ...extraHeaders() },
        onProgress,
        signal,
      });
    },
  };
}

/** `multipart/form-data` POST of one file part (the browser streams the File from disk). */
export function multipartTransport({ url, csrfToken, field = "file" }) {
  return {
    name: "multipart",
    async upload(file, { onProgress, signal } = {}) {
      const body = new FormData();
      body.append(field, file, file.name);
      const answer = await send({ method: "POST", url, body, headers: { "X-CSRF-Token": csrfToken }, onProgress, signal });
      return answer.files[0];
    },
  };
}

function tusError(error) {
  const response = error.originalResponse;
  if (!response) return new RequestError("The connection closed before the server answered.");
  let body = null;
  try {
    body = JSON.parse(response.getBody());
  } catch {
    body = null;
  }
  return problemError(response.getStatus(), "", body);
}

/**
 * tus (tus-js-client, loaded by the page as the global `tus`): the file goes in chunks, a dropped connection
 * is retried, and a file picked again after a reload resumes from the server's offset (the upload URL is kept
 * in localStorage under the file's name, type, size and modification time until the upload completes).
 */
export function tusTransport({ endpoint, filesUrl, csrfToken = "", chunkSize = 8 * 1024 * 1024,
                               retryDelays = [0, 1000, 3000, 5000, 10000], extraHeaders = () => ({}),
                               describe = null }) {
  return {
    name: "tus",
    upload(file, { onProgress, signal } = {}) {
      return new Promise((resolve, reject) => {
        if (signal?.aborted) {
          reject(new RequestError("Cancelled", { cancelled: true }));
          return;
        }
        const upload = new globalThis.tus.Upload(file, {
          endpoint,
          chunkSize,
          retryDelays,
          removeFingerprintOnSuccess: true,
          headers: { "X-CSRF-Token": csrfToken, ...extraHeaders() },
          metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
          onProgress: (sent, total) => onProgress?.(sent, total),
          onError: (error) => reject(tusError(error)),
          onSuccess: ({ lastResponse }) => {
            if (describe) {  // an uploader who may not read the file (a file request) describes it from here
              resolve(describe(file, lastResponse));
              return;
            }
            const id = lastResponse.getHeader("Upload-File-Id");
            send({ method: "GET", url: `${filesUrl}/${encodeURIComponent(id)}` }).then(resolve, reject);
          },
        });
        signal?.addEventListener("abort", () => {
          // a cancelled upload is deleted on the server and forgotten here: picking the file again starts over
          upload.abort(true).catch(() => {});
          reject(new RequestError("Cancelled", { cancelled: true }));
        }, { once: true });
        upload.findPreviousUploads().then((previous) => {
          if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
          upload.start();
        }, reject);
      });
    },
  };
}

/**
 * Pick a transport per file: the first rule whose `accepts(file)` holds, else the default.
 * e.g. `chooser(rawPut, [{ accepts: (f) => f.size > threshold, transport: tus }])`.
 */
export function chooser(fallback, rules = []) {
  return (file) => rules.find((rule) => rule.accepts(file))?.transport ?? fallback;
}
