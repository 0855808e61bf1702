// Shared harness for the @stomp/stompjs scenarios: one scenario per script, one JSON
// object on stdout.
//
// Usage: node <scenario>.mjs <ws-url> ['<options as JSON>']
//   (or STOMP_URL / STOMP_OPTIONS in the environment). Options every scenario knows:
//   waitMs    longest wait for any one thing that should happen (default 10000)
//   quietMs   how long "nothing more arrives" is watched for (default 1000)
//   timeoutMs the whole scenario's deadline (default 60000)
//   versions  STOMP versions offered, highest first (default ["1.2", "1.1", "1.0"])
//   passcode  sent in every CONNECT (with `login` if given): how a client that put no
//             token in the URL (?access_token=) authenticates
// STOMP_DEBUG=1 sends stompjs's debug log (every frame in and out) to stderr.
//
// Exit codes: 0 the scenario ran to its end (what it saw is in the JSON, right or wrong);
// 2 something it waited for never happened, or the overall deadline passed; 1 a crash.
// The JSON is printed in every case, with an `error` field unless the exit code is 0.

import { Client, Versions } from '@stomp/stompjs';
import WebSocket from 'ws';

// stompjs reports exceptions thrown in frame handlers with console.log; keep stdout for
// the one JSON object.
console.log = (...args) => console.error(...args);

const SUBPROTOCOLS = { '1.2': 'v12.stomp', '1.1': 'v11.stomp', '1.0': 'v10.stomp' };
const DEBUG = Boolean(process.env.STOMP_DEBUG);

class WaitTimeout extends Error {}

/** A frame as plain data: command, headers (first of repeats, as stompjs keeps), body. */
export function frameData(frame) {
  return { command: frame.command, headers: { ...frame.headers }, body: frame.body };
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

class Context {
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.waitMs = options.waitMs ?? 10000;
    this.quietMs = options.quietMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 60000;
    this.versions = options.versions ?? ['1.2', '1.1', '1.0'];
    this.connectHeaders = {};
    if (options.login) this.connectHeaders.login = options.login;
    if (options.passcode) this.connectHeaders.passcode = options.passcode;
    this.connections = [];
    this.inboxes = [];
    this.out = {};
    this._waiters = new Set();
  }

  /** Wake every pending `until` so it re-checks its condition. */
  poke() {
    for (const check of [...this._waiters]) check();
  }

  /** Resolve when `predicate()` is truthy; throw WaitTimeout after `ms`. */
  until(predicate, what, ms = this.waitMs) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        let value;
        try {
          value = predicate();
        } catch (error) {
          this._waiters.delete(check);
          clearTimeout(timer);
          reject(error);
          return;
        }
        if (value) {
          this._waiters.delete(check);
          clearTimeout(timer);
          resolve(value);
        }
      };
      timer = setTimeout(() => {
        this._waiters.delete(check);
        reject(new WaitTimeout(`waited ${ms} ms for ${what}; it did not happen`));
      }, ms);
      this._waiters.add(check);
      check();
    });
  }

  /** Watch for `ms` (default quietMs); what arrived meanwhile stays in the inboxes. */
  quiet(ms = this.quietMs) {
    return sleep(ms);
  }

  sleep(ms) {
    return sleep(ms);
  }

  /** Open a connection and wait for CONNECTED. */
  async connect(name, { versions = this.versions, connectHeaders = this.connectHeaders } = {}) {
    const connection = new Connection(this, name, versions, connectHeaders);
    this.connections.push(connection);
    connection.client.activate();
    await this.until(
      () => connection.log.connected || connection.log.closes.length > 0,
      `${name} to get CONNECTED`,
    );
    if (!connection.log.connected) {
      throw new WaitTimeout(`${name}: the socket closed before CONNECTED`);
    }
    return connection;
  }

  /** DISCONNECT (with its receipt) every connection still open; force-close stragglers. */
  async closeAll() {
    for (const connection of this.connections) {
      await connection.close();
    }
  }
}

