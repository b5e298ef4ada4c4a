// The form flow: a picked file uploads at once as a temporary upload; its control becomes a hidden input
// holding the token (shown as a chip), and saving the form persists the tokens with the description.

import { humanSize } from "./format.js";
import { refusalText, send } from "./http.js";

function persistFailure(error) {
  if (error.status === 410) {
    return `An attachment expired before the form was saved (${error.message}). Remove it and add the file again.`;
  }
  if (error.status === 409) return `These attachments were saved already (${error.message}).`;
  return `Not saved: ${refusalText(error)}`;
}

export class AttachForm {
  constructor({ form, input, list, template, result, transport, persistUrl, csrfToken, onSaved }) {
    Object.assign(this, { form, input, list, template, result, transport, persistUrl, csrfToken, onSaved });
    this.pending = new Set();
    input.addEventListener("change", () => {
      for (const file of input.files) this.attach(file);
      input.value = "";
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  async attach(file) {
    const chip = this.template.content.firstElementChild.cloneNode(true);
    const part = (name) => chip.querySelector(`.chip-${name}`);
    const controller = new AbortController();
    part("name").textContent = file.name;
    part("size").textContent = humanSize(file.size);
    part("bar").setAttribute("aria-label", `Upload progress of ${file.name}`);
    part("remove").setAttribute("aria-label", `Remove ${file.name}`);
    part("remove").addEventListener("click", () => {
      controller.abort();
      chip.remove();
    });
    this.list.append(chip);
    const upload = this.transport.upload(file, {
      onProgress: (loaded, total) => { part("bar").value = total ? Math.floor((loaded / total) * 100) : 0; },
      signal: controller.signal,
    });
    this.pending.add(upload);
    try {
      const described = await upload;
      chip.querySelector("input[name=token]").value = described.token;
      chip.dataset.state = "ready";
      part("bar").remove();
    } catch (error) {
      if (error.cancelled) return;
      chip.dataset.state = "failed";
      chip.querySelector("input[name=token]").remove();
      part("bar").remove();
      part("error").textContent = refusalText(error);
      part("error").hidden = false;
    } finally {
      this.pending.delete(upload);
    }
  }

  tokens() {
    return [...this.list.querySelectorAll("input[name=token]")].map((input) => input.value).filter(Boolean);
  }

  say(text, kind) {
    this.result.replaceChildren();
    this.result.dataset.kind = kind;
    const line = document.createElement("p");
    line.textContent = text;
    this.result.append(line);
    return this.result;
  }

  async save() {
    if (this.pending.size) {
      this.say("Wait until the attachments have finished uploading.", "error");
      return;
    }
    const tokens = this.tokens();
    if (!tokens.length) {
      this.say("Add at least one file first.", "error");
      return;
    }
    const description = this.form.elements.description.value;
    try {
      const answer = await send({
        method: "POST",
        url: this.persistUrl,
        body: JSON.stringify({ tokens, metadata: { description } }),
        headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrfToken },
      });
      this.saved(answer.files, description);
    } catch (error) {
      this.say(persistFailure(error), "error");
    }
  }

  saved(files, description) {
    const count = files.length === 1 ? "1 file" : `${files.length} files`;
    const box = this.say(description ? `Saved ${count} with the description “${description}”.` : `Saved ${count}.`, "ok");
    const names = document.createElement("ul");
    for (const file of files) {
      const item = document.createElement("li");
      item.textContent = file.filename;
      names.append(item);
    }
    box.append(names);
    this.list.replaceChildren();
    this.form.reset();
    this.onSaved(files);
  }
}
