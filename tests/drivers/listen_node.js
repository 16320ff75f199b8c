// node-postgres LISTEN / NOTIFY through sluice in transaction mode (tests/listen_notify.rs).
// node-postgres sends LISTEN as a simple Query; notifications come as `notification` events.
// Prints one `ok <check>` line per check and exits non-zero on the first wrong answer.
'use strict';
const { Client } = require('pg');

function ok(name) { console.log('ok ' + name); }
function expect(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

// Collects a client's notifications; `take(n)` resolves with the next n (15 s at most).
function collector(client) {
  const got = [];
  let wake = null;
  client.on('notification', (m) => {
    got.push(m);
    if (wake) wake();
  });
  return async function take(n) {
    const deadline = Date.now() + 15000;
    while (got.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${got.length} of ${n} notifications`);
      await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 100); });
    }
    return got.splice(0, n);
  };
}

async function main() {
  const listener = new Client();
  const notifier = new Client();
  await listener.connect();
  await notifier.connect();
  try {
    const take = collector(listener);
    await listener.query('LISTEN jobs');
    ok('listen');
    const pids = [];
    for (let i = 0; i < 5; i++) {
      const r = await notifier.query("SELECT pg_backend_pid() AS pid, pg_notify('jobs', $1)", [`job ${i}`]);
      pids.push(r.rows[0].pid);
    }
    const got = (await take(5)).map((m) => [m.channel, m.payload, m.processId]);
    expect(got, pids.map((pid, i) => ['jobs', `job ${i}`, pid]), 'in order');
    ok('in order');

    await listener.query('BEGIN');
    await listener.query('LISTEN tx');
    await listener.query('COMMIT');
    await notifier.query("NOTIFY tx, 'committed'");
    expect((await take(1)).map((m) => [m.channel, m.payload]), [['tx', 'committed']], 'transaction');
    ok('transaction');

    await listener.query('UNLISTEN jobs');
    await notifier.query("NOTIFY jobs, 'gone'");
    await notifier.query("NOTIFY tx, 'sentinel'");
    expect((await take(1)).map((m) => [m.channel, m.payload]), [['tx', 'sentinel']], 'unlisten');
    ok('unlisten');
  } finally {
    await listener.end();
    await notifier.end();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
