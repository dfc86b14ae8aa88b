// The persona studio's page: plain DOM and fetch, no framework and no build step. Every URL is
// relative, so the page works at the API's root and behind Home Assistant's ingress path alike.

const MODE = meta("studio-mode"); // session | ingress | token
const SESSION = meta("studio-session");
const TOKEN_KEY = "wyoming-persona-studio-token";
const HOME_KINDS = [
  "turned_on", "turned_off", "opened", "closed", "set", "state", "unknown", "unreachable", "confirm", "declined",
];
const FIELD_ALIASES = { prompt: "prompt.identity" };
const POLL_MS = 3000;

const state = {
  personas: [],
  agents: [],
  active: null,
  maxFileBytes: 256 * 1024,
  voices: [],
  selected: null, // id of the persona in the editor
  isNew: false,
  newId: "",
  idTouched: false,
  draft: null,
  saved: "", // the saved draft, as JSON, for "unsaved changes"
  version: null,
  conversations: {},
  busy: false,
};

const form = document.getElementById("persona-form");
const chatForm = document.getElementById("chat-form");

function meta(name) {
  const element = document.querySelector(`meta[name="${name}"]`);
  return element ? element.content : "";
}

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) element.append(child);
  return element;
}

// -- Home Assistant's look ---------------------------------------------------------------------
// In HA's sidebar the page is an iframe of HA's own origin: take the theme's colours from the parent
// (and follow it when the user changes theme). Elsewhere studio.css follows the system's scheme.
const THEME = {
  "--s-bg": "--primary-background-color",
  "--s-card": "--card-background-color",
  "--s-text": "--primary-text-color",
  "--s-muted": "--secondary-text-color",
  "--s-primary": "--primary-color",
  "--s-on-primary": "--text-primary-color",
  "--s-divider": "--divider-color",
  "--s-error": "--error-color",
  "--s-ok": "--success-color",
  "--s-input": "--card-background-color",
};

function followHomeAssistantTheme() {
  let root;
  try {
    if (window.parent === window) return;
    root = window.parent.document.documentElement;
  } catch {
    return; // another origin: keep our own palette
  }
  const apply = () => {
    const style = getComputedStyle(root);
    for (const [ours, theirs] of Object.entries(THEME)) {
      const value = style.getPropertyValue(theirs).trim();
      if (value) document.documentElement.style.setProperty(ours, value);
    }
  };
  apply();
  new MutationObserver(apply).observe(root, { attributes: true, attributeFilter: ["style", "class"] });
}

// -- talking to the API ------------------------------------------------------------------------
function headers(extra = {}) {
  const result = { ...extra };
  if (MODE === "token") {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) result.Authorization = `Bearer ${token}`;
  } else if (SESSION) {
    result["X-Studio-Session"] = SESSION;
  }
  return result;
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    return new Response(JSON.stringify({ error: `the API did not answer: ${error.message}` }), { status: 599 });
  }
  if (response.status === 401 && MODE === "token") {
    await askToken();
    return api(method, path, body);
  }
  return response;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return { error: `HTTP ${response.status}` };
  }
}

function askToken() {
  const dialog = document.getElementById("token-dialog");
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value.trim());
        resolve();
      },
      { once: true },
    );
    dialog.showModal();
  });
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// -- paths like "prompt.style[1]" into the draft -----------------------------------------------
function tokens(path) {
  return path.split(/\.|\[(\d+)\]/).filter((part) => part !== undefined && part !== "")
    .map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}

function getPath(object, path) {
  let value = object;
  for (const key of tokens(path)) {
    if (value === null || value === undefined) return undefined;
    value = value[key];
  }
  return value;
}

function setPath(object, path, value) {
  const keys = tokens(path);
  let target = object;
  keys.slice(0, -1).forEach((key, index) => {
    if (target[key] === null || target[key] === undefined) target[key] = typeof keys[index + 1] === "number" ? [] : {};
    target = target[key];
  });
  target[keys[keys.length - 1]] = value;
}

