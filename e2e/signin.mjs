// The browser acceptance test: Debian's Chromium, driven by playwright-core,
// signs a new user up on the hosted pages, confirms the email from the dev
// outbox, signs in to a small relying party (rp.mjs, on openid-client),
// consents, and the RP receives, refreshes and uses tokens, then signs out.
//
// Inputs (set by crates/portcullis/tests/it/browser.rs):
//   ISSUER         e.g. http://acme-test.localhost:PORT
//   SERVER_PORT    the provider's port (informational)
//   RP_PORT        a free loopback port for the RP
//   CLIENT_ID, CLIENT_SECRET   a confidential, third-party client whose
//                  redirect URI is http://127.0.0.1:RP_PORT/callback and
//                  post-logout URI http://127.0.0.1:RP_PORT/signed-out
//   OUTBOX_DIR     the provider's dev outbox (one JSON file per message)
//   EMAIL, PASSWORD  the account to create
//   CHROMIUM       optional, the browser binary (default /usr/bin/chromium)
//   E2E_TIMEOUT_MS optional, the whole run's limit (default 100000)
//
// Exits 0 when every step passed; otherwise prints the failing step, the
// page it was on, and exits 1.

import {
  bodyText, check, equal, expectHeading, expectUrl, inputs, linkIn, log, main, rpData, rpStatus, start, waitForMail,
} from './support.mjs';

const given = inputs();
const { ISSUER, CLIENT_ID, OUTBOX_DIR, EMAIL, PASSWORD } = given;
const GIVEN_NAME = 'Ada';
const FAMILY_NAME = 'Lovelace';

