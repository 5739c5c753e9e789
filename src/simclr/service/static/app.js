// simclr search: the page of `simclr serve`. Vanilla JS; it talks only to the same server's /api.
"use strict";

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "simclr-token";
const HISTORY_MAX = 8;

const state = {
  health: null,
  query: null,        // the query shown: {kind: "file", file, url} or {kind: "id", id, info}
  history: [],        // queries searched, oldest first; the last one is the current query
  searchSeq: 0,       // bumped by each search: an answer to an older search is dropped
  controller: null,   // aborts the search in flight when a newer one starts
  tab: "search",
  dupPage: 1,
  dupSeq: 0,
  dupTimer: null,     // the next poll while the server is still computing the groups
};

// ---------------------------------------------------------------- HTTP and messages

class ApiError extends Error {}

// fetch that answers {status, body} for 2xx and throws an ApiError with "message (status)" otherwise.
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("network error: the server could not be reached");
  }
  const json = (response.headers.get("content-type") || "").includes("json");
  const body = json ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    let message = body && (body.error || body.detail);
    if (typeof message !== "string") message = response.statusText || "request failed";
    throw new ApiError(`${message} (${response.status})`);
  }
  return { status: response.status, body };
}

function showError(err) {
  if (err && err.name === "AbortError") return;
  $("#error-message").textContent = err instanceof ApiError ? err.message : `unexpected error: ${err}`;
  $("#error").hidden = false;
}

const clearError = () => { $("#error").hidden = true; };

// h("button", {className: "x", dataset: {id: 3}}, child, "text", ...): a new element, its properties, children.
function h(tag, props = {}, ...children) {
  const { dataset, ...rest } = props;
  const node = Object.assign(document.createElement(tag), rest);
  Object.assign(node.dataset, dataset || {});
  node.append(...children);
  return node;
}

const spinnerText = (text) => h("span", {}, h("span", { className: "spinner" }), ` ${text}`);

// Long catalogue paths keep their file name and as much of the folders as fits: "train/automob…/0001.jpg".
function shortPath(path, max = 26) {
  if (!path || path.length <= max) return path || "";
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (name.length >= max - 4) return `…${name.slice(-(max - 1))}`;
  return `${path.slice(0, max - name.length - 2)}…/${name}`;
}

const thumb = (id, size, alt) =>
  h("img", { src: `/api/images/${id}?size=${size}`, loading: "lazy", decoding: "async", alt: alt || `#${id}` });

// ---------------------------------------------------------------- health

async function loadHealth() {
  try {
    const { body } = await api("/api/health");
    state.health = body;
    const parts = [`${Number(body.images).toLocaleString()} images`, body.index && `${body.index} index`,
      body.dim && `${body.dim}-d`];
    $("#stats").textContent = parts.filter(Boolean).join(" · ");
    setWritable(Boolean(body.writable));
  } catch (err) {
    $("#stats").textContent = "offline";
    showError(err);
  }
}

// ---------------------------------------------------------------- search

function describe(query) {
  if (query.kind === "file") {
    return `${query.file.name || "pasted image"} · ${Math.max(1, Math.round(query.file.size / 1024))} KB`;
  }
  const info = query.info || {};
  return [`#${query.id}`, info.class, info.path].filter(Boolean).join(" · ");
}

function showQuery(query) {
  const preview = $("#query-preview");
  $("#drop-zone").classList.toggle("has-preview", Boolean(query));
  preview.hidden = !query;
  if (!query) {
    preview.removeAttribute("src");
    preview.removeAttribute("data-id");
    $("#query-info").textContent = "No query yet.";
  } else if (query.kind === "file") {
    preview.src = query.url;
    preview.removeAttribute("data-id");
  } else {
    preview.src = `/api/images/${query.id}?size=256`;
    preview.dataset.id = query.id;
  }
  if (query) $("#query-info").textContent = describe(query);
  $("#delete-item").disabled = !(state.health && state.health.writable && query && query.kind === "id");
}

function setBusy(busy, text) {
  const results = $("#results");
  results.setAttribute("aria-busy", String(busy));
  results.classList.toggle("busy", busy);
  if (text !== undefined) $("#search-status").replaceChildren(busy ? spinnerText(text) : text);
}

function forget(query) {
  if (query && query.kind === "file" && !state.history.includes(query)) URL.revokeObjectURL(query.url);
}

