// Flow control: 5 messages wait in a queue; a client-individual subscriber with a prefetch
// of 2 gets exactly 2 until it ACKs one, then exactly one more.
// Options: queue (name, required), prefetchHeader (default "activemq.prefetchSize"),
// plus the common ones (see lib.mjs).
import { frameData, scenario } from './lib.mjs';

const SENT = ['m1', 'm2', 'm3', 'm4', 'm5'];

scenario(async ctx => {
  const destination = `/queue/${ctx.options.queue}`;
  const prefetchHeader = ctx.options.prefetchHeader ?? 'activemq.prefetchSize';
  ctx.out.sent = SENT;

  const producer = await ctx.connect('producer');
  producer.watchReceipt('last');
  SENT.forEach((body, index) => {
    const headers = index === SENT.length - 1 ? { receipt: 'last' } : {};
    producer.client.publish({ destination, body, headers });
  });
  // frames are handled in order, so the last receipt vouches for all five
  await producer.receipt('last');

  const consumer = await ctx.connect('consumer');
  const inbox = consumer.subscribe(destination, {
    ack: 'client-individual',
    [prefetchHeader]: '2',
  });
  await consumer.messages(inbox, 2);
  await ctx.quiet();
  ctx.out.beforeAck = inbox.messages.map(frameData);

  inbox.messages[0].ack();
  await consumer.messages(inbox, 3);
  await ctx.quiet();
  ctx.out.afterOneAck = inbox.messages.map(frameData);
});
