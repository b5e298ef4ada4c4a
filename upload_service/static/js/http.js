// One HTTP request through XMLHttpRequest: the only browser API that reports upload progress.

/** A failed upload or request: `status` is the HTTP status (0 when no answer came), `problem` the problem+json body. */
export class RequestError extends Error {
  constructor(message, { status = 0, problem = null, cancelled = false } = {}) {
    super(message);
    this.name = "RequestError";
    this.status = status;
    this.problem = problem;
    this.cancelled = cancelled;
  }
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** The server's own words for a refusal (problem+json `detail`), or the status line when it sent none. */
export function problemError(status, statusText, body) {
  const detail = body && typeof body.detail === "string" ? body.detail : `${status} ${statusText || "error"}`;
  return new RequestError(detail, { status, problem: body });
}

/** Text for a refusal: the server's detail, with what to do when the session has ended. */
export function refusalText(error) {
  if (error.status === 401) return `You are signed out: ${error.message}. Sign in again and retry.`;
  return error.message;
}

/**
 * Send a request; resolves with the parsed JSON answer, rejects with a RequestError.
 * `onProgress(loaded, total)` follows the request body; `signal` (an AbortSignal) cancels.
 */
export function send({ method, url, body = null, headers = {}, onProgress = null, signal = null }) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new RequestError("Cancelled", { cancelled: true }));
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Accept", "application/json");
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (onProgress) {
      xhr.upload.addEventListener("progress", (event) => {
        onProgress(event.loaded, event.lengthComputable ? event.total : null);
      });
    }
    xhr.addEventListener("load", () => {
      const answer = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) resolve(answer);
      else reject(problemError(xhr.status, xhr.statusText, answer));
    });
    xhr.addEventListener("error", () => {
      reject(new RequestError("The connection closed before the server answered."));
    });
    xhr.addEventListener("abort", () => reject(new RequestError("Cancelled", { cancelled: true })));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(body);
  });
}
