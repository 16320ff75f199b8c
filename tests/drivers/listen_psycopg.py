"""psycopg 3 LISTEN / NOTIFY through sluice in transaction mode (tests/listen_notify.rs).
psycopg sends every statement as extended protocol; notifications come from `conn.notifies()`.
Prints one `ok <check>` line per check and exits non-zero on the first wrong answer."""
import psycopg


def ok(name):
    print("ok", name, flush=True)


def expect(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def received(conn, count):
    return [(n.channel, n.payload, n.pid) for n in conn.notifies(timeout=15, stop_after=count)]


def main():
    with psycopg.connect(autocommit=True) as listener, psycopg.connect(autocommit=True) as notifier:
        listener.execute("LISTEN jobs")
        ok("listen")
        pids = []
        for i in range(5):
            row = notifier.execute("SELECT pg_backend_pid(), pg_notify('jobs', %s)", (f"job {i}",)).fetchone()
            pids.append(row[0])
        expect(received(listener, 5), [("jobs", f"job {i}", pids[i]) for i in range(5)], "in order")
        ok("in order")

        # A LISTEN inside a transaction (psycopg's BEGIN, then the LISTEN): in effect at COMMIT.
        with psycopg.connect() as tx:
            with tx.transaction():
                tx.execute("LISTEN tx")
            notifier.execute("NOTIFY tx, 'committed'")
            expect([(c, p) for c, p, _ in received(tx, 1)], [("tx", "committed")], "transaction")
        ok("transaction")

        listener.execute("UNLISTEN jobs")
        listener.execute("LISTEN other")
        notifier.execute("NOTIFY jobs, 'gone'")
        notifier.execute("NOTIFY other, 'sentinel'")
        expect([(c, p) for c, p, _ in received(listener, 1)], [("other", "sentinel")], "unlisten")
        ok("unlisten")


main()
