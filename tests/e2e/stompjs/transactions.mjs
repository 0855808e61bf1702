// Transactions: two SENDs inside BEGIN..COMMIT reach a (separate) subscriber only after
// COMMIT; a SEND inside BEGIN..ABORT never does.
// Options: queue (name, required), plus the common ones (see lib.mjs).
import { frameData, scenario } from './lib.mjs';

scenario(async ctx => {
  const destination = `/queue/${ctx.options.queue}`;
  const consumer = await ctx.connect('consumer');
  consumer.watchReceipt('subscribed');
  const inbox = consumer.subscribe(destination, { receipt: 'subscribed' });
  await consumer.receipt('subscribed');

  const producer = await ctx.connect('producer');
  const committed = producer.client.begin('tx-commit');
  producer.client.publish({ destination, body: 'tx-1', headers: { transaction: committed.id } });
  producer.watchReceipt('tx-2-sent');
  producer.client.publish({
    destination,
    body: 'tx-2',
    headers: { transaction: committed.id, receipt: 'tx-2-sent' },
  });
  await producer.receipt('tx-2-sent');
  await ctx.quiet();
  ctx.out.beforeCommit = inbox.messages.map(frameData);

  committed.commit();
  await consumer.messages(inbox, 2);
  ctx.out.afterCommit = inbox.messages.map(frameData);

  const aborted = producer.client.begin('tx-abort');
  producer.client.publish({ destination, body: 'aborted', headers: { transaction: aborted.id } });
  aborted.abort();
  // a plain SEND after the ABORT: once it arrives, the aborted one would have too
  producer.client.publish({ destination, body: 'after-abort' });
  await consumer.messages(inbox, 3);
  await ctx.quiet();
  ctx.out.all = inbox.messages.map(frameData);
});