// Search by a photo or a catalogue item; `back` is the history position when going back to a past query.
async function runSearch(query, back = -1) {
  const k = Number($("#k").value);
  const seq = ++state.searchSeq;
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  clearError();
  showQuery(query);
  setBusy(true, "Searching…");
  const started = performance.now();
  try {
    let answer;
    if (query.kind === "file") {
      const form = new FormData();
      form.append("image", query.file, query.file.name || "pasted.png");
      answer = await api(`/api/search?k=${k}`, { method: "POST", body: form, signal: controller.signal });
    } else {
      answer = await api(`/api/search?id=${encodeURIComponent(query.id)}&k=${k}`, { signal: controller.signal });
      query.info = answer.body.query || query.info;
    }
    if (seq !== state.searchSeq) return;
    const hits = (answer.body.results && answer.body.results[0]) || [];
    state.query = query;
    record(query, back);
    showQuery(query);
    renderResults(hits);
    setBusy(false, `${hits.length} results in ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    if (seq !== state.searchSeq) return;
    showError(err);
    if (query !== state.query) forget(query);
    showQuery(state.query);  // the last query that worked, and its results, stay on show
    setBusy(false, err.name === "AbortError" ? "" : "Search failed.");
  }
}

function renderResults(hits) {
  $("#results").replaceChildren(...hits.map((hit) => {
    const score = hit.score.toFixed(3);
    const bar = h("div", { className: "score-bar" });
    bar.style.setProperty("--score", Math.max(0, Math.min(1, hit.score)));  // the bar's filled fraction
    const label = hit.class || (hit.label !== null && hit.label !== undefined ? `label ${hit.label}` : "—");
    return h("button", { type: "button", className: "result card", dataset: { id: hit.id },
      title: `${hit.path}\nscore ${score} · click to search by this image` },
    thumb(hit.id, 192, hit.class || hit.path),
    h("div", { className: "meta" },
      h("div", { className: "meta-top" },
        h("span", { className: "rank" }, `#${hit.rank}`), h("span", { className: "score" }, score)),
      bar,
      h("span", { className: "label" }, label),
      h("span", { className: "path", title: hit.path }, shortPath(hit.path))));
  }));
}

// History: searching anew appends; going back to entry `back` drops the entries after it.
function record(query, back) {
  if (back >= 0) {
    state.history.splice(back + 1).forEach((dropped) => dropped !== query && forget(dropped));
  } else if (state.history[state.history.length - 1] !== query) {
    state.history.push(query);
    while (state.history.length > HISTORY_MAX) forget(state.history.shift());
  }
  renderHistory();
}

function renderHistory() {
  $("#history").replaceChildren(...state.history.map((query, i) => {
    const file = query.kind === "file";
    const button = h("button", { type: "button", className: "crumb", dataset: { index: i }, title: describe(query) },
      h("img", { src: file ? query.url : `/api/images/${query.id}?size=64`, alt: "" }),
      h("span", {}, file ? shortPath(query.file.name || "photo", 12) : `#${query.id}`));
    if (i === state.history.length - 1) button.setAttribute("aria-current", "true");
    return h("li", {}, button);
  }));
}

function searchFile(file) {
  if (!file) return;
  setTab("search");
  runSearch({ kind: "file", file, url: URL.createObjectURL(file) });
}

// ---------------------------------------------------------------- near-duplicates

async function loadDuplicates() {
  clearTimeout(state.dupTimer);
  const seq = ++state.dupSeq;
  const box = $("#duplicates");
  box.setAttribute("aria-busy", "true");
  box.classList.add("busy");
  try {
    const perPage = $("#per-page").value;
    const { status, body } = await api(`/api/duplicates?page=${state.dupPage}&per_page=${perPage}`);
    if (seq !== state.dupSeq || state.tab !== "duplicates") return;
    if (status === 202) {  // the server is still computing the groups: ask again in a second
      $("#dup-summary").textContent = "Computing near-duplicate groups…";
      if (!box.querySelector(".group")) {  // a waiting card, not dimmed as a busy list is
        box.replaceChildren(h("div", { className: "empty card" }, h("span", { className: "spinner big" }),
          h("strong", {}, "Comparing every pair of images"),
          h("span", {}, "The groups appear here as soon as the server has them.")));
        box.classList.remove("busy");
      }
      state.dupTimer = setTimeout(loadDuplicates, 1000);
      return;
    }
    renderDuplicates(body);
  } catch (err) {
    if (seq === state.dupSeq) showError(err);
  }
  if (seq === state.dupSeq) { box.setAttribute("aria-busy", "false"); box.classList.remove("busy"); }
}

function renderDuplicates(body) {
  const groups = body.groups || [];
  const total = body.groups_total ?? groups.length;
  const threshold = body.threshold !== undefined ? ` at cosine ≥ ${body.threshold}` : "";
  $("#dup-summary").textContent = total
    ? `${total.toLocaleString()} groups of near-duplicates${threshold}; the first of each is the one to keep.`
    : `No near-duplicates${threshold}.`;
  state.dupPage = body.page || 1;
  const pages = Math.max(1, body.pages || 1);
  $("#dup-page").textContent = `page ${state.dupPage} of ${pages}`;
  $("#dup-prev").disabled = state.dupPage <= 1;
  $("#dup-next").disabled = state.dupPage >= pages;
  const offset = (state.dupPage - 1) * Number($("#per-page").value);
  $("#duplicates").replaceChildren(...groups.map((group, i) => h("div", { className: "group card" },
    h("div", { className: "group-head" }, `Group ${offset + i + 1} · ${group.length} images`),
    h("div", { className: "strip" }, ...group.map((hit, j) => h("button",
      { type: "button", className: "dup", dataset: { id: hit.id }, title: `${hit.path}\nclick to search by it` },
      thumb(hit.id, 192, hit.path),
      j === 0 ? h("span", { className: "badge keep" }, "keep")  // the group's first: the one to keep
        : h("span", { className: "badge" }, hit.score.toFixed(3)),
      h("span", { className: "path" }, shortPath(hit.path, 18))))))));
}

