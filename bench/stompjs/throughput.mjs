// One producer and one client-individual consumer, unmodified @stomp/stompjs: how fast do
// `count` messages of `size` bytes, sent in one burst, reach the consumer and get acked?
//
// Usage: node throughput.mjs '<options as JSON>'; prints one JSON object on stdout.
// Options:
//   url        ws://... (STOMP over WebSocket, subprotocol v12.stomp), or
//   tcp        {"host": ..., "port": ...} (STOMP over TCP, through @stomp/tcp-wrapper)
//   queue      the queue name (/queue/<queue>)
//   count      messages to send (default 2000); size: body bytes (default 1024)
//   prefetch   the consumer's activemq.prefetchSize (default 100)
//   deadlineMs stop waiting after this long and report what arrived (default 600000)
//   persistent send with `persistent: true` (default true: what JMS producers do by default,
//              and what mqless always does)
//
// Each message carries its send time (`bench-sent`, ms since the epoch) and its number
// (`bench-seq`). Latency is receive time minus send time; throughput is messages received
// divided by the time from the first send to the last receipt. The consumer ACKs each
// message at once; the last ACK asks for a RECEIPT, so `ackedMs` is when the broker had
// every ACK.

import { Client, Versions } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';
import WebSocket from 'ws';

const options = JSON.parse(process.argv[2] ?? '{}');
const count = options.count ?? 2000;
const size = options.size ?? 1024;
const prefetch = options.prefetch ?? 100;
const deadlineMs = options.deadlineMs ?? 600_000;
const persistent = options.persistent ?? true;
const destination = `/queue/${options.queue}`;

function client(name) {
  const factory = options.tcp
    ? () => new TCPWrapper(options.tcp.host, options.tcp.port)
    : () => new WebSocket(options.url, ['v12.stomp']);
  return new Client({
    webSocketFactory: factory,
    stompVersions: new Versions(['1.2']),
    connectHeaders: options.passcode ? { passcode: options.passcode } : {},
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
    onStompError: frame => fail(`${name}: ERROR ${frame.headers.message}: ${frame.body}`),
    onWebSocketClose: evt => {
      if (!closing) fail(`${name}: socket closed (${evt.code} ${evt.reason ?? ''})`);
    },
  });
}

let finished = false;
let closing = false;
function report(result, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
}
function fail(error) {
  report({ ...summary(), error }, 2);
}

function connect(stomp) {
  return new Promise(resolve => {
    stomp.onConnect = () => resolve();
    stomp.activate();
  });
}

const latencies = [];
const seen = new Set();
let duplicates = 0;
let firstSent = 0;
let lastSent = 0;
let lastReceived = 0;
let acked = 0;

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary() {
  const sorted = [...latencies].sort((a, b) => a - b);
  const seconds = lastReceived > firstSent ? (lastReceived - firstSent) / 1000 : null;
  return {
    count,
    received: seen.size,
    duplicates,
    sendSeconds: (lastSent - firstSent) / 1000,
    seconds,
    perSecond: seconds ? seen.size / seconds : null,
    ackedMs: acked ? acked - firstSent : null,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length ? sorted[sorted.length - 1] : null,
  };
}

const consumer = client('consumer');
const producer = client('producer');
await Promise.all([connect(consumer), connect(producer)]);
setTimeout(() => fail(`deadline of ${deadlineMs} ms passed`), deadlineMs).unref();

const done = new Promise(resolve => {
  consumer.subscribe(
    destination,
    message => {
      const now = Date.now();
      const seq = message.headers['bench-seq'];
      if (seen.has(seq)) {
        duplicates += 1;
      } else {
        seen.add(seq);
        latencies.push(now - Number(message.headers['bench-sent']));
        lastReceived = now;
      }
      if (seen.size === count) {
        consumer.watchForReceipt('acked', () => {
          acked = Date.now();
          resolve();
        });
        message.ack({ receipt: 'acked' });
      } else {
        message.ack();
      }
    },
    { ack: 'client-individual', 'activemq.prefetchSize': String(prefetch) },
  );
});

// give the SUBSCRIBE a moment to be registered before the burst
await new Promise(resolve => setTimeout(resolve, 200));
const padding = 'x'.repeat(size);
firstSent = Date.now();
for (let seq = 0; seq < count; seq += 1) {
  producer.publish({
    destination,
    body: padding,
    headers: {
      'bench-seq': String(seq),
      'bench-sent': String(Date.now()),
      ...(persistent ? { persistent: 'true' } : {}),
    },
  });
}
lastSent = Date.now();
await done;
closing = true;
await Promise.all([consumer.deactivate(), producer.deactivate()]);
report(summary(), 0);
