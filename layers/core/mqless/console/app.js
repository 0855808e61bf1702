// mqless console: plain JavaScript, no build step, no third-party code.
// The page is <API root>/console; every API call is relative to that root, so the same file
// works under `mqless dev`, on an execute-api URL and behind a custom domain's base path.
"use strict";

(() => {
  const API_ROOT = new URL("./", location.href);
  const POLL_MS = 2000;
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

  function when(millis) {
    if (!millis) return "–";
    const ms = millis < 1e12 ? millis * 1000 : millis; // seconds or milliseconds
    const date = new Date(ms);
    const today = new Date().toDateString() === date.toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
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
    let stopped = false;
    const tick = async () => {
      timer = null;
      if (stopped || document.hidden) return;
      running = true;
      try {
        await task();
      } catch (error) {
        onError(error);
      } finally {
        running = false;
      }
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    };
    const wake = () => {
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

  function renderQueues(queues) {
    const tbody = $("#queue-table tbody");
    const existing = new Map([...tbody.rows].map((row) => [row.dataset.name, row]));
    const wanted = [...queues].sort((a, b) => a.name.localeCompare(b.name));
    wanted.forEach((stats, index) => {
      let row = existing.get(stats.name);
      if (!row) {
        row = el("tr", {}, el("th", { scope: "row" }, queueLink(stats.name)));
        row.dataset.name = stats.name;
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
      existing.delete(stats.name);
      renderQueueRow(row, stats);
      // move a row only when it is out of place: moving the focused row would drop focus
      if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] || null);
    });
    for (const row of existing.values()) row.remove();
    $("#queues-empty").hidden = wanted.length > 0;
  }

  function renderConnectionCount(n) {
    setText($("#nav-connections"), typeof n === "number" ? `(${n})` : "");
  }

  const queuesView = {
    enter() {
      this.poller = poll(
        async () => {
          const stats = await api("GET", "stats");
          renderQueues(stats.queues);
          renderConnectionCount(stats.connections);
          const some = stats.truncated ? ` (only the first ${stats.queues.length} queues are listed)` : "";
          setText($("#queues-updated"), `Updated ${stamp()}${some}`);
        },
        (error) => setText($("#queues-updated"), `Could not refresh: ${error.message}`),
      );
    },
    leave() {
      this.poller.stop();
    },
  };

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
    act(form.querySelector("button"), async () => {
      // PUT replaces an existing queue's settings with the defaults: never do that here
      try {
        await api("GET", `queues/${enc(name)}`);
        notify(`Queue ${name} already exists; nothing changed.`);
        return;
      } catch (error) {
        if (error.status !== 404) throw error;
      }
      const created = await api("PUT", `queues/${enc(name)}`, {});
      notify(`Created queue ${created.name}${created.fifo ? " (FIFO)" : ""}.`);
      input.value = "";
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
      api("GET", "queues")
        .then(({ queues }) => {
          if (this.name === name) redrive.hidden = !isDeadLetterQueue(name, queues);
        })
        .catch(fail);
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

    leave() {
      this.poller.stop();
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
        el("td", { class: "num", text: String(m.receive_count) }),
        el("td", {}, bodyView(m.body, m.binary, m.error), ...notes),
        el("td", {}, attributeList(m.attributes)),
        el(
          "td",
          { class: "row-actions" },
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
                  ...t.subscriptions.map((s) => el("li", {}, `${s.name} → `, queueLink(s.queue))),
                )
              : el("span", { class: "muted", text: "none" }),
          ),
          el("td", { class: "num", text: String(t.live_subscribers) }),
        ),
      ),
    );
    $("#topics-empty").hidden = topics.length > 0;
  }

  const topicsView = {
    lastKey: "",
    enter() {
      this.poller = poll(
        async () => {
          const stats = await api("GET", "stats");
          renderConnectionCount(stats.connections);
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
    leave() {
      this.poller.stop();
    },
  };

  // ---- view: connections ------------------------------------------------------------------

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
                  el("td", { text: when(c.connected_at) }),
                  el("td", { class: "num", text: String(c.subscriptions) }),
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

  // ---- routing ----------------------------------------------------------------------------

  const views = {
    queues: { section: "#view-queues", title: "Queues", controller: queuesView },
    queue: { section: "#view-queue", title: null, controller: queueView, nav: "queues" },
    topics: { section: "#view-topics", title: "Topics", controller: topicsView },
    connections: { section: "#view-connections", title: "Connections", controller: connectionsView },
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
        await api("GET", "stats", undefined, { token });
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
