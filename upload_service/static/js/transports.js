// Upload transports: each sends one File and reports progress, with one shape:
//   transport.upload(file, { onProgress(loaded, total), signal }) -> Promise<file description>
// so a resumable transport (tus-js-client for large files) can replace or join these without touching the UI.

import { send } from "./http.js";

/** Raw `PUT <files url>/<name>`: the file is the request body, streamed, no encoding overhead. */
export function rawPutTransport({ filesUrl, csrfToken, temporary = false }) {
  return {
    name: "put",
    upload(file, { onProgress, signal } = {}) {
      const query = temporary ? "?temporary=1" : "";
      return send({
        method: "PUT",
        url: `${filesUrl}/${encodeURIComponent(file.name)}${query}`,
        body: file,
        headers: { "X-CSRF-Token": csrfToken, "Content-Type": file.type || "application/octet-stream" },
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

/**
 * Pick a transport per file: the first rule whose `accepts(file)` holds, else the default.
 * e.g. `chooser(rawPut, [{ accepts: (f) => f.size > threshold, transport: tus }])`.
 */
export function chooser(fallback, rules = []) {
  return (file) => rules.find((rule) => rule.accepts(file))?.transport ?? fallback;
}
