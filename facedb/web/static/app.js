// The facedb web page: plain JavaScript, no dependencies, nothing fetched from elsewhere.
//
// It talks to the /v1 API of `facedb serve` with the API key the user typed, which is the only
// thing it keeps (sessionStorage, this tab only). Photos, thumbnails and results live in memory
// for the current view: leaving a view aborts its requests, revokes its object URLs and drops
// the photo, and signing out clears everything. The address names the view, and on a person's
// page that person's name (#people/<name>: see "addresses"); it stays in this browser's history,
// and is never sent to the server (a fragment is not part of a request).

const KEY_STORE = "facedb.api_key";
/** The API root; whoami is about the key, not about a gallery, so it stays here (see apiUrl). */
const API_ROOT = "/v1";
const REASONS = {
  not_found: "file not found",
  unreadable: "the file could not be read",
  is_directory: "a folder, not a file",
  not_a_file: "not a regular file",
  empty_file: "the file is empty",
  too_large: "the file is too large",
  too_many_pixels: "the image has too many pixels",
  not_an_image: "not an image",
  corrupt_image: "the image is damaged",
  too_small: "the image is too small",
  no_face: "no face found",
  too_many_faces: "more than one face",
  ambiguous_faces: "several faces, and none is clearly this person's",
  no_such_face: "the photo has fewer faces",
  not_aligned: "not a square aligned face crop",
  enrolled_as_other: "already enrolled as someone else",
  bad_subject_name: "the name is not allowed",
  no_subject: "no person given",
};

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const state = {
  key: null,          // the API key (also in sessionStorage)
  who: null,          // {name, scope} from /v1/whoami
  health: null,       // /healthz: pack, threshold, limits
  view: null,
  apiBase: API_ROOT,  // the gallery's API; a collections selector will switch it
  urls: new Set(),    // object URLs of the current view
  abort: new AbortController(),  // requests of the current view
  search: { file: null, report: null, faces: [], selected: -1, seq: 0, thumbs: new Map() },
  people: [],
  subject: null,
  face: null,         // the face the face dialog is about: {action, face, label, opener}
  enroll: { items: [], busy: false, xhr: null, prefill: null, seq: 0 },
  // The discover view: the user's photos (only in memory, for the crops and for enrolling) and
  // the clusters as the user edits them (merged, dropped, enrolled).
  discover: { files: [], clusters: [], seq: 0, key: 0, busy: false },
};

// -- small helpers ---------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (x, d = 2) => (typeof x === "number" ? x.toFixed(d) : "–");
const plural = (n, one, many = one + "s") => `${n} ${n === 1 ? one : many}`;
const basename = (p) => String(p || "").split(/[\\/]/).pop() || String(p || "");

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

function megabytes(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

function reasonText(reason) {
  return REASONS[reason] || (reason ? reason.replace(/_/g, " ") : "refused");
}

function track(url) {
  state.urls.add(url);
  return url;
}

function dropUrls() {
  for (const u of state.urls) URL.revokeObjectURL(u);
  state.urls.clear();
}

function say(text) {
  $("#status").textContent = text || "";
}

function warn(text) {
  $("#alert").textContent = text || "";
}

function limiter(n) {
  let active = 0;
  const queue = [];
  const next = () => {
    if (active >= n || !queue.length) return;
    active++;
    const { fn, resolve, reject } = queue.shift();
    fn().then(resolve, reject).finally(() => { active--; next(); });
  };
  return (fn) => new Promise((resolve, reject) => { queue.push({ fn, resolve, reject }); next(); });
}
const thumbSlots = limiter(4);

// -- addresses -------------------------------------------------------------------------------
//
// Every API URL is built by apiUrl(), from the base of the gallery the page works on, so that a
// future choice of collection only has to change state.apiBase. Every view has an address in the
// fragment (#search, #people, #people/<name>, #enroll): the back button, a reload and a copied
// link all open the same view. A subject's name is one percent-encoded segment in both, so that
// names with "/", "%", "#", "?", blanks or non-ASCII letters reach the server intact.

/**
 * The URL of an API resource: state.apiBase, then each part as one encoded path segment.
 * A part that is "." or ".." cannot be sent as a segment at all (browsers resolve it, even as
 * %2E%2E, before the request leaves), so it is refused here rather than sent somewhere else.
 */
function apiUrl(parts, { query = null, base = state.apiBase } = {}) {
  for (const p of parts) {
    if (!addressable(p)) throw new NotAddressable(String(p));
  }
  const path = parts.map((p) => encodeURIComponent(String(p))).join("/");
  const qs = query ? `?${new URLSearchParams(query)}` : "";
  return `${base}/${path}${qs}`;
}

/** Whether a name can be one segment of a URL path ("." and ".." cannot). */
const addressable = (name) => name !== "." && name !== "..";

class NotAddressable extends Error {
  constructor(name) {
    super(`“${name}” cannot be opened, renamed or deleted from this page: a web address cannot hold `
      + `the name “${name}”. Rename it from the command line: facedb rename '${name}' NEW-NAME`);
    this.name = "NotAddressable";
  }
}

/** The page's address of one subject. */
const subjectHash = (name) => `#people/${encodeURIComponent(name)}`;

/** {view, name} of an address; an unknown address is the search. */
function parseHash(hash) {
  const where = String(hash || "").replace(/^#/, "");
  if (where.startsWith("people/") && where.length > "people/".length) {
    const raw = where.slice("people/".length);
    let name;
    try { name = decodeURIComponent(raw); } catch { name = raw; }  // typed by hand: "100%"
    return { view: "subject", name };
  }
  if (["people", "enroll", "search", "review", "discover"].includes(where)) return { view: where, name: null };
  return { view: "search", name: null };
}

/** Open ``hash`` now: a new history entry (unless the address is already there), then its view.
 * Synchronous on purpose: setting ``location.hash`` opens the view only at the ``hashchange``
 * that follows, and a photo chosen in between would have its search aborted by that late switch. */
function go(hash) {
  if (location.hash !== hash) history.pushState(null, "", hash);
  route({ focus: true });
}

// -- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body || {};
  }
  get reason() { return this.body.reason || null; }
}

function retryAfterMs(value) {
  const s = Number(value);
  return 1000 * (Number.isFinite(s) && s > 0 ? Math.min(s, 10) : 1);
}

function errorFromBody(status, body) {
  const msg = body && typeof body.error === "string" ? body.error : `the server answered HTTP ${status}`;
  return new ApiError(status, body, msg);
}

async function api(path, { method = "GET", body, json, signal, raw = false, key = state.key } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(path, { method, headers, body, signal, cache: "no-store", credentials: "omit" });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, null, "the server did not answer (is facedb serve still running?)");
    }
    if (res.status === 503 && attempt < 3) {  // busy: wait as the server asks, then retry
      await sleep(retryAfterMs(res.headers.get("Retry-After")));
      continue;
    }
    if (res.ok) return raw ? res : res.json();
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    throw errorFromBody(res.status, data);
  }
}

/** Show what went wrong; a key that is no longer accepted signs the user out. */
function report(err, what) {
  if (!err || err.name === "AbortError") return;
  if (err.status === 401) {
    signOut("Your API key is no longer accepted (it is wrong or has been revoked). Sign in again.");
    return;
  }
  if (err.status === 403) {
    warn(`Your key may not do this: ${err.message}.`);
    return;
  }
  warn(`${what ? what + ": " : ""}${err.message}`);
}

const canWrite = () => !state.who || !state.who.scope || ["write", "admin"].includes(state.who.scope);

// -- views -----------------------------------------------------------------------------------

const VIEWS = ["signin", "search", "people", "subject", "enroll", "review", "discover"];

/** Leave the current view: stop its requests, revoke its object URLs, forget its photo. */
function leaveView() {
  state.abort.abort();
  state.abort = new AbortController();
  clearSearch();
  clearSubject();
  clearReview();
  clearDiscover();
  if (!state.enroll.busy) clearEnrollFiles();
  dropUrls();
}

function show(view, { focus = false } = {}) {
  leaveView();
  say("");
  state.view = view;
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  const tab = view === "subject" ? "people" : view;
  for (const a of $$("#nav a")) {
    if (a.dataset.view === tab) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${{ signin: "Sign in", search: "Search", people: "People", subject: "Person",
                        enroll: "Enroll", review: "Review", discover: "Discover" }[view]} – facedb`;
  if (focus) {
    const h = $(`#view-${view} h1`);
    h.setAttribute("tabindex", "-1");
    h.focus();
  }
}

/** The address ``route`` last opened: back/forward fire both ``popstate`` and ``hashchange``. */
let routed = null;

function route({ focus = false } = {}) {
  routed = location.hash;
  warn("");
  if (!state.key) {
    show("signin");
    return;
  }
  const where = parseHash(location.hash);
  if (where.view === "subject") openSubject(where.name, { focus });
  else if (where.view === "people") openPeople({ focus });
  else if (where.view === "enroll") openEnroll({ focus });
  else if (where.view === "review") openReview({ focus });
  else if (where.view === "discover") openDiscover({ focus });
  else openSearch({ focus });
}

// -- sign in ---------------------------------------------------------------------------------

