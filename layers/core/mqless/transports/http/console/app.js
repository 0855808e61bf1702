// mqless console: plain JavaScript, no build step, no third-party code.
// The page is <API root>/console; every API call is relative to that root, so the same file
// works under `mqless dev`, on an execute-api URL and behind a custom domain's base path.
"use strict";

(() => {
  const API_ROOT = new URL("./", location.href);
  const POLL_MS = 2000;
  // queues a page of the overview shows: each costs its polls about one DynamoDB read per
  // index shard, so the console asks for the page it shows, not for every queue
  const QUEUE_PAGE = 25;
  const SEARCH_PAUSE_MS = 250; // a search is asked for once typing pauses, not per keystroke
  const TAIL_LIMIT = 200;
  const PING_MS = 5 * 60 * 1000; // API Gateway closes a WebSocket idle for 10 minutes
  const WS_URL_KEY = "mqless.console.websocket_url";
  const TOKEN_KEY = "mqless.console.token";

  const $ = (selector, root = document) => root.querySelector(selector);
  // auth: "required" or "off" once loaded; null when the configuration could not be read
  // (then a refused request is what asks for a token)
  const config = { websocket_url: null, version: "", auth: null };

  // ---- the HTTP API -----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  const enc = encodeURIComponent;

  // One request at a time: a poll never overlaps an action or another poll, so the console
  // puts at most one request's load on the API however slow /stats gets.
  let inFlight = Promise.resolve();

  // `token` (sign-in's check of a candidate) overrides the session's; the session's is read
  // when the request leaves, so a request queued before a sign-in carries the new token
  function api(method, path, body, { token } = {}) {
    let used = null;
    const request = inFlight.then(() => {
      used = token === undefined ? session.token : token;
      return send(method, path, body, used);
    });
    inFlight = request.catch(() => undefined);
    return request.catch((error) => {
      // the session's token was refused (expired, revoked): ask for another
      if (error.refused && token === undefined && used === session.token) signIn.require(error);
      throw error;
    });
  }

  async function send(method, path, body, token) {
    const init = { method, headers: { accept: "application/json" } };
    if (token) init.headers.authorization = `Bearer ${token}`;
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(path, API_ROOT), init);
    } catch (error) {
      throw new ApiError(0, "unreachable", `cannot reach the API (${error.message})`);
    }
    const text = response.status === 204 ? "" : await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const code = (data && data.error) || `http_${response.status}`;
      const message = (data && data.message) || response.statusText || "request failed";
      const error = new ApiError(response.status, code, message);
      // API Gateway's own answers: 401 (no token) or 403 `{"message":"Forbidden"}` (the
      // authorizer said no). A 403 problem with mqless's `error` code refuses one action only.
      error.refused = response.status === 401 || (response.status === 403 && !(data && data.error));
      throw error;
    }
    return data;
  }

  // ---- small helpers ----------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && key !== "list") node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function hidden(text) {
    return el("span", { class: "visually-hidden", text });
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function count(value, approximate) {
    if (value === null || value === undefined) return "–";
    return approximate ? `≥ ${value}` : String(value);
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${seconds} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
    return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`;
  }

  // dates and times, always both: a dead letter from last week must not look like today's
  const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function when(millis) {
    if (!millis) return "–";
    const ms = millis < 1e12 ? millis * 1000 : millis; // seconds or milliseconds
    return DATE_TIME.format(new Date(ms));
  }

  function clockTime(millis) {
    return new Date(millis).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  // Web Storage throws where the browser forbids it: the console works without it
  function keptIn(area) {
    return {
      get(key) {
        try {
          return window[area].getItem(key);
        } catch {
          return null;
        }
      },
      set(key, value) {
        try {
          window[area].setItem(key, value);
        } catch {
          // not kept: fine
        }
      },
      remove(key) {
        try {
          window[area].removeItem(key);
        } catch {
          // nothing kept
        }
      },
    };
  }

  const storage = keptIn("localStorage"); // this browser's: a WebSocket URL the user typed
  const tabStorage = keptIn("sessionStorage"); // this tab's only: the token

  // The token lives in memory and in this tab's sessionStorage (a reload keeps it, closing
  // the tab drops it); never in localStorage, which every tab and every later visit shares.
  const session = {
    token: tabStorage.get(TOKEN_KEY) || null,
    set(token) {
      this.token = token;
      tabStorage.set(TOKEN_KEY, token);
    },
    clear() {
      this.token = null;
      tabStorage.remove(TOKEN_KEY);
    },
  };

  function stamp() {
    return new Date().toLocaleTimeString();
  }

  function parseAttributes(text) {
    const attributes = {};
    for (const part of text.split(",")) {
      const pair = part.trim();
      if (!pair) continue;
      const at = pair.indexOf("=");
      if (at < 1) throw new ApiError(0, "invalid_attributes", `attributes: "${pair}" is not key=value`);
      attributes[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
    }
    return attributes;
  }

  function attributeList(attributes) {
    const entries = Object.entries(attributes || {});
    if (!entries.length) return el("span", { class: "muted", text: "none" });
    return el(
      "ul",
      { class: "attrs" },
      ...entries.map(([key, value]) => el("li", {}, el("code", { text: `${key}=${value}` }))),
    );
  }

  function bodyView(body, binary, error) {
    if (body === null || body === undefined) {
      return el("span", { class: "warn" }, "⚠ ", error || "unreadable body");
    }
    const label = binary ? "base64: " : "";
    const text = label + body;
    if (text.length <= 120) return el("pre", { class: "body", text });
    return el(
      "details",
      {},
      el("summary", {}, el("code", { text: `${text.slice(0, 80)}…` }), hidden(" (show all)")),
      el("pre", { class: "body", text }),
    );
  }

  // ---- forms: what was typed on one page never shows up on another -------------------------

  function resetForms(root) {
    for (const form of root.querySelectorAll("form")) {
      if (form.id === "tail-form") continue; // the tail's URL and pattern are kept on purpose
      form.reset();
    }
  }

  // ---- charts: plain SVG drawn here (no library, nothing fetched) --------------------------

  // SVG's namespace, as the HTML parser gives it (the page names no URL it does not fetch)
  const SVG_NS = (() => {
    const probe = document.createElement("div");
    probe.innerHTML = "<svg></svg>";
    return probe.firstChild.namespaceURI;
  })();

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    for (const child of children) node.append(child);
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function shortNumber(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 100 || Number.isInteger(value)) return String(Math.round(value));
    return value.toFixed(value >= 10 ? 1 : 2);
  }

  // One line chart: `series` [{label, values (null: no point), cls}] over `timestamps` (ms).
  // The figure gets a caption, an SVG with a text alternative, and a legend with the latest
  // value of each line (what a screen reader or a glance needs).
  function drawChart(figure, { title, unit, series, timestamps }) {
    const W = 560;
    const H = 170;
    const left = 44;
    const right = 10;
    const top = 10;
    const bottom = 24;
    const n = timestamps.length;
    const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
    const max = niceMax(Math.max(0, ...all));
    const x = (i) => left + (n > 1 ? (i * (W - left - right)) / (n - 1) : 0);
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    const latest = series.map((s) => {
      const last = [...s.values].reverse().find((v) => v !== null && v !== undefined);
      return `${s.label} ${shortNumber(last ?? null)}`;
    });
    const titleId = `${figure.closest("section").id}-${figure.dataset.chart}-title`;
    const grid = [0, max / 2, max].map((v) =>
      svg(
        "g",
        { class: "grid" },
        svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v) }),
        svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, shortNumber(v)),
      ),
    );
    const ticks = n
      ? [0, Math.floor((n - 1) / 2), n - 1].map((i) =>
          svg(
            "text",
            { x: x(i), y: H - 6, "text-anchor": i === 0 ? "start" : i === n - 1 ? "end" : "middle" },
            clockTime(timestamps[i]),
          ),
        )
      : [];
    const lines = series.map((s) => {
      // a gap where there is no point (depth not measured yet), a line elsewhere
      let d = "";
      let pen = "M";
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) {
          pen = "M";
          return;
        }
        const point = `${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        // a point with no neighbour is drawn as a dot (a zero-length, round-capped line)
        const alone = pen === "M" && (s.values[i + 1] === null || s.values[i + 1] === undefined);
        d += alone ? `M${point}h0.01` : `${pen}${point}`;
        pen = alone ? "M" : "L";
      });
      return svg("path", { d: d || "M0,0", class: `line ${s.cls}` });
    });
    const chart = svg(
      "svg",
      {
        viewBox: `0 0 ${W} ${H}`,
        role: "img",
        "aria-labelledby": titleId,
        "aria-describedby": `${titleId}-desc`,
        preserveAspectRatio: "none",
      },
      svg("title", { id: titleId }, title),
      svg("desc", { id: `${titleId}-desc` }, `Last hour, one point a minute; latest (${unit}): ${latest.join(", ")}.`),
      svg("g", { class: "axis" }, ...grid, ...ticks),
      ...lines,
    );
    figure.replaceChildren(
      el("figcaption", {}, title, " ", el("span", { class: "muted", text: `(${unit})` })),
      chart,
      el(
        "ul",
        { class: "legend" },
        ...series.map((s, i) => el("li", {}, el("span", { class: `swatch ${s.cls}` }), latest[i])),
      ),
    );
  }

  const RATE_SERIES = [
    ["sent", "Enqueued", "c1"],
    ["delivered", "Dequeued", "c2"],
    ["acked", "Acked", "c3"],
    ["dead_lettered", "Dead-lettered", "c4"],
  ];

  // GET /history's answer into a history section: two charts and the totals
  function renderHistory(section, history) {
    drawChart($('[data-chart="rates"]', section), {
      title: "Messages per second",
      unit: "per second",
      timestamps: history.timestamps,
      series: RATE_SERIES.map(([key, label, cls]) => ({ label, cls, values: history.rates[key] })),
    });
    drawChart($('[data-chart="depth"]', section), {
      title: "Depth",
      unit: "messages",
      timestamps: history.timestamps,
      series: [{ label: "Depth", cls: "c5", values: history.depth }],
    });
    const totals = $("[data-totals]", section);
    totals.replaceChildren(
      ...RATE_SERIES.map(([key, label]) =>
        el("div", {}, el("dt", { text: `${label}, total` }), el("dd", { text: String(history.totals[key]) })),
      ),
    );
    const sources = history.dead_letters_from || [];
    const arriving = sources.length ? ` Enqueued includes the dead letters arriving from ${sources.join(", ")}.` : "";
    setText(
      $("[data-history-note]", section),
      `Totals since ${when(history.totals_since)}.${arriving} Depth is measured once a minute; CloudWatch shows a minute's figures a minute or two later.`,
    );
    section.hidden = false;
  }

  const HISTORY_MS = 30000;

  // Poll GET /history for a section, every 30 s while the view is shown (the figures are
  // per minute: polling faster would only cost GetMetricData calls)
  function pollHistory(section, path) {
    let timer = null;
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) {
        try {
          renderHistory(section, await api("GET", path));
        } catch (error) {
          // not allowed to see it (403), or CloudWatch unreachable: no charts, no alarm
          section.hidden = true;
          if (error.status !== 403) setText($("[data-history-note]", section), "");
        }
      }
      if (!stopped) timer = setTimeout(tick, HISTORY_MS);
    };
    tick();
    return {
      stop() {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  // ---- notices and problems ---------------------------------------------------------------

  const notice = $("#notice");
  const problem = $("#problem");

  function notify(text) {
    problem.textContent = "";
    notice.textContent = text;
  }

  function fail(error) {
    // a refused token: the sign-in view says so, and this action's error would repeat it
    if (error && error.refused && signIn.active) return;
    notice.textContent = "";
    const code = error && error.code ? `${error.code}: ` : "";
    problem.textContent = `${code}${(error && error.message) || error}`;
  }

  function clearMessages() {
    notice.textContent = "";
    problem.textContent = "";
  }

  // Run an action from a button or form: keep the control disabled while it runs, and give
  // the focus back to it (a disabled control drops the focus) unless the page moved it.
  async function act(control, action) {
    const hadFocus = control && document.activeElement === control;
    if (control) control.disabled = true;
    try {
      await action();
    } catch (error) {
      fail(error);
    } finally {
      if (control) control.disabled = false;
      if (hadFocus && focusLost()) control.focus();
    }
  }

  function focusLost() {
    return !document.activeElement || document.activeElement === document.body;
  }

  // ---- polling: one loop per view, paused while the tab is hidden -------------------------

  function poll(task, onError) {
    let timer = null;
    let running = false;
    let again = false; // asked for now while a poll ran: what it read may predate the change
    let stopped = false;
    const tick = async () => {
      timer = null;
      if (stopped || document.hidden) return;
      running = true;
      again = false;
      try {
        await task();
      } catch (error) {
        onError(error);
      } finally {
        running = false;
      }
      if (!stopped) timer = setTimeout(tick, again ? 0 : POLL_MS);
    };
    const wake = () => {
      again = running;
      if (stopped || document.hidden || running) return;
      clearTimeout(timer);
      tick();
    };
    document.addEventListener("visibilitychange", wake);
    tick();
    return {
      now: wake,
      stop() {
        stopped = true;
        clearTimeout(timer);
        document.removeEventListener("visibilitychange", wake);
      },
    };
  }

  // ---- confirmation and move dialogs ------------------------------------------------------

  function confirmAction(title, text, okLabel) {
    const dialog = $("#confirm-dialog");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      $("#confirm-cancel").focus(); // destructive: the safe choice has the focus
    });
  }

  function askMove(queue, messageId) {
    const dialog = $("#move-dialog");
    $("#move-text").textContent = `Message ${messageId} of ${queue}.`;
    $("#move-to").value = "";
    $("#move-copy").checked = false;
    return new Promise((resolve) => {
      dialog.returnValue = "";
      dialog.addEventListener(
        "close",
        () =>
          resolve(
            dialog.returnValue === "ok"
              ? { to: $("#move-to").value.trim(), copy: $("#move-copy").checked }
              : null,
          ),
        { once: true },
      );
      dialog.showModal();
      $("#move-to").focus();
    });
  }

  // ---- view: queue list -------------------------------------------------------------------

  function queueLink(name) {
    return el("a", { href: `#/queues/${enc(name)}`, text: name });
  }

  function deadLetterCell(cell, stats) {
    cell.replaceChildren();
    cell.classList.remove("warn");
    if (!stats.dead_letter_queue) {
      cell.append(el("span", { class: "muted", text: "none" }));
      return;
    }
    cell.append(queueLink(stats.dead_letter_queue));
    const waiting = stats.dead_letter_visible;
    if (waiting) {
      cell.classList.add("warn");
      cell.append(" ", el("span", { class: "flag", text: `⚠ ${waiting} waiting` }));
    } else if (waiting === 0) {
      cell.append(" ", el("span", { class: "muted", text: "(empty)" }));
    }
  }

  function renderQueueRow(row, stats) {
    const cells = row.cells;
    const approx = stats.approximate;
    setText(cells[1], stats.fifo ? "FIFO" : "standard");
    setText(cells[2], count(stats.visible, approx));
    setText(cells[3], count(stats.in_flight, approx));
    setText(cells[4], count(stats.delayed, approx));
    setText(cells[5], age(stats.oldest_age_seconds));
    const key = `${stats.dead_letter_queue}|${stats.dead_letter_visible}`;
    if (cells[6].dataset.key !== key) {
      cells[6].dataset.key = key;
      deadLetterCell(cells[6], stats);
    }
    setText(cells[7], String(stats.consumers ?? "–"));
  }

  // the table's order and filter: kept while the page is open, not across visits; `cursors`:
  // where each page shown so far started (the first: null), the last one the page shown
  // `search`: the name asked for (the search box's, once typing paused)
  const queueTable = { sort: "name", descending: false, stats: [], cursors: [null], next: null, search: "" };

  // the page of /stats shown: the search asks the API (it filters every queue's name, which
  // costs nothing), the filter and the sort order the page's rows
  function overviewPath() {
    const query = new URLSearchParams({ limit: String(QUEUE_PAGE) });
    const cursor = queueTable.cursors[queueTable.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    if (queueTable.search) query.set("name", queueTable.search);
    return `stats?${query}`;
  }

  function renderPager(stats) {
    queueTable.next = stats.truncated ? stats.cursor : null;
    const first = (queueTable.cursors.length - 1) * QUEUE_PAGE;
    const total = stats.total ?? stats.queues.length;
    $("#queues-previous").hidden = queueTable.cursors.length === 1;
    $("#queues-next").hidden = !queueTable.next;
    const paged = queueTable.cursors.length > 1 || queueTable.next;
    setText($("#queues-page"), paged ? `Queues ${first + 1}–${first + stats.queues.length} of ${total}` : "");
  }

  // Each dead-letter queue's source (the first, by name, of the queues naming it)
  function sourcesOf(queues) {
    const sources = new Map();
    for (const q of [...queues].sort((a, b) => a.name.localeCompare(b.name))) {
      if (q.dead_letter_queue && !sources.has(q.dead_letter_queue)) sources.set(q.dead_letter_queue, q.name);
    }
    return sources;
  }

  function compareQueues(a, b) {
    const key = queueTable.sort;
    let order;
    if (key === "name") order = a.name.localeCompare(b.name);
    else order = (a[key] ?? -1) - (b[key] ?? -1) || a.name.localeCompare(b.name);
    return queueTable.descending ? -order : order;
  }

  // What the table shows: filtered, sorted, and each dead-letter queue right under its
  // source (when both are shown)
  function shownQueues(queues) {
    const filter = $("#queue-filter").value;
    const sources = sourcesOf(queues);
    const isDlq = (q) => sources.has(q.name) || DEAD_LETTER_NAME.test(q.name);
    const kept = queues.filter((q) => {
      if (filter === "standard") return !q.fifo;
      if (filter === "fifo") return q.fifo;
      if (filter === "dlq") return isDlq(q);
      if (filter === "waiting") return Boolean(q.dead_letter_visible) || (isDlq(q) && q.visible > 0);
      return true;
    });
    const names = new Set(kept.map((q) => q.name));
    const underSource = (q) => sources.has(q.name) && names.has(sources.get(q.name)) && filter !== "dlq";
    const top = kept.filter((q) => !underSource(q)).sort(compareQueues);
    const children = new Map();
    for (const q of kept.filter(underSource)) {
      const source = sources.get(q.name);
      children.set(source, [...(children.get(source) || []), q]);
    }
    const rows = [];
    for (const q of top) {
      rows.push({ stats: q, source: sources.get(q.name) || (DEAD_LETTER_NAME.test(q.name) ? q.name.replace(/\.dlq(\.fifo)?$/, "$1") : null), nested: false });
      for (const child of children.get(q.name) || []) rows.push({ stats: child, source: q.name, nested: true });
    }
    return rows;
  }

  function nameCell(row) {
    const cell = el("th", { scope: "row" });
    if (row.nested) {
      cell.classList.add("nested");
      cell.append(el("span", { class: "muted", "aria-hidden": "true", text: "↳ " }));
    }
    cell.append(queueLink(row.stats.name));
    if (row.source && !row.nested) {
      cell.append(el("span", { class: "note muted" }, " dead letters of ", queueLink(row.source)));
    } else if (row.nested) {
      cell.append(hidden(` (dead-letter queue of ${row.source})`));
    }
    return cell;
  }

  function renderQueues(queues) {
    queueTable.stats = queues;
    const tbody = $("#queue-table tbody");
    const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
    const wanted = shownQueues(queues);
    wanted.forEach((shown, index) => {
      const key = `${shown.stats.name}|${shown.nested}|${shown.source}`;
      let row = existing.get(key);
      if (!row) {
        row = el("tr", { class: shown.nested ? "dlq-row" : "" }, nameCell(shown));
        row.dataset.key = key;
        row.dataset.name = shown.stats.name;
        row.append(
          el("td"),
          el("td", { class: "num" }),
          el("td", { class: "num" }),
          el("td", { class: "num" }),
          el("td", { class: "num" }),
          el("td"),
          el("td", { class: "num" }),
        );
      }
      existing.delete(key);
      renderQueueRow(row, shown.stats);
      // move a row only when it is out of place: moving the focused row would drop focus
      if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] || null);
    });
    for (const row of existing.values()) row.remove();
    const search = queueTable.search;
    setText(
      $("#queues-empty"),
      search ? `No queue's name contains “${search}”.` : "No queues yet: create one above, or send a message to a new name.",
    );
    $("#queues-empty").hidden = queues.length > 0;
    setText(
      $("#queues-shown"),
      queues.length && wanted.length !== queues.length ? `Showing ${wanted.length} of ${queues.length}.` : "",
    );
  }

  function rerenderQueues() {
    renderQueues(queueTable.stats);
  }

  // a new search or page is asked for at once (the poll's next request)
  function showQueuePage(cursors) {
    queueTable.cursors = cursors;
    queueTable.search = $("#queue-search").value.trim();
    if (queuesView.poller) queuesView.poller.now();
  }

  let searchTimer = null;
  $("#queue-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => showQueuePage([null]), SEARCH_PAUSE_MS);
  });
  $("#queues-next").addEventListener("click", () => showQueuePage([...queueTable.cursors, queueTable.next]));
  $("#queues-previous").addEventListener("click", () => showQueuePage(queueTable.cursors.slice(0, -1)));
  $("#queue-filter").addEventListener("change", rerenderQueues);
  for (const th of document.querySelectorAll("#queue-table th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.sort;
      queueTable.descending = queueTable.sort === key ? !queueTable.descending : key !== "name";
      queueTable.sort = key;
      for (const other of document.querySelectorAll("#queue-table th[data-sort]")) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", queueTable.descending ? "descending" : "ascending");
      rerenderQueues();
    });
  }

  function renderConnectionCount(n) {
    setText($("#nav-connections"), typeof n === "number" ? `(${n})` : "");
  }

  // /stats counts connections only for those who administer everything: the same people
  // may manage access, so the Access section is offered to them only
  function noteAdmin(stats) {
    const admin = typeof stats.connections === "number";
    $("#nav-access-item").hidden = !admin;
    return admin;
  }

  const queuesView = {
    enter() {
      resetForms($("#view-queues"));
      queueTable.cursors = [null];
      queueTable.search = $("#queue-search").value.trim(); // kept while the page is open
      this.history = null;
      this.poller = poll(
        async () => {
          let path;
          let stats;
          do {
            path = overviewPath();
            stats = await api("GET", path);
          } while (path !== overviewPath()); // searched or paged meanwhile: ask for that page
          renderQueues(stats.queues);
          renderPager(stats);
          renderConnectionCount(stats.connections);
          // every destination's history is for those who administer everything
          if (noteAdmin(stats) && !this.history) this.history = pollHistory($("#overview-history"), "history");
          setText($("#queues-updated"), `Updated ${stamp()}`);
        },
        (error) => setText($("#queues-updated"), `Could not refresh: ${error.message}`),
      );
    },
    leave() {
      this.poller.stop();
      if (this.history) this.history.stop();
      $("#overview-history").hidden = true;
    },
  };

  const SETTING_NAMES = [
    "visibility_timeout",
    "max_receive_count",
    "dead_letter_queue",
    "retention_seconds",
    "delay_seconds",
    "shards",
  ];

  // The settings typed in a form (prefix "create" or "settings"): only the filled ones
  function typedSettings(prefix) {
    const settings = {};
    for (const name of SETTING_NAMES) {
      const input = $(`#${prefix}-${name}`);
      const value = input.value.trim();
      if (value === "") continue;
      if (input.type === "number") {
        const number = Number(value);
        if (!Number.isInteger(number)) {
          input.focus();
          throw new ApiError(0, "invalid_request", `${input.labels[0].textContent}: a whole number, please`);
        }
        settings[name] = number;
      } else {
        settings[name] = value;
      }
    }
    return settings;
  }

  $("#create-queue").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const input = $("#create-queue-name");
    const name = input.value.trim();
    if (!name) {
      fail(new ApiError(0, "invalid_request", "type a queue name"));
      input.focus();
      return;
    }
    act(form.querySelector("button[type=submit]"), async () => {
      const settings = typedSettings("create");
      // PUT replaces an existing queue's settings: never do that here
      try {
        await api("GET", `queues/${enc(name)}`);
        notify(`Queue ${name} already exists; nothing changed.`);
        return;
      } catch (error) {
        if (error.status !== 404) throw error;
      }
      const created = await api("PUT", `queues/${enc(name)}`, settings);
      notify(`Created queue ${created.name}${created.fifo ? " (FIFO)" : ""}.`);
      form.reset();
      if (queuesView.poller) queuesView.poller.now();
    });
  });

  // ---- view: one queue --------------------------------------------------------------------

  // Where dead letters go, by the rule the API holds redrive to (QueueService.
  // is_dead_letter_queue): a default dead-letter name, or some queue's dead_letter_queue.
  const DEAD_LETTER_NAME = /\.dlq(\.fifo)?$/;

  function isDeadLetterQueue(name, queues) {
    return DEAD_LETTER_NAME.test(name) || queues.some((q) => q.dead_letter_queue === name);
  }

  // A dead letter's receive count goes on from its source's (as SQS's does): the reason
  // names the deliveries it had there, and any receive from the dead-letter queue adds one.
  // Say both, so that "2" beside "exceeded (1 deliveries)" reads as what it is.
  function deliveriesBefore(m) {
    const found = /\((\d+) deliveries\)/.exec(m.dead_letter_reason || "");
    return found ? Number(found[1]) : null;
  }

  function receives(m) {
    const before = deliveriesBefore(m);
    if (before === null) return String(m.receive_count);
    const here = Math.max(0, m.receive_count - before);
    return el(
      "span",
      {},
      String(m.receive_count),
      el("span", { class: "note muted" }, ` (${before} in ${m.source_queue || "its source"}, ${here} here)`),
    );
  }

  const STATE_NAMES = { visible: "visible", in_flight: "in flight (leased)", delayed: "delayed" };

  function showMessage(button, queue, m) {
    const dialog = $("#message-dialog");
    setText($("#message-title"), `Message ${m.message_id}`);
    const before = deliveriesBefore(m);
    const rows = [
      ["Queue", queue],
      ["Message id", m.message_id],
      ["State", STATE_NAMES[m.state] || m.state],
      ["Sent", when(m.sent_at)],
      ["Visible from", m.visible_at ? when(m.visible_at) : null],
      [
        "Receive count",
        before === null
          ? String(m.receive_count)
          : `${m.receive_count}: ${before} in ${m.source_queue || "its source"} before it was dead-lettered, ${Math.max(0, m.receive_count - before)} from this queue`,
      ],
      ["Dead-letter reason", m.dead_letter_reason],
      ["Dead-lettered from", m.source_queue],
      ["Group id", m.group_id],
      ["Content type", m.content_type],
      ["Correlation id", m.correlation_id],
      ["Reply to", m.reply_to],
      ["Body encoding", m.binary ? "binary, shown as base64" : "text"],
      ["Unreadable because", m.error],
    ];
    $("#message-fields").replaceChildren(
      ...rows
        .filter(([, value]) => value !== null && value !== undefined && value !== "")
        .flatMap(([label, value]) => [el("dt", { text: label }), el("dd", {}, el("code", { text: String(value) }))]),
    );
    const attributes = Object.entries(m.attributes || {});
    $("#message-attributes").replaceChildren(
      attributes.length
        ? el(
            "table",
            { class: "attributes" },
            el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Value" }))),
            el("tbody", {}, ...attributes.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, el("code", { text: k })), el("td", {}, el("code", { text: v }))))),
          )
        : el("p", { class: "muted", text: "No attributes." }),
    );
    setText($("#message-body"), m.body === null || m.body === undefined ? `(unreadable: ${m.error || "unknown"})` : m.body);
    dialog.addEventListener("close", () => button.isConnected && button.focus(), { once: true });
    dialog.showModal();
    $("#message-close").focus();
  }

  const queueView = {
    name: "",
    pages: [null], // cursors of the pages seen so far; the last is the current page's
    next: null,
    stats: null,

    enter(name) {
      this.name = name;
      this.pages = [null];
      this.next = null;
      this.stats = null;
      this.config = null;
      this.history = null;
      const section = $("#view-queue");
      resetForms(section);
      $("#queue-history").hidden = true;
      setText($("#settings-dates"), "");
      setText($("#queue-title"), name);
      document.title = `${name} · mqless console`;
      for (const dd of document.querySelectorAll("#queue-counts dd")) {
        dd.textContent = "–";
        delete dd.dataset.key;
      }
      $("#send-group-field").hidden = !name.endsWith(".fifo");
      // redrive is for dead-letter queues only (the API refuses it elsewhere)
      const redrive = $("#redrive-form");
      redrive.hidden = !DEAD_LETTER_NAME.test(name);
      const dlqOf = $("#queue-dlq-of");
      dlqOf.hidden = true;
      api("GET", "queues")
        .then(({ queues }) => {
          if (this.name !== name) return;
          redrive.hidden = !isDeadLetterQueue(name, queues);
          const sources = queues.filter((q) => q.dead_letter_queue === name).map((q) => q.name);
          if (sources.length) {
            dlqOf.replaceChildren(
              "Dead-letter queue of ",
              ...sources.flatMap((source, i) => (i ? [", ", queueLink(source)] : [queueLink(source)])),
              ".",
            );
            dlqOf.hidden = false;
          }
        })
        .catch(fail);
      this.loadSettings().catch(() => {}); // a queue not made yet: its stats say so
      $("#browse-table tbody").replaceChildren();
      setText($("#queue-updated"), "Loading…");
      this.poller = poll(
        () => this.refreshStats(),
        (error) =>
          setText(
            $("#queue-updated"),
            error.status === 404
              ? `Queue ${name} does not exist (yet): sending to it creates it.`
              : `Could not refresh: ${error.message}`,
          ),
      );
      this.browse().catch(fail);
    },

    // the settings form shows what the queue has now; saving sends only what changed
    async loadSettings() {
      const name = this.name;
      const config = await api("GET", `queues/${enc(name)}`);
      if (this.name !== name) return;
      this.config = config;
      for (const setting of SETTING_NAMES) {
        const value = config[setting];
        $(`#settings-${setting}`).value = value === null || value === undefined ? "" : String(value);
      }
      setText(
        $("#settings-dates"),
        `Created ${when(config.created_at)}${config.created_by ? ` by ${config.created_by}` : ""}; changed ${when(config.updated_at)}.`,
      );
      // its history once it is known to exist (a 404 there would only repeat the stats')
      if (!this.history) this.history = pollHistory($("#queue-history"), `history?queue=${enc(name)}`);
    },

    leave() {
      this.poller.stop();
      if (this.history) this.history.stop();
      this.history = null;
    },

    async refreshStats() {
      const stats = await api("GET", `queues/${enc(this.name)}/stats`);
      const before = this.stats;
      this.stats = stats;
      // a sent message is listed once the stream has indexed it (a moment after the send):
      // when the counts move, list the first page again, unless the keyboard is in it
      const total = (s) => s.visible + s.in_flight + s.delayed;
      if (before && before.name === stats.name && total(before) !== total(stats)
          && this.pages.length === 1 && !$("#browse-table").contains(document.activeElement)) {
        this.browse().catch(fail);
      }
      const dds = Object.fromEntries(
        [...document.querySelectorAll("#queue-counts dd")].map((dd) => [dd.dataset.stat, dd]),
      );
      setText(dds.visible, count(stats.visible, stats.approximate));
      setText(dds.in_flight, count(stats.in_flight, stats.approximate));
      setText(dds.delayed, count(stats.delayed, stats.approximate));
      setText(dds.oldest_age_seconds, age(stats.oldest_age_seconds));
      setText(dds.consumers, String(stats.consumers));
      const key = `${stats.dead_letter_queue}|${stats.dead_letter_visible}`;
      if (dds.dead_letter_queue.dataset.key !== key) {
        dds.dead_letter_queue.dataset.key = key;
        deadLetterCell(dds.dead_letter_queue, stats);
      }
      setText($("#queue-updated"), `Updated ${stamp()}${stats.approximate ? " (counts are lower bounds)" : ""}`);
    },

    async browse() {
      const cursor = this.pages[this.pages.length - 1];
      const query = cursor ? `&cursor=${enc(cursor)}` : "";
      setText($("#browse-status"), "Loading…");
      let page;
      try {
        page = await api("GET", `queues/${enc(this.name)}/messages?limit=20${query}`);
      } catch (error) {
        setText($("#browse-status"), "");
        if (error.status === 404) {
          $("#browse-table tbody").replaceChildren();
          setText($("#browse-status"), "No such queue.");
          return;
        }
        throw error;
      }
      this.next = page.cursor;
      const tbody = $("#browse-table tbody");
      tbody.replaceChildren(...page.messages.map((m) => this.messageRow(m)));
      const pageNo = this.pages.length;
      const shown = page.messages.length;
      setText(
        $("#browse-status"),
        shown ? `Page ${pageNo}: ${shown} message${shown === 1 ? "" : "s"}` : pageNo > 1 ? `Page ${pageNo}: empty` : "No messages.",
      );
      $("#browse-next").disabled = !this.next;
      $("#browse-first").disabled = this.pages.length === 1;
    },

    messageRow(m) {
      const state = m.state.replace("_", " ");
      const notes = [];
      if (m.dead_letter_reason) notes.push(el("p", { class: "note" }, `Dead-lettered: ${m.dead_letter_reason}`, m.source_queue ? ` (from ${m.source_queue})` : ""));
      if (m.group_id) notes.push(el("p", { class: "note" }, `Group ${m.group_id}`));
      const short = m.message_id;
      return el(
        "tr",
        {},
        el("th", { scope: "row" }, el("code", { class: "id", text: m.message_id })),
        el("td", {}, el("span", { class: `state state-${m.state}`, text: state })),
        el("td", { text: when(m.sent_at) }),
        el("td", { class: "num" }, receives(m)),
        el("td", {}, bodyView(m.body, m.binary, m.error), ...notes),
        el("td", {}, attributeList(m.attributes)),
        el(
          "td",
          { class: "row-actions" },
          el("button", { type: "button", onclick: (e) => showMessage(e.currentTarget, this.name, m) }, "Details", hidden(` of message ${short}`)),
          el("button", { type: "button", onclick: (e) => this.deleteMessage(e.currentTarget, m.message_id) }, "Delete", hidden(` message ${short}`)),
          el("button", { type: "button", onclick: (e) => this.moveMessage(e.currentTarget, m.message_id) }, "Move…", hidden(` message ${short}`)),
        ),
      );
    },

    async deleteMessage(button, id) {
      const ok = await confirmAction("Delete this message?", `Message ${id} leaves ${this.name} for good.`, "Delete message");
      if (!ok) return;
      await act(button, async () => {
        await api("DELETE", `queues/${enc(this.name)}/messages/${enc(id)}`);
        notify(`Deleted message ${id}.`);
        await this.afterChange();
      });
    },

    async moveMessage(button, id) {
      const choice = await askMove(this.name, id);
      if (!choice || !choice.to) return;
      await act(button, async () => {
        const moved = await api("POST", `queues/${enc(this.name)}/messages/${enc(id)}/move`, {
          to: choice.to,
          copy: choice.copy,
        });
        notify(`${choice.copy ? "Copied" : "Moved"} message ${id} to ${choice.to} (now ${moved.message_id}).`);
        await this.afterChange();
      });
    },

    async afterChange() {
      this.poller.now();
      await this.browse();
      // a row's button goes with its row: keep the keyboard user near the list
      if (focusLost()) $("#browse-refresh").focus();
    },
  };

  $("#browse-refresh").addEventListener("click", (e) => act(e.currentTarget, () => queueView.browse()));
  $("#browse-next").addEventListener("click", (e) =>
    act(e.currentTarget, async () => {
      if (!queueView.next) return;
      queueView.pages.push(queueView.next);
      await queueView.browse();
    }),
  );
  $("#browse-first").addEventListener("click", (e) =>
    act(e.currentTarget, async () => {
      queueView.pages = [null];
      await queueView.browse();
    }),
  );

  $("#send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    act(form.querySelector("button[type=submit]"), async () => {
      const message = { body: $("#send-body").value };
      const attributes = parseAttributes($("#send-attributes").value);
      if (Object.keys(attributes).length) message.attributes = attributes;
      const group = $("#send-group").value.trim();
      if (queueView.name.endsWith(".fifo") && group) message.group_id = group;
      const sent = await api("POST", `queues/${enc(queueView.name)}/messages`, message);
      notify(`Sent message ${sent.message_id}${sent.duplicate ? " (a duplicate: not stored again)" : ""}.`);
      await queueView.afterChange();
    });
  });

  $("#settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    act(form.querySelector("button[type=submit]"), async () => {
      const config = queueView.config;
      if (!config) throw new ApiError(0, "not_found", `queue ${queueView.name} does not exist yet`);
      const typed = typedSettings("settings");
      const changes = {};
      for (const name of SETTING_NAMES) {
        const now = config[name] ?? null;
        const wanted = name in typed ? typed[name] : null;
        if (wanted !== now && wanted !== null) changes[name] = wanted;
      }
      if (!Object.keys(changes).length) {
        notify("Nothing changed.");
        return;
      }
      await api("PATCH", `queues/${enc(queueView.name)}`, changes);
      await queueView.loadSettings();
      notify(`Saved ${Object.keys(changes).join(", ")} of ${queueView.name}.`);
    });
  });

  $("#purge-button").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const name = queueView.name;
    const stats = queueView.stats;
    const total = stats ? stats.visible + stats.in_flight + stats.delayed : null;
    const ok = await confirmAction(
      `Purge ${name}?`,
      `Every message in ${name}${total === null ? "" : ` (${count(total, stats.approximate)} now)`} is deleted, leased ones included. This cannot be undone.`,
      "Purge",
    );
    if (!ok) return;
    await act(button, async () => {
      const result = await api("POST", `queues/${enc(name)}/purge`);
      notify(`Purged ${result.purged} message${result.purged === 1 ? "" : "s"} from ${name}.`);
      await queueView.afterChange();
    });
  });

  $("#delete-queue-button").addEventListener("click", async (event) => {
    const name = queueView.name;
    const ok = await confirmAction(`Delete queue ${name}?`, `${name} and all its messages are deleted. This cannot be undone.`, "Delete queue");
    if (!ok) return;
    await act(event.currentTarget, async () => {
      await api("DELETE", `queues/${enc(name)}`);
      pendingNotice = `Deleted queue ${name}.`;
      location.hash = "#/";
    });
  });

  $("#redrive-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    act(form.querySelector("button[type=submit]"), async () => {
      const request = { max_messages: Number($("#redrive-max").value) || 100 };
      const destination = $("#redrive-destination").value.trim();
      if (destination) request.destination = destination;
      const result = await api("POST", `queues/${enc(queueView.name)}/redrive`, request);
      const failed = result.failed || [];
      const detail = failed.length ? `; ${failed.length} failed: ${failed.map((f) => `${f.id}: ${f.message}`).join("; ")}` : "";
      notify(`Redrove ${result.moved} message${result.moved === 1 ? "" : "s"}${detail}.`);
      await queueView.afterChange();
    });
  });

  // ---- view: topics and the live tail -----------------------------------------------------

  const tail = {
    socket: null,
    wanted: false, // the user wants a tail running (reconnect when it drops)
    url: "",
    pattern: "",
    retryMs: 1000,
    retryTimer: null,
    pingTimer: null,
    received: 0,

    status(text) {
      setText($("#tail-status"), text);
    },

    start(url, pattern) {
      this.stop(true);
      this.url = url;
      this.pattern = pattern;
      this.wanted = true;
      this.retryMs = 1000;
      this.connect();
      $("#tail-stop").disabled = false;
    },

    // Browsers cannot set headers on a WebSocket: the token goes in the query string. Only
    // the connection sees it; the status line and the kept URL show the URL as typed.
    socketUrl() {
      if (!session.token) return this.url;
      const url = new URL(this.url);
      url.searchParams.set("access_token", session.token);
      return url.href;
    },

    connect() {
      let socket;
      try {
        socket = new WebSocket(this.socketUrl());
      } catch (error) {
        this.wanted = false;
        $("#tail-stop").disabled = true;
        this.status("Not connected.");
        fail(new ApiError(0, "invalid_websocket_url", `${this.url}: ${error.message}`));
        return;
      }
      this.socket = socket;
      this.status(`Connecting to ${this.url}…`);
      socket.addEventListener("open", () => {
        socket.send(JSON.stringify({ action: "subscribe", destination: `/topic/${this.pattern}`, id: "tail" }));
        this.status(`Connected to ${this.url}; subscribing to ${this.pattern}…`);
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => {
          if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action: "ping" }));
        }, PING_MS);
      });
      socket.addEventListener("message", (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return; // not a JSON frame: nothing the tail can show
        }
        this.frame(frame);
      });
      socket.addEventListener("close", (event) => {
        if (this.socket !== socket) return;
        this.socket = null;
        clearInterval(this.pingTimer);
        if (!this.wanted) {
          this.status("Not connected.");
          return;
        }
        const seconds = Math.round(this.retryMs / 1000);
        this.status(`Disconnected (code ${event.code}); reconnecting in ${seconds} s…`);
        this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 30000);
      });
    },

    frame(frame) {
      if (frame.type === "batch") {
        for (const inner of frame.frames || []) this.frame(inner);
      } else if (frame.type === "message") {
        this.show(frame);
      } else if (frame.type === "subscribed") {
        this.retryMs = 1000;
        this.status(`Tailing ${this.pattern} on ${this.url}.`);
      } else if (frame.type === "error") {
        fail(new ApiError(0, frame.error, frame.message));
      }
    },

    show(m) {
      this.received += 1;
      const log = $("#tail-log");
      const topic = String(m.destination || "").replace(/^\/topic\//, "");
      const item = el(
        "li",
        { class: "entry" },
        el(
          "p",
          { class: "entry-head" },
          el("strong", { text: topic }),
          " ",
          el("span", { class: "muted", text: when(m.sent_at) }),
          " ",
          el("code", { class: "id", text: m.message_id }),
        ),
        bodyView(m.body, m.binary),
        attributeList(m.attributes),
      );
      log.prepend(item);
      while (log.children.length > TAIL_LIMIT) log.lastElementChild.remove();
      $("#tail-empty").hidden = true;
      setText($("#tail-count"), `(${this.received})`);
    },

    stop(quiet) {
      this.wanted = false;
      clearTimeout(this.retryTimer);
      clearInterval(this.pingTimer);
      if (this.socket) {
        const socket = this.socket;
        this.socket = null;
        if (socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify({ action: "unsubscribe", id: "tail" }));
        }
        socket.close(1000);
      }
      $("#tail-stop").disabled = true;
      if (!quiet) this.status("Stopped.");
    },
  };

  // A WebSocket that the page's Content-Security-Policy forbids only fails with code 1006:
  // say why, and how to fix it.
  document.addEventListener("securitypolicyviolation", (event) => {
    if (!event.violatedDirective.startsWith("connect-src")) return;
    fail(
      new ApiError(
        0,
        "blocked",
        `this page may not connect to ${event.blockedURI}: its Content-Security-Policy allows only ` +
          `the configured WebSocket API (${config.websocket_url || "none"}). Set WEBSOCKET_URL ` +
          `on the HTTP API function to change it.`,
      ),
    );
  });

  $("#tail-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearMessages();
    const url = $("#tail-url").value.trim();
    const pattern = $("#tail-pattern").value.trim();
    if (!url || !pattern) {
      fail(new ApiError(0, "invalid_request", url ? "type a topic or pattern" : "type the WebSocket URL"));
      (url ? $("#tail-pattern") : $("#tail-url")).focus();
      return;
    }
    // a URL typed by the user is kept; the server's own is not (it may change)
    if (url === config.websocket_url) storage.remove(WS_URL_KEY);
    else storage.set(WS_URL_KEY, url);
    tail.start(url, pattern);
  });
  $("#tail-stop").addEventListener("click", () => tail.stop(false));
  $("#tail-clear").addEventListener("click", () => {
    $("#tail-log").replaceChildren();
    tail.received = 0;
    setText($("#tail-count"), "");
    $("#tail-empty").hidden = false;
  });

  $("#publish-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    act(form.querySelector("button[type=submit]"), async () => {
      const topic = $("#publish-topic").value.trim();
      if (!topic) throw new ApiError(0, "invalid_request", "type a topic name");
      const message = { body: $("#publish-body").value };
      const attributes = parseAttributes($("#publish-attributes").value);
      if (Object.keys(attributes).length) message.attributes = attributes;
      const sent = await api("POST", `topics/${enc(topic)}/messages`, message);
      notify(`Published message ${sent.message_id} to ${topic}.`);
    });
  });

  function renderTopics(topics) {
    const tbody = $("#topic-table tbody");
    tbody.replaceChildren(
      ...topics.map((t) =>
        el(
          "tr",
          {},
          el("th", { scope: "row" }, el("code", { text: t.pattern })),
          el(
            "td",
            {},
            t.subscriptions.length
              ? el(
                  "ul",
                  { class: "attrs" },
                  ...t.subscriptions.map((s) =>
                    el(
                      "li",
                      {},
                      `${s.name} → `,
                      queueLink(s.queue),
                      " ",
                      el(
                        "button",
                        { type: "button", class: "small", onclick: (e) => deleteSubscription(e.currentTarget, t.pattern, s.name) },
                        "Delete",
                        hidden(` subscription ${s.name} of ${t.pattern}`),
                      ),
                    ),
                  ),
                )
              : el("span", { class: "muted", text: "none" }),
          ),
          el("td", { class: "num", text: String(t.live_subscribers) }),
        ),
      ),
    );
    $("#topics-empty").hidden = topics.length > 0;
  }

  async function deleteSubscription(button, pattern, name) {
    const ok = await confirmAction(
      `Delete subscription ${name}?`,
      `Messages published to ${pattern} stop going to its queue; the queue and what it holds stay.`,
      "Delete subscription",
    );
    if (!ok) return;
    await act(button, async () => {
      await api("DELETE", `topics/${enc(pattern)}/subscriptions/${enc(name)}`);
      notify(`Deleted subscription ${name} of ${pattern}.`);
      topicsView.refresh();
    });
  }

  $("#subscription-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    act(form.querySelector("button[type=submit]"), async () => {
      const topic = $("#subscription-topic").value.trim();
      const name = $("#subscription-name").value.trim();
      const queue = $("#subscription-queue").value.trim();
      if (!topic || !name || !queue) {
        throw new ApiError(0, "invalid_request", "a subscription needs a topic or pattern, a name and a queue");
      }
      const settings = { queue };
      const filter = $("#subscription-filter").value.trim();
      if (filter) {
        try {
          settings.filter_policy = JSON.parse(filter);
        } catch (error) {
          throw new ApiError(0, "invalid_request", `filter policy: not JSON (${error.message})`);
        }
      }
      // the queue must exist: make it with the defaults when it does not (never replace one)
      let createdQueue = false;
      try {
        await api("GET", `queues/${enc(queue)}`);
      } catch (error) {
        if (error.status !== 404) throw error;
        await api("PUT", `queues/${enc(queue)}`, {});
        createdQueue = true;
      }
      const made = await api("PUT", `topics/${enc(topic)}/subscriptions/${enc(name)}`, settings);
      notify(`Subscription ${made.name}: ${made.topic} → ${made.queue}${createdQueue ? " (queue created)" : ""}.`);
      form.reset();
      topicsView.refresh();
    });
  });

  function renderPublished(history) {
    const entries = Object.entries(history.topics || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    $("#published-table tbody").replaceChildren(
      ...entries.map(([topic, n]) =>
        el("tr", {}, el("th", { scope: "row" }, el("code", { text: topic })), el("td", { class: "num", text: String(n) })),
      ),
    );
    setText($("#published-since"), `(since ${when(history.totals_since)})`);
    $("#published-empty").hidden = entries.length > 0;
  }

  const topicsView = {
    lastKey: "",
    enter() {
      resetForms($("#view-topics"));
      this.lastKey = "";
      const published = $("#published-table");
      published.hidden = true;
      $("#published-empty").hidden = true;
      const tick = async () => {
        try {
          renderPublished(await api("GET", "history"));
          published.hidden = false;
        } catch {
          published.hidden = true;
          $("#published-empty").hidden = true;
        }
      };
      // every topic's counts are for those who administer everything (/stats says who)
      this.published = false;
      this.tickPublished = () => {
        if (this.published) return;
        this.published = true;
        tick();
        this.timer = setInterval(() => document.hidden || tick(), HISTORY_MS);
      };
      this.poller = poll(
        async () => {
          // the topics and connections only: no queue is counted for this view
          const stats = await api("GET", "stats?limit=0");
          renderConnectionCount(stats.connections);
          if (noteAdmin(stats)) this.tickPublished();
          // rebuild only on change: the table holds links a keyboard user may be on
          const key = JSON.stringify(stats.topics);
          if (key !== this.lastKey) {
            this.lastKey = key;
            renderTopics(stats.topics);
          }
        },
        () => {},
      );
    },
    refresh() {
      if (this.poller) this.poller.now();
    },
    leave() {
      this.poller.stop();
      clearInterval(this.timer);
    },
  };

  // ---- view: connections ------------------------------------------------------------------

  function subscriptionList(c) {
    const subscribed = c.subscribed_to || [];
    if (!subscribed.length) return el("span", { class: "muted", text: "none" });
    return el(
      "ul",
      { class: "attrs" },
      ...subscribed.map((s) => {
        const queue = /^\/queue\/(.+)$/.exec(s.destination);
        return el("li", {}, queue ? queueLink(queue[1]) : el("code", { text: s.destination }), el("span", { class: "muted", text: ` (${s.id})` }));
      }),
    );
  }

  async function closeConnection(button, c) {
    const ok = await confirmAction(
      `Close connection ${c.id}?`,
      `${c.principal}'s ${c.protocol === "stomp" ? "STOMP" : "JSON"} connection is closed; the messages it holds go back to their queues at once. Its client may reconnect.`,
      "Close connection",
    );
    if (!ok) return;
    await act(button, async () => {
      await api("DELETE", `connections/${enc(c.id)}`);
      notify(`Closed connection ${c.id}.`);
      connectionsView.poller.now();
      if (focusLost()) $("#connections-title").focus();
    });
  }

  const connectionsView = {
    enter() {
      this.poller = poll(
        async () => {
          const found = await api("GET", "connections");
          const rows = found.connections;
          const tbody = $("#connection-table tbody");
          const key = JSON.stringify(rows);
          if (tbody.dataset.key !== key) {
            tbody.dataset.key = key;
            tbody.replaceChildren(
              ...rows.map((c) =>
                el(
                  "tr",
                  {},
                  el("th", { scope: "row" }, el("code", { class: "id", text: c.id })),
                  el("td", { text: c.protocol === "stomp" ? "STOMP" : "JSON" }),
                  el("td", { text: c.principal }),
                  el("td", {}, subscriptionList(c)),
                  el("td", { text: when(c.connected_at) }),
                  el(
                    "td",
                    { class: "row-actions" },
                    el("button", { type: "button", class: "danger", onclick: (e) => closeConnection(e.currentTarget, c) }, "Close…", hidden(` connection ${c.id}`)),
                  ),
                ),
              ),
            );
          }
          $("#connections-empty").hidden = rows.length > 0;
          renderConnectionCount(rows.length);
          setText($("#connections-updated"), `Updated ${stamp()}`);
        },
        (error) => setText($("#connections-updated"), `Could not refresh: ${error.message}`),
      );
    },
    leave() {
      this.poller.stop();
    },
  };

  // ---- view: access (principals, grants, keys) --------------------------------------------

  function parseGrants(text) {
    const grants = [];
    for (const line of text.split("\n")) {
      const trimmed = line.trim();
      if (!trimmed) continue;
      const at = trimmed.lastIndexOf(":");
      if (at < 1) throw new ApiError(0, "invalid_request", `grants: "${trimmed}" is not "pattern: actions"`);
      const actions = trimmed.slice(at + 1).split(",").map((a) => a.trim()).filter(Boolean);
      grants.push({ pattern: trimmed.slice(0, at).trim(), actions });
    }
    if (!grants.length) throw new ApiError(0, "invalid_request", "grants: type at least one line");
    return grants;
  }

  function grantsText(grants) {
    return grants.map((g) => `${g.pattern}: ${g.actions.join(", ")}`).join("\n");
  }

  const accessView = {
    enter() {
      resetForms($("#view-access"));
      $("#issued-key").hidden = true;
      setText($("#issued-key-token"), "");
      this.refresh().catch((error) => {
        setText($("#access-updated"), `Could not load: ${error.message}`);
        fail(error);
      });
    },
    leave() {},

    async refresh() {
      const [{ principals }, { keys }] = [await api("GET", "access/principals"), await api("GET", "access/keys")];
      const byPrincipal = new Map();
      for (const key of keys) byPrincipal.set(key.principal, [...(byPrincipal.get(key.principal) || []), key]);
      $("#principal-table tbody").replaceChildren(...principals.map((p) => this.row(p, byPrincipal.get(p.id) || [])));
      $("#principals-empty").hidden = principals.length > 0;
      setText($("#access-updated"), `Updated ${stamp()}`);
    },

    row(p, keys) {
      const live = keys.filter((k) => !k.revoked);
      return el(
        "tr",
        {},
        el("th", { scope: "row", text: p.id }),
        el("td", {}, el("ul", { class: "attrs" }, ...p.grants.map((g) => el("li", {}, el("code", { text: g.pattern }), `: ${g.actions.join(", ")}`)))),
        el(
          "td",
          {},
          live.length
            ? el(
                "ul",
                { class: "attrs" },
                ...live.map((k) =>
                  el(
                    "li",
                    {},
                    el("code", { text: k.key_id }),
                    el("span", { class: "note muted", text: ` issued ${when(k.created_at)}${k.expires_at ? `, expires ${when(k.expires_at)}` : ""} ` }),
                    el("button", { type: "button", class: "small", onclick: (e) => this.revoke(e.currentTarget, k) }, "Revoke", hidden(` key ${k.key_id}`)),
                  ),
                ),
              )
            : el("span", { class: "muted", text: "none" }),
        ),
        el("td", { text: when(p.updated_at) }),
        el(
          "td",
          { class: "row-actions" },
          el("button", { type: "button", onclick: (e) => this.issue(e.currentTarget, p.id) }, "Issue key", hidden(` for ${p.id}`)),
          el("button", { type: "button", onclick: () => this.edit(p) }, "Edit", hidden(` ${p.id}`)),
          el("button", { type: "button", class: "danger", onclick: (e) => this.remove(e.currentTarget, p.id) }, "Delete…", hidden(` ${p.id}`)),
        ),
      );
    },

    edit(p) {
      $("#principal-id").value = p.id;
      $("#principal-grants").value = grantsText(p.grants);
      $("#principal-grants").focus();
    },

    async issue(button, id) {
      await act(button, async () => {
        const issued = await api("POST", `access/principals/${enc(id)}/keys`, {});
        setText($("#issued-key-id"), issued.key_id);
        setText($("#issued-key-principal"), issued.principal);
        setText($("#issued-key-token"), issued.token);
        $("#issued-key").hidden = false;
        notify(`Issued key ${issued.key_id} for ${issued.principal}.`);
        await this.refresh();
        $("#issued-key-done").focus();
      });
    },

    async revoke(button, key) {
      const ok = await confirmAction(`Revoke key ${key.key_id}?`, `Requests with this key of ${key.principal} are refused from now on.`, "Revoke key");
      if (!ok) return;
      await act(button, async () => {
        await api("DELETE", `access/keys/${enc(key.key_id)}`);
        notify(`Revoked key ${key.key_id}.`);
        await this.refresh();
        if (focusLost()) $("#access-title").focus();
      });
    },

    async remove(button, id) {
      const ok = await confirmAction(`Delete principal ${id}?`, `${id} and all its API keys stop working.`, "Delete principal");
      if (!ok) return;
      await act(button, async () => {
        await api("DELETE", `access/principals/${enc(id)}`);
        notify(`Deleted principal ${id}.`);
        await this.refresh();
        if (focusLost()) $("#access-title").focus();
      });
    },
  };

  $("#principal-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    act(form.querySelector("button[type=submit]"), async () => {
      const id = $("#principal-id").value.trim();
      if (!id) throw new ApiError(0, "invalid_request", "type the principal's name");
      const grants = parseGrants($("#principal-grants").value);
      const saved = await api("PUT", `access/principals/${enc(id)}`, { grants });
      notify(`Saved principal ${saved.id}: ${grantsText(saved.grants).replaceAll("\n", "; ")}.`);
      form.reset();
      await accessView.refresh();
    });
  });

  $("#issued-key-done").addEventListener("click", () => {
    setText($("#issued-key-token"), "");
    $("#issued-key").hidden = true;
    $("#access-title").focus();
  });

  // ---- routing ----------------------------------------------------------------------------

  const views = {
    queues: { section: "#view-queues", title: "Queues", controller: queuesView },
    queue: { section: "#view-queue", title: null, controller: queueView, nav: "queues" },
    topics: { section: "#view-topics", title: "Topics", controller: topicsView },
    connections: { section: "#view-connections", title: "Connections", controller: connectionsView },
    access: { section: "#view-access", title: "Access", controller: accessView },
  };
  let current = null;
  let pendingNotice = ""; // shown by the next view (a route change clears messages)

  function parseRoute(hash) {
    if (hash === "" || hash === "#" || hash === "#/") return ["queues"];
    const queue = /^#\/queues\/([^/]+)$/.exec(hash);
    if (queue) {
      try {
        return ["queue", decodeURIComponent(queue[1])];
      } catch {
        return null; // a malformed escape: not a queue name
      }
    }
    if (hash === "#/topics") return ["topics"];
    if (hash === "#/connections") return ["connections"];
    if (hash === "#/access") return ["access"];
    return null;
  }

  const signIn = {
    active: false, // the sign-in view is shown: no view runs, no request is made

    show(reason) {
      if (current) current.controller.leave();
      current = null;
      tail.stop(true);
      for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close("cancel");
      clearMessages();
      pendingNotice = "";
      for (const section of document.querySelectorAll(".view")) section.hidden = true;
      $("#view-signin").hidden = false;
      $(".banner nav").hidden = true;
      $("#sign-out").hidden = true;
      document.title = "Sign in · mqless console";
      this.active = true;
      this.error(reason);
      $("#signin-token").focus();
    },

    error(text) {
      setText($("#signin-error"), text || "");
      if (text) $("#signin-token").setAttribute("aria-invalid", "true");
      else $("#signin-token").removeAttribute("aria-invalid");
    },

    // a request with the session's token was refused: the token is no good any more
    require(error) {
      session.clear();
      if (this.active) return;
      this.show(`The API refused the token (${error.status} ${error.message}): sign in again.`);
    },

    async submit(input) {
      // a pasted header value works too
      const token = input.value.trim().replace(/^bearer\s+/i, "");
      if (!token) {
        this.error("Paste an access token.");
        return;
      }
      if (!/^[\x21-\x7e]+$/.test(token)) {
        this.error("That is not a token: a token is one word of printable ASCII characters.");
        return;
      }
      this.error("");
      try {
        // any page of the API checks the token: the authorizer runs before the route
        await api("GET", "stats?limit=0", undefined, { token });
      } catch (error) {
        if (error.refused) {
          this.error(`The API did not accept that token (${error.status} ${error.message}).`);
          return;
        }
        if (error.status === 0 || error.status >= 500) {
          this.error(`Could not check the token: ${error.message}`);
          return;
        }
        // accepted, though this principal may not read the stats: its views will say so
      }
      input.value = "";
      session.set(token);
      this.active = false;
      route(false);
    },
  };

  $("#signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#signin-token");
    act(event.currentTarget.querySelector("button[type=submit]"), async () => {
      await signIn.submit(input);
      if (signIn.active) input.focus();
    });
  });
  $("#signin-token").addEventListener("input", () => signIn.error(""));

  $("#sign-out").addEventListener("click", () => {
    session.clear();
    signIn.show("");
    notify("Signed out.");
  });

  function route(initial) {
    const hash = location.hash;
    // "#main" (the skip link) and other in-page anchors are not routes
    if (hash && !hash.startsWith("#/")) {
      if (current || signIn.active) return;
    }
    // signed out: the route waits in the address bar until sign-in succeeds
    if (signIn.active || (config.auth === "required" && !session.token)) {
      if (!signIn.active) signIn.show("");
      return;
    }
    const parsed = parseRoute(hash.startsWith("#/") ? hash : "#/") || ["queues"];
    const [name, arg] = parsed;
    const view = views[name];
    if (current) current.controller.leave();
    clearMessages();
    if (pendingNotice) notify(pendingNotice);
    pendingNotice = "";
    for (const section of document.querySelectorAll(".view")) section.hidden = true;
    $(view.section).hidden = false;
    $(".banner nav").hidden = false;
    $("#sign-out").hidden = !session.token;
    const navName = view.nav || name;
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === navName) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (view.title) document.title = `${view.title} · mqless console`;
    current = view;
    view.controller.enter(arg);
    // move focus to the new view's heading so keyboard and screen reader users follow
    if (!initial) $(`${view.section} h1`).focus();
  }

  async function loadConfig() {
    try {
      const loaded = await api("GET", "console/config.json");
      Object.assign(config, loaded);
    } catch (error) {
      fail(new ApiError(0, "no_config", `could not load the console's configuration: ${error.message}`));
    }
    setText($("#version"), config.version ? `v${config.version}` : "");
    const url = $("#tail-url");
    if (!url.value) url.value = storage.get(WS_URL_KEY) || config.websocket_url || "";
  }

  // ---- the live bill: mqless dev serves GET /_local/bill; a deployed API answers 404 ----------

  const BILL_MS = 5000;

  function dollars(value, digits) {
    return value === null || value === undefined ? "–" : `$${value.toFixed(digits)}`;
  }

  function number(value, digits) {
    return value === null || value === undefined ? "–" : value.toFixed(digits);
  }

  async function pollBill() {
    let bill;
    try {
      // not through api(): no token needed, and it must never ask for one
      const response = await fetch(new URL("_local/bill", API_ROOT), {
        headers: { accept: "application/json" },
      });
      if (!response.ok) return; // deployed: no such route; the panel stays hidden for good
      bill = await response.json();
    } catch {
      return; // unreachable or not JSON: not mqless dev
    }
    const total = bill.since_start;
    const shown = {
      sent: String(Math.round(total.messages.sent)),
      per_million: dollars(total.per_million_messages, 2),
      sqs: dollars(total.sqs_per_million_messages, 2),
      wru: number(total.dynamodb.write_units_per_message, 1),
      rru: number(total.dynamodb.read_units_per_message, 1),
      failed: String(total.dynamodb.failed_conditions),
      dollars: dollars(total.dollars, 6),
    };
    for (const [key, text] of Object.entries(shown)) setText($(`[data-bill="${key}"]`), text);
    setText(
      $("#bill-note"),
      `Since mqless dev started, at ${bill.region} list prices (${bill.prices_as_of}); ` +
        "Lambda from local durations. The console prints a line for each active minute.",
    );
    $("#bill").hidden = false;
    setTimeout(pollBill, BILL_MS);
  }

  // the configuration says whether to sign in first: route only once it is known
  pollBill();
  loadConfig().then(() => {
    window.addEventListener("hashchange", () => route(false));
    route(true);
  });
})();
