// The compatibility scenario for node `mysql2`, with `query` (text protocol) and `execute`
// (binary protocol, server-side prepared statements), printed as canonical JSON so a run
// straight against the database and one through Tollgate can be compared byte for byte.
// The shape is shared with the other clients' scenarios (see python_scenario.py).
// usage: node scenario.js PORT USER PASSWORD CA DATABASE BLOB_BYTES
const crypto = require('crypto');
const fs = require('fs');
const mysql = require('mysql2/promise');

const BIG =
  'SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 1 AS n, \'row\' AS tag ' +
  'FROM digits a CROSS JOIN digits b CROSS JOIN digits c CROSS JOIN digits e ' +
  'CROSS JOIN digits f WHERE a.d >= ? ORDER BY n';

function canon(v) {
  if (Buffer.isBuffer(v)) return '0x' + v.toString('hex');
  if (v instanceof Date) return v.toISOString();
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return v;
}
const rows = (rs) => rs.map((r) => r.map(canon));

(async () => {
  const [port, user, password, ca, db, blobBytes] = process.argv.slice(2);
  const BLOB_LEN = Number(blobBytes);
  const conn = await mysql.createConnection({
    host: '127.0.0.1', port: Number(port), user, password,
    // TLS required, the certificate verified against the test CA (and 127.0.0.1).
    ssl: { ca: fs.readFileSync(ca), rejectUnauthorized: true },
    multipleStatements: true, rowsAsArray: true,
    supportBigNumbers: true, bigNumberStrings: true, dateStrings: true,
  });
  if (!conn.connection.stream.encrypted) throw new Error('not TLS');
  const out = {};
  const [ssl] = await conn.query("SHOW SESSION STATUS LIKE 'Ssl_version'");
  out.tls = String(ssl[0][1]).startsWith('TLSv1');

  // DDL
  for (const sql of [
    `CREATE DATABASE IF NOT EXISTS ${db}`,
    `CREATE DATABASE IF NOT EXISTS ${db}_other`,
    `USE ${db}`,
    'DROP TABLE IF EXISTS t, digits, blobs',
    'CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, d DATETIME(6), n DECIMAL(12,3), j JSON)',
    'CREATE TABLE digits (d INT PRIMARY KEY)',
    'CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)',
  ]) {
    await conn.query(sql);
  }

  // Inserts: plain, then prepared with NULL/blob/datetime/decimal/JSON parameters.
  out.digits = (await conn.query('INSERT INTO digits (d) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)'))[0].affectedRows;
  const blob1k = Buffer.alloc(1024);
  for (let i = 0; i < blob1k.length; i++) blob1k[i] = i % 256;
  const params = [
    ['a', Buffer.from([0, 255, 16]), '2026-01-02 03:04:05.123456', '12.345', '{"k": [1, 2]}'],
    [null, null, null, null, null],
    ['blob', blob1k, '1999-12-31 23:59:59', '-1.5', '[]'],
  ];
  out.inserted = [];
  for (const p of params) {
    const [r] = await conn.execute('INSERT INTO t (v, b, d, n, j) VALUES (?, ?, ?, ?, ?)', p);
    out.inserted.push([r.affectedRows, r.insertId]);
  }

  // Text and binary protocol selects.
  out.text = rows((await conn.query('SELECT id, v, b, d, n, j FROM t ORDER BY id'))[0]);
  out.binary = rows((await conn.execute('SELECT id, v, b, d, n, j FROM t WHERE id >= ? ORDER BY id', [1]))[0]);

  // A multi-statement query: every result set.
  const [sets] = await conn.query("SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; SELECT COUNT(*) FROM t");
  out.multi = sets.map(rows);

  // 100k rows through the binary protocol, then the text protocol.
  const summary = (big) => [big.length, big[0].map(canon), big[big.length - 1].map(canon),
    big.reduce((s, r) => s + Number(r[0]), 0)];
  out.big = summary((await conn.execute(BIG, [0]))[0]);
  out.big_text = summary((await conn.query(BIG, [0]))[0]);

  // A large blob, sent as a parameter and read back (byte i is i % 251, as in every scenario).
  const blob = Buffer.alloc(BLOB_LEN);
  for (let i = 0; i < BLOB_LEN; i++) blob[i] = i % 251;
  // mysql2 3.24 counts 5 bytes for the length prefix of a parameter of 64 KiB to 16 MiB
  // (Packet.lengthCodedNumberLength) but writes 4, so execute() refuses such a blob ("Internal
  // error: COM_STMT_EXECUTE serialized N bytes, expected N+1"), straight against the database
  // too: send those with query() (text protocol); read back with execute() either way.
  const send = BLOB_LEN >= 0xffff && BLOB_LEN < 0xffffff ? 'query' : 'execute';
  await conn[send]('INSERT INTO blobs (id, b) VALUES (?, ?)', [1, blob]);
  const [[[length, back]]] = await conn.execute('SELECT LENGTH(b), b FROM blobs WHERE id = ?', [1]);
  out.blob = [Number(length), back.length, crypto.createHash('sha256').update(back).digest('hex'), back.equals(blob)];

  // A transaction rolled back.
  await conn.beginTransaction();
  await conn.query("INSERT INTO t (v) VALUES ('tx')");
  await conn.query('DELETE FROM t');
  await conn.rollback();
  out.after_rollback = rows((await conn.query('SELECT COUNT(*) FROM t'))[0]);

  // Change database: mysql2 has no COM_INIT_DB call (changeUser is COM_CHANGE_USER), so USE.
  await conn.query(`USE ${db}_other`);
  out.database = rows((await conn.query('SELECT DATABASE()'))[0]);

  // An error: unknown table (binary protocol: the prepare fails).
  try {
    await conn.execute('SELECT * FROM no_such_table WHERE id = ?', [1]);
    out.error = null;
  } catch (e) {
    out.error = [e.errno, e.sqlState];
  }
  out.after_error = rows((await conn.query("SELECT 'still usable'"))[0]);
  await conn.end();
  const sorted = {};
  for (const k of Object.keys(out).sort()) sorted[k] = out[k];
  console.log(JSON.stringify(sorted));
})().catch((e) => { console.error(e); process.exit(1); });