async function whoami(key) {
  try {
    return await api(apiUrl(["whoami"], { base: API_ROOT }), { key });
  } catch (e) {
    if (e.status !== 404) throw e;
    await api(apiUrl(["subjects"]), { key });  // an older server: the key works, its scope is unknown
    return { name: "this key", scope: null };
  }
}

function setSignedIn(who) {
  state.who = who;
  $("#nav").hidden = false;
  $("#who").hidden = false;
  const scope = who.scope ? ` (${who.scope})` : "";
  $("#who-text").textContent = `Signed in as ${who.name}${scope}`;
  const write = canWrite();
  for (const c of $$(".needs-write")) c.disabled = !write;
  $("#enroll-fieldset").disabled = !write;
  const note = write ? "" : `Your key “${who.name}” has ${who.scope} scope: you can search and browse, but enrolling, `
    + "renaming and deleting need a key with write scope.";
  for (const p of $$(".scope-note")) {
    p.textContent = note;
    p.hidden = write;
  }
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#api-key");
  const error = $("#signin-error");
  const key = input.value.trim();
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  if (!key) {
    error.textContent = "Enter an API key.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  const button = $("#signin-submit");
  button.disabled = true;
  say("Checking the key…");
  try {
    const who = await whoami(key);
    state.key = key;
    sessionStorage.setItem(KEY_STORE, key);
    input.value = "";
    setSignedIn(who);
    if (!location.hash || location.hash === "#") history.replaceState(null, "", "#search");
    route({ focus: true });
    say(`Signed in as ${who.name}${who.scope ? ` with ${who.scope} scope` : ""}.`);
  } catch (e) {
    say("");
    if (e.status === 401) error.textContent = "This key was not accepted: it is wrong or it has been revoked.";
    else if (e.status === 403) error.textContent = `This key may not use this page: ${e.message}.`;
    else error.textContent = `Could not sign in: ${e.message}.`;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    input.select();
  } finally {
    button.disabled = false;
  }
}

function signOut(message) {
  const wasSignedIn = state.key !== null;
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  state.who = null;
  if (state.enroll.xhr) state.enroll.xhr.abort();
  state.enroll.busy = false;
  // A person's name does not stay in the address bar of a signed-out tab (signing in again
  // opens the list instead).
  if (parseHash(location.hash).view === "subject") history.replaceState(null, "", "#people");
  leaveView();
  clearEnrollFiles();
  state.people = [];
  $("#people-rows").replaceChildren();
  $("#people-count").textContent = "";
  $("#people-filter").value = "";
  $("#enroll-names").replaceChildren();
  $("#enroll-list").replaceChildren();
  $("#enroll-progress").hidden = true;
  $("#enroll-name").value = "";
  $("#enroll-metadata").value = "";
  $("#nav").hidden = true;
  $("#who").hidden = true;
  $("#who-text").textContent = "";
  show("signin");
  warn("");
  $("#signin-error").textContent = message || "";
  if (message) $("#api-key").setAttribute("aria-invalid", "true");
  say(message ? "" : wasSignedIn ? "Signed out." : "");
  $("#api-key").focus();
}

// -- search ----------------------------------------------------------------------------------

function openSearch({ focus = false } = {}) {
  show("search", { focus });
  const t = state.health && state.health.threshold;
  $("#default-threshold").textContent = typeof t === "number" ? ` (${fmt(t)})` : "";
}

function clearSearch() {
  const s = state.search;
  s.seq++;
  s.file = null;
  s.report = null;
  s.faces = [];
  s.selected = -1;
  s.thumbs.clear();
  const img = $("#photo");
  img.removeAttribute("src");
  img.alt = "";
  $("#face-boxes").replaceChildren();
  $("#face-list").replaceChildren();
  $("#matches-list").replaceChildren();
  $("#matches").hidden = true;
  $("#search-result").hidden = true;
  $("#search-summary").textContent = "";
  $("#photo-caption").textContent = "";
}

function searchOptions() {
  const k = $("#search-k");
  const t = $("#search-threshold");
  if (!k.checkValidity() || !k.value) return { error: "Candidates per face must be a whole number from 1 to 20.", field: k };
  if (!t.checkValidity()) return { error: "The threshold must be a number from 0 to 2.", field: t };
  return { k: k.value, threshold: t.value };
}

async function runSearch(file) {
  if (!file) return;
  warn("");
  const opts = searchOptions();
  if (opts.error) {
    warn(opts.error);
    opts.field.focus();
    return;
  }
  // A new photo replaces the old one: its URL, thumbnails and result go now.
  state.abort.abort();
  state.abort = new AbortController();
  clearSearch();
  dropUrls();
  const s = state.search;
  const seq = s.seq;
  s.file = file;
  const signal = state.abort.signal;
  const limit = state.health && state.health.limits && state.health.limits.max_file_bytes;
  if (limit && file.size > limit) {
    warn(`${file.name}: the file is ${megabytes(file.size)}; the server accepts at most ${megabytes(limit)}.`);
    s.file = null;
    return;
  }
  const form = new FormData();
  form.append("images", file, file.name || "photo");
  form.append("k", opts.k);
  if (opts.threshold !== "") form.append("threshold", opts.threshold);
  const drop = $("#search-drop");
  drop.setAttribute("aria-busy", "true");
  say(`Searching ${file.name || "the photo"}…`);
  let rep;
  try {
    rep = await api(apiUrl(["search"]), { method: "POST", body: form, signal });
  } catch (e) {
    if (seq === s.seq) { say(""); report(e, "The search failed"); }
    return;
  } finally {
    drop.removeAttribute("aria-busy");
  }
  if (seq !== s.seq) return;  // another photo (or another view) came meanwhile
  showResult(rep, file);
}

function faceName(f) {
  return f.identity === null || f.identity === undefined ? "unknown" : f.identity;
}

function bestDistance(f) {
  return f.matches && f.matches.length ? f.matches[0].distance : null;
}

function showResult(rep, file) {
  const s = state.search;
  s.report = rep;
  const res = rep.results[0];
  $("#search-result").hidden = false;
  const thr = `threshold ${fmt(rep.threshold)}`;
  if (res.error) {
    $("#search-summary").textContent = `${res.image}: ${reasonText(res.reason)}. ${res.error}`;
    say("");
    warn(`This photo could not be searched: ${reasonText(res.reason)}.`);
    s.file = null;
    $("#photo-frame").hidden = true;
    return;
  }
  // Left to right, so that the numbers read like the photo.
  s.faces = res.faces.slice().sort((a, b) => a.bbox[0] - b.bbox[0] || a.bbox[1] - b.bbox[1]);
  const named = s.faces.filter((f) => f.identity !== null && f.identity !== undefined).length;
  const n = s.faces.length;
  const summary = n === 0
    ? `No face found in ${res.image}.`
    : `${plural(n, "face")} in ${res.image}: ${named} named, ${n - named} unknown · ${thr} · pack ${rep.pack}`;
  $("#search-summary").textContent = summary;
  say(n === 0 ? `No face found in ${res.image}.` : `${plural(n, "face")} found: ${named} named, ${n - named} unknown.`);

  const frame = $("#photo-frame");
  frame.hidden = false;
  const img = $("#photo");
  img.onload = () => {
    if (s.report !== rep) return;
    $("#photo-caption").textContent = "";
    drawBoxes(img.naturalWidth, img.naturalHeight);
  };
  img.onerror = () => {
    if (s.report !== rep) return;
    frame.hidden = true;
    $("#photo-caption").textContent = "This browser cannot show this photo; its faces are listed here.";
  };
  img.alt = `${res.image}, ${plural(n, "face")} found`;
  img.src = track(URL.createObjectURL(file));
  $("#search-file").value = "";  // choosing the same file again searches again

  const list = $("#face-list");
  list.replaceChildren(...s.faces.map((f, i) => el("li", {},
    el("button", { type: "button", class: `face-item ${f.identity == null ? "unknown" : "known"}`, tabindex: "-1",
                   dataset: { face: String(i) }, "aria-pressed": "false", onclick: () => selectFace(i) },
       el("span", { class: "face-num", text: `${i + 1}` }),
       el("span", { class: "face-who", text: faceName(f) }),
       el("span", { class: "face-dist", text: bestDistance(f) === null ? "" : fmt(bestDistance(f)) })))));
  if (n) selectFace(0, { focus: false });
}

function drawBoxes(W, H) {
  const s = state.search;
  const box = $("#face-boxes");
  const pct = (v, of) => `${(100 * Math.min(Math.max(v, 0), of) / of).toFixed(3)}%`;
  box.replaceChildren(...s.faces.map((f, i) => {
    const [x1, y1, x2, y2] = f.bbox;
    const d = bestDistance(f);
    const b = el("button", {
      type: "button", class: `face-box ${f.identity == null ? "unknown" : "known"}`, tabindex: i === s.selected ? "0" : "-1",
      dataset: { face: String(i) }, "aria-pressed": String(i === s.selected), onclick: () => selectFace(i),
    },
      el("span", { class: "sr-only", text: `Face ${i + 1}: ` }),
      el("span", { class: "face-tag" }, el("span", { class: "tag-name", text: faceName(f) }),
         d === null ? null : el("span", { class: "sr-only", text: ", distance" }),
         d === null ? null : el("span", { class: "tag-dist", text: ` ${fmt(d)}` })),
      el("span", { class: "face-key", "aria-hidden": "true", text: String(i + 1) }));
    b.style.left = pct(x1, W);
    b.style.top = pct(y1, H);
    b.style.width = `${(100 * (Math.min(x2, W) - Math.max(x1, 0)) / W).toFixed(3)}%`;
    b.style.height = `${(100 * (Math.min(y2, H) - Math.max(y1, 0)) / H).toFixed(3)}%`;
    return b;
  }));
  if (s.selected < 0 && s.faces.length) box.firstChild.tabIndex = 0;
  placeTags();
}

/**
 * Put the label of every face box where it touches no other label. Each label tries spots
 * above and below its box (left-aligned, right-aligned, centred), then up to two rows further
 * out, and takes the nearest free one that stays on the photo (or in the room above it) and
 * covers no other face. When the names cannot all be placed so (small faces close together, a
 * phone-width photo), the boxes carry their numbers instead, which may cover another face when
 * nothing else is free, and the names are read in the numbered list under the photo. Runs again
 * whenever the photo changes size.
 */
function placeTags() {
  const layer = $("#face-boxes");
  const boxes = $$(".face-box", layer);
  const { width, height } = layer.getBoundingClientRect();
  const W = Math.floor(width);
  const H = Math.floor(height);
  if (!boxes.length || !W || !H) return;
  const room = parseFloat(getComputedStyle($("#photo-frame")).marginTop) || 0;
  const rects = boxes.map((b) => ({ x: b.offsetLeft, y: b.offsetTop, w: b.offsetWidth, h: b.offsetHeight }));
  let compact = false;
  for (const tryCompact of [false, true]) {
    compact = tryCompact;
    layer.classList.toggle("compact", compact);
    if (layoutLabels(boxes, rects, W, H, room, compact) || compact) break;
  }
  const caption = $("#photo-caption");
  if (state.search.faces.length) {
    caption.textContent = compact
      ? "The numbers on the faces are those of the list below. Select a face to see who it is closest to."
      : "Select a face to see who it is closest to.";
  }
}

/** The widest a label on a face gets, in CSS pixels. */
const MAX_TAG_PX = 220;
/** Rows of labels above (and below) a box: further out, a label is no longer read as its face's. */
const MAX_TAG_ROWS = 3;

/** One try of placeTags(): true when every label found a free spot. */
function layoutLabels(boxes, rects, W, H, room, compact) {
  const gap = 2;
  const hit = (a, b) => a.x < b.x + b.w + 1 && b.x < a.x + a.w + 1 && a.y < b.y + b.h + 1 && b.y < a.y + a.h + 1;
  const placed = [];
  let all = true;
  boxes.forEach((b, i) => {
    const tag = $(compact ? ".face-key" : ".face-tag", b);
    tag.style.inset = "";
    tag.style.maxWidth = `${Math.min(W, MAX_TAG_PX)}px`;  // a long name is cut: the list below has it whole
    const w = tag.offsetWidth;
    const h = tag.offsetHeight;
    const r = rects[i];
    const xs = [r.x - gap, r.x + r.w + gap - w, r.x + (r.w - w) / 2].map((x) => Math.min(Math.max(x, 0), W - w));
    let best = null;
    let fallback = null;
    for (let k = 0; k < MAX_TAG_ROWS; k++) {
      for (const [side, y] of [[0, r.y - h - gap - k * (h + gap)], [1, r.y + r.h + gap + k * (h + gap)]]) {
        if (y < -room || y + h > H) continue;
        xs.forEach((x, xi) => {
          const spot = { x, y, w, h };
          const covers = rects.filter((o, j) => j !== i && hit(spot, o)).length;
          const clashes = placed.filter((p) => hit(spot, p)).length;
          const cost = 4 * k + side + xi / 2 + 3 * covers;
          // A name may not hide another face; a number may, when nothing else is free.
          if (!clashes && (compact || !covers) && (!best || cost < best.cost)) best = { spot, cost };
          const bad = 100 * clashes + cost;
          if (!fallback || bad < fallback.cost) fallback = { spot, cost: bad };
        });
      }
    }
    if (!best) all = false;
    const chosen = (best || fallback || { spot: { x: r.x, y: r.y, w, h } }).spot;
    placed.push(chosen);
    // The label is positioned from inside the box's border.
    const dx = chosen.x - r.x - b.clientLeft;
    const dy = chosen.y - r.y - b.clientTop;
    tag.style.inset = `${dy.toFixed(1)}px auto auto ${dx.toFixed(1)}px`;
  });
  return all;
}

function faceKeys(event) {
  const s = state.search;
  const n = s.faces.length;
  if (!n) return;
  const moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
  let i;
  if (event.key in moves) i = (Math.max(s.selected, 0) + moves[event.key] + n) % n;
  else if (event.key === "Home") i = 0;
  else if (event.key === "End") i = n - 1;
  else return;
  event.preventDefault();
  selectFace(i, { focus: true });
}

function selectFace(i, { focus = false } = {}) {
  const s = state.search;
  const f = s.faces[i];
  if (!f || !s.report) return;
  s.selected = i;
  for (const b of $$("#face-boxes .face-box, #face-list .face-item")) {
    const on = Number(b.dataset.face) === i;
    b.setAttribute("aria-pressed", String(on));
    if (b.classList.contains("face-box")) b.tabIndex = on ? 0 : -1;
  }
  if (focus) {
    const b = $(`#face-boxes .face-box[data-face="${i}"]`);
    if (b) b.focus();
  }
  const rep = s.report;
  const panel = $("#matches");
  panel.hidden = false;
  $("#matches-title").textContent = `Face ${i + 1}: ${faceName(f)}`;
  const t = fmt(rep.threshold);
  const m0 = f.matches[0];
  let verdict;
  if (f.identity != null) verdict = `Named ${f.identity}: distance ${fmt(m0.distance, 3)}, within the threshold ${t}.`;
  else if (m0) verdict = `Unknown: the closest person, ${m0.subject}, is at distance ${fmt(m0.distance, 3)}, over the threshold ${t}.`;
  else verdict = "Unknown: nobody is enrolled yet.";
  $("#matches-verdict").textContent = verdict;
  const list = $("#matches-list");
  list.replaceChildren(...f.matches.map((m) => {
    const img = el("img", { class: "thumb", width: 64, height: 64, alt: `Face of ${m.subject} (loading)` });
    const li = el("li", { class: `match ${m.match ? "is-match" : "no-match"}` },
      img,
      el("div", { class: "match-text" },
        el("a", { class: "match-name", href: subjectHash(m.subject), text: m.subject }),
        el("span", { class: "match-dist", text: `distance ${fmt(m.distance, 3)}` }),
        el("span", { class: "badge", text: m.match ? "match" : "no match" }),
        el("span", { class: "match-src help", title: m.image, text: basename(m.image) })));
    thumbnail(img, m.face_id, m.subject, s.thumbs);
    return li;
  }));
  if (!f.matches.length) list.append(el("li", { class: "help", text: "No enrolled face to compare with." }));
}

async function thumbnail(img, faceId, who, cache) {
  const signal = state.abort.signal;
  const done = (entry) => {
    img.src = entry.url;
    img.alt = entry.placeholder ? `${who}: no photo on the server for this face (facedb keeps no copy of photos)`
      : `Enrolled face of ${who}`;
    img.classList.toggle("placeholder", entry.placeholder);
    img.dataset.placeholder = entry.placeholder ? "true" : "false";
    if (entry.placeholder) img.title = "The source photo is not on the server";
  };
  if (cache && cache.has(faceId)) {
    const entry = await cache.get(faceId);
    if (entry && !signal.aborted) done(entry);
    return;
  }
  const job = thumbSlots(async () => {
    const res = await api(apiUrl(["faces", faceId, "thumbnail"], { query: { size: 128 } }), { raw: true, signal });
    const placeholder = res.headers.has("X-Facedb-Placeholder");
    const blob = await res.blob();
    if (signal.aborted) return null;
    return { url: track(URL.createObjectURL(blob)), placeholder };
  }).catch((e) => {
    if (e.status === 404) img.alt = `${who}: this face is no longer enrolled`;
    else if (e.status === 401) report(e);
    else if (e.name !== "AbortError") img.alt = `${who}: the thumbnail could not be loaded`;
    return null;
  });
  if (cache) cache.set(faceId, job);
  const entry = await job;
  if (entry && !signal.aborted) done(entry);
}

// -- people ----------------------------------------------------------------------------------

async function openPeople({ focus = false } = {}) {
  show("people", { focus });
  $("#people-count").textContent = "Loading…";
  try {
    state.people = await api(apiUrl(["subjects"]), { signal: state.abort.signal });
  } catch (e) {
    $("#people-count").textContent = "";
    report(e, "Could not list the people");
    return;
  }
  renderPeople();
}

function renderPeople() {
  const q = $("#people-filter").value.trim().toLocaleLowerCase();
  const all = state.people;
  const shown = q ? all.filter((p) => p.name.toLocaleLowerCase().includes(q)) : all;
  const rows = shown.map((p) => el("tr", {},
    el("th", { scope: "row" }, el("a", { class: "subject-link", href: subjectHash(p.name), title: p.name,
                                         text: p.name })),
    el("td", { class: "num", text: String(p.images) }),
    el("td", { class: "num", text: String(p.faces) }),
    el("td", { class: "date", text: when(p.created_at) })));
  if (!all.length) {
    rows.push(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "No one is enrolled yet. ",
      el("a", { href: "#enroll", text: "Enroll a person" }), ".")));
  } else if (!shown.length) {
    rows.push(el("tr", {}, el("td", { colspan: "4", class: "empty", text: `Nobody’s name contains “${q}”.` })));
  }
  $("#people-rows").replaceChildren(...rows);
  $("#people-count").textContent = q ? `${shown.length} of ${plural(all.length, "person", "people")}`
    : plural(all.length, "person", "people");
}

