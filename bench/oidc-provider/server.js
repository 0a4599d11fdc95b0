// oidc-provider counterpart of Gatehouse for the benchmark in ../run.sh.
//
// One confidential client (client_credentials, client_secret_basic), one scope `my-scope`, introspection enabled.
// Everything is in memory: the provider's default adapter (an LRU of 1000 entries) holds opaque tokens; JWT access
// tokens are not stored anywhere. Nothing here is durable.
//
// Environment:
//   PORT           listen port on 127.0.0.1 (default 8090)
//   ALG            RS256 | ES256: signing algorithm of JWT access tokens (default RS256)
//   TOKEN_FORMAT   jwt | opaque: format of client_credentials access tokens (default jwt). `opaque` is the mode
//                  for the introspection case (oidc-provider refuses to introspect JWT access tokens).
//   CLIENT_ID, CLIENT_SECRET   the client's credentials (defaults below)
//   AUDIENCE       the resource indicator / `aud` of the tokens (default http://bench.dev)
//   WORKERS        number of Node processes (node:cluster) sharing the port (default 1). Only meaningful for
//                  TOKEN_FORMAT=jwt: with opaque tokens each worker has its own in-memory store.
//
// Prints `oidc-provider ready <issuer>` on stdout once listening.

import cluster from 'node:cluster';
import * as crypto from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const PORT = Number(process.env.PORT || 8090);
const ALG = (process.env.ALG || 'RS256').toUpperCase();
const TOKEN_FORMAT = (process.env.TOKEN_FORMAT || 'jwt').toLowerCase();
const CLIENT_ID = process.env.CLIENT_ID || 'bench-client';
const CLIENT_SECRET = process.env.CLIENT_SECRET || 'bench-client-secret-0123456789abcdef0123456789abcdef';
const AUDIENCE = process.env.AUDIENCE || 'http://bench.dev';
const WORKERS = Math.max(1, Number(process.env.WORKERS || 1));
const SCOPE = 'my-scope';

if (!['RS256', 'ES256'].includes(ALG)) {
  console.error(`ALG must be RS256 or ES256, got ${ALG}`);
  process.exit(2);
}
if (!['jwt', 'opaque'].includes(TOKEN_FORMAT)) {
  console.error(`TOKEN_FORMAT must be jwt or opaque, got ${TOKEN_FORMAT}`);
  process.exit(2);
}
if (WORKERS > 1 && TOKEN_FORMAT === 'opaque') {
  console.error('WORKERS > 1 needs TOKEN_FORMAT=jwt (opaque tokens live in one process\'s memory)');
  process.exit(2);
}

// Signing keys: generated once (by the primary when clustering) so that every worker signs with the same keys.
function generateJwks() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: 'bench-rs256', alg: 'RS256', use: 'sig' },
      { ...ec, kid: 'bench-es256', alg: 'ES256', use: 'sig' },
    ],
  };
}

if (WORKERS > 1 && cluster.isPrimary) {
  const jwks = JSON.stringify(generateJwks());
  let ready = 0;
  for (let i = 0; i < WORKERS; i += 1) {
    const worker = cluster.fork({ BENCH_JWKS: jwks });
    worker.on('message', (msg) => {
      if (msg === 'ready') {
        ready += 1;
        if (ready === WORKERS) console.log(`oidc-provider ready http://${HOST}:${PORT} (${WORKERS} workers)`);
      }
    });
  }
  cluster.on('exit', (worker, code, signal) => {
    console.error(`worker ${worker.process.pid} exited (${signal || code})`);
    process.exit(1);
  });
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.kill();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const jwks = process.env.BENCH_JWKS ? JSON.parse(process.env.BENCH_JWKS) : generateJwks();
  const issuer = `http://${HOST}:${PORT}`;

  const configuration = {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      introspection_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPE,
    }],
    jwks,
    scopes: [SCOPE],
    // Only what the benchmark uses; no claims beyond `sub`.
    claims: { openid: ['sub'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // The caller is an authenticated confidential client; let it introspect (same as the default for
        // confidential clients, spelled out to silence the "should change" notice).
        allowedPolicy: async () => true,
      },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // client_credentials requests carry no `resource`; always resolve to the benchmark's resource server.
        defaultResource: async () => AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          if (resourceIndicator !== AUDIENCE) throw new errors.InvalidTarget();
          const info = {
            scope: SCOPE,
            audience: AUDIENCE,
            accessTokenTTL: 3600,
            accessTokenFormat: TOKEN_FORMAT,
          };
          if (TOKEN_FORMAT === 'jwt') info.jwt = { sign: { alg: ALG } };
          return info;
        },
      },
    },
    ttl: {
      AccessToken: 3600,
      ClientCredentials: 3600,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
    },
    clientBasedCORS: () => false,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    findAccount: async () => undefined,
    renderError: async (ctx, out) => { ctx.type = 'json'; ctx.body = out; },
  };

  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  provider.listen(PORT, HOST, () => {
    if (cluster.isWorker) {
      process.send('ready');
    } else {
      console.log(`oidc-provider ready ${issuer} alg=${ALG} format=${TOKEN_FORMAT}`);
    }
  });
}
