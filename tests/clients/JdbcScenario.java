// The compatibility scenario for MariaDB Connector/J (Debian libmariadb-java), with plain
// statements (text protocol) and server-side prepared statements (binary protocol), printed as
// canonical lines so a run straight against the database and one through Tollgate can be
// compared byte for byte. The shape is shared with the other clients' scenarios (see
// python_scenario.py).
// usage: java -cp /usr/share/java/mariadb-java-client.jar JdbcScenario.java PORT USER PASSWORD CA DATABASE BLOB_BYTES
import java.security.MessageDigest;
import java.sql.*;
import java.util.*;

public class JdbcScenario {
    static final String BIG =
        "SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 1 AS n, 'row' AS tag "
        + "FROM digits a CROSS JOIN digits b CROSS JOIN digits c CROSS JOIN digits e "
        + "CROSS JOIN digits f WHERE a.d >= ? ORDER BY n";

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder("0x");
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    static String canon(Object v) {
        if (v == null) return "NULL";
        if (v instanceof byte[] b) return hex(b);
        return v.toString();
    }

    /** Every row (at most `show` printed), then the count, first, last and the sum of column 1. */
    static void dump(String label, ResultSet rs, List<String> out, int show) throws SQLException {
        int n = rs.getMetaData().getColumnCount();
        int count = 0;
        long sum = 0;
        String first = null, last = null;
        while (rs.next()) {
            StringBuilder row = new StringBuilder();
            for (int i = 1; i <= n; i++) row.append(i > 1 ? "|" : "").append(canon(rs.getObject(i)));
            if (first == null) first = row.toString();
            last = row.toString();
            count++;
            try {
                sum += rs.getLong(1);
            } catch (SQLException notANumber) {
                // a text column: no sum
            }
            if (count <= show) out.add(label + ": " + row);
        }
        out.add(label + " rows=" + count + " first=" + first + " last=" + last + " sum=" + sum);
    }

    public static void main(String[] args) throws Exception {
        String port = args[0], user = args[1], password = args[2], ca = args[3], db = args[4];
        int blobLen = Integer.parseInt(args[5]);
        // TLS required and verified against the test CA (host name too); binary protocol for
        // prepared statements; multi-statement queries allowed.
        String url = "jdbc:mariadb://127.0.0.1:" + port + "/?user=" + user + "&password=" + password
            + "&useSsl=true&serverSslCert=" + ca
            + "&useServerPrepStmts=true&allowMultiQueries=true";
        List<String> out = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(url)) {
            Statement st = c.createStatement();
            try (ResultSet rs = st.executeQuery("SHOW SESSION STATUS LIKE 'Ssl_version'")) {
                rs.next();
                out.add("tls=" + rs.getString(2).startsWith("TLSv1"));
            }

            // DDL
            for (String sql : new String[] {
                "CREATE DATABASE IF NOT EXISTS " + db,
                "CREATE DATABASE IF NOT EXISTS " + db + "_other",
                "USE " + db,
                "DROP TABLE IF EXISTS t, digits, blobs",
                "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, d DATETIME(6), n DECIMAL(12,3), j JSON)",
                "CREATE TABLE digits (d INT PRIMARY KEY)",
                "CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)",
            }) {
                st.execute(sql);
            }

            // Inserts: plain, then prepared with NULL/blob/datetime/decimal/JSON parameters.
            out.add("digits=" + st.executeUpdate("INSERT INTO digits (d) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)"));
            byte[] blob1k = new byte[1024];
            for (int i = 0; i < blob1k.length; i++) blob1k[i] = (byte) i;
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO t (v, b, d, n, j) VALUES (?, ?, ?, ?, ?)",
                    Statement.RETURN_GENERATED_KEYS)) {
                Object[][] rows = {
                    {"a", new byte[] {0, (byte) 255, 16}, Timestamp.valueOf("2026-01-02 03:04:05.123456"),
                        new java.math.BigDecimal("12.345"), "{\"k\": [1, 2]}"},
                    {null, null, null, null, null},
                    {"blob", blob1k, Timestamp.valueOf("1999-12-31 23:59:59"), new java.math.BigDecimal("-1.5"), "[]"},
                };
                for (Object[] row : rows) {
                    for (int i = 0; i < row.length; i++) {
                        if (row[i] == null) ins.setNull(i + 1, Types.NULL);
                        else ins.setObject(i + 1, row[i]);
                    }
                    int n = ins.executeUpdate();
                    try (ResultSet keys = ins.getGeneratedKeys()) {
                        keys.next();
                        out.add("inserted=" + n + " id=" + keys.getLong(1));
                    }
                }
            }

            // Text and binary protocol selects.
            dump("text", st.executeQuery("SELECT id, v, b, d, n, j FROM t ORDER BY id"), out, 10);
            try (PreparedStatement sel = c.prepareStatement("SELECT id, v, b, d, n, j FROM t WHERE id >= ? ORDER BY id")) {
                sel.setInt(1, 1);
                dump("binary", sel.executeQuery(), out, 10);
            }

            // A multi-statement query: every result set.
            boolean isResult = st.execute("SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; SELECT COUNT(*) FROM t");
            int set = 0;
            while (isResult || st.getUpdateCount() != -1) {
                if (isResult) dump("multi" + set++, st.getResultSet(), out, 10);
                isResult = st.getMoreResults();
            }

            // 100k rows through the binary protocol.
            try (PreparedStatement big = c.prepareStatement(BIG)) {
                big.setInt(1, 0);
                dump("big", big.executeQuery(), out, 0);
            }

            // A large blob, sent as a parameter and read back (byte i is i % 251).
            byte[] blob = new byte[blobLen];
            for (int i = 0; i < blobLen; i++) blob[i] = (byte) (i % 251);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO blobs (id, b) VALUES (?, ?)")) {
                ins.setInt(1, 1);
                ins.setBytes(2, blob);
                ins.executeUpdate();
            }
            try (PreparedStatement sel = c.prepareStatement("SELECT LENGTH(b), b FROM blobs WHERE id = ?")) {
                sel.setInt(1, 1);
                try (ResultSet rs = sel.executeQuery()) {
                    rs.next();
                    byte[] back = rs.getBytes(2);
                    String sha = hex(MessageDigest.getInstance("SHA-256").digest(back)).substring(2);
                    out.add("blob length=" + rs.getLong(1) + " read=" + back.length + " sha256=" + sha
                        + " same=" + Arrays.equals(back, blob));
                }
            }

            // A transaction rolled back.
            c.setAutoCommit(false);
            st.execute("INSERT INTO t (v) VALUES ('tx')");
            st.execute("DELETE FROM t");
            c.rollback();
            c.setAutoCommit(true);
            dump("after_rollback", st.executeQuery("SELECT COUNT(*) FROM t"), out, 1);

            // Change database with the driver's own call (COM_INIT_DB).
            c.setCatalog(db + "_other");
            dump("database", st.executeQuery("SELECT DATABASE()"), out, 1);

            // An error: unknown table.
            try {
                st.executeQuery("SELECT * FROM no_such_table");
                out.add("error=none");
            } catch (SQLException e) {
                out.add("error=" + e.getErrorCode() + " state=" + e.getSQLState());
            }
            dump("after_error", st.executeQuery("SELECT 'still usable'"), out, 1);
        }
        out.forEach(System.out::println);
    }
}
