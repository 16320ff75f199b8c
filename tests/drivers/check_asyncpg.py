"""asyncpg through sluice with its default statement cache (asyncpg prepares every query as a
named statement). Connection from the PG* environment variables; prints `ok <check>` lines."""
import asyncio
import sys

import asyncpg


def ok(name):
    print("ok", name, flush=True)


def expect(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


async def main():
    conn = await asyncpg.connect()
    try:
        expect(await conn.fetchval("SELECT 1 + 1"), 2, "select")
        ok("select")
        for i in range(20):
            expect(await conn.fetchval("SELECT $1::int + 100", i), i + 100, "params")
        ok("params")
        stmt = await conn.prepare("SELECT $1::text || '!'")
        for i in range(10):
            expect(await stmt.fetchval(str(i)), f"{i}!", "prepared")
        ok("prepared")
        await conn.execute("CREATE TABLE IF NOT EXISTS drv_asyncpg (id int PRIMARY KEY, v text)")
        await conn.execute("TRUNCATE drv_asyncpg")
        async with conn.transaction():
            await conn.execute("INSERT INTO drv_asyncpg VALUES (1, 'one')")
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO drv_asyncpg VALUES (2, 'two')")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        expect(await conn.fetchval("SELECT count(*) FROM drv_asyncpg"), 1, "rollback")
        ok("transactions")
        try:
            await conn.fetchval("SELECT 1 / $1::int", 0)
            raise AssertionError("division by zero did not fail")
        except asyncpg.exceptions.DivisionByZeroError as e:
            expect(e.sqlstate, "22012", "sqlstate")
        expect(await conn.fetchval("SELECT 'after error'"), "after error", "recovery")
        ok("error recovery")
        await conn.executemany("INSERT INTO drv_asyncpg VALUES ($1, $2)", [(i, str(i)) for i in range(10, 60)])
        expect(await conn.fetchval("SELECT count(*) FROM drv_asyncpg"), 51, "executemany")
        ok("executemany")
        await conn.copy_records_to_table("drv_asyncpg", records=[(i, f"c{i}") for i in range(100, 200)])
        expect(await conn.fetchval("SELECT count(*) FROM drv_asyncpg WHERE id >= 100"), 100, "copy")
        ok("copy")
    finally:
        await conn.close()

    async def worker(n):
        c = await asyncpg.connect()
        try:
            for i in range(20):
                expect(await c.fetchval("SELECT $1::int * 2", n * 1000 + i), (n * 1000 + i) * 2, "concurrent")
                async with c.transaction():
                    await c.execute("SELECT pg_advisory_xact_lock($1)", n)
        finally:
            await c.close()

    await asyncio.gather(*(worker(n) for n in range(12)))
    ok("concurrent")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001
        print("FAILED", repr(e), file=sys.stderr, flush=True)
        sys.exit(1)
