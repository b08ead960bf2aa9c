// Reference server for the benchmark (issue 6): panva oidc-provider, in memory, client
// credentials only, with the benchmark fixture's clients and resource.
//
//   PORT=9100 BENCH_FIXTURE=bench/out/fixture.json TOKEN_FORMAT=jwt ACCESS_TOKEN_ALG=ES256 \
//     node bench/references/oidc_provider/server.mjs
//
// Env: PORT (default 9100), BENCH_FIXTURE (required), ISSUER (default http://127.0.0.1:PORT),
// TOKEN_FORMAT jwt|opaque (default jwt), ACCESS_TOKEN_ALG ES256|RS256 (default ES256).
// Prints one line of JSON on stdout once it listens: the endpoint URLs the harness drives.
// One process, no cluster; no per-request logging; nothing fetched from the network.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { Provider, errors } from 'oidc-provider';

const ACCESS_TOKEN_TTL = 3600;
const TOKEN_FORMATS = new Set(['jwt', 'opaque']);
const ACCESS_TOKEN_ALGS = new Set(['ES256', 'RS256']);

function fail(message) {
  console.error(`oidc_provider reference: ${message}`);
  process.exit(2);
}

const port = Number.parseInt(process.env.PORT ?? '9100', 10);
const fixturePath = process.env.BENCH_FIXTURE ?? fail('BENCH_FIXTURE is required');
const issuer = process.env.ISSUER ?? `http://127.0.0.1:${port}`;
const tokenFormat = process.env.TOKEN_FORMAT ?? 'jwt';
const accessTokenAlg = process.env.ACCESS_TOKEN_ALG ?? 'ES256';
if (!TOKEN_FORMATS.has(tokenFormat)) fail(`TOKEN_FORMAT must be jwt or opaque, not ${tokenFormat}`);
if (!ACCESS_TOKEN_ALGS.has(accessTokenAlg)) fail(`ACCESS_TOKEN_ALG must be ES256 or RS256, not ${accessTokenAlg}`);

const fixture = JSON.parse(readFileSync(fixturePath, 'utf8'));
const { resource, scope, clients } = fixture;

// Signing keys are made at start and live only in this process, like the tokens.
function signingKey(kid, type, options) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}
const jwks = {
  keys: [
    signingKey('bench-es256', 'ec', { namedCurve: 'P-256' }),
    signingKey('bench-rs3072', 'rsa', { modulusLength: 3072 }),
  ],
};

const ccClient = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
function secretClient({ client_id, client_secret }) {
  return { ...ccClient, client_id, client_secret, token_endpoint_auth_method: 'client_secret_basic' };
}
function keyClient({ client_id, alg, jwks: clientJwks }) {
  return {
    ...ccClient,
    client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: alg,
    jwks: clientJwks,
  };
}

const resourceServer = {
  scope,
  audience: resource,
  accessTokenTTL: ACCESS_TOKEN_TTL,
  accessTokenFormat: tokenFormat,
  ...(tokenFormat === 'jwt' ? { jwt: { sign: { alg: accessTokenAlg } } } : {}),
};

const provider = new Provider(issuer, {
  clients: [
    secretClient(clients.basic),
    keyClient(clients.rs256),
    keyClient(clients.ps256),
    secretClient(clients.introspector),
  ],
  jwks,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // The library's default rules, spelled out so it does not warn about them: any
    // authenticated (confidential) client may introspect, the introspector being the resource
    // server; a client may revoke only its own tokens, else invalid_request (RFC 7009, 2.1).
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return resourceServer;
      },
    },
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    ClientCredentials: ACCESS_TOKEN_TTL,
  },
});

provider.listen(port, '127.0.0.1', () => {
  const url = (route) => new URL(provider.pathFor(route), issuer).href;
  console.log(JSON.stringify({
    token_endpoint: url('token'),
    introspection_endpoint: url('introspection'),
    revocation_endpoint: url('revocation'),
    jwks_uri: url('jwks'),
  }));
});
