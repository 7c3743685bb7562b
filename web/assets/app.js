// Berth dashboard: every change goes through the REST API with the
// session's CSRF token; pages stay live through one server-sent event
// stream each, and re-render their live regions in place.
"use strict";
(() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // ---- REST calls ---------------------------------------------------------
  async function api(method, url, body, type) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = type || "application/json";
      payload = typeof body === "string" ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
    } catch (e) {
      return { ok: false, status: 0, error: { message: "The server cannot be reached.", details: [] } };
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 401) { signedOut(); }
    if (!response.ok) {
      const error = (data && data.error) || { message: response.status + " " + response.statusText, details: [] };
      return { ok: false, status: response.status, error, data };
    }
    return { ok: true, status: response.status, data };
  }
  function describe(error) {
    const details = (error.details || []).map((d) => d.field + ": " + d.reason);
    return details.length ? error.message + "\n" + details.join("\n") : error.message;
  }
  let toastTimer;
  function toast(text, bad) {
    const el = $("#toast");
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "bad" : "";
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, bad ? 8000 : 3000);
  }
  function signedOut() {
    const banner = $("#live-banner");
    if (banner) { banner.textContent = "Your session has ended. Sign in again to continue."; banner.hidden = false; }
  }

  // ---- live regions ----------------------------------------------------------
  let refreshing = false, again = false, refreshTimer = null;
  function scheduleRefresh(delay) {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, delay === undefined ? 40 : delay);
  }
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(location.href, { headers: { "X-Berth-Live": "1" }, credentials: "same-origin" });
      if (response.redirected && new URL(response.url).pathname === "/login") { signedOut(); return; }
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const fresh of $$("[data-live-id]", doc)) {
        const current = document.querySelector('[data-live-id="' + CSS.escape(fresh.dataset.liveId) + '"]');
        if (!current || current.innerHTML === fresh.innerHTML) continue;
        const active = document.activeElement;
        if (active && current.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) continue;
        // An open dialog (a rollback's preview) stays as the user opened it.
        if (current.querySelector("dialog[open]")) continue;
        current.innerHTML = fresh.innerHTML;
        for (const attr of ["class", "data-state"]) {
          if (fresh.hasAttribute(attr)) current.setAttribute(attr, fresh.getAttribute(attr));
        }
      }
      const main = $("main"), freshMain = $("main", doc);
      if (main && freshMain && freshMain.dataset.rv) main.dataset.rv = freshMain.dataset.rv;
      document.dispatchEvent(new CustomEvent("berth:refreshed"));
    } catch (e) {
      // The stream's own error handling shows the banner.
    } finally {
      refreshing = false;
      if (again) { again = false; scheduleRefresh(); }
    }
  }
  let source = null, lost = false;
  function connectLive() {
    const main = $("main");
    if (!main || !main.dataset.live) return;
    const url = main.dataset.live + (main.dataset.live.includes("?") ? "&" : "?") + "rv=" + encodeURIComponent(main.dataset.rv || "0");
    source = new EventSource(url);
    source.addEventListener("open", () => {
      if (lost) { lost = false; $("#live-banner").hidden = true; scheduleRefresh(0); }
    });
    source.addEventListener("change", () => scheduleRefresh());
    source.addEventListener("reset", () => {
      // The revision the page was read at is gone: read the page again and
      // follow from its revision.
      source.close();
      refresh().then(connectLive);
    });
    source.addEventListener("error", () => {
      lost = true;
      const banner = $("#live-banner");
      banner.textContent = "Connection lost. Reconnecting…";
      banner.hidden = false;
      if (source.readyState === EventSource.CLOSED) setTimeout(connectLive, 2000);
    });
  }

  // ---- YAML editor -----------------------------------------------------------
  function pathParts(path) {
    const parts = [];
    path.replace(/([^.[\]]+)|\[(\d+)\]/g, (_, key, index) => { parts.push(key !== undefined ? key : Number(index)); return ""; });
    return parts;
  }
  const indentOf = (line) => line.length - line.trimStart().length;
  const meaningful = (line) => line.trim() !== "" && !line.trim().startsWith("#") && line.trim() !== "---";
  // The 1-based line of a field path (`spec.template.spec.containers[0].image`)
  // in block YAML, or of its nearest ancestor that is there.
  function lineOfPath(text, path) {
    const lines = text.split("\n");
    let from = 0, to = lines.length, parentIndent = -1, found = 0;
    for (const part of pathParts(path)) {
      let hit = -1;
      if (typeof part === "number") {
        let count = -1, itemIndent = -1;
        for (let i = from; i < to; i++) {
          const line = lines[i];
          if (!meaningful(line)) continue;
          const indent = indentOf(line);
          if (indent <= parentIndent && !line.trimStart().startsWith("- ")) break;
          if (line.trimStart().startsWith("-") && (itemIndent < 0 || indent === itemIndent)) {
            itemIndent = indent; count++;
            if (count === part) { hit = i; parentIndent = indent; break; }
          }
        }
        if (hit < 0) break;
        // The item's keys sit further in than its dash, the first on the
        // dash's own line.
        found = hit + 1; from = hit;
        parentIndent = indentOf(lines[hit]);
        to = blockEnd(lines, hit, parentIndent, true);
        continue;
      }
      const key = new RegExp("^(\\s*)(- )?[\"']?" + part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "[\"']?\\s*:");
      for (let i = from; i < to; i++) {
        const line = lines[i];
        if (!meaningful(line)) continue;
        const m = key.exec(line);
        if (m) {
          const keyIndent = m[1].length + (m[2] ? 2 : 0);
          if (keyIndent > parentIndent) { hit = i; parentIndent = keyIndent; break; }
        }
      }
      if (hit < 0) break;
      found = hit + 1;
      from = hit + 1;
      to = blockEnd(lines, hit, parentIndent, false);
    }
    return found;
  }
  // The line after the block that starts at `start` with `indent`: a list
  // item's ends at the next item; a key's takes in a list at its own
  // indentation (`containers:` followed by `- name:` at the same column).
  function blockEnd(lines, start, indent, item) {
    for (let i = start + 1; i < lines.length; i++) {
      const line = lines[i], at = indentOf(line);
      const dash = line.trimStart().startsWith("-");
      if (meaningful(line) && (at < indent || (at === indent && (item || !dash)))) return i;
      if (lines[i].trim() === "---") return i;
    }
    return lines.length;
  }
  function errorLines(text, error) {
    const marks = [];
    const syntax = /line (\d+)(?:,? column (\d+))?/.exec(error.message || "");
    if (syntax) marks.push({ line: Number(syntax[1]), text: error.message });
    for (const d of error.details || []) {
      marks.push({ line: lineOfPath(text, d.field), text: d.field + ": " + d.reason });
    }
    if (!marks.length) marks.push({ line: 0, text: error.message });
    return marks;
  }
  function paintGutter(editor, marks) {
    const area = $("textarea", editor), gutter = $(".gutter", editor);
    const count = area.value.split("\n").length;
    const bad = new Set((marks || []).map((m) => m.line));
    gutter.textContent = "";
    for (let i = 1; i <= count; i++) {
      const span = document.createElement("span");
      span.textContent = i + (bad.has(i) ? " !" : "") + "\n";
      if (bad.has(i)) span.className = "bad";
      gutter.appendChild(span);
    }
    gutter.scrollTop = area.scrollTop;
  }
  function showErrors(editor, error) {
    const area = $("textarea", editor);
    const marks = errorLines(area.value, error);
    editor.marks = marks;
    paintGutter(editor, marks);
    const list = $(".errors", editor.closest("form"));
    list.textContent = "";
    for (const mark of marks) {
      const li = document.createElement("li");
      li.textContent = (mark.line ? "Line " + mark.line + ": " : "") + mark.text;
      li.dataset.line = mark.line;
      li.tabIndex = 0;
      list.appendChild(li);
    }
  }
  function goToLine(area, line) {
    const lines = area.value.split("\n");
    let start = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1] || "").length);
  }
  function setupEditors() {
    for (const editor of $$(".editor")) {
      const area = $("textarea", editor);
      const key = editor.dataset.draftKey;
      const note = $(".draft-note", editor.closest("form"));
      if (key) {
        const draft = localStorage.getItem(key);
        if (draft !== null && draft !== area.value) {
          area.value = draft;
          if (note) note.hidden = false;
        }
      }
      paintGutter(editor, []);
      area.addEventListener("input", () => {
        if (key) localStorage.setItem(key, area.value);
        paintGutter(editor, editor.marks);
      });
      area.addEventListener("scroll", () => { $(".gutter", editor).scrollTop = area.scrollTop; });
    }
  }

  // ---- actions ---------------------------------------------------------------
  const actions = {
    async scale(el, form) {
      const replicas = Number($('[name="replicas"]', form).value);
      const step = el.dataset.step ? Number(el.dataset.step) : 0;
      const target = Math.max(0, replicas + step);
      const r = await api("PUT", form.dataset.url, { spec: { replicas: target } });
      if (r.ok) { $('[name="replicas"]', form).value = target; toast("Scaled to " + target + "."); }
      return r;
    },
    async patch(el) {
      return api("PATCH", el.dataset.url, el.dataset.body, "application/merge-patch+json");
    },
    async restart(el) {
      const at = new Date().toISOString();
      const body = { spec: { template: { metadata: { annotations: { "kubectl.kubernetes.io/restartedAt": at } } } } };
      const r = await api("PATCH", el.dataset.url, body, "application/merge-patch+json");
      if (r.ok) toast("Restarting: pods are replaced one by one.");
      return r;
    },
    async image(el, form) {
      const container = form.dataset.container;
      const image = $('[name="image"]', form).value.trim();
      const current = await api("GET", form.dataset.url);
      if (!current.ok) return current;
      const containers = current.data.spec.template.spec.containers.map((c) => c.name === container ? { ...c, image } : c);
      const r = await api("PATCH", form.dataset.url, { metadata: { resourceVersion: current.data.metadata.resourceVersion }, spec: { template: { spec: { containers } } } }, "application/merge-patch+json");
      if (r.ok) toast("Image of " + container + " set to " + image + ".");
      return r;
    },
    async rollback(el) {
      const r = await api("POST", el.dataset.url, { revision: Number(el.dataset.revision) });
      if (r.ok) { toast("Rolled back to revision " + el.dataset.revision + "."); const d = el.closest("dialog"); if (d) d.close(); }
      return r;
    },
    async preview(el) {
      const dialog = document.getElementById(el.dataset.dialog);
      if (dialog) dialog.showModal();
      return { ok: true };
    },
    async close(el) { const d = el.closest("dialog"); if (d) d.close(); return { ok: true }; },
    async create(el, form) { return saveYaml(form, "POST"); },
    async save(el, form) { return saveYaml(form, "PUT"); },
    async quickcreate(el, form) {
      const value = (name) => ($('[name="' + name + '"]', form) || {}).value || "";
      const name = value("name").trim();
      const env = value("env").split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
        const i = l.indexOf("=");
        return i < 0 ? { name: l, value: "" } : { name: l.slice(0, i).trim(), value: l.slice(i + 1) };
      });
      const container = { name: name || "main", image: value("image").trim() };
      if (value("port")) container.ports = [{ containerPort: Number(value("port")) }];
      if (env.length) container.env = env;
      const body = {
        apiVersion: "apps/v1", kind: "Deployment", metadata: { name },
        spec: { replicas: Number(value("replicas") || "1"), selector: { matchLabels: { app: name } },
          template: { metadata: { labels: { app: name } }, spec: { containers: [container] } } },
      };
      const r = await api("POST", form.dataset.url, body);
      if (r.ok) location.href = form.dataset.next.replace("{name}", encodeURIComponent(name));
      return r;
    },
    async remove(el) {
      if (!confirm(el.dataset.confirm || "Delete?")) return { ok: true };
      const r = await api("DELETE", el.dataset.url);
      if (r.ok && el.dataset.next) location.href = el.dataset.next;
      return r;
    },
    async post(el, form) {
      const body = {};
      for (const input of $$("[name]", form)) {
        if (input.type === "checkbox") body[input.name] = input.checked;
        else if (input.type === "number") body[input.name] = Number(input.value);
        else if (input.value !== "") body[input.name] = input.value;
      }
      const r = await api(form.dataset.method || "POST", form.dataset.url, body);
      if (r.ok && form.dataset.done) toast(form.dataset.done);
      return r;
    },
    // ---- pod actions (pods.rs pages) ----
    // ---- admin actions (services, secrets, nodes, members, tokens) ----
    // One Secret value, read through the API (which reveals values only to
    // those allowed) and shown as text; a second click masks it again.
    // It answers nothing on success: a refresh would mask it at once.
    async reveal(el) {
      const key = el.dataset.key, out = document.getElementById("value-" + key);
      const shown = actions.reveal.shown || (actions.reveal.shown = new Set());
      if (!out) return undefined;
      if (el.dataset.shown) {
        out.textContent = "••••••";
        out.classList.add("masked");
        el.textContent = "Reveal";
        delete el.dataset.shown;
        shown.delete(key);
        return undefined;
      }
      const r = await api("GET", el.dataset.url);
      if (!r.ok) return r;
      const encoded = ((r.data && r.data.data) || {})[key];
      const fail = (message) => ({ ok: false, error: { message, details: [] } });
      if (encoded === undefined) return fail("The secret has no key " + key + " any more.");
      if (encoded === "") return fail("The API did not reveal the value: you may not read it.");
      out.textContent = new TextDecoder().decode(Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0)));
      out.classList.remove("masked");
      el.textContent = "Hide";
      el.dataset.shown = "1";
      shown.add(key);
      if (!actions.reveal.following) {
        // A live update renders the keys masked again: read the revealed
        // ones anew (their values may have changed).
        actions.reveal.following = true;
        document.addEventListener("berth:refreshed", () => {
          for (const k of shown) {
            const button = document.getElementById("reveal-" + k);
            if (button && !button.dataset.shown) actions.reveal(button);
          }
        });
      }
      return undefined;
    },
    // A new API token: its secret is in the answer only, shown once.
    async createtoken(el, form) {
      const value = (name) => ($('[name="' + name + '"]', form) || {}).value || "";
      const body = { tenant: form.dataset.tenant, name: value("name").trim(), role: value("role") };
      if (value("expiresInSeconds")) body.expiresInSeconds = Number(value("expiresInSeconds"));
      const r = await api("POST", form.dataset.url, body);
      if (r.ok) {
        $("#new-token").textContent = r.data.token;
        $("#new-token-name").textContent = r.data.name;
        $("#new-token-panel").hidden = false;
        $('[name="name"]', form).value = "";
      }
      return r;
    },
    async copy(el) {
      const target = document.getElementById(el.dataset.target);
      if (!target) return undefined;
      try {
        await navigator.clipboard.writeText(target.textContent);
        toast("Copied.");
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(target);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        toast("Selected: press Ctrl+C (⌘C) to copy.");
      }
      return undefined;
    },
  };
  async function saveYaml(form, method) {
    const editor = $(".editor", form), area = $("textarea", editor);
    const r = await api(method, form.dataset.url, area.value, "application/yaml");
    if (r.ok) {
      if (editor.dataset.draftKey) localStorage.removeItem(editor.dataset.draftKey);
      showErrors(editor, { message: "", details: [] });
      $(".errors", form).textContent = "";
      const name = r.data && r.data.metadata && r.data.metadata.name;
      if (form.dataset.next) location.href = form.dataset.next.replace("{name}", encodeURIComponent(name || ""));
      return { ok: true, shown: true };
    }
    showErrors(editor, r.error);
    return { ok: false, shown: true };
  }
  async function run(el, form) {
    const action = actions[el.dataset.action || (form && form.dataset.action)];
    if (!action) return;
    el.disabled = true;
    try {
      const r = await action(el, form);
      if (r && !r.ok && !r.shown) toast(describe(r.error), true);
      if (r && r.ok) scheduleRefresh(0);
    } finally {
      el.disabled = false;
    }
  }
  document.addEventListener("click", (event) => {
    const el = event.target.closest("button[data-action]");
    if (el && !el.disabled) { event.preventDefault(); run(el, el.closest("form")); }
    const li = event.target.closest(".errors li");
    if (li && Number(li.dataset.line)) goToLine($("textarea", li.closest("form")), Number(li.dataset.line));
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.dataset.action) return;
    event.preventDefault();
    const button = $("button[type=submit]", form) || form;
    run(button.tagName === "BUTTON" ? button : form, form);
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches("[data-switch-tenant]")) location.href = event.target.value;
  });
  document.addEventListener("click", (event) => {
    const discard = event.target.closest("[data-discard-draft]");
    if (!discard) return;
    const form = discard.closest("form"), editor = $(".editor", form);
    localStorage.removeItem(editor.dataset.draftKey);
    location.reload();
  });

  // ---- logs ------------------------------------------------------------------
  const tagClass = (name) => { let h = 0; for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0; return "pod-c" + (h % 8); };
  function appendLines(out, text) {
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 8;
    const frag = document.createDocumentFragment();
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const row = document.createElement("div");
      const m = /^\[pod\/([^/\]]+)\/([^\]]+)\] (.*)$/.exec(line);
      if (m) {
        const tag = document.createElement("span");
        tag.className = "tag " + tagClass(m[1]);
        tag.textContent = "[" + m[1] + "/" + m[2] + "] ";
        row.appendChild(tag);
        row.appendChild(document.createTextNode(m[3]));
      } else {
        row.textContent = line;
      }
      frag.appendChild(row);
    }
    out.appendChild(frag);
    while (out.childNodes.length > 5000) out.removeChild(out.firstChild);
    if (atBottom) out.scrollTop = out.scrollHeight;
  }
  function logUrl(panel, follow) {
    const form = $("form", panel), params = new URLSearchParams();
    const value = (n) => { const el = $('[name="' + n + '"]', form); return el ? (el.type === "checkbox" ? el.checked : el.value) : ""; };
    if (follow && value("follow")) params.set("follow", "true");
    if (value("tail")) params.set("tailLines", value("tail"));
    if (value("timestamps")) params.set("timestamps", "true");
    if (value("previous")) params.set("previous", "true");
    if (value("container")) params.set("container", value("container"));
    return panel.dataset.logs + "?" + params.toString();
  }
  function startLogs(panel) {
    if (panel.controller) panel.controller.abort();
    const controller = new AbortController();
    panel.controller = controller;
    const out = $(".logs", panel), status = $(".log-status", panel);
    out.textContent = "";
    $("a[download]", panel).href = logUrl(panel, false);
    status.textContent = "Connecting…";
    (async () => {
      try {
        const response = await fetch(logUrl(panel, true), { signal: controller.signal, credentials: "same-origin" });
        if (!response.ok) {
          let message = response.status + " " + response.statusText;
          try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
          status.textContent = message;
          return;
        }
        status.textContent = $('[name="follow"]', panel).checked ? "Following" : "";
        const reader = response.body.getReader(), decoder = new TextDecoder();
        let rest = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          rest += decoder.decode(value, { stream: true });
          const cut = rest.lastIndexOf("\n");
          if (cut >= 0) { appendLines(out, rest.slice(0, cut + 1)); rest = rest.slice(cut + 1); }
        }
        if (rest) appendLines(out, rest);
        status.textContent = "Ended";
      } catch (e) {
        if (!controller.signal.aborted) status.textContent = "The log stream broke: " + e.message;
      }
    })();
  }
  function setupLogs() {
    for (const panel of $$("[data-logs]")) {
      $("form", panel).addEventListener("change", () => startLogs(panel));
      $("form", panel).addEventListener("submit", (e) => { e.preventDefault(); startLogs(panel); });
      startLogs(panel);
    }
  }

  // ---- console (exec) ----------------------------------------------------------
  // The REST API's exec (server/src/rest/exec.rs): a WebSocket opened with a
  // GET of `data-exec?command=sh&command=-c&command=CMD[&container=C]`,
  // speaking v5.channel.k8s.io (or v4): binary messages whose first byte is
  // the channel, 1 stdout, 2 stderr, 3 the outcome (a Kubernetes Status with
  // the exit code), after which the server closes. What fails before the
  // command starts (the pod or container not running, a node that cannot
  // exec or is offline) is answered as an HTTP error, which a browser's
  // WebSocket cannot read: the console then says the command could not
  // start, and why it may be.
  const EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
  function execOutcome(text) {
    try {
      const status = JSON.parse(text);
      if (status.status === "Success") return "[exit code 0]";
      const causes = (status.details && status.details.causes) || [];
      const code = causes.find((c) => c.reason === "ExitCode");
      if (code) return "[exit code " + code.message + "]";
      return "[failed: " + (status.message || status.reason || "unknown error") + "]";
    } catch (e) {
      return "[" + text + "]";
    }
  }
  function setupConsoles() {
    for (const panel of $$("[data-exec]")) {
      const form = $("form", panel), out = $(".console", panel);
      const print = (text) => { out.textContent += text; out.scrollTop = out.scrollHeight; };
      let current = null;
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const input = $('[name="command"]', form);
        const command = input.value.trim();
        if (!command || input.disabled) return;
        if (current) { current.replaced = true; current.socket.close(); }
        const params = new URLSearchParams();
        for (const word of ["sh", "-c", command]) params.append("command", word);
        const container = $('[name="container"]', form);
        if (container && container.value) params.set("container", container.value);
        const url = new URL(panel.dataset.exec + "?" + params, location.href);
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        print("$ " + command + "\n");
        input.value = "";
        const run = { socket: new WebSocket(url, EXEC_PROTOCOLS), opened: false, ended: false, replaced: false };
        current = run;
        run.socket.binaryType = "arraybuffer";
        const decoders = { 1: new TextDecoder(), 2: new TextDecoder() };
        run.socket.addEventListener("open", () => { run.opened = true; });
        run.socket.addEventListener("message", (m) => {
          if (typeof m.data === "string") { print(m.data); return; }
          const bytes = new Uint8Array(m.data);
          const channel = bytes[0], data = bytes.subarray(1);
          if (channel === 3) {
            run.ended = true;
            print(execOutcome(new TextDecoder().decode(data)) + "\n");
          } else if (decoders[channel]) {
            print(decoders[channel].decode(data, { stream: true }));
          }
        });
        run.socket.addEventListener("close", () => {
          const rest = decoders[1].decode() + decoders[2].decode();
          if (rest) print(rest);
          if (run.replaced) print(run.ended ? "" : "[detached from: " + command + "]\n");
          else if (!run.opened) print("[the command could not start: the server refused it. The pod or container may not be running, or its node may be offline or unable to run commands. Reload the page to see the pod's state.]\n");
          else if (!run.ended) print("[the connection closed before the command ended]\n");
          if (current === run) current = null;
        });
      });
    }
  }

  // Countdowns (`data-countdown="RFC 3339"`: a pod's next restart), ticking
  // every second; regions re-rendered live bring theirs along.
  function setupCountdowns() {
    if (!$("[data-countdown]") && !$("main[data-live]")) return;
    const tick = () => {
      for (const el of $$("[data-countdown]")) {
        const left = Math.round((Date.parse(el.dataset.countdown) - Date.now()) / 1000);
        if (Number.isNaN(left)) continue;
        el.textContent = left <= 0 ? "any moment now"
          : left < 60 ? "in " + left + "s"
          : "in " + Math.floor(left / 60) + "m" + String(left % 60).padStart(2, "0") + "s";
      }
    };
    tick();
    setInterval(tick, 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupEditors();
    setupLogs();
    setupConsoles();
    setupCountdowns();
    connectLive();
  });
  window.berth = { lineOfPath, refresh };
})();
