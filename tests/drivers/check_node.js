// node-postgres through sluice. Connection from the PG* environment variables; prints one
// `ok <check>` line per check and exits non-zero on the first wrong answer.
'use strict';
const { Client, Pool } = require('pg');

function ok(name) { console.log('ok ' + name); }
function expect(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

async function main() {
  const c = new Client();
  await c.connect();
  try {
    expect((await c.query('SELECT 1 + 1 AS n')).rows[0].n, 2, 'select');
    ok('select');
    expect((await c.query('SELECT $1::int * 3 AS n, $2::text AS t', [7, 'x'])).rows[0], { n: 21, t: 'x' }, 'params');
    ok('params');
    // Named prepared statement: node-postgres parses it once per connection, then binds by name
    // in later queries, each of which may run on another server connection of the pool.
    for (let i = 0; i < 20; i++) {
      const r = await c.query({ name: 'plus100', text: 'SELECT $1::int + 100 AS n', values: [i] });
      expect(r.rows[0].n, i + 100, 'prepared');
    }
    ok('prepared');
    await c.query('CREATE TABLE IF NOT EXISTS drv_node (id int PRIMARY KEY, v text)');
    await c.query('TRUNCATE drv_node');
    await c.query('BEGIN');
    await c.query("INSERT INTO drv_node VALUES (1, 'one')");
    await c.query('COMMIT');
    await c.query('BEGIN');
    await c.query("INSERT INTO drv_node VALUES (2, 'two')");
    await c.query('ROLLBACK');
    expect((await c.query('SELECT count(*)::int AS n FROM drv_node')).rows[0].n, 1, 'rollback');
    ok('transactions');
    let failed = null;
    try { await c.query('SELECT 1 / 0'); } catch (e) { failed = e; }
    if (!failed) throw new Error('division by zero did not fail');
    expect(failed.code, '22012', 'sqlstate');
    expect((await c.query("SELECT 'after error' AS t")).rows[0].t, 'after error', 'recovery');
    ok('error recovery');
    const multi = await c.query('SELECT 1 AS a; SELECT 2 AS b');
    expect(multi.map(r => r.rows[0]), [{ a: 1 }, { b: 2 }], 'multi-statement');
    ok('multi-statement');
  } finally {
    await c.end();
  }

  const pool = new Pool({ max: 12 });
  const work = [];
  for (let n = 0; n < 12; n++) {
    work.push((async () => {
      const pc = await pool.connect();
      try {
        for (let i = 0; i < 20; i++) {
          const v = n * 1000 + i;
          const r = await pc.query({ name: 'twice', text: 'SELECT $1::int * 2 AS n', values: [v] });
          expect(r.rows[0].n, v * 2, 'concurrent');
          await pc.query('BEGIN');
          await pc.query('SELECT pg_advisory_xact_lock($1)', [n]);
          await pc.query('COMMIT');
        }
      } finally {
        pc.release();
      }
    })());
  }
  await Promise.all(work);
  await pool.end();
  ok('concurrent');
}

main().catch(e => { console.error('FAILED ' + (e && e.stack || e)); process.exit(1); });
