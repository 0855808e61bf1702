// JMS message selectors, as ActiveMQ takes them in SUBSCRIBE's `selector` header.
// A queue holds red and blue messages; a client-individual subscriber selecting red ones
// gets those only (acking them), then a subscriber without a selector gets the blue ones.
// A live topic subscriber selecting `JMSType = 'quote' AND price > 10` (convert_string_
// expressions: STOMP headers are strings) gets only the quotes above 10.
// Options: queue, topic (names, required), plus the common ones (see lib.mjs).
import { frameData, scenario } from './lib.mjs';

const SENT = [
  ['red-1', 'red'],
  ['blue-1', 'blue'],
  ['red-2', 'red'],
  ['blue-2', 'blue'],
];

scenario(async ctx => {
  const queue = `/queue/${ctx.options.queue}`;
  const topic = `/topic/${ctx.options.topic}`;

  const producer = await ctx.connect('producer');
  producer.watchReceipt('last');
  SENT.forEach(([body, color], index) => {
    const headers = { color, ...(index === SENT.length - 1 ? { receipt: 'last' } : {}) };
    producer.client.publish({ destination: queue, body, headers });
  });
  await producer.receipt('last');

  const reds = await ctx.connect('reds');
  const redInbox = reds.subscribe(queue, { ack: 'client-individual', selector: "color = 'red'" });
  await reds.messages(redInbox, 2);
  await ctx.quiet();
  redInbox.messages.forEach(message => message.ack());
  ctx.out.reds = redInbox.messages.map(frameData);

  const rest = await ctx.connect('rest');
  const restInbox = rest.subscribe(queue, { ack: 'auto' });
  await rest.messages(restInbox, 2);
  await ctx.quiet();
  ctx.out.rest = restInbox.messages.map(frameData);

  const quotes = await ctx.connect('quotes');
  quotes.watchReceipt('sub-quotes');
  const quoteInbox = quotes.subscribe(topic, {
    selector: "convert_string_expressions:JMSType = 'quote' AND price > 10",
    receipt: 'sub-quotes',
  });
  await quotes.receipt('sub-quotes');
  producer.watchReceipt('quotes-sent');
  producer.client.publish({ destination: topic, body: 'cheap', headers: { type: 'quote', price: '9' } });
  producer.client.publish({ destination: topic, body: 'trade', headers: { type: 'trade', price: '50' } });
  producer.client.publish({
    destination: topic,
    body: 'dear',
    headers: { type: 'quote', price: '12.5', receipt: 'quotes-sent' },
  });
  await producer.receipt('quotes-sent');
  await quotes.messages(quoteInbox, 1);
  await ctx.quiet();
  ctx.out.quotes = quoteInbox.messages.map(frameData);
});