// -- the draft -------------------------------------------------------------------------------
function blankPersona() {
  return {
    name: "",
    description: "",
    language: "en",
    greeting: null,
    aliases: [],
    prompt: { identity: "", style: [], rules: [], examples: [] },
    voice: { model: state.voices[0] || "en_US-joe-medium", speaker: null, speed: 1.0, pitch: 0.0, volume: 1.0 },
    llm: { model: null, temperature: null, top_p: null, repeat_penalty: null, max_reply_tokens: null },
    fallbacks: { backend_down: "Sorry, I can't think straight right now. Please try again in a moment." },
    home: Object.fromEntries(HOME_KINDS.map((kind) => [kind, []])),
  };
}

// What is sent: texts trimmed, empty lines and empty exchanges left out.
function cleaned(draft) {
  const copy = structuredClone(draft);
  const trim = (value) => {
    if (typeof value === "string") return value.trim();
    if (Array.isArray(value)) return value.map(trim);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, trim(v)]));
    return value;
  };
  const result = trim(copy);
  const lines = (list) => (Array.isArray(list) ? list.filter((line) => line !== "") : list);
  result.aliases = lines(result.aliases);
  if (result.prompt) {
    result.prompt.style = lines(result.prompt.style);
    result.prompt.rules = lines(result.prompt.rules);
    if (Array.isArray(result.prompt.examples)) {
      result.prompt.examples = result.prompt.examples.filter((pair) => pair && (pair.user || pair.assistant));
    }
  }
  for (const kind of HOME_KINDS) if (result.home) result.home[kind] = lines(result.home[kind]);
  for (const key of ["greeting"]) if (result[key] === "") result[key] = null;
  return result;
}

function fromInput(value, kind) {
  switch (kind) {
    case "csv": return value.split(",").map((part) => part.trim()).filter(Boolean);
    case "optional": return value.trim() === "" ? null : value;
    case "number": return value === "" ? null : Number(value);
    case "optional-number":
    case "optional-integer": return value.trim() === "" ? null : Number(value);
    default: return value;
  }
}

function toInput(value, kind) {
  if (kind === "csv") return (value || []).join(", ");
  if (value === null || value === undefined) return "";
  return String(value);
}

function isDirty() {
  return state.draft !== null && JSON.stringify(cleaned(state.draft)) !== state.saved;
}

function markDirty() {
  document.getElementById("dirty").hidden = !isDirty() && !state.isNew;
}

// -- the list -----------------------------------------------------------------------------------
async function refresh() {
  const response = await api("GET", "api/studio");
  const body = await readJson(response);
  if (!response.ok) {
    setStatus(body.error || "the studio could not load the personas", true);
    return false;
  }
  state.personas = body.personas;
  state.agents = body.agents;
  state.active = body.active;
  state.maxFileBytes = body.max_file_bytes;
  renderList();
  renderAgents();
  const active = state.personas.find((persona) => persona.id === state.active);
  document.getElementById("active-chip").textContent = active ? `Active: ${active.label}` : "";
  const banner = document.getElementById("banner");
  banner.hidden = body.folder_errors.length === 0;
  banner.textContent = body.folder_errors.length
    ? "The personas folder has errors; the services keep the last good personas until they are fixed:\n" +
      body.folder_errors.map((error) => error.text).join("\n")
    : "";
  const activeButton = document.getElementById("make-active");
  activeButton.disabled = state.isNew || state.selected === state.active;
  return true;
}

function renderList() {
  const list = document.getElementById("persona-list");
  list.replaceChildren();
  for (const persona of state.personas) {
    const badges = el("span", { class: "badges" });
    if (persona.active) badges.append(el("span", { class: "badge active" }, "active"));
    for (const agent of persona.agents) badges.append(el("span", { class: "badge" }, `agent :${agent.port ?? "?"}`));
    const pick = el(
      "button",
      { type: "button", class: "pick", onclick: () => openPersona(persona.id) },
      el("strong", {}, persona.label),
      el("span", {}, `${persona.id}${persona.description ? " · " + persona.description : ""}`),
    );
    const item = el("li", { class: persona.id === state.selected ? "selected" : null, dataset: { persona: persona.id } }, pick, badges);
    if (!persona.active) {
      item.append(el("button", {
        type: "button", class: "small", "aria-label": `Make ${persona.label} active`, onclick: () => activate(persona.id),
      }, "Make active"));
    }
    list.append(item);
  }
}

