"""psycopg 3 through sluice with cache_unnamed_statements on (tests/unnamed_statements.rs).
With prepare_threshold=None every query is an unnamed Parse/Bind/Execute. Connection from the
PG* environment variables; prints one `ok <check>` line per check, exits non-zero on a wrong
answer."""
import psycopg

QUERY = "SELECT * FROM drv_unnamed WHERE id = %s"
NAMES = {1: "one", 2: "two", 3: "three"}


def ok(name):
    print("ok", name, flush=True)


def expect(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def main():
    with psycopg.connect(autocommit=True, prepare_threshold=None) as c, psycopg.connect(
        autocommit=True
    ) as other:
        for rnd in range(10):
            for i in (1, 2, 3):
                expect(c.execute(QUERY, (i,)).fetchall(), [(i, NAMES[i])], f"round {rnd}")
        ok("repeated")
        other.execute("ALTER TABLE drv_unnamed ADD COLUMN extra int DEFAULT 7")
        for i in (1, 2, 3):
            cur = c.execute(QUERY, (i,))
            expect(cur.fetchall(), [(i, NAMES[i], 7)], "after ALTER")
            expect([d.name for d in cur.description], ["id", "v", "extra"], "columns")
        ok("altered")
        n = c.execute(
            "SELECT count(*) FROM pg_prepared_statements"
            " WHERE name LIKE 'sluice\\_%%' AND statement = 'SELECT * FROM drv_unnamed WHERE id = $1'"
        ).fetchone()[0]
        expect(n, 1, "server-side statement")
        ok("prepared")


main()
