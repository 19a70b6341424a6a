#!/usr/bin/env node
// A consumer with nothing but amqplib: binds an exclusive server-named queue
// to the exchange "final" with each ROUTING_KEY, prints READY once bound,
// then one JSON line per message, {body (utf8), message_id, content_type,
// headers}, and exits 0 after COUNT messages, 1 if TIMEOUT passes first.
// usage: AMQP_URL=amqp://... node consume.js [--count N] [--timeout SEC] ROUTING_KEY...
'use strict';
const amqp = require('amqplib');
const argv = process.argv.slice(2);
const opt = (n, d) => { const i = argv.indexOf(n); return i >= 0 ? argv.splice(i, 2)[1] : d; };
const count = Number(opt('--count', 1)), timeout = Number(opt('--timeout', 20)) * 1000;
const url = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/';
// Byte arrays in headers come as Buffers: print them as text.
const text = (v) => Buffer.isBuffer(v) ? v.toString('utf8')
  : Array.isArray(v) ? v.map(text)
  : (v && typeof v === 'object') ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, text(x)])) : v;
if (argv.length === 0) { console.error('usage: node consume.js [--count N] [--timeout SEC] ROUTING_KEY...'); process.exit(2); }
(async () => {
  const conn = await amqp.connect(url);
  setTimeout(() => { console.error(`consume.js: timeout after ${timeout} ms`); process.exit(1); }, timeout).unref();
  const ch = await conn.createChannel();
  await ch.assertExchange('final', 'direct', { durable: true });
  const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
  for (const key of argv) await ch.bindQueue(queue, 'final', key);
  let got = 0;
  await ch.consume(queue, async (m) => {
    if (got >= count) return;
    got++;
    console.log(JSON.stringify({ body: m.content.toString('utf8'), message_id: m.properties.messageId ?? null,
      content_type: m.properties.contentType ?? null, headers: text(m.properties.headers || {}) }));
    if (got === count) { await conn.close(); process.exit(0); }
  }, { noAck: true });
  console.log('READY');
})().catch((e) => { console.error(e); process.exit(1); });