function renderAgents() {
  const list = document.getElementById("agent-list");
  list.replaceChildren();
  for (const agent of state.agents) {
    const persona = state.personas.find((p) => p.id === agent.persona_id);
    const where = agent.port ? `port ${agent.port}` : agent.uri;
    const parts = [
      agent.persona_id ? `always ${persona ? persona.label : agent.persona_id}` : "follows the active persona",
      where,
      `TTS voice "${agent.voice}"`,
    ];
    list.append(el("li", { dataset: { agent: agent.persona_id || "" } }, agent.name, el("span", {}, parts.filter(Boolean).join(" · "))));
  }
}

async function activate(personaId) {
  const response = await api("PUT", "api/active", { id: personaId });
  const body = await readJson(response);
  if (!response.ok) {
    setStatus(body.error || "could not switch", true);
    return;
  }
  setStatus(`Switched to ${body.name}`);
  await refresh();
}

// -- the editor ---------------------------------------------------------------------------------
function showEditor(show) {
  document.getElementById("editor").hidden = !show;
  document.getElementById("empty").hidden = show;
}

async function openPersona(personaId) {
  if (isDirty() && !window.confirm("Drop the unsaved changes?")) return;
  const response = await api("GET", `api/studio/personas/${encodeURIComponent(personaId)}`);
  const body = await readJson(response);
  if (!response.ok) {
    setStatus(body.error || `could not open ${personaId}`, true);
    return;
  }
  state.selected = personaId;
  state.isNew = false;
  state.version = body.version;
  state.draft = body.persona;
  state.saved = JSON.stringify(cleaned(body.persona));
  const note = document.getElementById("form-note");
  note.hidden = body.file_errors.length === 0;
  note.textContent = body.file_errors.length
    ? `${body.file} has errors on disk; the form shows the last good version:\n` +
      body.file_errors.map((e) => `line ${e.line}, column ${e.column}: ${e.field}: ${e.message}`).join("\n")
    : "";
  document.getElementById("editor-title").textContent = body.persona.name;
  fillForm();
  resetChat();
  renderList();
  showEditor(true);
}

function newPersona() {
  if (isDirty() && !window.confirm("Drop the unsaved changes?")) return;
  state.selected = null;
  state.isNew = true;
  state.newId = "";
  state.idTouched = false;
  state.version = null;
  state.draft = blankPersona();
  state.saved = "";
  document.getElementById("form-note").hidden = true;
  document.getElementById("editor-title").textContent = "New persona";
  fillForm();
  resetChat();
  renderList();
  showEditor(true);
  form.querySelector('[data-field="name"]').focus();
}

function fillForm() {
  clearErrors(form);
  fillVoices();
  for (const input of form.querySelectorAll("[data-kind]")) {
    const path = input.dataset.field;
    if (path === "id") {
      input.value = state.isNew ? state.newId : state.selected;
      input.readOnly = !state.isNew;
      continue;
    }
    if (input.closest("[data-list]")) continue;
    input.value = toInput(getPath(state.draft, path), input.dataset.kind);
    showOutput(path);
  }
  for (const box of form.querySelectorAll("[data-list]")) renderListBox(box);
  for (const id of ["make-active", "duplicate", "export", "delete"]) document.getElementById(id).disabled = state.isNew;
  document.getElementById("make-active").disabled = state.isNew || state.selected === state.active;
  document.getElementById("save").textContent = state.isNew ? "Create" : "Save";
  document.getElementById("chat-send").disabled = state.isNew;
  document.getElementById("try-note").textContent = state.isNew
    ? "Create the persona first, then talk to it here."
    : "Talks to the persona service as this persona, as saved; the active persona does not change.";
  markDirty();
}

function fillVoices() {
  const select = form.querySelector('[data-field="voice.model"]');
  const current = getPath(state.draft, "voice.model");
  const names = [...new Set([...state.voices, current].filter(Boolean))].sort();
  select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
}

function showOutput(path) {
  const output = form.querySelector(`output[data-output="${path}"]`);
  if (output) output.textContent = Number(getPath(state.draft, path)).toFixed(2).replace(/\.?0+$/, "");
}