// -- review ----------------------------------------------------------------------------------

function clearReview() {
  $("#review-summary").textContent = "";
  for (const kind of ["outliers", "lookalikes", "duplicates"]) {
    $(`#review-${kind}`).replaceChildren();
    $(`#review-${kind}-block`).hidden = true;
  }
}

const dist = (d) => (d === null || d === undefined ? "–" : d.toFixed(3));

/** A face's thumbnail and where it came from, linked to its subject's page. */
function findingFace(faceId, subject, image) {
  const img = el("img", { class: "thumb", width: 96, height: 96, alt: `A face of ${subject} (loading)` });
  thumbnail(img, faceId, subject, null);
  return el("div", { class: "face-card" }, img,
    el("a", { class: "subject-link", href: subjectHash(subject), title: subject, text: subject }),
    el("span", { class: "face-src", title: image, text: basename(image) }));
}

const REVIEW_REASONS = {
  closer_to_other: "matched by another person better than by its own",
  far_from_own: "far from the other faces of its own person",
};

/** What looks wrong in the gallery (GET /review): read-only, so a read key sees it. Removing,
 * moving or merging faces from here needs the faces routes; until then the links open the people. */
async function openReview({ focus = false } = {}) {
  show("review", { focus });
  $("#review-summary").textContent = "Reviewing the gallery…";
  let r;
  try {
    r = await api(apiUrl(["review"]), { signal: state.abort.signal });
  } catch (e) {
    $("#review-summary").textContent = "";
    report(e, "Could not review the gallery");
    return;
  }
  const found = r.outliers.length + r.look_alikes.length + r.duplicates.length;
  $("#review-summary").textContent = `${plural(r.subjects, "person", "people")} · ${plural(r.faces, "face")} · `
    + (found ? plural(found, "finding") : "nothing looks wrong");
  $("#review-outliers-block").hidden = !r.outliers.length;
  $("#review-outliers-help").textContent = `Own: distance to the other faces of the same person (above `
    + `${r.outlier_distance} is far). Other: the closest other person (within ${r.threshold} is a match).`;
  $("#review-outliers").replaceChildren(...r.outliers.map((o) => el("li", { class: "finding", dataset: { faceId: o.face_id } },
    findingFace(o.face_id, o.subject, o.image),
    el("div", { class: "evidence" },
      el("strong", { text: REVIEW_REASONS[o.reason] || o.reason }),
      el("span", { text: `own ${dist(o.distance_own)}` }),
      o.nearest_other ? el("span", {}, "closest other: ",
        el("a", { href: subjectHash(o.nearest_other), text: o.nearest_other }), ` ${dist(o.distance_other)}`) : null))));
  $("#review-lookalikes-block").hidden = !r.look_alikes.length;
  $("#review-lookalikes").replaceChildren(...r.look_alikes.map((p) => el("li", { class: "finding" },
    el("a", { href: subjectHash(p.a), text: p.a }), " and ", el("a", { href: subjectHash(p.b), text: p.b }),
    el("span", { class: "evidence", text: ` distance ${dist(p.distance)} (below ${r.look_alike_distance})` }))));
  $("#review-duplicates-block").hidden = !r.duplicates.length;
  $("#review-duplicates").replaceChildren(...r.duplicates.map((d) => el("li", { class: "finding" },
    findingFace(d.face_id, d.subject, d.image), findingFace(d.other_face_id, d.other_subject, d.other_image),
    el("span", { class: "evidence", text: `distance ${dist(d.distance)}` }))));
}

