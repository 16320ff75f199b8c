"""psycopg 3 through sluice, as an application uses it. Connection from the PG* environment
variables; prints one `ok <check>` line per check and exits non-zero on the first wrong answer."""
import sys
import threading

import psycopg
from psycopg import errors


def ok(name):
    print("ok", name, flush=True)


def expect(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def main():
    with psycopg.connect(autocommit=True) as conn:
        expect(conn.execute("SELECT 1 + 1").fetchone()[0], 2, "simple select")
        ok("select")
        expect(conn.execute("SELECT %s::int * 3, %s::text", (7, "x")).fetchone(), (21, "x"), "params")
        ok("params")
        # Server-side prepared statements (prepare=True: psycopg names them _pg3_N) in separate
        # transactions: each may run on a different server connection of the pool.
        for i in range(20):
            row = conn.execute("SELECT %s::int + 100", (i,), prepare=True).fetchone()
            expect(row[0], i + 100, "prepared")
        ok("prepared")
        conn.execute("CREATE TABLE IF NOT EXISTS drv_psycopg (id int PRIMARY KEY, v text)")
        conn.execute("TRUNCATE drv_psycopg")
        with conn.transaction():
            conn.execute("INSERT INTO drv_psycopg VALUES (1, 'one')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO drv_psycopg VALUES (2, 'two')")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        expect(conn.execute("SELECT count(*) FROM drv_psycopg").fetchone()[0], 1, "rollback")
        ok("transactions")
        try:
            conn.execute("SELECT 1 / 0")
            raise AssertionError("division by zero did not fail")
        except errors.DivisionByZero as e:
            expect(e.sqlstate, "22012", "sqlstate")
        expect(conn.execute("SELECT 'after error'").fetchone()[0], "after error", "recovery")
        ok("error recovery")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO drv_psycopg VALUES (%s, %s)", [(i, str(i)) for i in range(10, 60)])
        expect(conn.execute("SELECT count(*) FROM drv_psycopg").fetchone()[0], 51, "executemany")
        ok("executemany")
        with conn.cursor() as cur:
            with cur.copy("COPY drv_psycopg (id, v) FROM STDIN") as copy:
                for i in range(100, 200):
                    copy.write_row((i, f"c{i}"))
            rows = []
            with cur.copy("COPY (SELECT id FROM drv_psycopg WHERE id >= 100 ORDER BY id) TO STDOUT") as copy:
                for row in copy.rows():
                    rows.append(int(row[0]))
        expect(rows, list(range(100, 200)), "copy")
        ok("copy")
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int", (i,)) for i in range(10)]
        expect([c.fetchone()[0] for c in curs], list(range(10)), "pipeline")
        ok("pipeline")

    # More connections than the pool has servers, each with its own prepared statements.
    failures = []

    def worker(n):
        try:
            with psycopg.connect(autocommit=True) as c:
                for i in range(20):
                    got = c.execute("SELECT %s::int * 2", (n * 1000 + i,), prepare=True).fetchone()[0]
                    expect(got, (n * 1000 + i) * 2, "concurrent")
                    with c.transaction():
                        c.execute("SELECT pg_advisory_xact_lock(%s)", (n,))
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"worker {n}: {e!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise AssertionError("; ".join(failures))
    ok("concurrent")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print("FAILED", repr(e), file=sys.stderr, flush=True)
        sys.exit(1)