function renderListBox(box) {
  const path = box.dataset.list;
  const items = getPath(state.draft, path) || [];
  const isExamples = box.classList.contains("examples");
  box.replaceChildren(el("h3", {}, box.dataset.title));
  items.forEach((item, index) => {
    const remove = el("button", {
      type: "button", class: "small remove", "aria-label": `Remove ${box.dataset.title} ${index + 1}`,
      onclick: () => {
        items.splice(index, 1);
        renderListBox(box);
        markDirty();
      },
    }, "Remove");
    if (isExamples) {
      const pair = el("div", { class: "pair" },
        textField(`${path}[${index}].user`, item.user, `Example ${index + 1}: the user says`),
        textField(`${path}[${index}].assistant`, item.assistant, `Example ${index + 1}: the persona answers`));
      box.append(el("div", { class: "row example" }, pair, remove));
    } else {
      box.append(el("div", { class: "row" }, textField(`${path}[${index}]`, item, `${box.dataset.title} ${index + 1}`), remove));
    }
  });
  box.append(el("button", {
    type: "button", class: "small",
    onclick: () => {
      if (!Array.isArray(getPath(state.draft, path))) setPath(state.draft, path, []);
      getPath(state.draft, path).push(isExamples ? { user: "", assistant: "" } : "");
      renderListBox(box);
      const inputs = box.querySelectorAll("input");
      inputs[inputs.length - (isExamples ? 2 : 1)].focus();
      markDirty();
    },
  }, box.dataset.add));
}

function textField(path, value, label) {
  return el("label", { class: "field" }, label,
    el("input", { type: "text", value: value ?? "", dataset: { field: path, kind: "text" } }),
    el("span", { class: "field-error", "aria-live": "polite" }));
}

function slug(text) {
  return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
    .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
}

form.addEventListener("input", (event) => {
  const input = event.target;
  const path = input.dataset.field;
  if (!path || !input.dataset.kind) return;
  clearFieldError(input);
  if (path === "id") {
    state.newId = input.value.trim();
    state.idTouched = true;
    return;
  }
  setPath(state.draft, path, fromInput(input.value, input.dataset.kind));
  if (path === "name" && state.isNew && !state.idTouched && slug(input.value)) {
    state.newId = slug(input.value); // the id follows the name until it is typed in itself
    form.querySelector('[data-field="id"]').value = state.newId;
  }
  showOutput(path);
  markDirty();
});

