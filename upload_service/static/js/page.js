// Page-wide behaviour: errors of htmx requests, and local times in the file list.

import { problemError, refusalText } from "./http.js";

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Show the problem detail of a failed htmx request (a refused delete, a list refresh after sign-out). */
export function reportHtmxErrors(alertBox) {
  const show = (text) => {
    alertBox.textContent = text;
    alertBox.hidden = false;
  };
  document.body.addEventListener("htmx:responseError", (event) => {
    const { xhr } = event.detail;
    show(refusalText(problemError(xhr.status, xhr.statusText, parse(xhr.responseText))));
  });
  document.body.addEventListener("htmx:sendError", () => show("The server could not be reached. Try again."));
  document.body.addEventListener("htmx:afterRequest", (event) => {
    if (event.detail.successful) alertBox.hidden = true;
  });
}

/** Server-rendered times are UTC; show them in the reader's own time zone. */
export function localizeTimes(root) {
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const time of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(time.dateTime);
    if (!Number.isNaN(moment.getTime())) {
      time.title = time.dateTime;
      time.textContent = format.format(moment);
    }
  }
}
