// A tiny relying party for the browser test, built on openid-client (a
// certified OpenID Connect library): discovery, the code flow with PKCE,
// `state` and `nonce`, ID-token validation, refresh, UserInfo and
// RP-initiated logout. Everything the RP checks, the library checks.
//
//   GET /           "signed out", or the signed-in user's claims
//   GET /login      redirects to the provider's authorization endpoint
//                   (`?organization=` is passed on)
//   GET /callback   redeems the code (validating the ID token)
//   GET /refresh    refreshes the tokens
//   GET /userinfo   calls UserInfo with the access token
//   GET /logout     redirects to the provider's end_session_endpoint
//   GET /signed-out where the provider sends the browser back
//
// Pages are small HTML documents whose data the test reads from
// `<pre id="...">JSON</pre>` elements.
//
// Run on its own with ISSUER, RP_PORT, CLIENT_ID and CLIENT_SECRET set:
// `node rp.mjs`; the browser test starts it in-process (`startRp`).

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { lookup } from 'node:dns';
import { pathToFileURL } from 'node:url';

import * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';

// A fetch that connects every `*.localhost` name to loopback (Node's
// resolver does not, browsers do), so the issuer can be named by host.
const loopbackAgent = new Agent({
  connect: {
    lookup(hostname, options, callback) {
      if (hostname === 'localhost' || hostname.endsWith('.localhost')) {
        if (options && options.all) {
          callback(null, [{ address: '127.0.0.1', family: 4 }]);
        } else {
          callback(null, '127.0.0.1', 4);
        }
        return;
      }
      lookup(hostname, options, callback);
    },
  },
});

export function loopbackFetch(url, options) {
  return undiciFetch(url, { ...options, dispatcher: loopbackAgent });
}