// -- one subject -----------------------------------------------------------------------------

function clearSubject() {
  state.subject = null;
  $("#subject-title").textContent = "";
  $("#subject-summary").textContent = "";
  $("#subject-meta").replaceChildren();
  $("#subject-faces").replaceChildren();
  $("#subject-faces-help").textContent = "";
  $("#subject-failures").replaceChildren();
  $("#subject-failures-block").hidden = true;
  $("#rename-input").value = "";
}

/** One subject's page; route() calls it for #people/<name>, so the address names the subject. */
async function openSubject(name, { focus = false } = {}) {
  show("subject", { focus: false });
  document.title = `${name} – facedb`;
  $("#subject-title").textContent = name;
  $("#subject-summary").textContent = "Loading…";
  if (focus) $("#subject-title").focus();
  let d;
  try {
    d = await api(apiUrl(["subjects", name]), { signal: state.abort.signal });
  } catch (e) {
    if (e.name === "NotAddressable") {
      $("#subject-summary").textContent = "";
      warn(e.message);
      return;
    }
    if (e.status === 404) {
      $("#subject-summary").textContent = "";
      warn(`Nobody named “${name}” is enrolled (any more).`);
      return;
    }
    $("#subject-summary").textContent = "";
    report(e, `Could not open ${name}`);
    return;
  }
  state.subject = d;
  // Before anything the user may act on shows: set later, it would overwrite (or, mid-typing,
  // be joined to) a new name typed meanwhile.
  $("#rename-input").value = d.name;
  const faces = d.images.flatMap((im) => im.faces.map((f) => ({ ...f, image: im })));
  $("#subject-summary").textContent = `${plural(d.images.length, "photo")} · ${plural(faces.length, "face")}`
    + (d.created_at ? ` · enrolled ${when(d.created_at)}` : "");
  const meta = Object.entries(d.metadata || {});
  $("#subject-meta").replaceChildren(...(meta.length
    ? meta.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: typeof v === "string" ? v : JSON.stringify(v) })])
    : [el("dt", { text: "Details" }), el("dd", { class: "help", text: "none stored" })]));
  // Each face's distance to the person's template (GET /faces): the far ones are the ones to check.
  let listed = null;
  try {
    listed = await api(apiUrl(["faces"], { query: { subject: d.name } }), { signal: state.abort.signal });
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  const dist = new Map((listed ? listed.faces : []).map((x) => [x.face_id, x.distance]));
  const threshold = listed ? listed.threshold : null;
  const write = canWrite();
  $("#subject-faces").replaceChildren(...faces.map((f, i) => {
    const img = el("img", { class: "thumb", width: 96, height: 96, alt: `Face ${i + 1} of ${d.name} (loading)` });
    thumbnail(img, f.face_id, d.name, null);
    const dd = dist.get(f.face_id);
    const far = dd !== undefined && dd !== null && threshold !== null && dd > threshold / 2;
    const label = `face ${i + 1} (${basename(f.image.path)})`;
    const remove = el("button", { type: "button", class: "quiet needs-write", text: "Remove",
      "aria-label": `Remove ${label}` });
    const move = el("button", { type: "button", class: "quiet needs-write", text: "Move…",
      "aria-label": `Move ${label} to another person` });
    remove.disabled = move.disabled = !write;
    remove.addEventListener("click", () => askFace("remove", f, label));
    move.addEventListener("click", () => askFace("move", f, label));
    return el("li", { class: "face-card", "data-face-id": String(f.face_id) }, img,
      el("span", { class: "face-src", title: f.image.path, text: basename(f.image.path) }),
      dd === undefined || dd === null ? null
        : el("span", { class: far ? "face-dist far" : "face-dist", text: `distance ${dd.toFixed(3)}`,
          title: "Cosine distance to this person's template (the mean of their faces)" }),
      f.indexed === false ? el("span", { class: "badge", text: "not indexed yet" }) : null,
      el("span", { class: "face-actions" }, remove, move));
  }));
  $("#subject-faces-help").textContent = faces.length
    ? "Thumbnails are cut from the source photos while they are on the server; uploaded photos are not kept, so they show a placeholder. "
      + "The distance is to this person's template: a face far from it may be someone else's photo (remove it, or move it to its person)."
    : "No face stored.";
  const fails = d.failures || [];
  $("#subject-failures-block").hidden = !fails.length;
  $("#subject-failures").replaceChildren(...fails.map((f) => el("li", {},
    el("span", { class: "file-name", text: basename(f.path) }), " — ",
    el("strong", { text: reasonText(f.reason) }), f.message ? `: ${f.message}` : "")));
}

