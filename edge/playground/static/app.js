/* edge playground — the page script of the policy playground (contract: edge/playground/API.md).
 *
 * Loads the routes with the admin token typed into the page (GET api/routes), runs one request
 * for several device classes (POST api/run), checks and previews YAML edits (POST api/check,
 * POST api/run with "yaml") and draws what each device gets: status, bytes, headers, bytes by
 * stage, source timeline, body, explain steps and the preview's diff.
 *
 * The admin token lives in sessionStorage only and is sent only in the Authorization header of
 * same-origin calls under API; it never goes into a URL or a log. API data is shown with
 * textContent only (no innerHTML). No inline handlers or styles: the page runs under a strict CSP.
 */
(() => {
  "use strict";

  const API = "/_edge/playground/api/";
  const TOKEN_KEY = "edge-playground-admin-token";
  const DEFAULT_DEVICES = ["phone", "desktop"];
  const IMAGE_ACCEPT = "image/avif,image/webp,*/*";
  const MAX_DEVICES = 6;
  const TOKEN_DEBOUNCE_MS = 300;
  const MODIFIER_KEYS = new Set(["Shift", "Control", "Alt", "Meta"]);

  const state = {
    token: "", routes: [], devices: [], demo: false, route: null, busy: false,
    errorLines: new Set(), lineCount: 0, escapeArmed: false, routesSeq: 0, tokenTimer: 0,
  };

  const $ = (id) => document.getElementById(id);

  // ---- small helpers ------------------------------------------------------------------------

  /** Build an element: props are properties (class/text are shortcuts; "a-b" names are attributes). */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.includes("-")) node.setAttribute(key, String(value));
      else node[key] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  const idSafe = (text) => String(text).replace(/[^A-Za-z0-9_-]/g, "_");
  const int = (value) => Math.trunc(Number(value) || 0);
  const pct = (part, whole) => (whole > 0 ? `${Math.min(100, Math.max(0, (part / whole) * 100))}%` : "0%");
  const ms = (value) => (Number(value) || 0).toFixed(1);

  function signedBytes(delta) {
    if (delta > 0) return `+${delta} bytes`;
    if (delta < 0) return `${delta} bytes`;
    return "±0 bytes";
  }

  function statusClass(status) {
    const family = Math.floor(status / 100);
    return family >= 2 && family <= 5 ? `status-${family}xx` : "status-other";
  }

  /** Show a message in the live status region; kind "error" makes it stand out. */
  function say(text, kind = "info") {
    const box = $("message");
    box.textContent = text;
    box.dataset.kind = kind;
  }

  // ---- the API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail, body) {
      super(status ? `${status}: ${detail}` : detail);
      this.status = status;
      this.body = body;
    }
  }

  /** Call api/<name>: GET without a body, POST with one. Errors are problem+json: show detail. */
  async function api(name, body, withToken = true) {
    const headers = { Accept: "application/json" };
    if (withToken && state.token) headers.Authorization = `Bearer ${state.token}`;
    const init = { method: "GET", headers, credentials: "same-origin", cache: "no-store", redirect: "error" };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + name, init);
    } catch (error) {
      // the error's text is not shown: it could echo a header value
      throw new ApiError(0, `The edge did not answer (${error.name}); check the connection and the token's characters.`, null);
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = (data && (data.detail || data.title)) || response.statusText || "request failed";
      throw new ApiError(response.status, String(detail), data);
    }
    return data || {};
  }

  // ---- admin token ----------------------------------------------------------------------------

  function readStoredToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (error) { return ""; }
  }

  function storeToken(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (error) { /* storage off: the token lives in the page only */ }
  }

  function setToken(value) {
    clearTimeout(state.tokenTimer);
    state.token = String(value).trim();
    storeToken(state.token);
    loadRoutes();
  }

  function showDemoButton(show) {
    $("demo-token").hidden = !show;
  }

  async function useDemoToken() {
    try {
      const data = await api("demo-token", { roles: ["admin"] }, false);
      $("token").value = data.token || "";
      setToken(data.token || "");
    } catch (error) {
      if (error.status === 404) {
        showDemoButton(false);
        say("Demo tokens are off: this edge is not in demo mode.", "error");
      } else {
        say(`No demo token — ${error.message}`, "error");
      }
    }
  }

  // ---- routes ---------------------------------------------------------------------------------

  async function loadRoutes() {
    const seq = ++state.routesSeq;
    say("Loading routes…");
    let data;
    try {
      data = await api("routes");
    } catch (error) {
      if (seq !== state.routesSeq) return;
      const refused = error.status === 401 || error.status === 403;
      const demo = error.body && typeof error.body.demo === "boolean" ? error.body.demo : null;
      // the demo button needs no token: offer it when the edge says demo, or may be (it 404s if not)
      showDemoButton(demo === true || (demo === null && refused && !state.token));
      say(refused && !state.token ? "Enter the admin token to load the routes."
        : `Routes not loaded — ${error.message}`, "error");
      return;
    }
    if (seq !== state.routesSeq) return;
    applyRoutes(data);
  }

  function applyRoutes(data) {
    state.demo = data.demo === true;
    state.routes = Array.isArray(data.routes) ? data.routes : [];
    state.devices = Array.isArray(data.devices) ? data.devices.map(String) : [];
    showDemoButton(state.demo);
    $("claims-option").hidden = !state.demo;
    if (!state.demo && selectedIdentity() === "claims") setIdentity("none");
    renderDevices(data.default_device, data.device_header);
    renderRouteSelect();
    const generation = data.generation === undefined ? "" : ` (config generation ${data.generation})`;
    say(state.routes.length ? `Loaded ${state.routes.length} routes${generation}.` : "The edge has no routes.");
  }

  function renderRouteSelect() {
    const select = $("route");
    const previous = state.route ? state.route.name : select.value;
    const groups = new Map();
    for (const route of state.routes) {
      const kind = String(route.kind || "other");
      if (!groups.has(kind)) groups.set(kind, el("optgroup", { label: kind }));
      const label = route.runnable ? route.name : `${route.name} (not runnable)`;
      groups.get(kind).append(el("option", { value: route.name, text: label }));
    }
    select.replaceChildren(...groups.values());
    const kept = state.routes.find((route) => route.name === previous);
    if (kept) {
      select.value = kept.name;
      state.route = kept;  // same route, new generation: keep the user's inputs and edits
      renderRouteInfo(kept);
      updateButtons();
    } else {
      selectRoute(select.value);
    }
  }

  function selectRoute(name) {
    const route = state.routes.find((candidate) => candidate.name === name) || null;
    state.route = route;
    const example = route ? exampleParts(route) : { values: {}, query: "" };
    renderRouteInfo(route);
    renderParams(route, example.values);
    $("query").value = example.query;
    $("accept").value = route && route.kind === "image" ? IMAGE_ACCEPT : "application/json";
    loadEditor(route);
    clearResults();
    updateButtons();
  }

  function renderRouteInfo(route) {
    $("route-kind").textContent = route ? String(route.kind || "") : "";
    $("route-where").textContent = route ? String(route.where || "") : "";
    $("route-auth").textContent = route && route.auth ? `auth: ${route.auth}` : "";
  }

  /** The path template's {name} or {name:regex} placeholders, in order. */
  function placeholders(path) {
    return [...String(path).matchAll(/\{([^}:]+)(:[^}]*)?\}/g)];
  }

  /** Parameter values and query string of the route's example, when it has one. */
  function exampleParts(route) {
    const values = {};
    if (typeof route.example !== "string" || !route.example) return { values, query: "" };
    const cut = route.example.indexOf("?");
    const examplePath = cut < 0 ? route.example : route.example.slice(0, cut);
    const query = cut < 0 ? "" : route.example.slice(cut + 1);
    const names = [];
    const pattern = String(route.path).split(/(\{[^}]+\})/).map((part) => {
      const match = /^\{([^}:]+)(:[^}]*)?\}$/.exec(part);
      if (!match) return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      names.push(match[1]);
      return match[2] ? "(.+?)" : "([^/]+)";
    }).join("");
    const found = new RegExp(`^${pattern}$`).exec(examplePath);
    if (found) names.forEach((name, i) => { values[name] = safeDecode(found[i + 1]); });
    return { values, query };
  }

  function safeDecode(text) {
    try { return decodeURIComponent(text); } catch (error) { return text; }
  }

  function renderParams(route, values) {
    const names = route && Array.isArray(route.params) ? route.params.map(String) : [];
    const rows = names.map((name) => {
      const id = `param-${idSafe(name)}`;
      return el("div", { class: "field" },
        el("label", { htmlFor: id, text: name }),
        el("input", { id, name: `param-${name}`, type: "text", value: values[name] || "",
          autocomplete: "off", spellcheck: false, "data-param": name }));
    });
    $("param-list").replaceChildren(...rows);
    $("params").hidden = names.length === 0;
  }

  function renderDevices(defaultDevice, deviceHeader) {
    const previous = checkedDevices();
    let wanted = new Set(previous.filter((device) => state.devices.includes(device)));
    if (!wanted.size) wanted = new Set(DEFAULT_DEVICES.filter((device) => state.devices.includes(device)));
    if (!wanted.size && defaultDevice) wanted.add(String(defaultDevice));
    const rows = state.devices.map((device) => {
      const id = `device-${idSafe(device)}`;
      return el("div", { class: "check" },
        el("input", { type: "checkbox", id, name: "device", value: device, checked: wanted.has(device) }),
        el("label", { htmlFor: id, text: device }));
    });
    $("device-list").replaceChildren(...rows);
    $("device-note").textContent = deviceHeader ? `Each device class is sent as ${deviceHeader}.` : "";
  }

  function checkedDevices() {
    return [...document.querySelectorAll('input[name="device"]:checked')].map((box) => box.value);
  }

  function updateButtons() {
    const route = state.route;
    const runnable = Boolean(route && route.runnable);
    $("run").disabled = state.busy || !runnable;
    $("preview").disabled = state.busy || !runnable;
    $("check").disabled = state.busy || !route;
    $("run-note").textContent = route && !runnable
      ? `This ${route.kind || ""} route can't be run here; you can still check an edit.` : "";
  }

  function setBusy(busy) {
    state.busy = busy;
    $("results").setAttribute("aria-busy", String(busy));
    updateButtons();
  }

  // ---- the request ----------------------------------------------------------------------------

  function selectedIdentity() {
    const radio = document.querySelector('input[name="identity"]:checked');
    return radio ? radio.value : "none";
  }

  function setIdentity(value) {
    const radio = document.querySelector(`input[name="identity"][value="${value}"]`);
    if (radio) radio.checked = true;
  }

  function identity() {
    const kind = selectedIdentity();
    if (kind === "token") {
      const token = $("identity-token").value.trim();
      if (!token) throw new Error("Paste a token to send, or choose “no token”.");
      return { token };
    }
    if (kind === "claims") {
      let claims;
      try { claims = JSON.parse($("identity-claims").value); } catch (error) {
        throw new Error(`The claims are not JSON: ${error.message}`);
      }
      if (!claims || typeof claims !== "object" || Array.isArray(claims)) {
        throw new Error("The claims must be a JSON object.");
      }
      return { claims };
    }
    return null;
  }

  function buildPath(route) {
    const values = new Map();
    for (const input of $("param-list").querySelectorAll("input")) values.set(input.dataset.param, input.value);
    for (const [, name] of placeholders(route.path)) {
      if (!values.get(name)) throw new Error(`Fill in the path parameter “${name}”.`);
    }
    const path = String(route.path).replace(/\{([^}:]+)(:[^}]*)?\}/g,
      (whole, name) => encodeURIComponent(values.get(name) || ""));
    const query = $("query").value.trim().replace(/^\?/, "");
    return query ? `${path}?${query}` : path;
  }

  function requestHeaders() {
    const headers = { Accept: $("accept").value, "Accept-Encoding": $("accept-encoding").value };
    if ($("save-data").checked) headers["Save-Data"] = "on";
    if ($("no-cache").checked) headers["Cache-Control"] = "no-cache";
    if ($("ect").value !== "none") headers.ECT = $("ect").value;
    return headers;
  }

  function runRequest(withYaml) {
    const route = state.route;
    if (!route) throw new Error("Choose a route first.");
    const devices = checkedDevices();
    if (!devices.length) throw new Error("Choose at least one device class.");
    if (devices.length > MAX_DEVICES) throw new Error(`Choose at most ${MAX_DEVICES} device classes.`);
    return {
      route: route.name, path: buildPath(route), devices, headers: requestHeaders(),
      identity: identity(), yaml: withYaml ? $("editor").value : null,
    };
  }

  async function run(withYaml) {
    let request;
    try { request = runRequest(withYaml); } catch (error) { say(error.message, "error"); return; }
    setBusy(true);
    say(withYaml ? "Previewing the edit…" : `Running ${request.path}…`);
    try {
      const data = await api("run", request);
      const problems = Array.isArray(data.problems) ? data.problems : [];
      if (withYaml) showProblems(problems, false);
      renderResults(Array.isArray(data.live) ? data.live : [], Array.isArray(data.preview) ? data.preview : null);
      if (withYaml && problems.length) say(`The edit has ${problems.length} problem(s); showing the live result only.`, "error");
      else say(`${withYaml ? "Previewed" : "Ran"} ${request.path} for ${request.devices.join(", ")}.`);
    } catch (error) {
      say(error.message, "error");
    } finally {
      setBusy(false);
    }
  }

  // ---- results --------------------------------------------------------------------------------

  function clearResults() {
    $("results").replaceChildren(el("p", { class: "note", text: "Run a request to see what each device gets." }));
  }

  function renderResults(live, preview) {
    const previews = new Map((preview || []).map((result) => [String(result.device), result]));
    const columns = live.map((result) => {
      const device = String(result.device);
      const headingId = `result-${idSafe(device)}`;
      const column = el("article", { class: "result", "aria-labelledby": headingId },
        el("h3", { id: headingId, text: device }),
        ...renderResult(result, ""));
      if (previews.has(device)) column.append(renderPreview(previews.get(device)));
      return column;
    });
    $("results").replaceChildren(...columns);
  }

  /** Status and bytes of one Result; prefix "" for live, "preview-" for the edited policy's. */
  function summaryParts(result, prefix) {
    const device = String(result.device);
    const status = int(result.status);
    return [
      el("p", { class: "status-line" }, "Status ",
        el("span", { class: `status ${statusClass(status)}`, "data-testid": `${prefix}status-${device}`, text: String(status) })),
      el("p", { class: "bytes" },
        el("span", { class: "bytes-number", "data-testid": `${prefix}bytes-${device}`, text: String(int(result.bytes)) }),
        el("span", { class: "bytes-unit", text: " bytes on the wire" })),
    ];
  }

  /** Headers, stages, sources, body and explain steps of one Result. */
  function detailParts(result, prefix) {
    return [
      headersTable(result.headers),
      stagesChart(result.stages),
      sourcesTimeline(result.sources),
      bodyView(result, prefix),
      el("details", { class: "steps" },
        el("summary", { text: "explain steps" }),
        el("pre", { tabIndex: 0, text: JSON.stringify(result.steps ?? [], null, 2) })),
    ];
  }

  function renderResult(result, prefix) {
    return [...summaryParts(result, prefix), ...detailParts(result, prefix)];
  }

  function renderPreview(result) {
    const device = String(result.device);
    const diff = result.diff || {};
    return el("section", { class: "preview", "aria-label": `Preview for ${device}` },
      el("h4", { text: "Preview (edited policy)" }),
      ...summaryParts(result, "preview-"),
      el("p", { class: "delta", "data-testid": `delta-${device}`, text: signedBytes(int(diff.bytes)) }),
      diffView(diff.text, device),
      ...detailParts(result, "preview-"));
  }

  function headersTable(headers) {
    const entries = Object.entries(headers || {});
    if (!entries.length) return el("p", { class: "note", text: "No headers returned." });
    return el("table", { class: "headers" },
      el("caption", { text: "Headers" }),
      el("tbody", {}, ...entries.map(([name, value]) =>
        el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: String(value) })))));
  }

  function barRow(label, value, bar, className = "chart-row") {
    return el("li", { class: className },
      el("span", { class: "chart-name", text: label }),
      el("span", { class: "track", "aria-hidden": "true" }, bar),
      value === null ? null : el("span", { class: "chart-value", text: value }));
  }

  function stagesChart(stages) {
    if (!Array.isArray(stages) || !stages.length) return null;
    const max = Math.max(0, ...stages.map((stage) => int(stage.bytes)));
    const rows = stages.map((stage) => {
      const bar = el("span", { class: "bar" });
      bar.style.width = pct(int(stage.bytes), max);
      return barRow(String(stage.stage), `${int(stage.bytes)} B`, bar);
    });
    return el("figure", { class: "chart stages" },
      el("figcaption", { text: "Bytes by stage" }), el("ol", {}, ...rows));
  }

  function sourcesTimeline(sources) {
    if (!Array.isArray(sources) || !sources.length) return null;
    const max = Math.max(0, ...sources.map((source) => Number(source.end_ms) || 0));
    const rows = sources.map((source) => {
      const start = Number(source.start_ms) || 0;
      const end = Math.max(Number(source.end_ms) || 0, start);
      const bar = el("span", { class: "bar" });
      bar.style.left = pct(start, max);
      bar.style.width = pct(end - start, max);
      const after = Array.isArray(source.after) && source.after.length ? ` after ${source.after.join(", ")}` : "";
      const failed = source.ok === false;
      const label = `${source.name}${after} · ${ms(start)}–${ms(end)} ms${failed ? " · failed" : ""}`;
      return barRow(label, null, bar, failed ? "chart-row fail" : "chart-row");
    });
    return el("figure", { class: "chart timeline" },
      el("figcaption", { text: "Sources" }), el("ol", {}, ...rows));
  }

  function bodyView(result, prefix) {
    const body = result.body || { kind: "empty" };
    const device = String(result.device);
    if (body.kind === "image" && typeof body.data_url === "string" && body.data_url.startsWith("data:image/")) {
      const width = int(body.width);
      const height = int(body.height);
      return el("figure", { class: "image" },
        el("img", { src: body.data_url, alt: `The image as served to ${device}`, width: width || null, height: height || null }),
        el("figcaption", { text: `${body.format || "image"} · ${width}×${height} · ${int(result.bytes)} bytes` }));
    }
    if (body.kind === "json" || body.kind === "text") {
      const text = typeof body.text === "string" ? body.text : "";
      const pre = el("pre", { class: "body-text", tabIndex: 0, "aria-label": `Body for ${device}`, text });
      const toggle = result.keymap && result.keymap.keys
        ? keymapToggle(pre, text, result.keymap, `${prefix}fullkeys-${idSafe(device)}`) : null;
      return el("div", { class: "body" },
        el("p", { class: "body-kind", text: `Body (${body.kind})${body.truncated ? ", truncated" : ""}` }),
        toggle, pre);
    }
    return el("p", { class: "body-kind", text: body.kind === "binary" ? "Body: binary" : "Body: empty" });
  }

  function keymapToggle(pre, text, keymap, id) {
    const longByShort = new Map(Object.entries(keymap.keys).map(([long, short]) => [String(short), long]));
    const box = el("input", { type: "checkbox", id, "data-testid": id });
    box.addEventListener("change", () => {
      pre.textContent = box.checked ? expandKeys(text, longByShort) : text;
    });
    return el("div", { class: "check" }, box,
      el("label", { htmlFor: id, text: "show full keys" }),
      keymap.name ? el("span", { class: "note", text: ` (keymap ${keymap.name})` }) : null);
  }

  /** The JSON text with object keys short → long; the text as is when it does not parse. */
  function expandKeys(text, longByShort) {
    let value;
    try { value = JSON.parse(text); } catch (error) { return text; }
    const walk = (node) => {
      if (Array.isArray(node)) return node.map(walk);
      if (!node || typeof node !== "object") return node;
      return Object.fromEntries(Object.entries(node).map(
        ([key, child]) => [longByShort.has(key) ? longByShort.get(key) : key, walk(child)]));
    };
    return JSON.stringify(walk(value), null, 2);
  }

  function diffLineClass(line) {
    if (line.startsWith("+++") || line.startsWith("---")) return "diff-meta";
    if (line.startsWith("@@")) return "diff-hunk";
    if (line.startsWith("+")) return "diff-add";
    if (line.startsWith("-")) return "diff-del";
    return null;
  }

  function diffView(text, device) {
    const pre = el("pre", { class: "diff", tabIndex: 0, "data-testid": `diff-${device}`, "aria-label": `Diff for ${device}` });
    const diff = typeof text === "string" ? text : "";
    if (!diff) {
      pre.textContent = "(no differences)";
      return pre;
    }
    const lines = diff.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    pre.append(...lines.map((line) => el("span", { class: diffLineClass(line), text: `${line}\n` })));
    return pre;
  }

  // ---- the editor -----------------------------------------------------------------------------

  function loadEditor(route) {
    const editor = $("editor");
    editor.value = route ? String(route.yaml || "") : "";
    editor.scrollTop = 0;
    $("edit-file").textContent = route ? String(route.file || route.where || "") : "(no route)";
    $("edit-line").textContent = route && route.yaml_line ? ` (from line ${route.yaml_line})` : "";
    showProblems([], false);
  }

  function renderGutter(force) {
    const editor = $("editor");
    const count = editor.value.split("\n").length;
    if (force || count !== state.lineCount) {
      state.lineCount = count;
      const rows = [];
      for (let line = 1; line <= count; line++) {
        rows.push(el("div", { class: state.errorLines.has(line) ? "error" : null, text: String(line) }));
      }
      $("gutter-lines").replaceChildren(...rows);
    }
    syncGutter();
  }

  function syncGutter() {
    $("gutter").scrollTop = $("editor").scrollTop;
  }

  /** Tab indents; Escape then Tab (or any modified Tab) leaves, so the keyboard is never trapped. */
  function onEditorKey(event) {
    if (MODIFIER_KEYS.has(event.key)) return;
    if (event.key === "Escape") {
      state.escapeArmed = true;
      return;
    }
    const plainTab = event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey;
    if (plainTab && !state.escapeArmed) {
      event.preventDefault();
      insertText("  ");
    }
    state.escapeArmed = false;
  }

  function insertText(text) {
    const editor = $("editor");
    // execCommand keeps the browser's undo history; setRangeText is the fallback
    const done = typeof document.execCommand === "function" && document.execCommand("insertText", false, text);
    if (!done) {
      editor.setRangeText(text, editor.selectionStart, editor.selectionEnd, "end");
      renderGutter(false);
    }
  }

  /** List the problems under the editor and mark their lines; "No problems" when asked. */
  function showProblems(problems, sayOk) {
    state.errorLines = new Set(problems.map((problem) => int(problem.line)).filter((line) => line > 0));
    renderGutter(true);
    const list = $("problems");
    if (!problems.length) {
      list.replaceChildren(...(sayOk ? [el("li", { class: "ok", "data-testid": "check-ok", text: "No problems" })] : []));
      return;
    }
    list.replaceChildren(...problems.map((problem) => {
      if (problem.line == null) {  // outside the editor: the message says where
        return el("li", { class: "elsewhere", text: problem.message });
      }
      const line = Math.max(1, int(problem.line));
      const col = Math.max(1, int(problem.col));
      const button = el("button", { type: "button", class: "problem", text: `line ${line}, col ${col}: ${problem.message}` });
      button.addEventListener("click", () => goTo(line, col));
      return el("li", {}, button);
    }));
  }

  /** Put the caret at line/col (1-based) of the editor and focus it. */
  function goTo(line, col) {
    const editor = $("editor");
    const lines = editor.value.split("\n");
    const row = Math.min(line, lines.length) - 1;
    let offset = 0;
    for (let i = 0; i < row; i++) offset += lines[i].length + 1;
    offset += Math.min(col - 1, lines[row].length);
    editor.focus();
    editor.setSelectionRange(offset, offset);
    const lineHeight = parseFloat(getComputedStyle(editor).lineHeight) || 20;
    editor.scrollTop = Math.max(0, (row - 2) * lineHeight);
    syncGutter();
  }

  async function check() {
    if (!state.route) { say("Choose a route first.", "error"); return; }
    setBusy(true);
    say("Checking the edit…");
    try {
      const data = await api("check", { route: state.route.name, yaml: $("editor").value });
      const problems = Array.isArray(data.problems) ? data.problems : [];
      showProblems(problems, true);
      say(problems.length ? `The edit has ${problems.length} problem(s).` : "The edit checks out: no problems.",
        problems.length ? "error" : "info");
    } catch (error) {
      say(error.message, "error");
    } finally {
      setBusy(false);
    }
  }

  // ---- wiring ---------------------------------------------------------------------------------

  function wire() {
    const token = $("token");
    token.addEventListener("input", () => {
      clearTimeout(state.tokenTimer);
      state.tokenTimer = setTimeout(() => setToken(token.value), TOKEN_DEBOUNCE_MS);
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      setToken(token.value);
    });
    $("demo-token").addEventListener("click", useDemoToken);
    $("route").addEventListener("change", (event) => selectRoute(event.target.value));
    $("request-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (!$("run").disabled) run(false);
    });
    $("identity-token").addEventListener("input", () => setIdentity("token"));
    $("identity-claims").addEventListener("input", () => setIdentity("claims"));

    const editor = $("editor");
    editor.addEventListener("input", () => renderGutter(false));
    editor.addEventListener("scroll", syncGutter);
    editor.addEventListener("keydown", onEditorKey);
    editor.addEventListener("blur", () => { state.escapeArmed = false; });
    $("check").addEventListener("click", check);
    $("preview").addEventListener("click", () => run(true));
  }

  function init() {
    wire();
    state.token = readStoredToken();
    $("token").value = state.token;
    renderGutter(true);
    updateButtons();
    loadRoutes();
  }

  init();
})();
