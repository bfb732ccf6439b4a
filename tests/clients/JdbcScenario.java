// One compatibility scenario for MariaDB Connector/J (Debian libmariadb-java), with plain
// statements (text protocol) and server-side prepared statements (binary protocol), printed as
// canonical lines so a run straight against the database and one through Tollgate can be
// compared byte for byte.
// usage: java -cp /usr/share/java/mariadb-java-client.jar JdbcScenario.java PORT
import java.sql.*;
import java.util.*;

public class JdbcScenario {
    static String canon(Object v) {
        if (v == null) return "NULL";
        if (v instanceof byte[] b) {
            StringBuilder sb = new StringBuilder("0x");
            for (byte x : b) sb.append(String.format("%02x", x));
            return sb.toString();
        }
        return v.toString();
    }

    static void dump(String label, ResultSet rs, List<String> out) throws SQLException {
        int n = rs.getMetaData().getColumnCount();
        int count = 0;
        String first = null, last = null;
        while (rs.next()) {
            StringBuilder row = new StringBuilder();
            for (int i = 1; i <= n; i++) row.append(i > 1 ? "|" : "").append(canon(rs.getObject(i)));
            if (first == null) first = row.toString();
            last = row.toString();
            count++;
            if (count <= 5) out.add(label + ": " + row);
        }
        out.add(label + " rows=" + count + " first=" + first + " last=" + last);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:mariadb://127.0.0.1:" + args[0] + "/?user=app&password=app-pw&useServerPrepStmts=true";
        List<String> out = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(url)) {
            Statement st = c.createStatement();
            st.execute("CREATE DATABASE IF NOT EXISTS jdbccompat");
            st.execute("USE jdbccompat");
            st.execute("DROP TABLE IF EXISTS t");
            st.execute("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, d DATETIME, n DECIMAL(10,2), j JSON)");
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO t (v, b, d, n, j) VALUES (?, ?, ?, ?, ?)")) {
                ins.setString(1, "a");
                ins.setBytes(2, new byte[] {0, (byte) 255, 16});
                ins.setTimestamp(3, Timestamp.valueOf("2026-01-02 03:04:05"));
                ins.setBigDecimal(4, new java.math.BigDecimal("12.34"));
                ins.setString(5, "{\"k\": [1, 2]}");
                ins.executeUpdate();
                for (int i = 1; i <= 5; i++) ins.setNull(i, Types.NULL);
                ins.executeUpdate();
            }
            dump("text", st.executeQuery("SELECT id, v, b, d, n, j FROM t ORDER BY id"), out);
            try (PreparedStatement sel = c.prepareStatement("SELECT seq FROM seq_1_to_100000 WHERE seq > ?")) {
                sel.setInt(1, 0);
                dump("binary", sel.executeQuery(), out);
            }
            c.setAutoCommit(false);
            st.execute("DELETE FROM t");
            c.rollback();
            c.setAutoCommit(true);
            dump("kept", st.executeQuery("SELECT COUNT(*) FROM t"), out);
            try {
                st.executeQuery("SELECT * FROM no_such_table");
            } catch (SQLException e) {
                out.add("error=" + e.getErrorCode() + " state=" + e.getSQLState());
            }
        }
        out.forEach(System.out::println);
    }
}
