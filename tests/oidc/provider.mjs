// A real OpenID Provider for the tests: oidc-provider (a certified implementation) on 127.0.0.1.
//
// PORT: where to listen (the issuer is http://127.0.0.1:PORT). KEY_ID: the kid of its one RSA signing key, made
// afresh at each start (a restart with another KEY_ID is a key rotation). Clients register themselves (dynamic
// registration, open), one per service under test, with their own redirect URI. Accounts: any login name the
// devInteractions form gets becomes the subject; ACCOUNTS (JSON {login: {email, groups}}) gives them claims.
// CLIENTS (JSON list of client metadata) are static clients. Access tokens are JWTs (RFC 9068) for the resource API_AUDIENCE. Prints "ready <issuer>" once listening.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.ACCOUNTS || '{}');
const audience = process.env.API_AUDIENCE || 'https://uploads.test/api';
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: process.env.KEY_ID || 'key-1', use: 'sig', alg: 'RS256' };

function claimsOf(login) {
  const account = accounts[login] || {};
  return {
    sub: login,
    preferred_username: login,
    email: account.email || `${login}@example.org`,
    email_verified: true,
    groups: account.groups || [],
  };
}

const provider = new Provider(issuer, {
  clients: JSON.parse(process.env.CLIENTS || '[]'), // static clients survive a restart (dynamic ones do not)
  jwks: { keys: [signingKey] },
  cookies: { keys: ['test-cookie-key-0123456789'] },
  conformIdTokenClaims: false, // the requested claims go into the ID token too
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username'], groups: ['groups'] },
  scopes: ['openid', 'offline_access', 'api'],
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return claimsOf(id); } };
  },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'api', audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  async extraTokenClaims(ctx, token) {
    if (!token.accountId) return undefined;
    const { email, groups } = claimsOf(token.accountId);
    return { email, groups };
  },
});
provider.proxy = false;
provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