// -- errors at their fields --------------------------------------------------------------------
function findField(path, root) {
  let current = FIELD_ALIASES[path] || path;
  while (current) {
    const found = root.querySelector(`[data-field="${CSS.escape(current)}"]`);
    if (found) return found;
    const shorter = current.replace(/(\[\d+\]|\.[^.[]+)$/, "");
    if (shorter === current) break;
    current = shorter;
  }
  return null;
}

function showFieldError(path, message, root = form) {
  const input = findField(path, root);
  if (!input) return false;
  const slot = input.closest(".field").querySelector(".field-error");
  slot.textContent = slot.textContent ? `${slot.textContent}\n${message}` : message;
  input.setAttribute("aria-invalid", "true");
  const details = input.closest("details");
  if (details) details.open = true;
  return true;
}

function clearFieldError(input) {
  input.removeAttribute("aria-invalid");
  const field = input.closest(".field");
  const slot = field && field.querySelector(".field-error");
  if (slot) slot.textContent = "";
}

function clearErrors(root) {
  for (const input of root.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute("aria-invalid");
  for (const slot of root.querySelectorAll(".field-error")) slot.textContent = "";
  if (root === form) document.getElementById("form-error").hidden = true;
}

function formError(text) {
  const box = document.getElementById("form-error");
  box.textContent = text;
  box.hidden = !text;
}

// A line and column only mean something for YAML the user wrote (an import), not for the form.
function describeError(error, withPosition) {
  const where = withPosition && error.line ? `line ${error.line}, column ${error.column}: ` : "";
  return `${where}${error.message}`;
}

// Errors of an answer at their fields; what has no field goes to `fallback` (a field of the form) or
// above the form.
function showErrors(body, status, root = form, fallback = null) {
  if (status === 413) {
    const path = largestField(state.draft) || fallback || "name";
    showFieldError(path, `Too large: a persona file holds at most ${size(state.maxFileBytes)} in all. Nothing was saved.`, root);
    return;
  }
  const rest = [];
  const withPosition = root !== form;
  for (const error of body.errors || []) {
    const text = describeError(error, withPosition);
    const shown = showFieldError(error.field, text, root)
      || (fallback && showFieldError(fallback, error.field.startsWith("(") ? text : `${error.field}: ${text}`, root));
    if (!shown) rest.push(`${error.field}: ${text}`);
  }
  if (root === form && (rest.length || !(body.errors || []).length)) formError([body.error, ...rest].filter(Boolean).join("\n"));
  setStatus(body.error || `HTTP ${status}`, true);
}

function largestField(value, where = "") {
  let best = { size: -1, path: null };
  const walk = (item, path) => {
    if (Array.isArray(item)) item.forEach((child, index) => walk(child, `${path}[${index}]`));
    else if (item && typeof item === "object") for (const [key, child] of Object.entries(item)) walk(child, path ? `${path}.${key}` : key);
    else if (String(item ?? "").length > best.size) best = { size: String(item ?? "").length, path };
  };
  walk(value, where);
  return best.path;
}

function size(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${Math.round(bytes / 1024)} KB`;
}

// A body the server would refuse for its size is not sent: the error shows at the longest field.
function fits(payload, root = form, draft = state.draft, fallback = null) {
  const bytes = new Blob([JSON.stringify(payload)]).size;
  if (bytes <= state.maxFileBytes) return true;
  const path = (draft && largestField(draft)) || fallback;
  const longest = path && draft ? String(getPath(draft, path) ?? "").length : bytes;
  const message = `This is ${size(longest)}; a persona file holds at most ${size(state.maxFileBytes)} in all. Nothing was saved.`;
  if (!showFieldError(path || "name", message, root)) formError(message);
  setStatus("Too large: nothing was saved", true);
  return false;
}

// -- saving, creating, duplicating, importing, exporting, deleting --------------------------------
async function save(event) {
  event.preventDefault();
  if (state.busy) return;
  clearErrors(form);
  state.draft = cleaned(state.draft);
  for (const box of form.querySelectorAll("[data-list]")) renderListBox(box);
  const payload = state.isNew ? { id: state.newId, persona: state.draft } : { persona: state.draft, version: state.version };
  if (!fits(payload)) return;
  if (state.isNew && !state.newId) {
    showFieldError("id", "The persona needs an id: lowercase letters, digits, _ or -.");
    return;
  }
  state.busy = true;
  setStatus("Saving…");
  try {
    const response = state.isNew
      ? await api("POST", "api/studio/personas", payload)
      : await api("PUT", `api/studio/personas/${encodeURIComponent(state.selected)}`, payload);
    const body = await readJson(response);
    if (!response.ok) {
      showErrors(body, response.status);
      return;
    }
    const personaId = state.isNew ? state.newId : state.selected;
    state.saved = JSON.stringify(cleaned(state.draft));
    state.isNew = false;
    await refresh();
    await openPersona(personaId);
    setStatus(state.personas.some((p) => p.id === personaId) ? `Saved ${personaId}.yaml` : `Saved ${personaId}.yaml; the folder has errors`);
  } finally {
    state.busy = false;
  }
}

async function duplicate(event) {
  event.preventDefault();
  const root = document.getElementById("duplicate-form");
  clearErrors(root);
  const name = document.getElementById("duplicate-name").value.trim();
  const personaId = document.getElementById("duplicate-id").value.trim();
  const response = await api("POST", "api/studio/personas", { id: personaId, copy_of: state.selected, persona: { name } });
  const body = await readJson(response);
  if (!response.ok) {
    showErrors(body, response.status, root, "name");
    return;
  }
  document.getElementById("duplicate-dialog").close();
  await refresh();
  await openPersona(personaId);
  setStatus(`Duplicated as ${personaId}`);
}

async function importPersona(event) {
  event.preventDefault();
  const root = document.getElementById("import-form");
  clearErrors(root);
  const personaId = document.getElementById("import-id").value.trim();
  const text = document.getElementById("import-yaml").value;
  const payload = { id: personaId, yaml: text };
  const bytes = new Blob([JSON.stringify(payload)]).size;
  if (bytes > state.maxFileBytes) {
    showFieldError("(yaml)", `This file is ${size(bytes)}; a persona file holds at most ${size(state.maxFileBytes)}. Nothing was imported.`, root);
    return;
  }
  const response = await api("POST", "api/studio/personas", payload);
  const body = await readJson(response);
  if (!response.ok) {
    showErrors(body, response.status, root, "(yaml)");
    return;
  }
  document.getElementById("import-dialog").close();
  await refresh();
  await openPersona(personaId);
  setStatus(`Imported ${personaId}`);
}

async function exportPersona() {
  const response = await api("GET", `api/studio/personas/${encodeURIComponent(state.selected)}`);
  const body = await readJson(response);
  if (!response.ok) {
    setStatus(body.error || "could not export", true);
    return;
  }
  const link = el("a", { href: URL.createObjectURL(new Blob([body.yaml], { type: "text/yaml" })), download: body.file });
  document.body.append(link);
  link.click();
  link.remove();
  setStatus(`Exported ${body.file}`);
}

function confirmDialog(text) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function deletePersona() {
  const persona = state.personas.find((p) => p.id === state.selected);
  if (!persona || !(await confirmDialog(`Delete ${persona.label}? Its file ${persona.id}.yaml is removed.`))) return;
  const response = await api("DELETE", `api/studio/personas/${encodeURIComponent(persona.id)}`);
  const body = await readJson(response);
  if (!response.ok) {
    formError(body.error);
    setStatus(body.error, true);
    return;
  }
  state.selected = null;
  state.draft = null;
  showEditor(false);
  await refresh();
  setStatus(`Deleted ${body.file}`);
}

// -- hearing it ---------------------------------------------------------------------------------
async function previewVoice() {
  clearErrors(form);
  const draft = cleaned(state.draft);
  const text = document.getElementById("preview-text").value.trim() || draft.greeting || `Hello, ${draft.name || "there"} here.`;
  const button = document.getElementById("preview");
  button.disabled = true;
  setStatus("Speaking…");
  try {
    const response = await api("POST", "api/studio/preview", { voice: draft.voice, text });
    if (!response.ok) {
      showErrors(await readJson(response), response.status);
      return;
    }
    const audio = document.getElementById("preview-audio");
    delete audio.dataset.speed;
    const loaded = new Promise((resolve) => audio.addEventListener("loadedmetadata", resolve, { once: true }));
    audio.src = URL.createObjectURL(await response.blob());
    await loaded;
    audio.dataset.seconds = String(audio.duration);
    audio.dataset.speed = String(draft.voice.speed);
    setStatus(`Preview: ${audio.duration.toFixed(1)} s at speed ${draft.voice.speed}`);
    audio.play().catch(() => {}); // a browser may want one more click
  } finally {
    button.disabled = false;
  }
}

// -- trying it ----------------------------------------------------------------------------------
function resetChat() {
  document.getElementById("chat-log").replaceChildren();
  if (state.selected) delete state.conversations[state.selected];
}

async function sendChat(event) {
  event.preventDefault();
  clearErrors(chatForm);
  const input = document.getElementById("chat-text");
  const text = input.value.trim();
  if (!text) {
    showFieldError("message", "Type a message first.", chatForm);
    return;
  }
  const personaId = state.selected;
  const log = document.getElementById("chat-log");
  log.append(el("li", { class: "user" }, text));
  const words = el("span", { class: "text" });
  const timing = el("span", { class: "timing" }, "…");
  const reply = el("li", { class: "reply", dataset: { state: "streaming" } }, words, timing);
  log.append(reply);
  input.value = "";
  const send = document.getElementById("chat-send");
  send.disabled = true;
  try {
    const response = await api("POST", "api/studio/chat", {
      persona_id: personaId, text, conversation_id: state.conversations[personaId] || null,
    });
    if (!response.ok) {
      const body = await readJson(response);
      reply.className = "error";
      words.textContent = body.error;
      timing.textContent = "";
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) onChatLine(JSON.parse(line), { reply, words, timing, personaId });
      }
    }
  } finally {
    send.disabled = state.isNew;
  }
}

function onChatLine(message, { reply, words, timing, personaId }) {
  if (message.type === "text") {
    words.textContent += message.text;
    reply.dataset.chunks = String(Number(reply.dataset.chunks || 0) + 1);
  } else if (message.type === "audio") {
    timing.textContent = `first audio ${Math.round(message.ms)} ms`;
  } else if (message.type === "done") {
    words.textContent = message.text;
    state.conversations[personaId] = message.conversation_id;
    const parts = [];
    if (message.first_text_ms !== null) parts.push(`first text ${Math.round(message.first_text_ms)} ms`);
    if (message.first_audio_ms !== null) parts.push(`first audio ${Math.round(message.first_audio_ms)} ms`);
    parts.push(`total ${Math.round(message.total_ms)} ms`);
    timing.textContent = parts.join(" · ");
    reply.dataset.state = "done";
    reply.dataset.persona = message.persona_id || "";
    if (message.first_audio_ms !== null) reply.dataset.firstAudioMs = String(message.first_audio_ms);
    if (message.intent) {
      const slots = Object.entries(message.intent.slots).map(([k, v]) => `${k}=${v}`).join(", ");
      reply.append(el("span", { class: "timing" }, `Home Assistant would run ${message.intent.name} (${slots})`));
    }
    if (message.tts_error) reply.append(el("span", { class: "timing" }, `no audio: ${message.tts_error}`));
    if (message.audio) {
      const audio = el("audio", { controls: true, src: message.audio });
      reply.append(audio);
      audio.play().catch(() => {});
    }
  } else if (message.type === "error") {
    reply.className = "error";
    reply.dataset.state = "error";
    words.textContent = message.message;
    timing.textContent = "";
  }
}

// -- start ---------------------------------------------------------------------------------------
async function loadVoices() {
  const response = await api("GET", "api/studio/voices");
  const body = await readJson(response);
  state.voices = body.voices || [];
  if (body.error) setStatus(body.error, true);
}

function wire() {
  form.addEventListener("submit", save);
  chatForm.addEventListener("submit", sendChat);
  document.getElementById("chat-reset").addEventListener("click", resetChat);
  document.getElementById("new-persona").addEventListener("click", newPersona);
  document.getElementById("make-active").addEventListener("click", () => activate(state.selected));
  document.getElementById("export").addEventListener("click", exportPersona);
  document.getElementById("delete").addEventListener("click", deletePersona);
  document.getElementById("preview").addEventListener("click", previewVoice);
  document.getElementById("duplicate").addEventListener("click", () => {
    const persona = state.personas.find((p) => p.id === state.selected);
    clearErrors(document.getElementById("duplicate-form"));
    document.getElementById("duplicate-name").value = `${persona.name} (copy)`;
    document.getElementById("duplicate-id").value = `${persona.id}-copy`;
    document.getElementById("duplicate-dialog").showModal();
  });
  document.getElementById("duplicate-form").addEventListener("submit", duplicate);
  document.getElementById("duplicate-cancel").addEventListener("click", () => document.getElementById("duplicate-dialog").close());
  document.getElementById("import-persona").addEventListener("click", () => {
    clearErrors(document.getElementById("import-form"));
    document.getElementById("import-dialog").showModal();
  });
  document.getElementById("import-form").addEventListener("submit", importPersona);
  document.getElementById("import-cancel").addEventListener("click", () => document.getElementById("import-dialog").close());
  document.getElementById("import-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    document.getElementById("import-yaml").value = await file.text();
    const idInput = document.getElementById("import-id");
    if (!idInput.value) idInput.value = slug(file.name.replace(/\.ya?ml$/i, ""));
  });
  window.addEventListener("beforeunload", (event) => {
    if (isDirty()) event.preventDefault();
  });
}

async function start() {
  followHomeAssistantTheme();
  wire();
  await loadVoices();
  if (!(await refresh())) return;
  setStatus(`${state.personas.length} personas`);
  setInterval(() => {
    if (!document.hidden && !state.busy) refresh();
  }, POLL_MS);
}

start();
