// Test-only OpenID Connect issuer built on oidc-provider (panva), http on 127.0.0.1, for
// Tollgate's token login tests (tests/tests/oidc.rs through OidcIssuer in tests/src/lib.rs).
//
// Usage: node issuer.mjs   (env: OIDC_PORT=4000, OIDC_HOST=127.0.0.1)
// Prints "oidc issuer ready at <issuer>" once it listens.
//
// Real grants (the provider's own /token endpoint, client_secret_post):
//  - client_credentials (agent-1 / agent-1-secret) -> RS256 JWT access token (sub = client id,
//    email, groups, aud = urn:test:api);
//  - a test-only "password" grant (alice/alice-pw in admins+devs, bob/bob-pw in devs) through
//    the client test-app -> id_token (aud = test-app) + JWT access token (aud = urn:test:api);
//  - the authorization-code flow with PKCE and the device flow (RFC 8628) for the public native
//    client tollgate-cli (any loopback port for http://127.0.0.1/callback; refresh tokens are
//    issued to it), logged in through devInteractions (any subject as login, any password);
//    tests/oidc/browser.py walks those pages like a user would;
//  - the same authorization-code flow for the public client tollgate-viewer (Tollgate's web
//    viewer, http://127.0.0.1:ANY/oidc/callback), driven by chromium in tests/ui/viewer.mjs,
//    and for the confidential tollgate-viewer-confidential (secret viewer-secret-8f2e).
//
// Test-only endpoints (never in a real issuer):
//  - POST /test/access-ttl?seconds=N: JWT access tokens issued from now on live N seconds.
//  - POST /test/device-ttl?seconds=N: device codes issued from now on expire after N seconds.
//  - GET /test/stats: {"token_requests": <POSTs to /token so far>}.
//  - POST /test/rotate: a new signing key replaces the old one (the old one leaves the JWKS, so
//    tokens it signed name an unknown key); answers {"kid": "<new kid>"}.
//  - GET /test/token?sub=&aud=&exp=&nbf=&iss=&groups=a,b&forge=: a token with exactly these
//    claims (exp/nbf: unix seconds; default exp = now + 3600, aud = urn:test:api), signed with
//    the current key, or forged:
//      forge=none          alg "none", no signature
//      forge=hs256-public  HS256 with the RSA public key (PEM) as the HMAC secret, kid of the
//                          real key (the key-confusion attack)
//      forge=bad-signature the real key's signature with one byte flipped
//      forge=foreign-key   RS256 with a key the issuer never published, under the real kid
//      forge=unknown-kid   RS256 with a key the issuer never published, kid "not-published"
import { createServer } from 'node:http';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const HOST = process.env.OIDC_HOST || '127.0.0.1';
const PORT = Number(process.env.OIDC_PORT || 4000);
const ISSUER = process.env.OIDC_ISSUER || `http://${HOST}:${PORT}`;
const API = process.env.OIDC_API_AUDIENCE || 'urn:test:api'; // audience of JWT access tokens

// Test users (password grant). Extend as needed.
const USERS = new Map(Object.entries({
  alice: { sub: 'user-alice', password: 'alice-pw', email: 'alice@example.test', groups: ['admins', 'devs'] },
  bob: { sub: 'user-bob', password: 'bob-pw', email: 'bob@example.test', groups: ['devs'] },
}));
const BY_SUB = new Map([...USERS.values()].map((u) => [u.sub, u]));
// Service accounts / agents (client_credentials). Claims copied into their JWT access tokens.
const AGENTS = {
  'agent-1': { secret: 'agent-1-secret', email: 'agent-1@agents.example.test', groups: ['agents', 'readers'] },
};

let generation = 0;
let accessTokenTTL = 3600; // POST /test/access-ttl
let deviceCodeTTL = 600; // POST /test/device-ttl
let tokenRequests = 0; // GET /test/stats
function newKey() {
  generation += 1;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `test-rs256-${generation}`, alg: 'RS256', use: 'sig' };
}

const resourceServer = {
  scope: 'api:read api:write',
  audience: API,
  accessTokenFormat: 'jwt',
  accessTokenTTL: 3600,
  jwt: { sign: { alg: 'RS256' } },
};

