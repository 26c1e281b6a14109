// What the browser scenarios (signin.mjs, invitation.mjs) share: inputs
// from the environment, step failures, the dev outbox, reading the RP's and
// the provider's pages, and launching Debian's Chromium.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { startRp } from './rp.mjs';

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
export const log = (text) => console.log(`[${elapsed().padStart(6)}] ${text}`);

// An environment variable the Rust test sets; exits 2 when it is missing.
export function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${process.argv[1]}: the environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

// What every scenario is given by browser.rs: the provider, the RP's port
// and client, the dev outbox, the account and the browser.
export function inputs() {
  return {
    ISSUER: need('ISSUER').replace(/\/$/, ''),
    RP_PORT: Number(need('RP_PORT')),
    CLIENT_ID: need('CLIENT_ID'),
    CLIENT_SECRET: need('CLIENT_SECRET'),
    OUTBOX_DIR: need('OUTBOX_DIR'),
    EMAIL: need('EMAIL'),
    PASSWORD: need('PASSWORD'),
    CHROMIUM: process.env.CHROMIUM || '/usr/bin/chromium',
  };
}

// Starts the RP and Chromium for a scenario (both closed by `main`).
export async function start(given, { at, opened, cleanup }) {
  at('starting the RP');
  const rp = await startRp({
    issuer: given.ISSUER, port: given.RP_PORT, clientId: given.CLIENT_ID, clientSecret: given.CLIENT_SECRET, log,
  });
  cleanup(() => rp.close());
  log(`RP on ${rp.url} (discovered ${given.ISSUER})`);
  at('launching Chromium');
  const launched = await launch(given.CHROMIUM);
  opened(launched);
  return { rp, ...launched };
}

export class StepFailure extends Error {}

export function check(condition, message) {
  if (!condition) throw new StepFailure(message);
}

export function equal(actual, expected, what) {
  check(actual === expected, `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

// Polls the outbox for the first message to `to` whose subject matches.
export async function waitForMail(outboxDir, to, subject, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let seen = [];
  while (Date.now() < deadline) {
    let names = [];
    try {
      names = (await readdir(outboxDir)).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
    seen = [];
    for (const name of names) {
      const mail = JSON.parse(await readFile(join(outboxDir, name), 'utf8'));
      seen.push(`${name}: to ${mail.to}: ${mail.subject}`);
      if (mail.to === to && subject.test(mail.subject)) return { name, ...mail };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new StepFailure(
    `no mail to ${to} with a subject matching ${subject} in ${outboxDir} after ${timeoutMs} ms; the outbox has: ${seen.length ? seen.join('; ') : 'nothing'}`,
  );
}

// The one link in a mail's text that starts with `prefix`.
export function linkIn(mail, prefix) {
  const links = (mail.text.match(/https?:\/\/\S+/g) || []).filter((link) => link.startsWith(prefix));
  equal(links.length, 1, `links to ${prefix}… in "${mail.subject}"`);
  return links[0];
}

export async function bodyText(page) {
  try {
    return (await page.locator('body').innerText({ timeout: 2_000 })).replace(/\s+/g, ' ').slice(0, 2_000);
  } catch {
    return '(no page text)';
  }
}

// The JSON in the RP page's `<pre id="...">`.
export async function rpData(page, id) {
  const pre = page.locator(`pre#${id}`);
  check((await pre.count()) === 1, `the RP page (${page.url()}) has no #${id}: ${await bodyText(page)}`);
  return JSON.parse(await pre.textContent());
}

// The RP page's status line (its `<h1>`).
export async function rpStatus(page) {
  return (await page.locator('#status').innerText()).trim();
}

// The provider's page title (its `<h1>`), waiting for the page to load.
export async function heading(page) {
  await page.waitForLoadState('domcontentloaded');
  return (await page.getByRole('heading', { level: 1 }).first().innerText()).trim();
}

export async function expectHeading(page, expected, what) {
  const actual = await heading(page);
  check(actual === expected, `${what}: expected the page "${expected}", got "${actual}" at ${page.url()}: ${await bodyText(page)}`);
}

export async function expectUrl(page, prefix, what) {
  try {
    await page.waitForURL((url) => url.href.startsWith(prefix), { timeout: 15_000 });
  } catch {
    throw new StepFailure(`${what}: expected to be at ${prefix}..., but at ${page.url()}: ${await bodyText(page)}`);
  }
}

// Launches headless Chromium with one page. `problems` collects uncaught
// page errors and 5xx answers, which fail the run at its end; console
// errors (a missing favicon, a CSP report) are logged, not failed.
export async function launch(executablePath) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  log(`Chromium ${browser.version()} (${executablePath})`);
  const context = await browser.newContext();
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(15_000);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error at ${page.url()}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const at = new URL(page.url());
    const source = message.location().url;
    log(`console error on ${at.origin}${at.pathname}: ${message.text()}${source ? ` (${source})` : ''}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 500) problems.push(`${response.status()} for ${response.request().method()} ${response.url()}`);
  });
  return { browser, context, page, problems };
}

// Runs a scenario: it calls `at(step)` before each step, so that a failure
// names the step and the page it was on; `opened(launched)` hands over the
// browser, `cleanup(fn)` what else to close. Exits 0 when it passed, 1
// otherwise or when it outlives E2E_TIMEOUT_MS (default 100000).
export async function main(scenario, passed) {
  const timeoutMs = Number(process.env.E2E_TIMEOUT_MS || 100_000);
  const limit = setTimeout(() => {
    console.error(`FAILED: the browser test did not finish within ${timeoutMs} ms`);
    process.exit(1);
  }, timeoutMs);
  limit.unref();
  let step = 'starting';
  let session;
  const cleanups = [];
  let code = 1;
  try {
    await scenario({
      at: (name) => { step = name; return name; },
      opened: (launched) => { session = launched; cleanups.push(() => launched.browser.close()); },
      cleanup: (close) => cleanups.push(close),
    });
    const problems = session ? session.problems : [];
    check(problems.length === 0, `the browser saw problems: ${problems.join('; ')}`);
    log(`PASSED: ${passed}`);
    code = 0;
  } catch (error) {
    const page = session && session.page;
    const where = page ? `\n  page: ${page.url()}\n  text: ${await bodyText(page)}` : '';
    const extra = session && session.problems.length ? `\n  browser problems: ${session.problems.join('; ')}` : '';
    const message = error instanceof StepFailure ? error.message : (error && error.stack) || String(error);
    console.error(`FAILED while ${step}: ${message}${where}${extra}`);
  }
  for (const close of cleanups.reverse()) await Promise.resolve().then(close).catch(() => {});
  process.exit(code);
}
