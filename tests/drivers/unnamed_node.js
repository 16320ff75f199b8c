// node-postgres through sluice with cache_unnamed_statements on (tests/unnamed_statements.rs).
// A query with values and no name is an unnamed Parse/Bind/Execute. Connection from the PG*
// environment variables; prints one `ok <check>` line per check, exits non-zero on a wrong answer.
'use strict';
const { Client } = require('pg');

const QUERY = 'SELECT * FROM drv_unnamed WHERE id = $1';
const NAMES = { 1: 'one', 2: 'two', 3: 'three' };

function ok(name) { console.log('ok ' + name); }
function expect(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

async function main() {
  const c = new Client();
  const other = new Client();
  await c.connect();
  await other.connect();
  try {
    for (let round = 0; round < 10; round++) {
      for (const id of [1, 2, 3]) {
        const r = await c.query(QUERY, [id]);
        expect(r.rows, [{ id, v: NAMES[id] }], `round ${round}`);
      }
    }
    ok('repeated');
    await other.query('ALTER TABLE drv_unnamed ADD COLUMN extra int DEFAULT 7');
    for (const id of [1, 2, 3]) {
      const r = await c.query(QUERY, [id]);
      expect(r.rows, [{ id, v: NAMES[id], extra: 7 }], 'after ALTER');
    }
    ok('altered');
    // No values: the simple protocol, which prepares nothing itself.
    const p = await c.query(
      "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'sluice\\_%' AND statement = '" + QUERY + "'");
    expect(p.rows[0].n, 1, 'server-side statement');
    ok('prepared');
  } finally {
    await c.end();
    await other.end();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
