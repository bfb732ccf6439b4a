// One compatibility scenario for node `mysql2`, with `query` (text protocol) and `execute`
// (binary protocol, server-side prepared statements), printed as canonical JSON so a run
// straight against the database and one through Tollgate can be compared byte for byte.
// usage: node scenario.js PORT
const mysql = require('mysql2/promise');

function canon(v) {
  if (Buffer.isBuffer(v)) return '0x' + v.toString('hex');
  if (v instanceof Date) return v.toISOString();
  return v;
}
const rows = (rs) => rs.map((r) => r.map(canon));

(async () => {
  const port = Number(process.argv[2]);
  const conn = await mysql.createConnection({
    host: '127.0.0.1', port, user: 'app', password: 'app-pw', rowsAsArray: true,
    supportBigNumbers: true, bigNumberStrings: true, dateStrings: true,
  });
  const out = {};
  await conn.query('CREATE DATABASE IF NOT EXISTS nodecompat');
  await conn.query('USE nodecompat');
  await conn.query('DROP TABLE IF EXISTS t');
  await conn.query('CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, d DATETIME, n DECIMAL(10,2), j JSON)');
  const params = [
    ['a', Buffer.from([0, 255, 16]), '2026-01-02 03:04:05', '12.34', '{"k": [1, 2]}'],
    [null, null, null, null, null],
  ];
  for (const p of params) {
    await conn.execute('INSERT INTO t (v, b, d, n, j) VALUES (?, ?, ?, ?, ?)', p);
  }
  out.query = rows((await conn.query('SELECT id, v, b, d, n, j FROM t ORDER BY id'))[0]);
  out.execute = rows((await conn.execute('SELECT id, v, b, d, n, j FROM t WHERE id >= ? ORDER BY id', [1]))[0]);
  const big = (await conn.execute('SELECT seq FROM seq_1_to_100000 WHERE seq > ?', [0]))[0];
  out.big = [big.length, big[0], big[big.length - 1]];
  out.multi = (await conn.query('SELECT 1 AS a')) [0];
  await conn.beginTransaction();
  await conn.query('DELETE FROM t');
  await conn.rollback();
  out.kept = rows((await conn.query('SELECT COUNT(*) FROM t'))[0]);
  try {
    await conn.execute('SELECT * FROM no_such_table WHERE id = ?', [1]);
    out.error = null;
  } catch (e) {
    out.error = e.errno;
  }
  await conn.end();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
