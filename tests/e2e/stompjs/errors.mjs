// A frame the broker must refuse: it answers ERROR (with a `message` header) and then
// closes the socket. Cases (option `case`):
//   bogus-destination  SEND to /bogus/x
//   bad-queue-name     SEND to /queue/<a name with characters queues may not have>
//   bad-ack-mode       SUBSCRIBE with ack:sometimes
//   bad-selector       SUBSCRIBE with a selector that does not parse
// Every bad frame carries receipt:bad-1, which should come back as the ERROR's receipt-id
// and never as a RECEIPT. Options: case (required), plus the common ones (see lib.mjs).
import { scenario } from './lib.mjs';

const BAD_FRAMES = {
  'bogus-destination': client =>
    client.publish({ destination: '/bogus/x', body: 'x', headers: { receipt: 'bad-1' } }),
  'bad-queue-name': client =>
    client.publish({ destination: '/queue/no spaces!', body: 'x', headers: { receipt: 'bad-1' } }),
  'bad-ack-mode': client =>
    client.subscribe('/queue/fine', () => {}, { ack: 'sometimes', receipt: 'bad-1' }),
  'bad-selector': client =>
    client.subscribe('/queue/fine', () => {}, { selector: "color = 'red' AND", receipt: 'bad-1' }),
};

scenario(async ctx => {
  const send = BAD_FRAMES[ctx.options.case];
  if (!send) throw new Error(`unknown case ${ctx.options.case}`);
  const connection = await ctx.connect('client');
  connection.watchReceipt('bad-1');
  const sentAt = Date.now();
  send(connection.client);

  // whatever the broker does about it: ERROR, RECEIPT (it took the frame) or a bare close
  await ctx.until(
    () => connection.log.errors.length > 0 || connection.receipts.has('bad-1') || connection.closed,
    'an ERROR frame, a RECEIPT or a close',
  );
  // after an ERROR the socket should close by itself
  await ctx.until(() => connection.closed, 'the socket to close').catch(() => {
    ctx.out.stillOpenAfterMs = ctx.waitMs;
  });
  ctx.out.errorFrame = connection.log.errors[0] ?? null;
  ctx.out.errorAfterMs = connection.log.errors.length ? connection.log.errors[0].at - sentAt : null;
  ctx.out.closedAfterError =
    connection.closed &&
    connection.log.errors.length > 0 &&
    connection.log.closes[0].at >= connection.log.errors[0].at;
  ctx.out.receiptForBadFrame = connection.receipts.get('bad-1') ?? null;
  ctx.out.clientConnectedAfter = connection.client.connected;
});