// ---------------------------------------------------------------- tabs

function setTab(name) {
  if (name === state.tab) return;
  state.tab = name;
  for (const tab of ["search", "duplicates"]) {
    $(`#tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`#view-${tab}`).hidden = tab !== name;
  }
  history.replaceState(null, "", name === "duplicates" ? "#near-duplicates" : location.pathname);
  if (name === "duplicates") { loadDuplicates(); return; }
  clearTimeout(state.dupTimer);  // leaving the tab stops the polling
  state.dupSeq++;
}

// ---------------------------------------------------------------- catalogue management

function setWritable(writable) {
  $("#manage-controls").disabled = !writable;
  $("#manage-note").textContent = writable
    ? "The catalogue is writable with the server's token."
    : "This server's catalogue is read-only.";
  showQuery(state.query);
}

function authHeaders() {
  const token = $("#token").value.trim();
  if (!token) { $("#token").focus(); throw new ApiError("enter the catalogue token first"); }
  return { Authorization: `Bearer ${token}` };
}

async function addItems(files) {
  if (!files.length) return;
  const status = $("#manage-status");
  try {
    const form = new FormData();
    for (const file of files) form.append("image", file, file.name);
    status.replaceChildren(spinnerText(`Adding ${files.length} image(s)…`));
    const { body } = await api("/api/items", { method: "POST", headers: authHeaders(), body: form });
    const ids = (body.items || []).map((item) => `#${item.id}`);
    status.textContent = `Added ${ids.length} image(s): ${ids.join(", ")}.`;
    loadHealth();
  } catch (err) {
    status.textContent = "";
    showError(err);
  }
}

async function deleteShown() {
  const query = state.query;
  if (!query || query.kind !== "id" || !confirm(`Delete item #${query.id} from the catalogue?`)) return;
  try {
    await api(`/api/items/${query.id}`, { method: "DELETE", headers: authHeaders() });
    $("#manage-status").textContent = `Deleted #${query.id}.`;
    state.history = state.history.filter((q) => !(q.kind === "id" && q.id === query.id));
    state.query = null;
    showQuery(null);
    renderHistory();
    $("#results").replaceChildren();
    setBusy(false, "Item deleted: search again.");
    loadHealth();
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("#error-close").addEventListener("click", clearError);
  $("#tab-search").addEventListener("click", () => setTab("search"));
  $("#tab-duplicates").addEventListener("click", () => setTab("duplicates"));

  $("#file-input").addEventListener("change", (event) => {
    searchFile(event.target.files[0]);
    event.target.value = "";  // so that choosing the same file again searches again
  });
  $("#drop-zone").addEventListener("keydown", (event) => {  // the zone is a label: make keys open it too
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("#file-input").click(); }
  });
  // A file dropped anywhere on the page is a query; the drop zone lights up while one is dragged over.
  let depth = 0;
  document.addEventListener("dragenter", (event) => {
    event.preventDefault();
    if (++depth === 1) $("#drop-zone").classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    if (--depth <= 0) { depth = 0; $("#drop-zone").classList.remove("dragging"); }
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("#drop-zone").classList.remove("dragging");
    searchFile(event.dataTransfer && event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {  // the clipboard's first image, if it holds one
    const items = [...((event.clipboardData && event.clipboardData.items) || [])];
    const image = items.find((item) => item.kind === "file" && item.type.startsWith("image/"));
    if (image) { event.preventDefault(); searchFile(image.getAsFile()); }
  });

  $("#k").addEventListener("change", () => state.query && runSearch(state.query, state.history.length - 1));
  $("#results").addEventListener("click", (event) => {
    const card = event.target.closest(".result");
    if (card) runSearch({ kind: "id", id: Number(card.dataset.id) });
  });
  $("#history").addEventListener("click", (event) => {
    const crumb = event.target.closest(".crumb");
    if (crumb) runSearch(state.history[Number(crumb.dataset.index)], Number(crumb.dataset.index));
  });

  $("#duplicates").addEventListener("click", (event) => {
    const item = event.target.closest(".dup");
    if (!item) return;
    setTab("search");
    runSearch({ kind: "id", id: Number(item.dataset.id) });
  });
  const turn = (step) => { state.dupPage += step; window.scrollTo(0, 0); loadDuplicates(); };
  $("#dup-prev").addEventListener("click", () => turn(-1));
  $("#dup-next").addEventListener("click", () => turn(1));
  $("#per-page").addEventListener("change", () => { state.dupPage = 1; loadDuplicates(); });

  const token = $("#token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, token.value));
  $("#add-input").addEventListener("change", (event) => {
    addItems([...event.target.files]);
    event.target.value = "";
  });
  $("#delete-item").addEventListener("click", deleteShown);
  $("#manage-form").addEventListener("submit", (event) => event.preventDefault());
}

wire();
loadHealth();
if (location.hash === "#near-duplicates") setTab("duplicates");