async function renameSubject(event) {
  event.preventDefault();
  const d = state.subject;
  if (!d) return;
  const input = $("#rename-input");
  const to = input.value.trim();
  warn("");
  if (!to) { warn("Enter the new name."); input.focus(); return; }
  if (to === d.name) { say("The name is unchanged."); return; }
  if (!addressable(to)) { warn(`“${to}” cannot be a name: choose another one.`); input.focus(); return; }
  try {
    await api(apiUrl(["subjects", d.name]), { method: "PATCH", json: { name: to } });
  } catch (e) {
    if (e.status === 409) warn(`“${to}” is already the name of someone else.`);
    else report(e, "Could not rename");
    input.focus();
    return;
  }
  // The old address names nobody now: the new one takes its place in the history.
  history.replaceState(null, "", subjectHash(to));
  await openSubject(to, { focus: true });
  say(`Renamed “${d.name}” to “${to}”.`);
}

function askDelete() {
  const d = state.subject;
  if (!d) return;
  const faces = d.images.reduce((n, im) => n + im.faces.length, 0);
  $("#delete-title").textContent = `Delete ${d.name}?`;
  $("#delete-desc").textContent = `This removes ${d.name}, ${plural(d.images.length, "photo")} and ${plural(faces, "face")} `
    + "from the database: searches will no longer find this person. This cannot be undone.";
  $("#delete-confirm").textContent = `Delete ${d.name}`;
  $("#delete-dialog").returnValue = "";
  $("#delete-dialog").showModal();
  $("#delete-cancel").focus();
}

async function confirmDelete() {
  const dialog = $("#delete-dialog");
  const d = state.subject;
  dialog.close("delete");
  if (!d) return;
  say(`Deleting ${d.name}…`);
  let gone;
  try {
    gone = await api(apiUrl(["subjects", d.name]), { method: "DELETE" });
  } catch (e) {
    say("");
    report(e, `Could not delete ${d.name}`);
    return;
  }
  history.replaceState(null, "", "#people");
  await openPeople({ focus: true });
  say(`Deleted ${gone.subject}: ${plural(gone.images, "photo")} and ${plural(gone.faces, "face")} removed.`);
}

// -- one face: remove it, or move it to another person -----------------------------------------

/** Open the face dialog: "remove" asks for a confirmation, "move" for the person to move it to. */
async function askFace(action, face, label) {
  const d = state.subject;
  if (!d) return;
  state.face = { action, face, label, opener: document.activeElement };
  const moving = action === "move";
  $("#face-dialog-title").textContent = moving ? `Move ${label}?` : `Remove ${label}?`;
  $("#face-dialog-desc").textContent = moving
    ? `The face and its photo leave ${d.name} and join the person you name: searches name that person at once.`
    : `This removes the face and its photo from ${d.name}: searches will no longer find it. This cannot be undone.`;
  $("#face-confirm").textContent = moving ? "Move" : "Remove";
  $("#face-confirm").className = moving ? "" : "danger";
  $("#face-move-form").hidden = !moving;
  $("#face-dialog-error").hidden = true;
  $("#face-move-to").value = "";
  $("#face-dialog").returnValue = "";
  $("#face-dialog").showModal();
  if (moving) {
    $("#face-move-to").focus();
    try {
      const people = await api(apiUrl(["subjects"]));
      $("#face-move-names").replaceChildren(...people.filter((p) => p.name !== d.name)
        .map((p) => el("option", { value: p.name })));
    } catch { /* the names are a convenience: typing one works too */ }
  } else {
    $("#face-cancel").focus();
  }
}

function faceError(text) {
  $("#face-dialog-error").textContent = text;
  $("#face-dialog-error").hidden = false;
}

async function confirmFace(event) {
  if (event) event.preventDefault();
  const pending = state.face;
  const d = state.subject;
  if (!pending || !d) return;
  const { action, face, label } = pending;
  let answer;
  try {
    if (action === "move") {
      const to = $("#face-move-to").value.trim();
      if (!to) { faceError("Enter the name of the person to move it to."); $("#face-move-to").focus(); return; }
      if (to === d.name) { faceError(`The face is ${d.name}’s already.`); $("#face-move-to").focus(); return; }
      answer = await api(apiUrl(["faces", "move"]), { method: "POST", json: { face_ids: [face.face_id], to } });
    } else {
      answer = await api(apiUrl(["faces", "remove"]), { method: "POST", json: { face_ids: [face.face_id] } });
    }
  } catch (e) {
    if (e.status === 404 && action === "move") {
      faceError(`Nobody named “${$("#face-move-to").value.trim()}” is enrolled: enroll them first, or choose another name.`);
      $("#face-move-to").focus();
      return;
    }
    $("#face-dialog").close("error");
    report(e, action === "move" ? "Could not move the face" : "Could not remove the face");
    return;
  }
  state.face = null;
  $("#face-dialog").close("done");
  await openSubject(d.name, { focus: false });
  $("#subject-faces-title").focus();
  say(action === "move" ? `Moved ${label} to ${answer.to}.` : `Removed ${label}.`);
}

// -- enroll ----------------------------------------------------------------------------------

async function openEnroll({ focus = false } = {}) {
  show("enroll", { focus });
  if (state.enroll.prefill) {
    $("#enroll-name").value = state.enroll.prefill;
    state.enroll.prefill = null;
  }
  try {
    const people = await api(apiUrl(["subjects"]), { signal: state.abort.signal });
    $("#enroll-names").replaceChildren(...people.map((p) => el("option", { value: p.name })));
  } catch (e) {
    if (e.status === 401) report(e);
  }
}

function clearEnrollFiles() {
  const e = state.enroll;
  e.items = e.items.filter((it) => it.state !== "ready");
  for (const it of e.items) it.file = null;
  $$("#enroll-list li[data-state='ready']").forEach((li) => li.remove());
  if (!$("#enroll-list").children.length) $("#enroll-progress").hidden = true;
}

function setItem(it, st, text, { reason = null, message = null } = {}) {
  it.state = st;
  it.row.dataset.state = st;
  const status = $(".file-status", it.row);
  status.replaceChildren(text);
  if (reason) {
    it.row.dataset.reason = reason;
    status.append(" ", el("code", { class: "reason", text: reason }));
    if (message) status.append(el("span", { class: "reason-message", text: ` ${message}` }));
  }
  const bar = $("progress", it.row);
  if (["enrolled", "duplicate", "rejected", "stopped"].includes(st)) bar.hidden = true;
  const rm = $(".remove", it.row);
  if (rm) rm.hidden = st !== "ready";
}

function addEnrollFiles(files) {
  const e = state.enroll;
  if (e.busy) { warn("Wait for the current photos to finish, then add more."); return; }
  if (!canWrite()) return;
  // Rows of a finished round go when a new round starts.
  if (e.items.length && e.items.every((it) => it.state !== "ready")) {
    e.items = [];
    $("#enroll-list").replaceChildren();
    $("#enroll-next").hidden = true;
    $("#enroll-summary").textContent = "";
  }
  for (const file of files) {
    const it = { id: ++e.seq, file, name: file.name || "photo", size: file.size, state: "ready", row: null };
    const bar = el("progress", { max: "100", value: "0", "aria-label": `Upload of ${it.name}` });
    it.row = el("li", { class: "file", dataset: { state: "ready" } },
      el("span", { class: "file-name", text: it.name }),
      el("span", { class: "file-size help", text: megabytes(file.size) }),
      bar,
      el("span", { class: "file-status", text: "ready" }),
      el("button", { type: "button", class: "quiet remove", text: "Remove", "aria-label": `Remove ${it.name}`,
                     onclick: () => removeItem(it) }));
    e.items.push(it);
    $("#enroll-list").append(it.row);
  }
  $("#enroll-progress").hidden = !e.items.length;
  const ready = e.items.filter((it) => it.state === "ready").length;
  $("#enroll-summary").textContent = `${plural(ready, "photo")} ready to enroll.`;
  $("#enroll-files").value = "";
}

function removeItem(it) {
  const e = state.enroll;
  if (e.busy) return;
  e.items = e.items.filter((x) => x !== it);
  it.file = null;
  it.row.remove();
  const ready = e.items.filter((x) => x.state === "ready").length;
  $("#enroll-summary").textContent = `${plural(ready, "photo")} ready to enroll.`;
  if (!e.items.length) $("#enroll-progress").hidden = true;
  $("#enroll-files").focus();
}

function sendOne(name, it, fields) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    state.enroll.xhr = xhr;
    xhr.open("POST", apiUrl(["subjects", name, "images"]));
    xhr.setRequestHeader("Authorization", `Bearer ${state.key}`);
    const bar = $("progress", it.row);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) {
        bar.value = Math.round((100 * ev.loaded) / ev.total);
        $(".file-status", it.row).textContent = `uploading ${bar.value}%`;
      }
    };
    xhr.upload.onload = () => {
      bar.value = 100;
      setItem(it, "analysing", "looking for the face…");
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      resolve({ status: xhr.status, body, retryAfter: xhr.getResponseHeader("Retry-After") });
    };
    xhr.onerror = () => reject(new ApiError(0, null, "the server did not answer (is facedb serve still running?)"));
    xhr.onabort = () => reject(new DOMException("aborted", "AbortError"));
    const form = new FormData();
    form.append("images", it.file, it.name);
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    xhr.send(form);
  });
}

