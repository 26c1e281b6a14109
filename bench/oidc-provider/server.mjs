// oidc-provider set up like the Portcullis benchmark environment: one
// confidential client (client_secret_basic) with the client_credentials
// grant, one API (resource indicator) with one scope, RFC 9068 JWT access
// tokens signed RS256 with a key of the same size. One worker per core
// (node:cluster), so both servers get the whole machine.
//
// Usage: node server.mjs PORT RSA_BITS
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? 3000);
const bits = Number(process.argv[3] ?? 2048);
const resource = 'https://api.bench.test/invoices';

if (cluster.isPrimary) {
  // Every worker must sign with the same key, as one server would.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'bench' };
  for (let i = 0; i < availableParallelism(); i++) {
    cluster.fork({ BENCH_JWK: JSON.stringify(jwk) });
  }
} else {
  const jwk = JSON.parse(process.env.BENCH_JWK);
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{
      client_id: 'bench',
      client_secret: 'bench-secret-0123456789abcdef0123456789abcdef',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [jwk] },
    scopes: ['read:invoices'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          if (indicator !== resource) throw new Error('unknown resource');
          return {
            scope: 'read:invoices',
            audience: resource,
            accessTokenTTL: 900,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  provider.listen(port);
}
