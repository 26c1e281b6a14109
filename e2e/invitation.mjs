// The organization path of the browser test: an admin invited EMAIL to an
// organization; Chromium opens the invitation mail's link from the dev
// outbox, signs up on the invitation page (the address is pre-filled and
// proven by the link), accepts, then signs in to the openid-client RP
// (rp.mjs) with `organization=<slug>`; the ID token, the access token and
// UserInfo carry the organization and the membership's role.
//
// Inputs (set by crates/portcullis/tests/it/browser.rs):
//   ISSUER, RP_PORT, CLIENT_ID, CLIENT_SECRET, OUTBOX_DIR, CHROMIUM,
//   E2E_TIMEOUT_MS  as for signin.mjs
//   EMAIL, PASSWORD  the invited address and the password to choose
//   ORG_ID, ORG_NAME, ORG_SLUG  the organization
//   ROLE             the name of the role the invitation grants
//
// Exits 0 when every step passed; otherwise prints the failing step, the
// page it was on, and exits 1.

import {
  bodyText, check, equal, expectHeading, expectUrl, inputs, linkIn, log, main, need, rpData, rpStatus, start,
  waitForMail,
} from './support.mjs';

const given = inputs();
const { ISSUER, OUTBOX_DIR, EMAIL, PASSWORD } = given;
const ORG_ID = need('ORG_ID');
const ORG_NAME = need('ORG_NAME');
const ORG_SLUG = need('ORG_SLUG');
const ROLE = need('ROLE');

async function scenario(hooks) {
  const { at } = hooks;
  const { rp, page } = await start(given, hooks);
  let step;

  // 1. The invitation mail's single link.
  step = at('reading the invitation mail from the outbox');
  const mail = await waitForMail(OUTBOX_DIR, EMAIL, new RegExp(`^Join ${ORG_NAME} `));
  const link = linkIn(mail, `${ISSUER}/invitations/`);
  log(`mail "${mail.subject}" (${mail.name})`);

  // 2. Nobody is signed in and the address has no account: sign up there.
  step = at('opening the invitation link');
  await page.goto(link);
  await expectHeading(page, `Join ${ORG_NAME}`, step);
  equal(await page.getByLabel('Email', { exact: true }).inputValue(), EMAIL, 'the pre-filled address');
  check(await page.getByLabel('Email', { exact: true }).getAttribute('readonly') !== null, 'the address is read-only');
  step = at('signing up on the invitation page');
  await page.getByLabel('First name', { exact: true }).fill('Grace');
  await page.getByLabel('Last name', { exact: true }).fill('Hopper');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Confirm password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expectHeading(page, `Join ${ORG_NAME}`, step);
  log('signed up from the invitation; it asks for an answer');

  // 3. Accept: the membership exists.
  step = at('accepting the invitation');
  await page.getByRole('button', { name: 'Accept invitation' }).click();
  await expectHeading(page, `You joined ${ORG_NAME}`, step);
  log('accepted');

  // 4. The link is spent.
  step = at('opening the spent link');
  await page.goto(link);
  await expectHeading(page, 'This invitation cannot be used', step);
  check((await bodyText(page)).includes('already been accepted'), `the spent link says why: ${await bodyText(page)}`);

  // 5. Sign in to the RP for the organization. The invitation's sign-up
  // opened a session, so the provider asks only for consent.
  step = at('signing in to the RP with organization');
  await page.goto(`${rp.url}/login?organization=${encodeURIComponent(ORG_SLUG)}`);
  await expectUrl(page, `${ISSUER}/consent?flow=`, step);
  await page.getByRole('button', { name: 'Allow' }).click();
  await expectUrl(page, `${rp.url}/callback`, step);
  equal(await rpStatus(page), 'signed in', `the RP callback (${await bodyText(page)})`);

  // 6. The organization is in every token.
  step = at('reading the tokens');
  const claims = await rpData(page, 'claims');
  equal(claims.email, EMAIL, 'ID token email');
  equal(claims.email_verified, true, 'the link proved the address');
  equal(claims.org_id, ORG_ID, 'ID token org_id');
  equal(claims.org_slug, ORG_SLUG, 'ID token org_slug');
  equal(claims.org_name, ORG_NAME, 'ID token org_name');
  const access = await rpData(page, 'access_token_claims');
  check(access !== null, 'the access token is a JWT');
  equal(access.org_id, ORG_ID, 'access token org_id');
  check(Array.isArray(access.roles) && access.roles.includes(ROLE), `access token roles include ${ROLE}: ${JSON.stringify(access.roles)}`);
  log(`ID token org ${claims.org_slug}; access token roles ${JSON.stringify(access.roles)}`);

  step = at('calling UserInfo');
  await page.goto(`${rp.url}/userinfo`);
  equal(await rpStatus(page), 'userinfo', `the RP UserInfo call (${await bodyText(page)})`);
  const info = await rpData(page, 'userinfo');
  equal(info.org_id, ORG_ID, 'UserInfo org_id');
}

await main(scenario, 'invitation mail, sign-up on the invitation page, accept, organization sign-in with org_id in every token');