class Connection {
  constructor(ctx, name, versions, connectHeaders) {
    this.ctx = ctx;
    this.name = name;
    this.receipts = new Map();
    this.ws = undefined;
    this.log = {
      name,
      subprotocol: null,
      connected: null,
      errors: [],
      closes: [],
      webSocketErrors: [],
      unhandledMessages: [],
      unhandledReceipts: [],
      unhandledFrames: [],
      disconnectReceipt: null,
    };
    const poke = () => ctx.poke();
    this.client = new Client({
      webSocketFactory: () => {
        const ws = new WebSocket(
          ctx.url,
          versions.map(v => SUBPROTOCOLS[v]),
        );
        ws.on('open', () => {
          this.log.subprotocol = ws.protocol;
        });
        this.ws = ws;
        return ws;
      },
      stompVersions: new Versions(versions),
      connectHeaders,
      // a scenario sees every close; a reconnect would hide it
      reconnectDelay: 0,
      debug: DEBUG ? msg => console.error(`[${name}] ${msg}`) : () => {},
      onConnect: frame => {
        this.log.connected = frameData(frame);
        poke();
      },
      onDisconnect: frame => {
        this.log.disconnectReceipt = frame.headers['receipt-id'];
        poke();
      },
      onStompError: frame => {
        this.log.errors.push({ ...frameData(frame), at: Date.now() });
        poke();
      },
      onWebSocketClose: evt => {
        this.log.closes.push({
          code: evt.code,
          reason: evt.reason,
          wasClean: evt.wasClean,
          at: Date.now(),
        });
        poke();
      },
      onWebSocketError: evt => {
        this.log.webSocketErrors.push(String(evt.message ?? evt.error ?? evt.type));
        poke();
      },
      onUnhandledMessage: message => {
        this.log.unhandledMessages.push(frameData(message));
        poke();
      },
      onUnhandledReceipt: frame => {
        this.log.unhandledReceipts.push(frameData(frame));
        poke();
      },
      onUnhandledFrame: frame => {
        this.log.unhandledFrames.push(frameData(frame));
        poke();
      },
    });
  }

  get closed() {
    return this.log.closes.length > 0;
  }

  /** Subscribe; the returned inbox collects every MESSAGE (the IMessage objects). */
  subscribe(destination, headers = {}) {
    const inbox = { destination, id: undefined, messages: [] };
    const subscription = this.client.subscribe(
      destination,
      message => {
        inbox.messages.push(message);
        this.ctx.poke();
      },
      headers,
    );
    inbox.id = subscription.id;
    inbox.subscription = subscription;
    this.ctx.inboxes.push({ connection: this.name, inbox });
    return inbox;
  }

  /** Register interest in RECEIPT `id` before sending the frame that asks for it. */
  watchReceipt(id) {
    this.client.watchForReceipt(id, frame => {
      this.receipts.set(id, frameData(frame));
      this.ctx.poke();
    });
  }

  /** Wait for RECEIPT `id` (watched with watchReceipt); its frame as data. */
  receipt(id) {
    return this.ctx.until(
      () => this.receipts.get(id) ?? this._failIfClosed(`RECEIPT ${id}`),
      `${this.name} to get RECEIPT ${id}`,
    );
  }

  /** Wait until `inbox` holds at least `count` messages; returns them all. */
  messages(inbox, count) {
    return this.ctx.until(
      () =>
        (inbox.messages.length >= count && inbox.messages) ||
        this._failIfClosed(`${count} message(s) on ${inbox.destination}`),
      `${this.name}: ${count} message(s) on ${inbox.destination}`,
    );
  }

  _failIfClosed(what) {
    if (this.closed) {
      throw new WaitTimeout(`${this.name}: the socket closed while waiting for ${what}`);
    }
    return undefined;
  }

  async close() {
    if (this.closed || !this.client.active) return;
    const done = this.client.deactivate();
    const timedOut = await Promise.race([
      done.then(() => false),
      sleep(this.ctx.waitMs).then(() => true),
    ]);
    if (timedOut) {
      this.log.disconnectTimedOut = true;
      await Promise.race([this.client.deactivate({ force: true }), sleep(1000)]);
    }
  }
}

/** Run `body(ctx)`; print one JSON object: the scenario's `ctx.out` plus each connection's log. */
export function scenario(body) {
  const url = process.argv[2] || process.env.STOMP_URL;
  const options = JSON.parse(process.argv[3] || process.env.STOMP_OPTIONS || '{}');
  if (!url) {
    process.stderr.write('usage: node <scenario>.mjs <ws-url> [options-json]\n');
    process.exit(64);
  }
  const ctx = new Context(url, options);
  let finished = false;
  const finish = (code, error) => {
    if (finished) return;
    finished = true;
    const result = {
      ...ctx.out,
      connections: Object.fromEntries(ctx.connections.map(c => [c.name, c.log])),
      // everything each subscription received, in order (also when a wait failed)
      inboxes: ctx.inboxes.map(({ connection, inbox }) => ({
        connection,
        subscription: inbox.id,
        destination: inbox.destination,
        messages: inbox.messages.map(frameData),
      })),
    };
    if (error) result.error = error;
    process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
  };
  const deadline = setTimeout(
    () => finish(2, `scenario did not finish within ${ctx.timeoutMs} ms`),
    ctx.timeoutMs,
  );
  process.on('uncaughtException', error => finish(1, `crashed: ${error.stack ?? error}`));
  process.on('unhandledRejection', error => finish(1, `crashed: ${error?.stack ?? error}`));
  (async () => {
    try {
      await body(ctx);
    } catch (error) {
      await ctx.closeAll().catch(() => {});
      clearTimeout(deadline);
      if (error instanceof WaitTimeout) finish(2, error.message);
      else finish(1, `crashed: ${error.stack ?? error}`);
      return;
    }
    await ctx.closeAll();
    clearTimeout(deadline);
    finish(0);
  })();
}
