// RECEIPT frames: for a SUBSCRIBE, for SENDs to a topic and to a queue, and the one
// stompjs asks for with its DISCONNECT. Events are logged in arrival order.
// Options: topic, queue (names, required), plus the common ones (see lib.mjs).
import { frameData, scenario } from './lib.mjs';

scenario(async ctx => {
  const topic = `/topic/${ctx.options.topic}`;
  const queue = `/queue/${ctx.options.queue}`;
  const events = [];
  ctx.out.events = events;
  const client = await ctx.connect('client');

  client.watchReceipt('sub-r');
  const inbox = client.subscribe(topic, { receipt: 'sub-r' });
  ctx.out.subscribeReceipt = await client.receipt('sub-r');
  events.push('RECEIPT sub-r');

  client.watchReceipt('r-1');
  client.client.publish({ destination: topic, body: 'to the topic', headers: { receipt: 'r-1' } });
  client.watchReceipt('r-2');
  client.client.publish({ destination: queue, body: 'to the queue', headers: { receipt: 'r-2' } });

  const seen = new Set();
  await ctx.until(() => {
    for (const id of ['r-1', 'r-2']) {
      if (client.receipts.has(id) && !seen.has(id)) {
        seen.add(id);
        events.push(`RECEIPT ${id}`);
      }
    }
    if (inbox.messages.length > 0 && !seen.has('message')) {
      seen.add('message');
      events.push('MESSAGE');
    }
    return seen.size === 3;
  }, 'RECEIPTs r-1 and r-2 and the topic MESSAGE');
  ctx.out.sendReceipts = { 'r-1': client.receipts.get('r-1'), 'r-2': client.receipts.get('r-2') };
  ctx.out.message = frameData(inbox.messages[0]);

  await ctx.quiet();
  ctx.out.extraMessages = inbox.messages.slice(1).map(frameData);
});