async function enroll(event) {
  event.preventDefault();
  const e = state.enroll;
  if (e.busy || !canWrite()) return;
  warn("");
  const nameInput = $("#enroll-name");
  const nameError = $("#enroll-name-error");
  const metaInput = $("#enroll-metadata");
  const metaError = $("#enroll-metadata-error");
  nameError.textContent = "";
  metaError.textContent = "";
  nameInput.removeAttribute("aria-invalid");
  metaInput.removeAttribute("aria-invalid");
  const name = nameInput.value.trim();
  if (!name || name.length > 256 || !addressable(name)) {
    nameError.textContent = !name ? "Enter the name of the person."
      : name.length > 256 ? "The name is longer than 256 characters." : `“${name}” cannot be a name: choose another one.`;
    nameInput.setAttribute("aria-invalid", "true");
    nameInput.focus();
    return;
  }
  const fields = { multi_face: $("#enroll-multi").value };
  const metaText = metaInput.value.trim();
  if (metaText) {
    let meta;
    try { meta = JSON.parse(metaText); } catch { meta = undefined; }
    if (!meta || typeof meta !== "object" || Array.isArray(meta)) {
      metaError.textContent = 'The details must be a JSON object, for example {"team": "blue"}.';
      metaInput.closest("details").open = true;
      metaInput.setAttribute("aria-invalid", "true");
      metaInput.focus();
      return;
    }
    fields.metadata = JSON.stringify(meta);
  }
  const todo = e.items.filter((it) => it.state === "ready");
  if (!todo.length) {
    warn("Choose at least one photo to enroll.");
    $("#enroll-files").focus();
    return;
  }
  e.busy = true;
  $("#enroll-submit").disabled = true;
  $("#enroll-clear").disabled = true;
  $("#enroll-next").hidden = true;
  for (const it of todo) setItem(it, "waiting", "waiting");
  say(`Enrolling ${plural(todo.length, "photo")} as ${name}…`);
  const limit = state.health && state.health.limits && state.health.limits.max_file_bytes;
  const counts = { enrolled: 0, duplicate: 0, rejected: 0, stopped: 0 };
  let stop = null;
  for (const [i, it] of todo.entries()) {
    $("#enroll-summary").textContent = `Photo ${i + 1} of ${todo.length}…`;
    if (stop) {
      setItem(it, "stopped", "not sent");
      counts.stopped++;
      continue;
    }
    if (limit && it.size > limit) {
      setItem(it, "rejected", "rejected: the file is too large", { reason: "too_large",
        message: `${megabytes(it.size)}; the server accepts at most ${megabytes(limit)}.` });
      it.file = null;
      counts.rejected++;
      continue;
    }
    setItem(it, "uploading", "uploading");
    let out;
    for (let attempt = 0; ; attempt++) {
      try {
        out = await sendOne(name, it, fields);
      } catch (err) {
        out = { error: err };
      }
      if (out.status === 503 && attempt < 5) {
        setItem(it, "waiting", "the server is busy; retrying…");
        await sleep(retryAfterMs(out.retryAfter));
        continue;
      }
      break;
    }
    it.file = null;  // sent (or given up): the page lets go of the photo
    if (out.error) {
      if (out.error.name === "AbortError") { stop = out.error; setItem(it, "stopped", "stopped"); counts.stopped++; continue; }
      stop = out.error;
      setItem(it, "stopped", `not enrolled: ${out.error.message}`);
      counts.stopped++;
      continue;
    }
    const { status, body } = out;
    if (status === 200 && body && body.subjects) {
      const sub = body.subjects[0] || { enrolled: 0, duplicates: 0, failed: [] };
      if (sub.failed && sub.failed.length) {
        const f = sub.failed[0];
        setItem(it, "rejected", `rejected: ${reasonText(f.reason)}`, { reason: f.reason, message: f.message });
        counts.rejected++;
      } else if (sub.enrolled) {
        setItem(it, "enrolled", "enrolled");
        counts.enrolled++;
      } else if (sub.duplicates) {
        setItem(it, "duplicate", "already enrolled (the same file)");
        counts.duplicate++;
      } else {
        setItem(it, "rejected", "not enrolled");
        counts.rejected++;
      }
      continue;
    }
    const err = errorFromBody(status, body);
    if (status === 413) {
      setItem(it, "rejected", "rejected: the file is too large", { reason: err.reason || "too_large", message: err.message });
      counts.rejected++;
      continue;
    }
    // 401, 403 or a request the server refuses as a whole (a bad name): the rest would fail too.
    stop = err;
    setItem(it, "stopped", `not enrolled: ${err.message}`);
    counts.stopped++;
  }
  e.busy = false;
  e.xhr = null;
  if (!state.key) return;  // signed out meanwhile: nothing more to show
  $("#enroll-submit").disabled = false;
  $("#enroll-clear").disabled = false;
  const parts = [`${counts.enrolled} enrolled`];
  if (counts.duplicate) parts.push(`${counts.duplicate} already enrolled`);
  parts.push(`${counts.rejected} rejected`);
  if (counts.stopped) parts.push(`${counts.stopped} not sent`);
  const summary = `${name}: ${parts.join(", ")}.`;
  $("#enroll-summary").textContent = summary;
  say(summary);
  if (stop && stop.name !== "AbortError") report(stop, "Enrolling stopped");
  if (!state.key) return;
  if (counts.enrolled || counts.duplicate) {
    const open = $("#enroll-open");
    open.textContent = `Open ${name}`;
    open.onclick = () => go(subjectHash(name));
    $("#enroll-next").hidden = false;
    const known = $$("#enroll-names option").some((o) => o.value === name);
    if (!known) $("#enroll-names").append(el("option", { value: name }));
  }
}

// -- discover --------------------------------------------------------------------------------
//
// Who is in these photos (POST /discover, read scope): every photo in ONE request, since faces
// of different requests are never clustered together. The server keeps nothing; the face crops
// are drawn here, on canvases, from the user's own files and each face's bbox, and never leave
// the page. Merging and dropping clusters only change this page's grid; enrolling a cluster
// sends that cluster's photos to POST /subjects/{name}/images (multi_face=resolve: a photo where
// the person is not alone is resolved against their other photos, or refused as ambiguous_faces).

/** The side of a face crop, in CSS pixels. */
const CROP_PX = 88;
/** Crops drawn per cluster; a larger cluster says how many more it has. */
const MAX_CROPS = 12;

function openDiscover({ focus = false } = {}) {
  show("discover", { focus });
}

function clearDiscover() {
  const d = state.discover;
  d.seq++;
  d.files = [];
  d.clusters = [];
  d.busy = false;
  $("#discover-clusters").replaceChildren();
  $("#discover-failed").replaceChildren();
  $("#discover-failed-block").hidden = true;
  $("#discover-result").hidden = true;
  $("#discover-summary").textContent = "";
  $("#discover-selected").textContent = "";
  $("#discover-merge").disabled = true;
  $("#discover-drop").removeAttribute("aria-busy");
}

/**
 * The name each photo is sent under: its own, unless two photos share it or it has characters
 * the server would show escaped; then "photo-N" plus its extension. The report names faces by
 * these labels, which is how each face finds its file again for the crop and for enrolling.
 */
function uploadLabels(files) {
  const seen = new Map();
  for (const f of files) seen.set(f.name, (seen.get(f.name) || 0) + 1);
  return files.map((f, i) => {
    const name = f.name || "";
    const plain = name && !/[\u0000-\u001f\u007f-\u009f]/.test(name) && seen.get(name) === 1;
    if (plain) return name;
    const ext = (/\.[A-Za-z0-9]{1,5}$/.exec(name) || [""])[0];
    return `photo-${i + 1}${ext}`;
  });
}

async function runDiscover(files) {
  const d = state.discover;
  if (!files || !files.length || d.busy) return;
  warn("");
  $("#discover-files").value = "";  // choosing the same photos again runs again
  // New photos replace the old run: its photos, crops and grid go now.
  state.abort.abort();
  state.abort = new AbortController();
  clearDiscover();
  dropUrls();
  const seq = d.seq;
  const signal = state.abort.signal;
  const limits = (state.health && state.health.limits) || {};
  const big = limits.max_file_bytes ? files.filter((f) => f.size > limits.max_file_bytes) : [];
  if (big.length) {
    warn(`${big[0].name}: the file is ${megabytes(big[0].size)}; the server accepts at most `
      + `${megabytes(limits.max_file_bytes)}. Leave it out and choose the photos again.`);
    return;
  }
  const total = files.reduce((n, f) => n + f.size, 0);
  if (limits.max_request_bytes && total > limits.max_request_bytes) {
    warn(`These ${plural(files.length, "photo")} are ${megabytes(total)} together; the server takes at most `
      + `${megabytes(limits.max_request_bytes)} in one request, and a run's photos must go together. Choose fewer photos.`);
    return;
  }
  const labels = uploadLabels(files);
  d.files = files.map((file, i) => ({ file, label: labels[i], image: null }));
  const form = new FormData();
  files.forEach((f, i) => form.append("images", f, labels[i]));
  d.busy = true;
  $("#discover-drop").setAttribute("aria-busy", "true");
  $("#discover-files").disabled = true;
  say(`Looking for the faces in ${plural(files.length, "photo")}…`);
  let rep;
  try {
    rep = await api(apiUrl(["discover"]), { method: "POST", body: form, signal });
  } catch (e) {
    if (seq === d.seq) { say(""); report(e, "Could not look at the photos"); d.files = []; }
    return;
  } finally {
    if (seq === d.seq) d.busy = false;
    $("#discover-files").disabled = false;
    $("#discover-drop").removeAttribute("aria-busy");
  }
  if (seq !== d.seq) return;  // other photos (or another view) came meanwhile
  showDiscover(rep);
}