function makeProvider(signingKey) {
  const configuration = {
    jwks: { keys: [signingKey] },
    clients: [
      ...Object.entries(AGENTS).map(([id, a]) => ({
        client_id: id, client_secret: a.secret, token_endpoint_auth_method: 'client_secret_post',
        grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
        scope: 'api:read api:write',
      })),
      {
        client_id: 'tollgate-cli', application_type: 'native', token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'], redirect_uris: ['http://127.0.0.1/callback'],
        scope: 'openid email groups offline_access api:read',
      },
      {
        // Tollgate's web viewer (tests/tests/web_ui.rs): a public client with PKCE, any
        // loopback port for http://127.0.0.1/oidc/callback.
        client_id: 'tollgate-viewer', application_type: 'native', token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'], response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/oidc/callback'], scope: 'openid email groups',
      },
      {
        // The same as a confidential client (client_secret_post), for `[admin.oidc]
        // client_secret_file`.
        client_id: 'tollgate-viewer-confidential', client_secret: 'viewer-secret-8f2e',
        application_type: 'native', token_endpoint_auth_method: 'client_secret_post',
        grant_types: ['authorization_code'], response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/oidc/callback'], scope: 'openid email groups',
      },
      {
        client_id: 'test-app', client_secret: 'test-app-secret', token_endpoint_auth_method: 'client_secret_post',
        grant_types: ['authorization_code', 'refresh_token', 'password'],
        response_types: ['code'], redirect_uris: ['http://127.0.0.1:9999/callback'],
        scope: 'openid email groups offline_access api:read',
      },
    ],
    scopes: ['openid', 'email', 'groups', 'offline_access', 'api:read', 'api:write'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    conformIdTokenClaims: false,
    async findAccount(ctx, sub) {
      const u = BY_SUB.get(sub);
      if (!u) return undefined;
      return {
        accountId: u.sub,
        async claims() { return { sub: u.sub, email: u.email, email_verified: true, groups: u.groups }; },
      };
    },
    async extraTokenClaims(ctx, token) {
      if (token.kind === 'ClientCredentials') {
        const a = AGENTS[token.clientId];
        return a ? { email: a.email, groups: a.groups } : undefined;
      }
      const u = token.accountId && BY_SUB.get(token.accountId);
      return u ? { email: u.email, groups: u.groups } : undefined;
    },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ ...resourceServer, accessTokenTTL }),
      },
    },
    // Refresh tokens for every client allowed the grant (not only with offline_access + consent).
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Access tokens live as long as their resource server says (POST /test/access-ttl).
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || 3600,
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || 3600,
      IdToken: 3600,
      DeviceCode: () => deviceCodeTTL,
    },
  };
  const provider = new Provider(ISSUER, configuration);

  // Test-only resource-owner-password grant (not in oidc-provider; never use in production).
  provider.registerGrantType('password', async (ctx) => {
    const { username, password } = ctx.oidc.params;
    const u = USERS.get(username);
    if (!u || u.password !== password) throw new errors.InvalidGrant('invalid username or password');
    const { client } = ctx.oidc;
    const idToken = new provider.IdToken(
      { sub: u.sub, email: u.email, email_verified: true, groups: u.groups }, { ctx },
    );
    idToken.scope = 'openid email groups';
    const id_token = await idToken.issue({ use: 'idtoken' });

    const grant = new provider.Grant({ accountId: u.sub, clientId: client.clientId });
    grant.addOIDCScope('openid email groups');
    grant.addResourceScope(API, 'api:read');
    const grantId = await grant.save();
    const at = new provider.AccessToken({ accountId: u.sub, client, grantId, gty: 'password', scope: 'api:read' });
    at.resourceServer = new provider.ResourceServer(API, resourceServer);
    const access_token = await at.save();
    ctx.body = { access_token, id_token, token_type: 'Bearer', expires_in: at.expiration, scope: 'openid email groups api:read' };
  }, ['username', 'password', 'scope']);
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return { provider, handler: provider.callback(), key: signingKey };
}

let current = makeProvider(newKey());

const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function rs256(jwk, header, claims) {
  const input = `${b64(header)}.${b64(claims)}`;
  const signature = sign('sha256', Buffer.from(input), createPrivateKey({ key: jwk, format: 'jwk' }));
  return `${input}.${signature.toString('base64url')}`;
}

function testToken(query) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: query.get('iss') || ISSUER,
    sub: query.get('sub') || 'user-alice',
    aud: query.get('aud') || API,
    iat: now,
    exp: Number(query.get('exp') || now + 3600),
    jti: randomUUID(),
  };
  if (query.get('nbf')) claims.nbf = Number(query.get('nbf'));
  if (query.get('groups')) claims.groups = query.get('groups').split(',');
  const key = current.key;
  switch (query.get('forge') || '') {
    case '':
      return rs256(key, { alg: 'RS256', typ: 'JWT', kid: key.kid }, claims);
    case 'none':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    case 'hs256-public': {
      const header = { alg: 'HS256', typ: 'JWT', kid: key.kid };
      const input = `${b64(header)}.${b64(claims)}`;
      const publicPem = createPublicKey({ key, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      return `${input}.${createHmac('sha256', publicPem).update(input).digest('base64url')}`;
    }
    case 'bad-signature': {
      const [h, c, s] = rs256(key, { alg: 'RS256', typ: 'JWT', kid: key.kid }, claims).split('.');
      const bytes = Buffer.from(s, 'base64url');
      bytes[10] ^= 0x01;
      return `${h}.${c}.${bytes.toString('base64url')}`;
    }
    case 'foreign-key':
      return rs256({ ...newKey(), kid: key.kid }, { alg: 'RS256', typ: 'JWT', kid: key.kid }, claims);
    case 'unknown-kid':
      return rs256(newKey(), { alg: 'RS256', typ: 'JWT', kid: 'not-published' }, claims);
    default:
      throw new Error(`unknown forge ${query.get('forge')}`);
  }
}

createServer((req, res) => {
  const url = new URL(req.url, ISSUER);
  if (url.pathname === '/token' && req.method === 'POST') tokenRequests += 1;
  if (url.pathname === '/test/access-ttl' && req.method === 'POST') {
    accessTokenTTL = Number(url.searchParams.get('seconds'));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ accessTokenTTL }));
    return;
  }
  if (url.pathname === '/test/device-ttl' && req.method === 'POST') {
    deviceCodeTTL = Number(url.searchParams.get('seconds'));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ deviceCodeTTL }));
    return;
  }
  if (url.pathname === '/test/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token_requests: tokenRequests }));
    return;
  }
  if (url.pathname === '/test/rotate' && req.method === 'POST') {
    current = makeProvider(newKey());
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: current.key.kid }));
    return;
  }
  if (url.pathname === '/test/token') {
    try {
      const token = testToken(url.searchParams);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(token);
    } catch (error) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(String(error));
    }
    return;
  }
  current.handler(req, res);
}).listen(PORT, HOST, () => {
  console.log(`oidc issuer ready at ${ISSUER}`);
});
