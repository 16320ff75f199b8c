// pgJDBC through sluice. Run with `java -cp postgresql.jar Check.java URL USER PASSWORD` (single-file
// source launch, Java 11+); prints one `ok <check>` line per check, exits non-zero on a wrong answer.
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class Check {
    static void ok(String name) { System.out.println("ok " + name); System.out.flush(); }

    static void expect(Object got, Object want, String what) {
        if (!Objects.equals(got, want)) throw new AssertionError(what + ": got " + got + ", want " + want);
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        // Server-side prepared statements from the third execution on.
        props.setProperty("prepareThreshold", "3");
        try (Connection c = DriverManager.getConnection(url, props)) {
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT 1 + 1")) {
                r.next();
                expect(r.getInt(1), 2, "select");
            }
            ok("select");
            try (PreparedStatement p = c.prepareStatement("SELECT ?::int + 100")) {
                for (int i = 0; i < 20; i++) {
                    p.setInt(1, i);
                    try (ResultSet r = p.executeQuery()) {
                        r.next();
                        expect(r.getInt(1), i + 100, "prepared");
                    }
                }
            }
            ok("prepared");
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE IF NOT EXISTS drv_jdbc (id int PRIMARY KEY, v text)");
                s.execute("TRUNCATE drv_jdbc");
            }
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO drv_jdbc VALUES (1, 'one')");
                c.commit();
                s.execute("INSERT INTO drv_jdbc VALUES (2, 'two')");
                c.rollback();
            }
            c.setAutoCommit(true);
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*) FROM drv_jdbc")) {
                r.next();
                expect(r.getInt(1), 1, "rollback");
            }
            ok("transactions");
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT 1 / 0");
                throw new AssertionError("division by zero did not fail");
            } catch (SQLException e) {
                expect(e.getSQLState(), "22012", "sqlstate");
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT 'after error'")) {
                r.next();
                expect(r.getString(1), "after error", "recovery");
            }
            ok("error recovery");
            try (PreparedStatement p = c.prepareStatement("INSERT INTO drv_jdbc VALUES (?, ?)")) {
                for (int i = 10; i < 60; i++) {
                    p.setInt(1, i);
                    p.setString(2, Integer.toString(i));
                    p.addBatch();
                }
                p.executeBatch();
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*) FROM drv_jdbc")) {
                r.next();
                expect(r.getInt(1), 51, "batch");
            }
            ok("batch");
        }

        ExecutorService pool = Executors.newFixedThreadPool(12);
        List<Future<?>> work = new ArrayList<>();
        for (int n = 0; n < 12; n++) {
            final int worker = n;
            work.add(pool.submit(() -> {
                try (Connection c = DriverManager.getConnection(url, props);
                     PreparedStatement p = c.prepareStatement("SELECT ?::int * 2")) {
                    for (int i = 0; i < 20; i++) {
                        int v = worker * 1000 + i;
                        p.setInt(1, v);
                        try (ResultSet r = p.executeQuery()) {
                            r.next();
                            expect(r.getInt(1), v * 2, "concurrent");
                        }
                    }
                }
                return null;
            }));
        }
        for (Future<?> f : work) f.get();
        pool.shutdown();
        ok("concurrent");
    }
}