function showDiscover(rep) {
  const d = state.discover;
  const byLabel = new Map(d.files.map((f, i) => [f.label, i]));
  d.clusters = rep.clusters.map((c) => ({
    key: ++d.key,
    ids: [c.id],
    subject: c.subject,
    faces: c.faces.map((f) => ({ ...f, file: byLabel.has(f.image) ? byLabel.get(f.image) : -1, canvas: null })),
    selected: false,
    node: null,
  }));
  $("#discover-result").hidden = false;
  const named = d.clusters.filter((c) => c.subject !== null && c.subject !== undefined).length;
  const faces = d.clusters.reduce((n, c) => n + c.faces.length, 0);
  say(`${plural(faces, "face")} in ${plural(d.clusters.length, "group")}: ${named} named.`);
  $("#discover-failed-block").hidden = !rep.failed.length;
  $("#discover-failed").replaceChildren(...rep.failed.map((f) => el("li", {},
    el("span", { class: "file-name", text: f.path }), " — ", el("strong", { text: reasonText(f.reason) }),
    " ", el("code", { class: "reason", text: f.reason }))));
  renderClusters();
}

function discoverSummary() {
  const cs = state.discover.clusters;
  const faces = cs.reduce((n, c) => n + c.faces.length, 0);
  const named = cs.filter((c) => c.subject != null).length;
  $("#discover-summary").textContent = cs.length
    ? `${plural(cs.length, "person", "people")} · ${plural(faces, "face")} · ${named} named, ${cs.length - named} to name`
    : "No face found in these photos.";
  const sel = cs.filter((c) => c.selected).length;
  $("#discover-selected").textContent = sel ? `${sel} selected` : "Select two or more groups of one person to merge them.";
  $("#discover-merge").disabled = sel < 2;
}

function renderClusters() {
  const list = $("#discover-clusters");
  list.replaceChildren(...state.discover.clusters.map((c) => {
    if (!c.node) c.node = clusterCard(c);
    return c.node;
  }));
  discoverSummary();
}

/** The files a cluster's faces come from, each once, in the order chosen. */
const clusterFiles = (c) => [...new Set(c.faces.map((f) => f.file).filter((i) => i >= 0))].sort((a, b) => a - b);

function clusterTitle(c) {
  return c.subject != null ? c.subject : `Person ${c.ids.join(" + ")}`;
}

function clusterCard(c) {
  const title = clusterTitle(c);
  const uid = `cluster-${c.key}`;
  const photos = clusterFiles(c).length;
  const heading = el("h2", { class: "cluster-title", id: `${uid}-title` },
    c.subject != null ? el("a", { class: "subject-link", href: subjectHash(c.subject), title: c.subject, text: c.subject })
      : title);
  const select = el("input", { type: "checkbox", id: `${uid}-select`, class: "cluster-select",
                               onchange: (ev) => { c.selected = ev.target.checked; discoverSummary(); } });
  select.checked = c.selected;
  const crops = el("ul", { class: "crops", "aria-label": `Faces of ${title}` },
    ...c.faces.slice(0, MAX_CROPS).map((f, i) => el("li", {}, faceCrop(f, i, title))));
  const more = c.faces.length > MAX_CROPS ? el("p", { class: "help", text: `and ${c.faces.length - MAX_CROPS} more` }) : null;
  const card = el("li", { class: `cluster ${c.subject != null ? "named" : "unnamed"}`, dataset: { cluster: String(c.key) },
                          "aria-labelledby": `${uid}-title` },
    el("div", { class: "cluster-head" }, heading,
      el("span", { class: "cluster-size", text: `${plural(c.faces.length, "face")} · ${plural(photos, "photo")}` })),
    c.subject != null ? el("p", { class: "help cluster-state", text: c.report ? "Enrolled from this page."
      : "Enrolled: named as search names them." }) : null,
    crops, more);
  if (c.subject == null) card.append(enrollForm(c, uid, photos));
  card.append(el("div", { class: "cluster-actions" },
    el("span", { class: "check" }, select, el("label", { for: `${uid}-select`, text: "Select" })),
    el("button", { type: "button", class: "quiet cluster-drop", text: "Drop", "aria-label": `Drop ${title} from the list`,
                   onclick: () => dropCluster(c) })));
  if (c.report) card.append(c.report);
  return card;
}

function enrollForm(c, uid, photos) {
  const write = canWrite();
  const input = el("input", { type: "text", id: `${uid}-name`, name: "cluster_name", autocomplete: "off",
                              class: "needs-write", "aria-describedby": `${uid}-error` });
  const button = el("button", { type: "submit", class: "needs-write", text: "Enroll" });
  input.disabled = button.disabled = !write || !photos;
  return el("form", { class: "inline-form cluster-enroll", onsubmit: (ev) => enrollCluster(ev, c) },
    el("label", { for: `${uid}-name`, text: "Name to enroll as" }), input, button,
    el("p", { id: `${uid}-error`, class: "field-error" }));
}

/** A canvas with the face cut from the user's own photo: nothing is sent, nothing is kept. */
function faceCrop(f, i, title) {
  if (f.canvas) return f.canvas;
  const d = state.discover;
  const file = d.files[f.file];
  const c = el("canvas", { class: "crop", width: CROP_PX, height: CROP_PX, role: "img",
                           "aria-label": `Face ${i + 1} of ${title}, in ${f.image}`, title: f.image });
  f.canvas = c;
  if (!file) return c;
  photoOf(file).then((img) => {
    if (!img) { c.setAttribute("aria-label", `${c.getAttribute("aria-label")} (this browser cannot show the photo)`); return; }
    const [x1, y1, x2, y2] = f.bbox;
    const side = Math.max(x2 - x1, y2 - y1) * 1.3;  // the face and a little around it
    const cx = (x1 + x2) / 2;
    const cy = (y1 + y2) / 2;
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#d8dde3";
    ctx.fillRect(0, 0, CROP_PX, CROP_PX);
    ctx.drawImage(img, cx - side / 2, cy - side / 2, side, side, 0, 0, CROP_PX, CROP_PX);
    c.dataset.drawn = "true";
  });
  return c;
}

/** The decoded photo of one of the user's files (once per file), or null if the browser cannot show it. */
function photoOf(entry) {
  if (!entry.image) {
    const seq = state.discover.seq;
    entry.image = thumbSlots(() => new Promise((resolve) => {
      if (seq !== state.discover.seq) { resolve(null); return; }
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => resolve(null);
      img.src = track(URL.createObjectURL(entry.file));
    }));
  }
  return entry.image;
}

function dropCluster(c) {
  const d = state.discover;
  const i = d.clusters.indexOf(c);
  if (i < 0 || c.busy) return;
  d.clusters.splice(i, 1);
  renderClusters();
  say(`${clusterTitle(c)} is no longer listed.`);
  const next = d.clusters[Math.min(i, d.clusters.length - 1)];
  if (next) $(".cluster-select", next.node).focus();
  else $("#discover-files").focus();
}

/** Merge the selected clusters into one, where the first of them was: one person split in two. */
function mergeClusters() {
  const d = state.discover;
  const chosen = d.clusters.filter((c) => c.selected);
  if (chosen.length < 2) return;
  if (chosen.some((c) => c.busy)) { warn("Wait until the group being enrolled is done, then merge."); return; }
  const names = [...new Set(chosen.map((c) => c.subject).filter((s) => s != null))];
  if (names.length > 1) {
    warn(`${names.join(" and ")} are different enrolled people: merge them from the command line `
      + "(facedb merge) if they are one person.");
    return;
  }
  warn("");
  const merged = {
    key: ++d.key,
    ids: chosen.flatMap((c) => c.ids).sort((a, b) => a - b),
    subject: names.length ? names[0] : null,
    faces: chosen.flatMap((c) => c.faces),
    selected: false,
    node: null,
  };
  for (const f of merged.faces) f.canvas = null;  // drawn again, labelled with the merged group
  const at = d.clusters.indexOf(chosen[0]);
  d.clusters = d.clusters.filter((c) => !c.selected);
  d.clusters.splice(at, 0, merged);
  renderClusters();
  say(`Merged ${plural(chosen.length, "group")} into ${clusterTitle(merged)}: ${plural(merged.faces.length, "face")}.`);
  $(".cluster-select", merged.node).focus();
}

/** Groups of files that each fit in one request (the server's max_request_bytes). */
function batches(items, limit) {
  const out = [];
  let cur = [];
  let size = 0;
  for (const it of items) {
    const n = it.file.size + 1024;  // the part's headers
    if (cur.length && limit && size + n > limit) { out.push(cur); cur = []; size = 0; }
    cur.push(it);
    size += n;
  }
  if (cur.length) out.push(cur);
  return out;
}

