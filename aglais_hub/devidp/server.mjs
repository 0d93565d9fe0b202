// Development OpenID Connect provider for the Aglais Hub demo and end-to-end tests.
//
// It runs the OpenID-certified npm `oidc-provider` with one confidential client
// and the users listed in USERS_FILE. The users file is re-read on every request,
// so a test (or an admin trying the demo) can change someone's groups and see the
// hub follow at the next login. Never use this in production: passwords are plain text.
//
// Environment:
//   ISSUER         issuer URL, e.g. http://127.0.0.1:5556
//   PORT, HOST     where to listen (default 5556, 127.0.0.1)
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (space separated)
//   USERS_FILE     JSON {"alice": {"password": "...", "groups": [...], "claims": {...}}}
//   STATE_DIR      keeps signing keys and cookie keys, so a restart keeps tokens valid
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Provider from 'oidc-provider';

const env = process.env;
const issuer = env.ISSUER || 'http://127.0.0.1:5556';
const port = Number(env.PORT || 5556);
const host = env.HOST || '127.0.0.1';
const stateDir = env.STATE_DIR || '.';
const usersFile = env.USERS_FILE || join(stateDir, 'users.json');

function persistentSecrets() {
  mkdirSync(stateDir, { recursive: true });
  const file = join(stateDir, 'idp-keys.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };
  const secrets = { jwks: { keys: [jwk] }, cookieKeys: [randomBytes(32).toString('hex')] };
  writeFileSync(file, JSON.stringify(secrets), { mode: 0o600 });
  return secrets;
}

// Tokens, sessions and grants kept in one JSON file, so that a restarted provider
// still honours what it issued (as a real identity provider does).
class FileAdapter {
  static file = join(stateDir, 'idp-store.json');
  static store = existsSync(FileAdapter.file) ? JSON.parse(readFileSync(FileAdapter.file, 'utf8')) : {};
  static save() {
    const now = Date.now() / 1000;
    for (const [key, entry] of Object.entries(FileAdapter.store)) {
      if (entry.expiresAt && entry.expiresAt < now) delete FileAdapter.store[key];
    }
    writeFileSync(FileAdapter.file, JSON.stringify(FileAdapter.store), { mode: 0o600 });
  }

  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() / 1000 + expiresIn : undefined;
    FileAdapter.store[this.key(id)] = { payload, expiresAt };
    FileAdapter.save();
  }
  async find(id) {
    const entry = FileAdapter.store[this.key(id)];
    if (!entry || (entry.expiresAt && entry.expiresAt < Date.now() / 1000)) return undefined;
    return entry.payload;
  }
  async findByUid(uid) {
    const hit = Object.entries(FileAdapter.store).find(([k, e]) => k.startsWith(`${this.model}:`) && e.payload.uid === uid);
    return hit ? this.find(hit[0].slice(this.model.length + 1)) : undefined;
  }
  async findByUserCode(userCode) {
    const hit = Object.entries(FileAdapter.store).find(([k, e]) => k.startsWith(`${this.model}:`) && e.payload.userCode === userCode);
    return hit ? this.find(hit[0].slice(this.model.length + 1)) : undefined;
  }
  async consume(id) {
    const entry = FileAdapter.store[this.key(id)];
    if (entry) { entry.payload.consumed = Math.floor(Date.now() / 1000); FileAdapter.save(); }
  }
  async destroy(id) { delete FileAdapter.store[this.key(id)]; FileAdapter.save(); }
  async revokeByGrantId(grantId) {
    for (const [key, entry] of Object.entries(FileAdapter.store)) {
      if (entry.payload.grantId === grantId) delete FileAdapter.store[key];
    }
    FileAdapter.save();
  }
}

function loadUsers() {
  return JSON.parse(readFileSync(usersFile, 'utf8'));
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

const { jwks, cookieKeys } = persistentSecrets();

const provider = new Provider(issuer, {
  clients: [{
    client_id: env.CLIENT_ID || 'aglais-hub',
    client_secret: env.CLIENT_SECRET || 'aglais-hub-secret',
    redirect_uris: (env.REDIRECT_URIS || 'http://127.0.0.1:8000/hub/oauth_callback').split(' '),
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  adapter: FileAdapter,
  // A working day of access: the hub re-checks groups with the access token before spawns.
  ttl: {
    AccessToken: 8 * 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  jwks,
  cookies: { keys: cookieKeys },
  scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // PKCE for every client: the hub must send a code challenge or get refused.
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = loadUsers()[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: user.name || id,
          email: `${id}@example.org`,
          email_verified: true,
          groups: user.groups || [],
          ...(user.claims || {}),
        };
      },
    };
  },
});

function page(res, title, body, status = 200) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:4em auto}input,button{display:block;margin:.5em 0;padding:.4em;width:100%}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`);
}

function loginPage(res, uid, error = '', status = 200) {
  const message = error ? `<p role="alert" style="color:#a00">${escapeHtml(error)}</p>` : '';
  page(res, 'Aglais demo identity provider — sign in', `${message}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Username <input name="login" autocomplete="username" autofocus required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>`, status);
}

function consentPage(res, uid, clientId, scopes) {
  page(res, 'Aglais demo identity provider — authorise', `
<p><b>${escapeHtml(clientId)}</b> asks to read: ${escapeHtml(scopes.join(', '))}.</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm"><button type="submit">Allow</button></form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

async function handleInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  const action = req.url.split('?')[0].split('/')[3];
  if (req.method === 'GET') {
    if (prompt.name === 'login') return loginPage(res, uid);
    const scopes = [...(prompt.details.missingOIDCScope || [])];
    return consentPage(res, uid, params.client_id, scopes);
  }
  if (action === 'login') {
    const form = await readForm(req);
    const user = loadUsers()[form.login];
    if (!user || user.password !== form.password) {
      return loginPage(res, uid, 'Unknown user or wrong password.', 401);
    }
    return provider.interactionFinished(req, res, { login: { accountId: form.login } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm') {
    const { accountId } = details.session;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  res.writeHead(404).end();
}

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    handleInteraction(req, res).catch((err) => {
      console.error('interaction failed:', err);
      page(res, 'Sign-in failed', `<p>${escapeHtml(err.message)}</p><p>Go back to the hub and try again.</p>`, 400);
    });
  } else {
    callback(req, res);
  }
});
server.listen(port, host, () => console.log(`oidc-provider listening on ${issuer} (users from ${usersFile})`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
