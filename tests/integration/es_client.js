// A real EventSource (npm `eventsource` 3.x, WHATWG-conformant) subscribing to herald, for the
// integration tests.
// usage: node es_client.js URL COUNT TIMEOUT_MS
// Prints one JSON object per line: {"type":"open"}, {"type":"message","id":..,"data":..},
// {"type":"reset"|"shutdown","data":..}, {"type":"error",...}. Exits 0 after COUNT messages,
// 1 when TIMEOUT_MS passes first.
'use strict';
const { EventSource } = require('eventsource');

const [url, countArg, timeoutArg] = process.argv.slice(2);
const want = parseInt(countArg, 10);
const timeoutMs = parseInt(timeoutArg || '60000', 10);
let got = 0;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// process.exit() drops what stdout has not written yet: a pipe the test reads slowly (a loaded
// machine) makes node queue the writes, and the test then saw 2,526 of 3,000 messages from a client
// that had printed them all. Exit once the writes before this one are out.
let done = false;
function finish(code) {
  if (done) return;
  done = true;
  es.close();
  process.stdout.write('', () => process.exit(code));
}

const es = new EventSource(url);
es.onopen = () => out({ type: 'open' });
es.onerror = (e) => out({ type: 'error', code: e && e.code, message: e && e.message });
es.onmessage = (e) => {
  out({ type: 'message', id: e.lastEventId, data: e.data });
  got += 1;
  if (got >= want) finish(0);
};
for (const name of ['reset', 'shutdown', 'binary']) {
  es.addEventListener(name, (e) => out({ type: name, id: e.lastEventId, data: e.data }));
}
setTimeout(() => {
  out({ type: 'timeout', got });
  finish(1);
}, timeoutMs);