async function enrollCluster(event, c) {
  event.preventDefault();
  const d = state.discover;
  if (!canWrite() || c.busy) return;
  const form = event.currentTarget;
  const input = $("input", form);
  const error = $(".field-error", form);
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  const name = input.value.trim();
  if (!name || name.length > 256 || !addressable(name)) {
    error.textContent = !name ? "Enter the name of the person."
      : name.length > 256 ? "The name is longer than 256 characters." : `“${name}” cannot be a name: choose another one.`;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  warn("");
  const seq = d.seq;
  const items = clusterFiles(c).map((i) => d.files[i]);
  const limits = (state.health && state.health.limits) || {};
  c.busy = true;
  for (const x of $$("input, button", form)) x.disabled = true;
  say(`Enrolling ${plural(items.length, "photo")} as ${name}…`);
  const rows = [];
  let enrolled = 0;
  let stop = null;
  for (const batch of batches(items, limits.max_request_bytes)) {
    const body = new FormData();
    for (const it of batch) body.append("images", it.file, it.label);
    body.append("multi_face", "resolve");
    let rep;
    try {
      rep = await api(apiUrl(["subjects", name, "images"]), { method: "POST", body, signal: state.abort.signal });
    } catch (e) {
      stop = e;
      break;
    }
    const sub = (rep.subjects && rep.subjects[0]) || { enrolled: 0, failed: [], images: [] };
    enrolled += sub.enrolled || 0;
    const failed = new Map((sub.failed || []).map((f) => [f.path, f]));
    const seen = new Map((sub.images || []).map((im) => [im.image, im]));
    for (const it of batch) {
      const f = failed.get(it.label);
      const im = seen.get(it.label);
      if (f) rows.push({ label: it.label, state: "rejected", text: `rejected: ${reasonText(f.reason)}`, reason: f.reason, message: f.message });
      else if (im && im.taken !== null && im.taken !== undefined) {
        rows.push({ label: it.label, state: "enrolled",
                    text: im.faces > 1 ? `enrolled (face ${im.taken + 1} of ${im.faces}, resolved)` : "enrolled" });
      } else rows.push({ label: it.label, state: "duplicate", text: "already enrolled (the same file)" });
    }
  }
  c.busy = false;
  if (seq !== d.seq || !state.key) return;  // another run, another view, or signed out meanwhile
  if (stop && stop.name === "AbortError") return;
  const list = el("ul", { class: "file-list cluster-report", "aria-label": `What enrolling ${name} did` },
    ...rows.map((r) => el("li", { class: "file", dataset: r.reason ? { state: r.state, reason: r.reason } : { state: r.state } },
      el("span", { class: "file-name", text: r.label }),
      el("span", { class: "file-status" }, r.text,
        r.reason ? el("code", { class: "reason", text: ` ${r.reason}` }) : null,
        r.message ? el("span", { class: "reason-message", text: ` ${r.message}` }) : null))));
  if (c.report) c.report.remove();
  c.report = rows.length ? list : null;
  if (enrolled || rows.some((r) => r.state === "duplicate")) {
    c.subject = name;  // enrolled: the group is that person now
    c.node = null;
    renderClusters();
    const link = $(".cluster-title a", c.node);
    if (link) link.focus();
  } else {
    for (const x of $$("input, button", form)) x.disabled = false;
    if (c.report) form.after(c.report);
  }
  if (stop) {
    report(stop, `Could not enroll ${name}`);
    return;
  }
  const rejected = rows.filter((r) => r.state === "rejected").length;
  say(`${name}: ${enrolled} enrolled, ${rejected} rejected.`);
}

// -- drag and drop ---------------------------------------------------------------------------

function dropTargets() {
  const zones = { search: $("#search-drop"), enroll: $("#enroll-drop"), discover: $("#discover-drop") };
  const accepts = () => state.key && (state.view === "search" || (state.view === "discover" && !state.discover.busy)
    || (state.view === "enroll" && canWrite()));
  let depth = 0;
  const hasFiles = (ev) => ev.dataTransfer && Array.from(ev.dataTransfer.types || []).includes("Files");
  window.addEventListener("dragenter", (ev) => {
    if (!hasFiles(ev)) return;
    depth++;
    if (accepts()) zones[state.view].classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) for (const z of Object.values(zones)) z.classList.remove("dragging");
  });
  window.addEventListener("dragover", (ev) => {
    ev.preventDefault();  // a photo dropped anywhere never replaces the page
    if (ev.dataTransfer) ev.dataTransfer.dropEffect = accepts() ? "copy" : "none";
  });
  window.addEventListener("drop", (ev) => {
    ev.preventDefault();
    depth = 0;
    for (const z of Object.values(zones)) z.classList.remove("dragging");
    const files = Array.from((ev.dataTransfer && ev.dataTransfer.files) || []);
    if (!files.length || !accepts()) return;
    if (state.view === "search") {
      if (files.length > 1) say(`Searching the first of the ${files.length} photos dropped.`);
      runSearch(files[0]);
    } else if (state.view === "discover") {
      runDiscover(files);
    } else {
      addEnrollFiles(files);
    }
  });
}

// -- start -----------------------------------------------------------------------------------

async function loadHealth() {
  try {
    const res = await fetch("/healthz", { cache: "no-store", credentials: "omit" });
    if (!res.ok) return;
    state.health = await res.json();
    const h = state.health;
    $("#server-info").textContent = `Server: model pack ${h.pack}, threshold ${fmt(h.threshold)}.`;
    const t = $("#default-threshold");
    if (t) t.textContent = typeof h.threshold === "number" ? ` (${fmt(h.threshold)})` : "";
  } catch { /* the sign-in will say the server does not answer */ }
}

function wire() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  $("#search-file").addEventListener("change", (ev) => runSearch(ev.target.files[0]));
  $("#face-boxes").addEventListener("keydown", faceKeys);
  // The labels are placed in pixels: a photo drawn at another size places them again.
  let frameSize = "";
  new ResizeObserver(() => {
    const layer = $("#face-boxes");
    const size = `${layer.clientWidth}x${layer.clientHeight}`;
    if (size !== frameSize) { frameSize = size; placeTags(); }
  }).observe($("#face-boxes"));
  for (const id of ["#search-k", "#search-threshold"]) {
    $(id).addEventListener("change", () => { if (state.search.file) runSearch(state.search.file); });
  }
  $("#people-filter").addEventListener("input", renderPeople);
  $("#subject-add").addEventListener("click", () => {
    state.enroll.prefill = state.subject ? state.subject.name : null;
    go("#enroll");
  });
  $("#rename-form").addEventListener("submit", renameSubject);
  $("#subject-delete").addEventListener("click", askDelete);
  $("#delete-cancel").addEventListener("click", () => $("#delete-dialog").close("cancel"));
  $("#delete-confirm").addEventListener("click", confirmDelete);
  $("#face-cancel").addEventListener("click", () => $("#face-dialog").close("cancel"));
  $("#face-confirm").addEventListener("click", confirmFace);
  $("#face-move-form").addEventListener("submit", confirmFace);
  $("#face-dialog").addEventListener("close", () => {
    const pending = state.face;
    if (pending && pending.opener && document.contains(pending.opener)) pending.opener.focus();
    state.face = null;
  });
  $("#delete-dialog").addEventListener("close", () => {
    if ($("#delete-dialog").returnValue !== "delete" && state.view === "subject") $("#subject-delete").focus();
  });
  $("#enroll-form").addEventListener("submit", enroll);
  $("#discover-files").addEventListener("change", (ev) => runDiscover(Array.from(ev.target.files)));
  $("#discover-merge").addEventListener("click", mergeClusters);
  $("#enroll-files").addEventListener("change", (ev) => addEnrollFiles(Array.from(ev.target.files)));
  $("#enroll-clear").addEventListener("click", () => {
    if (state.enroll.busy) return;
    state.enroll.items = [];
    $("#enroll-list").replaceChildren();
    $("#enroll-progress").hidden = true;
    $("#enroll-next").hidden = true;
    say("The list is cleared.");
  });
  // A link to a view opens it at once (the view already in the address, afresh); a click meant
  // for a new tab or window is left to the browser.
  document.addEventListener("click", (ev) => {
    const a = ev.target instanceof Element ? ev.target.closest("a[href^='#']") : null;
    if (!a || a.getAttribute("href") === "#main") return;
    if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    go(a.getAttribute("href"));
  });
  // Back, forward, and an address typed by hand.
  const moved = () => { if (location.hash !== routed) route({ focus: true }); };
  window.addEventListener("hashchange", moved);
  window.addEventListener("popstate", moved);
  dropTargets();
}

async function start() {
  wire();
  const health = loadHealth();
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) {
    try {
      const who = await whoami(saved);
      state.key = saved;
      setSignedIn(who);
    } catch (e) {
      sessionStorage.removeItem(KEY_STORE);
      if (e.status === 401) $("#signin-error").textContent = "Your API key is no longer accepted. Sign in again.";
    }
  }
  await health;
  route();
  document.body.dataset.ready = "true";
}

start();
