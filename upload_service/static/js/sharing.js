// The sharing plugin's part of the page: the Share dialog (for one file or a selection), copy-link buttons,
// and resetting the request form once htmx created the request. Talks to the JSON API with the page's CSRF token.

import { refusalText, send } from "./http.js";
import { localizeTimes } from "./page.js";

const byId = (id) => document.getElementById(id);

/** Absolute URL for a path the API answered with, for pasting into an e-mail or a chat. */
const absolute = (path) => new URL(path, document.baseURI).href;

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy";
  }
  setTimeout(() => { button.textContent = "Copy link"; }, 2000);
}

/** The JSON the API takes, from the dialog's fields (empty ones left out). */
function shareBody(form, fileIds) {
  const body = { files: fileIds };
  const fields = new FormData(form);
  if (fields.get("expires_in")) body.expires_in = fields.get("expires_in");
  if (fields.get("max_downloads")) body.max_downloads = Number(fields.get("max_downloads"));
  if (fields.get("password")) body.password = fields.get("password");
  if (fields.get("note")) body.note = fields.get("note");
  return body;
}

function connectDialog(config) {
  const dialog = byId("share-dialog");
  const form = byId("share-form");
  const error = byId("share-error");
  const result = byId("share-result");
  const create = byId("share-create");
  let fileIds = [];

  const open = (ids, label) => {
    fileIds = ids;
    form.reset();
    byId("share-what").textContent = label;
    error.hidden = true;
    result.hidden = true;
    create.hidden = false;
    dialog.showModal();
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    create.disabled = true;
    error.hidden = true;
    try {
      const share = await send({
        method: "POST", url: config.sharesUrl, body: JSON.stringify(shareBody(form, fileIds)),
        headers: { "Content-Type": "application/json", "X-CSRF-Token": config.csrfToken },
      });
      byId("share-link").value = absolute(share.url);
      result.hidden = false;
      create.hidden = true;
      byId("share-link").select();
      document.body.dispatchEvent(new CustomEvent("shares-changed", { bubbles: true }));
    } catch (failure) {
      error.textContent = refusalText(failure);
      error.hidden = false;
    } finally {
      create.disabled = false;
    }
  });
  byId("share-copy").addEventListener("click", (event) => copy(byId("share-link").value, event.currentTarget));
  byId("share-cancel").addEventListener("click", () => dialog.close());
  return open;
}

function selected() {
  return [...document.querySelectorAll(".share-pick:checked")];
}

function start(config) {
  const open = connectDialog(config);
  const shareSelected = byId("share-selected");
  const count = byId("share-selected-count");
  const refreshSelection = () => {
    const picked = selected();
    shareSelected.disabled = picked.length === 0;
    count.textContent = picked.length ? `${picked.length} selected` : "";
  };

  document.body.addEventListener("click", (event) => {
    const one = event.target.closest(".share-one");
    if (one) open([one.dataset.fileId], `“${one.dataset.fileName}”`);
    const link = event.target.closest(".copy-link");
    if (link) copy(absolute(link.dataset.link), link);
  });
  document.body.addEventListener("change", (event) => {
    if (event.target.classList.contains("share-pick")) refreshSelection();
  });
  document.body.addEventListener("htmx:afterSettle", (event) => {
    refreshSelection();
    if (event.target.closest?.(".sharing")) localizeTimes(event.target);
  });
  shareSelected.addEventListener("click", () => {
    const picked = selected();
    if (picked.length) open(picked.map((box) => box.value), `${picked.length} files`);
  });
  byId("request-form").addEventListener("htmx:afterRequest", (event) => {
    if (event.detail.successful) event.currentTarget.reset();
  });
}

const panels = document.querySelector(".sharing[data-shares-url]");
if (panels && document.body.dataset.csrfToken) {
  start({ sharesUrl: panels.dataset.sharesUrl, csrfToken: document.body.dataset.csrfToken });
}
