// Topic fan-out with ActiveMQ wildcards: subscribers on separate connections to
// <prefix>.b, <prefix>.*, <prefix>.> and <prefix>.c; a third party publishes to <prefix>.b.
// Options: prefix (a topic name, required), plus the common ones (see lib.mjs).
import { frameData, scenario } from './lib.mjs';

scenario(async ctx => {
  const { prefix } = ctx.options;
  const patterns = { exact: `${prefix}.b`, star: `${prefix}.*`, rest: `${prefix}.>`, other: `${prefix}.c` };
  const inboxes = {};
  for (const [name, pattern] of Object.entries(patterns)) {
    const subscriber = await ctx.connect(name);
    subscriber.watchReceipt(`sub-${name}`);
    inboxes[name] = subscriber.subscribe(`/topic/${pattern}`, {
      id: `s-${name}`,
      receipt: `sub-${name}`,
    });
    // publish only once every subscription is known to be in place
    await subscriber.receipt(`sub-${name}`);
  }

  const publisher = await ctx.connect('publisher');
  publisher.watchReceipt('pub');
  publisher.client.publish({
    destination: `/topic/${prefix}.b`,
    body: 'fan-out',
    headers: { 'content-type': 'text/plain', region: 'eu', receipt: 'pub' },
  });
  await publisher.receipt('pub');

  const { exact, star, rest } = inboxes;
  await ctx.until(
    () => exact.messages.length && star.messages.length && rest.messages.length,
    'the message on each matching subscription',
  );
  await ctx.quiet();
  ctx.out.received = Object.fromEntries(
    Object.entries(inboxes).map(([name, inbox]) => [
      name,
      { subscription: inbox.id, messages: inbox.messages.map(frameData) },
    ]),
  );
});
