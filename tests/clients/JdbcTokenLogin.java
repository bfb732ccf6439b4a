import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.util.Properties;

/**
 * Logs in with the token in the TOKEN environment variable as the password (MariaDB
 * Connector/J, TLS verified against the CA file given) and prints CURRENT_USER().
 *
 * usage: java -cp mariadb-java-client.jar JdbcTokenLogin.java PORT USER CA_FILE
 */
public class JdbcTokenLogin {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", System.getenv("TOKEN"));
        props.setProperty("useSsl", "true");
        props.setProperty("serverSslCert", args[2]);
        String url = "jdbc:mariadb://127.0.0.1:" + args[0] + "/";
        try (Connection conn = DriverManager.getConnection(url, props);
             ResultSet rs = conn.createStatement().executeQuery("SELECT CURRENT_USER()")) {
            rs.next();
            System.out.println(rs.getString(1));
        }
    }
}