async function scenario(hooks) {
  const { at } = hooks;
  const { rp, context, page } = await start(given, hooks);
  let step;
  const providerCookie = async () =>
    (await context.cookies(ISSUER)).find((c) => c.name === 'portcullis_session');

  // 1. The RP sends the browser to the hosted login page.
  step = at('opening the RP and going to the hosted login page');
  await page.goto(`${rp.url}/`);
  equal(await rpStatus(page), 'signed out', 'the RP before signing in');
  await page.goto(`${rp.url}/login`);
  await expectUrl(page, `${ISSUER}/login?flow=`, step);
  await expectHeading(page, 'Sign in', step);
  check((await bodyText(page)).includes('Browser Test RP'), `the login page names the application: ${await bodyText(page)}`);
  log(`login page: ${new URL(page.url()).pathname} (flow ${new URL(page.url()).searchParams.get("flow").length} chars)`);

  // 2. Sign up.
  step = at('opening the registration page');
  await page.getByRole('link', { name: 'Create an account' }).click();
  await expectUrl(page, `${ISSUER}/register`, step);
  await expectHeading(page, 'Create your account', step);
  step = at('submitting the registration form');
  await page.getByLabel('Email', { exact: true }).fill(EMAIL);
  await page.getByLabel('First name', { exact: true }).fill(GIVEN_NAME);
  await page.getByLabel('Last name', { exact: true }).fill(FAMILY_NAME);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Confirm password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expectHeading(page, 'Check your email', step);
  check((await bodyText(page)).includes(EMAIL), `"Check your email" names ${EMAIL}: ${await bodyText(page)}`);
  check(await page.getByRole('link', { name: 'Continue to sign in' }).isVisible(), 'the "Continue to sign in" link is shown');
  log('registered; "Check your email" shown');

  // 3. Confirm the address from the outbox.
  step = at('reading the confirmation mail from the outbox');
  const mail = await waitForMail(OUTBOX_DIR, EMAIL, /^Confirm your email/);
  const link = linkIn(mail, `${ISSUER}/confirm/`);
  log(`mail "${mail.subject}" (${mail.name}) from ${mail.from}`);
  step = at('opening the confirmation link');
  await page.goto(link);
  // The link shows a button (mail scanners that fetch links must not spend it).
  await expectHeading(page, 'Confirm your email', step);
  await page.getByRole('button', { name: 'Confirm my email' }).click();
  await expectHeading(page, 'Your email is confirmed', step);
  check((await bodyText(page)).includes(EMAIL), `the confirmation page names ${EMAIL}`);
  log('email confirmed');

  // 4. Sign in through the RP.
  step = at('signing in through the RP');
  await page.goto(`${rp.url}/login`);
  await expectUrl(page, `${ISSUER}/login?flow=`, step);
  await expectHeading(page, 'Sign in', step);
  await page.getByLabel('Email', { exact: true }).fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();

  // 5. Consent: a third-party application must ask.
  step = at('consenting');
  await expectUrl(page, `${ISSUER}/consent?flow=`, step);
  await expectHeading(page, 'Authorize Browser Test RP', step);
  const consentText = await bodyText(page);
  check(consentText.includes(EMAIL), `the consent page names the account ${EMAIL}: ${consentText}`);
  const scopes = (await page.locator('.scope-name').allInnerTexts()).map((s) => s.trim());
  for (const scope of ['profile', 'email', 'offline_access']) {
    check(scopes.includes(scope), `the consent page lists ${scope}; it lists ${JSON.stringify(scopes)}`);
  }
  check(!!(await providerCookie()), 'signing in set the provider session cookie');
  log(`consent page lists ${scopes.join(', ')}`);
  await page.getByRole('button', { name: 'Allow' }).click();

  // 6. The RP redeems the code and validates the ID token.
  step = at('receiving tokens at the RP callback');
  await expectUrl(page, `${rp.url}/callback`, step);
  equal(await rpStatus(page), 'signed in', `the RP callback (${await bodyText(page)})`);
  const claims = await rpData(page, 'claims');
  const tokens = await rpData(page, 'tokens');
  equal(claims.iss, ISSUER, 'ID token iss');
  equal(claims.aud, CLIENT_ID, 'ID token aud');
  equal(claims.email, EMAIL, 'ID token email');
  equal(claims.email_verified, true, 'ID token email_verified');
  equal(claims.given_name, GIVEN_NAME, 'ID token given_name');
  equal(claims.family_name, FAMILY_NAME, 'ID token family_name');
  check(typeof claims.sub === 'string' && claims.sub.length > 0, `ID token sub: ${JSON.stringify(claims.sub)}`);
  equal(tokens.has_refresh_token, true, 'a refresh token for offline_access');
  equal(tokens.scope, 'openid profile email offline_access', 'granted scope');
  log(`signed in: sub ${claims.sub}, tokens ${JSON.stringify(tokens)}`);

  // 7. Refresh: new tokens, the refresh token rotated.
  step = at('refreshing the tokens');
  await page.goto(`${rp.url}/refresh`);
  equal(await rpStatus(page), 'refreshed', `the RP refresh (${await bodyText(page)})`);
  const refresh = await rpData(page, 'refresh');
  equal(refresh.access_token_changed, true, 'a new access token');
  equal(refresh.has_refresh_token, true, 'a refresh token in the refresh response');
  equal(refresh.refresh_token_changed, true, 'the refresh token rotated');
  log(`refreshed: ${JSON.stringify(refresh)}`);

  // 8. UserInfo with the refreshed access token.
  step = at('calling UserInfo');
  await page.goto(`${rp.url}/userinfo`);
  equal(await rpStatus(page), 'userinfo', `the RP UserInfo call (${await bodyText(page)})`);
  const info = await rpData(page, 'userinfo');
  equal(info.sub, claims.sub, 'UserInfo sub');
  equal(info.email, EMAIL, 'UserInfo email');
  equal(info.email_verified, true, 'UserInfo email_verified');
  log(`userinfo: ${JSON.stringify(info)}`);

  // 9. RP-initiated logout, back to the RP with its state.
  step = at('signing out');
  await page.goto(`${rp.url}/logout`);
  await page.waitForURL((url) => url.href.startsWith(`${rp.url}/signed-out`) || url.href.startsWith(ISSUER), { timeout: 15_000 });
  if (page.url().startsWith(ISSUER)) {
    // The provider may ask before ending the session.
    await expectHeading(page, 'Sign out', `${step} (the provider's confirmation)`);
    log('the provider asks to confirm the sign-out');
    await page.getByRole('button', { name: 'Sign out' }).click();
  } else {
    log('the provider signed out without asking (id_token_hint)');
  }
  await expectUrl(page, `${rp.url}/signed-out`, step);
  equal(await rpStatus(page), 'signed out', `the RP after sign-out (${await bodyText(page)})`);
  const logout = await rpData(page, 'logout');
  equal(logout.state_matches, true, 'the sign-out state came back');
  check(!(await providerCookie()), 'the provider session cookie is gone');
  log(`signed out: back at ${page.url()}`);

  // 10. The provider session is gone: signing in again asks for credentials.
  step = at('checking that the session is gone');
  await page.goto(`${rp.url}/login`);
  await expectUrl(page, `${ISSUER}/login?flow=`, step);
  await expectHeading(page, 'Sign in', step);
  log('RP /login lands on the login page again');
}

await main(scenario, 'sign-up, email confirmation, sign-in, consent, tokens, refresh, UserInfo and sign-out');
