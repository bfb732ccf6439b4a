// Drives Tollgate's web viewer in headless Debian chromium (playwright-core, no downloaded
// browser) like an auditor would, for tests/tests/web_ui.rs, and prints what it saw as one JSON
// object on stdout; the Rust test compares it with the recording.
//
// Env: VIEWER (http://127.0.0.1:PORT), SESSION (the session id to open), CONTAINS (text for
// the "contains" filter), AUDITOR and OTHER (issuer subjects: in and not in the auditor group),
// TOKEN (the admin token), SCREENSHOT (where to save the replay page), CHROMIUM (default
// /usr/bin/chromium); SIGN_IN_ONLY=1 stops after signing in and listing the sessions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const VIEWER = env('VIEWER');
const SESSION = env('SESSION');
// Thrown to stop after the sign-in and the list (SIGN_IN_ONLY=1).
class Done extends Error {}
const profile = mkdtempSync(join(tmpdir(), 'tollgate-chromium-'));
const report = {};

// The issuer's devInteractions pages: the login form, then the consent form.
async function signInAtIssuer(page, subject) {
  await page.waitForSelector('input[name=login]', { timeout: 15000 });
  await page.fill('input[name=login]', subject);
  await page.fill('input[name=password]', 'any');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  // Consent (first sign-in of this subject for the client): submit until we leave the issuer.
  for (let i = 0; i < 4 && !page.url().startsWith(VIEWER); i += 1) {
    const button = await page.$('button[type=submit]');
    if (!button) break;
    await Promise.all([page.waitForNavigation(), button.click()]);
  }
}

const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
  ],
  viewport: { width: 1400, height: 1000 },
});
try {
  const page = browser.pages()[0] || await browser.newPage();

  // 1. Not signed in: the list sends the browser to the login page.
  const unauth = await page.goto(`${VIEWER}/sessions`);
  report.unauthenticated = {
    url: page.url(),
    status: unauth.status(),
    mentions_session: (await page.content()).includes(SESSION),
  };

  // 2. Single sign-on as an auditor.
  await page.click('#oidc-login');
  await signInAtIssuer(page, env('AUDITOR'));
  await page.waitForURL(`${VIEWER}/sessions`);
  report.signed_in_as = (await page.textContent('header.top span')).trim();

  // 3. The list, then a filter.
  const ids = async () => page.$$eval('tr.session', (rows) => rows.map((r) => r.dataset.id));
  report.all_sessions = await ids();
  if (process.env.SIGN_IN_ONLY === '1') throw new Done();
  await page.fill('#f-contains', env('CONTAINS'));
  await Promise.all([page.waitForNavigation(), page.click('#f-apply')]);
  report.filtered_sessions = await ids();
  report.filtered_url = page.url();
  await page.fill('#f-contains', '');
  await page.fill('#f-since', 'yesterday');
  await Promise.all([page.waitForNavigation(), page.click('#f-apply')]);
  report.bad_filter = (await page.textContent('#message')).trim();

  // 4. The session page: header and timeline.
  await page.goto(`${VIEWER}/sessions`);
  await Promise.all([page.waitForNavigation(), page.click(`a[href="/sessions/${SESSION}"]`)]);
  report.header = (await page.textContent('#header')).replace(/\s+/g, ' ').trim();
  report.timeline = await page.$$eval('tr.statement', (rows) => rows.map((r) => ({
    seq: Number(r.dataset.seq),
    sql: r.querySelector('.sql').textContent,
    duration: r.querySelector('.duration').textContent,
    outcome: r.querySelector('.outcome').textContent,
    marks: [...r.querySelectorAll('.mark')].map((m) => m.textContent),
  })));

  // 5. Replay: Next until the end, reading the request, then the response.
  await Promise.all([page.waitForNavigation(), page.click('#replay')]);
  report.replay = [];
  for (let i = 0; i < 200; i += 1) {
    const step = await page.$eval('#step', (s) => ({
      seq: Number(s.dataset.seq),
      phase: s.dataset.phase,
      request: s.querySelector('#request').textContent,
      response: s.querySelector('#response').innerText,
      cells: [...s.querySelectorAll('#response td')].map((td) => td.textContent),
      injected: s.querySelectorAll('#response b, #request b').length,
    }));
    report.replay.push(step);
    if (i === 3) {
      report.screenshot = env('SCREENSHOT');
      await page.screenshot({ path: report.screenshot, fullPage: true });
    }
    const next = await page.$('a#next[href]');
    if (!next) break;
    await Promise.all([page.waitForNavigation(), next.click()]);
  }
  // Prev goes back one step.
  await Promise.all([page.waitForNavigation(), page.click('a#prev')]);
  report.after_prev = await page.$eval('#step', (s) => ({ seq: Number(s.dataset.seq), phase: s.dataset.phase }));

  // 6. An unknown session id.
  const missing = await page.goto(`${VIEWER}/sessions/00000000-0000-7000-8000-000000000000`);
  report.unknown_session = { status: missing.status(), text: (await page.textContent('#message')).trim() };

  // 7. Sign out: the recordings are gone again.
  await Promise.all([page.waitForNavigation(), page.click('header.top button')]);
  const after = await page.goto(`${VIEWER}/sessions/${SESSION}`);
  report.signed_out = { url: page.url(), status: after.status() };
  await page.close();

  // 8. Someone outside the auditor group signs in: 403, no recording.
  await browser.clearCookies();
  const other = await browser.newPage();
  const statuses = [];
  other.on('response', (r) => { if (r.url().includes('/oidc/callback')) statuses.push(r.status()); });
  await other.goto(`${VIEWER}/login`);
  await other.click('#oidc-login');
  await signInAtIssuer(other, env('OTHER'));
  await other.waitForURL(/\/oidc\/callback/);
  report.non_auditor = {
    statuses,
    text: (await other.textContent('#message')).trim(),
    mentions_session: (await other.content()).includes(SESSION),
  };
  const otherList = await other.goto(`${VIEWER}/sessions`);
  report.non_auditor.list_url = other.url();
  report.non_auditor.list_status = otherList.status();
  await other.close();

  // 9. The admin token form.
  await browser.clearCookies();
  const admin = await browser.newPage();
  await admin.goto(`${VIEWER}/login`);
  await admin.fill('#token', 'not-the-token');
  const wrong = await Promise.all([admin.waitForNavigation(), admin.click('#token-login')]);
  report.wrong_token = { status: wrong[0].status(), text: (await admin.textContent('#message')).trim() };
  await admin.fill('#token', env('TOKEN'));
  await Promise.all([admin.waitForNavigation(), admin.click('#token-login')]);
  report.token_login = { url: admin.url(), sessions: await admin.$$eval('tr.session', (rows) => rows.length) };
  await admin.close();
} catch (error) {
  if (!(error instanceof Done)) throw error;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