const escapeHtml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function page(title, sections = {}, links = []) {
  const blocks = Object.entries(sections)
    .map(([id, value]) => `<h2>${escapeHtml(id)}</h2>\n<pre id="${escapeHtml(id)}">${escapeHtml(JSON.stringify(value, null, 2))}</pre>`)
    .join('\n');
  const nav = links.map(([href, text]) => `<a href="${escapeHtml(href)}">${escapeHtml(text)}</a>`).join(' | ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
<h1 id="status">${escapeHtml(title)}</h1>
${blocks}
<nav>${nav}</nav>
</body></html>
`;
}

// The claims of a JWT access token (RFC 9068), unverified: the RP shows
// them, the resource server would verify them. `null` for an opaque token.
function jwtPayload(token) {
  const parts = (token || '').split('.');
  if (parts.length !== 3) return null;
  try {
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

function cookieOf(request, name) {
  for (const part of (request.headers.cookie || '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

// Starts the RP; resolves to `{ url, server, close() }`. `log` is told of
// every failed step, with its stack.
export async function startRp({ issuer, port, clientId, clientSecret, host = '127.0.0.1', log = () => {} }) {
  const base = `http://${host}:${port}`;
  const redirectUri = `${base}/callback`;
  const postLogoutRedirectUri = `${base}/signed-out`;
  const config = await oidc.discovery(new URL(issuer), clientId, clientSecret, oidc.ClientSecretBasic(clientSecret), {
    execute: [oidc.allowInsecureRequests],
    [oidc.customFetch]: loopbackFetch,
  });

  // Sessions by the `rp_sid` cookie: the pending authorization request,
  // then the tokens and claims.
  const sessions = new Map();
  const sessionOf = (request, response) => {
    let sid = cookieOf(request, 'rp_sid');
    if (!sid || !sessions.has(sid)) {
      sid = randomBytes(16).toString('hex');
      sessions.set(sid, {});
      response.setHeader('set-cookie', `rp_sid=${sid}; Path=/; HttpOnly; SameSite=Lax`);
    }
    return sessions.get(sid);
  };

  const send = (response, status, body, headers = {}) => {
    response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...headers });
    response.end(body);
  };
  const redirect = (response, location) => send(response, 302, '', { location });
  const fail = (response, status, title, error) => {
    log(`RP: ${title}: ${error && error.stack ? error.stack : error}`);
    const detail = { message: String(error && error.message ? error.message : error) };
    if (error && error.code) detail.code = error.code;
    if (error && error.error) detail.error = error.error;
    if (error && error.error_description) detail.error_description = error.error_description;
    if (error && error.cause && !(error.cause instanceof Error)) detail.cause = error.cause;
    send(response, status, page(title, { error: detail }, [['/', 'Home']]));
  };

  const routes = {
    '/': (request, response, session) => {
      if (!session.claims) {
        return send(response, 200, page('signed out', {}, [['/login', 'Sign in']]));
      }
      send(response, 200, page('signed in', { claims: session.claims }, [['/refresh', 'Refresh'], ['/userinfo', 'UserInfo'], ['/logout', 'Sign out']]));
    },

    '/login': async (request, response, session) => {
      const organization = new URL(request.url, base).searchParams.get('organization');
      const codeVerifier = oidc.randomPKCECodeVerifier();
      const codeChallenge = await oidc.calculatePKCECodeChallenge(codeVerifier);
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      session.pending = { codeVerifier, state, nonce };
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope: 'openid profile email offline_access',
        code_challenge: codeChallenge,
        code_challenge_method: 'S256',
        state,
        nonce,
        ...(organization ? { organization } : {}),
      });
      redirect(response, url.href);
    },

    '/callback': async (request, response, session) => {
      const pending = session.pending;
      if (!pending) return fail(response, 400, 'callback failed', new Error('no authorization request is pending'));
      delete session.pending;
      let tokens;
      try {
        tokens = await oidc.authorizationCodeGrant(config, new URL(request.url, base), {
          pkceCodeVerifier: pending.codeVerifier,
          expectedState: pending.state,
          expectedNonce: pending.nonce,
          idTokenExpected: true,
        });
      } catch (error) {
        return fail(response, 400, 'callback failed', error);
      }
      session.tokens = tokens;
      session.idToken = tokens.id_token;
      session.claims = tokens.claims();
      send(response, 200, page('signed in', {
        claims: session.claims,
        access_token_claims: jwtPayload(tokens.access_token),
        tokens: { token_type: tokens.token_type, scope: tokens.scope, expires_in: tokens.expires_in, has_access_token: !!tokens.access_token, has_refresh_token: !!tokens.refresh_token, has_id_token: !!tokens.id_token },
      }, [['/refresh', 'Refresh'], ['/userinfo', 'UserInfo'], ['/logout', 'Sign out']]));
    },

    '/refresh': async (request, response, session) => {
      const previous = session.tokens;
      if (!previous || !previous.refresh_token) return fail(response, 400, 'refresh failed', new Error('no refresh token'));
      let tokens;
      try {
        tokens = await oidc.refreshTokenGrant(config, previous.refresh_token);
      } catch (error) {
        return fail(response, 400, 'refresh failed', error);
      }
      session.tokens = tokens;
      // Keep the ID token (for logout) when the refresh response carries none.
      if (tokens.id_token) session.idToken = tokens.id_token;
      const claims = tokens.claims();
      if (claims) {
        if (claims.sub !== session.claims.sub) {
          return fail(response, 400, 'refresh failed', new Error(`refreshed ID token names ${claims.sub}, not ${session.claims.sub}`));
        }
        session.claims = claims;
      }
      send(response, 200, page('refreshed', {
        refresh: {
          access_token_changed: tokens.access_token !== previous.access_token,
          refresh_token_changed: !!tokens.refresh_token && tokens.refresh_token !== previous.refresh_token,
          has_refresh_token: !!tokens.refresh_token,
          new_id_token: !!claims,
          scope: tokens.scope,
          expires_in: tokens.expires_in,
        },
        claims: session.claims,
      }, [['/userinfo', 'UserInfo'], ['/logout', 'Sign out']]));
    },

    '/userinfo': async (request, response, session) => {
      if (!session.tokens) return fail(response, 400, 'userinfo failed', new Error('not signed in'));
      let info;
      try {
        info = await oidc.fetchUserInfo(config, session.tokens.access_token, session.claims.sub);
      } catch (error) {
        return fail(response, 400, 'userinfo failed', error);
      }
      send(response, 200, page('userinfo', { userinfo: info }, [['/logout', 'Sign out']]));
    },

    '/logout': (request, response, session) => {
      const idToken = session.idToken;
      if (!idToken) return fail(response, 400, 'logout failed', new Error('not signed in'));
      const state = oidc.randomState();
      // The RP's own session ends here; the provider's at its endpoint.
      delete session.tokens;
      delete session.idToken;
      delete session.claims;
      session.logoutState = state;
      const url = oidc.buildEndSessionUrl(config, {
        id_token_hint: idToken,
        post_logout_redirect_uri: postLogoutRedirectUri,
        state,
      });
      redirect(response, url.href);
    },

    '/signed-out': (request, response, session) => {
      const params = new URL(request.url, base).searchParams;
      const expected = session.logoutState;
      delete session.logoutState;
      const state = params.get('state');
      if (!expected || state !== expected) {
        return fail(response, 400, 'sign-out failed', new Error(`state ${JSON.stringify(state)} does not match the sign-out request's ${JSON.stringify(expected)}`));
      }
      send(response, 200, page('signed out', { logout: { state, state_matches: true } }, [['/login', 'Sign in']]));
    },
  };

  const server = http.createServer(async (request, response) => {
    const path = new URL(request.url, base).pathname;
    if (path === '/favicon.ico') return send(response, 204, '');
    const route = request.method === 'GET' ? routes[path] : undefined;
    if (!route) return send(response, 404, page('not found'));
    try {
      await route(request, response, sessionOf(request, response));
    } catch (error) {
      fail(response, 500, 'RP error', error);
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return {
    url: base,
    server,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  const need = (name) => process.env[name] || (console.error(`rp.mjs: set ${name}`), process.exit(2));
  const rp = await startRp({
    issuer: need('ISSUER'),
    port: Number(need('RP_PORT')),
    clientId: need('CLIENT_ID'),
    clientSecret: need('CLIENT_SECRET'),
    log: console.log,
  });
  console.log(`RP listening on ${rp.url}`);
}
