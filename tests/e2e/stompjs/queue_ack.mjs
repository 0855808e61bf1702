// A queue consumer in client-individual mode: ACK one message, NACK another and get it
// redelivered, then nothing more.
// Options: queue (name, required), plus the common ones (see lib.mjs).
import { frameData, scenario } from './lib.mjs';

// A value with every character STOMP 1.2 escapes in a header except CR. Sent only in 1.2
// sessions: stompjs escapes headers in 1.2 only, though 1.1 defines the same escapes. (A
// backslash right before c, n or r would trip stompjs itself: it unescapes \\ last.)
const TRICKY = 'a:b\nc\\d';

scenario(async ctx => {
  const destination = `/queue/${ctx.options.queue}`;
  const consumer = await ctx.connect('consumer');
  const inbox = consumer.subscribe(destination, { ack: 'client-individual' });
  ctx.out.subscriptionId = inbox.id;

  const version = consumer.client.connectedVersion;
  const custom = version === '1.2' ? { colour: 'blue', tricky: TRICKY } : { colour: 'blue' };
  ctx.out.customHeadersSent = custom;
  consumer.client.publish({
    destination,
    body: 'first',
    headers: { 'content-type': 'text/plain', ...custom },
  });
  const [first] = await consumer.messages(inbox, 1);
  ctx.out.first = frameData(first);
  first.ack();

  consumer.client.publish({
    destination,
    body: 'second',
    headers: { 'content-type': 'application/json', colour: 'green' },
  });
  const [, second] = await consumer.messages(inbox, 2);
  ctx.out.second = frameData(second);
  second.nack();

  const [, , redelivered] = await consumer.messages(inbox, 3);
  ctx.out.redelivered = frameData(redelivered);
  redelivered.ack();

  await ctx.quiet();
  ctx.out.extra = inbox.messages.slice(3).map(frameData);
});
