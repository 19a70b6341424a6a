#!/usr/bin/env node
// A publisher with nothing but amqplib: publishes BODY to the exchange
// "final" with ROUTING_KEY, the content type and the application headers
// given (a JSON object), mandatory and with publisher confirms; exits 0
// once the broker confirms, non-zero if it refuses, returns or fails.
// usage: AMQP_URL=amqp://... node publish.js ROUTING_KEY BODY [--content-type CT] [--message-id ID] [--headers JSON]
'use strict';
const amqp = require('amqplib');
const argv = process.argv.slice(2);
const opt = (n) => { const i = argv.indexOf(n); return i >= 0 ? argv.splice(i, 2)[1] : undefined; };
const contentType = opt('--content-type'), messageId = opt('--message-id');
const headers = JSON.parse(opt('--headers') || '{}');
const url = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/';
const [key, body] = argv;
if (key === undefined || body === undefined) { console.error('usage: node publish.js ROUTING_KEY BODY [--content-type CT] [--message-id ID] [--headers JSON]'); process.exit(2); }
(async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  let returned = false;
  ch.on('return', () => { returned = true; });
  await new Promise((resolve, reject) => ch.publish('final', key, Buffer.from(body),
    { contentType, messageId, headers, persistent: true, mandatory: true },
    (err) => (err ? reject(new Error('publish.js: nacked')) : resolve())));
  await conn.close();
  if (returned) { console.error(`publish.js: unroutable: no queue bound to ${key}`); process.exit(1); }
})().catch((e) => { console.error(e); process.exit(1); });
