// Walks Kong Identity's tutorial through the web console in headless Chromium (playwright-core), checking every
// page with axe-core. Run by crates/cli/tests/console_browser.rs against `gatehouse quickstart`; exits non-zero on
// the first failed step, or when any page has serious or critical accessibility violations or breaks the CSP.
//
// Environment: CONSOLE_URL (the platform listener), TOKEN (the quickstart's KONNECT_TOKEN), ECHO_URL, CHROMIUM,
// SCREENSHOTS (a directory). Prints CLIENT_SECRET=… once, so the caller can check the node's logs never show it.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('CONSOLE_URL');
const echo = env('ECHO_URL');
const shots = env('SCREENSHOTS');
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const browser = await chromium.launch({ executablePath: env('CHROMIUM'), headless: true, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(20000);
const problems = [];
page.on('console', (msg) => {
  if (msg.type() === 'error') problems.push(`console error on ${page.url()}: ${msg.text()}`);
});
page.on('pageerror', (e) => problems.push(`script error on ${page.url()}: ${e.message}`));

let step = 0;
const checked = [];
/** Screenshot and accessibility check of the page as it is now. */
async function check(name) {
  step += 1;
  const file = join(shots, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (an injected <script> would be
  // refused, as it should be).
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const r = await globalThis.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of bad) problems.push(`axe ${v.impact} on ${name}: ${v.id} (${v.help}) at ${v.nodes.join(', ')}`);
  const minor = result.filter((v) => !bad.includes(v)).map((v) => `${v.id}/${v.impact}`);
  checked.push(name);
  console.log(`page ${name}: ${page.url()} — ${bad.length} serious/critical, other: [${minor.join(', ')}]`);
}

async function submit(formId) {
  await Promise.all([page.waitForLoadState('load'), page.locator(`#${formId} button[type=submit]`).click()]);
  await page.waitForLoadState('load');
}

function expectText(text) {
  return page.getByText(text, { exact: false }).first().waitFor();
}

try {
  // Sign in with the quickstart's token.
  await page.goto(`${base}/`);
  await page.waitForURL('**/console/sign-in');
  await check('sign-in');
  await page.fill('#signin-token', env('TOKEN'));
  await submit('signin');
  await page.waitForURL('**/console');
  await check('overview');

  // "Open the PAT page and select Generate Token"; then work with the new token.
  await page.click('nav[aria-label=Main] >> text=Access tokens');
  await page.fill('#new-token-name', 'tutorial');
  await submit('new-token');
  const pat = await page.inputValue('#new-token-value');
  if (!pat.startsWith('gpat_')) throw new Error(`no token shown: ${pat}`);
  await check('token-generated');
  await page.click('header form.signout button');
  await page.waitForURL('**/console/sign-in');
  await page.fill('#signin-token', pat);
  await submit('signin');
  await page.waitForURL('**/console');

  // The auth server.
  await page.click('nav[aria-label=Main] >> text=Auth servers');
  await page.fill('#new-auth-server-name', 'Appointments Dev');
  await page.fill('#new-auth-server-audience', 'http://myhttpbin.dev');
  await page.fill('#new-auth-server-description', 'Auth server for the Appointment dev environment');
  await submit('new-auth-server');
  await expectText('Issuer URL');
  const issuer = (await page.locator('dt:text-is("Issuer URL") + dd a').textContent()).trim();
  const serverUrl = page.url();
  await check('auth-server');

  // Search as you type (htmx swaps the results in; the box keeps its focus).
  await page.goto(`${base}/console/auth-servers`);
  await page.locator('#auth-servers-q').pressSequentially('nothing like it', { delay: 20 });
  await page.locator('#auth-servers-results p.empty').waitFor();
  if (!(await page.evaluate(() => document.activeElement && document.activeElement.id === 'auth-servers-q'))) {
    throw new Error('the search box lost its focus');
  }

  // A validation message from the API, next to its field.
  await page.goto(`${base}/console/auth-servers`);
  await page.fill('#new-auth-server-name', 'Appointments Dev');
  await page.fill('#new-auth-server-audience', 'x');
  await submit('new-auth-server');
  await expectText('already exists');
  await check('auth-server-conflict');

  // The scope.
  await page.goto(`${serverUrl}/scopes`);
  await page.fill('#new-scope-name', 'my-scope');
  await page.fill('#new-scope-description', 'Scope to test Kong Identity');
  await page.selectOption('#new-scope-default', 'false');
  await page.selectOption('#new-scope-include_in_metadata', 'false');
  await page.selectOption('#new-scope-enabled', 'true');
  await submit('new-scope');
  await page.locator('#scopes a:text-is("my-scope")').waitFor();
  await check('scopes');

  // The claim.
  await page.goto(`${serverUrl}/claims`);
  await page.fill('#new-claim-name', 'test-claim');
  await page.fill('#new-claim-value', 'test');
  await page.selectOption('#new-claim-include_in_token', 'true');
  await page.selectOption('#new-claim-include_in_all_scopes', 'false');
  await page.selectOption('#new-claim-include_in_scopes', { label: 'my-scope' });
  await submit('new-claim');
  await page.locator('#claims a:text-is("test-claim")').waitFor();
  await check('claims');

  // The client: its secret is on this page and nowhere else.
  await page.goto(`${serverUrl}/clients`);
  await page.fill('#new-client-name', 'Client');
  await page.selectOption('#new-client-grant_types', ['client_credentials']);
  await page.selectOption('#new-client-allow_all_scopes', 'false');
  await page.selectOption('#new-client-allow_scopes', { label: 'my-scope' });
  await page.fill('#new-client-access_token_duration', '3600');
  await page.fill('#new-client-id_token_duration', '3600');
  await page.selectOption('#new-client-response_types', ['id_token', 'token']);
  await submit('new-client');
  const clientId = await page.inputValue('#client-id');
  const secret = await page.inputValue('#client-secret');
  if (secret.length < 20) throw new Error(`no secret shown: ${secret}`);
  console.log(`CLIENT_SECRET=${secret}`);
  await check('client-created');
  await page.goto(`${serverUrl}/clients/${clientId}`);
  if ((await page.content()).includes(secret)) throw new Error('the client page shows the secret again');
  await check('client');

  // "Test claim" for the new client.
  await page.goto(`${serverUrl}/claims`);
  await page.selectOption('#test-claim-client', clientId);
  await page.fill('#test-claim-value', '${ .Client.Name }');
  await submit('test-claim');
  await expectText('Rendered value');
  const rendered = await page.locator('#test-claim-result').textContent();
  if (!rendered.includes('Client')) throw new Error(`test claim rendered ${rendered}`);
  await check('test-claim');

  // The gateway side: the quickstart control plane, service, route and introspection plugin.
  await page.click('nav[aria-label=Main] >> text=Control planes');
  await check('control-planes');
  await page.click('#control-planes a:text-is("quickstart")');
  const planeUrl = page.url();
  await page.click('text=New service');
  await page.fill('#new-service-name', 'example-service');
  await page.fill('#new-service-url', `${echo}/anything`);
  await check('new-service');
  await submit('new-service');
  await page.waitForURL(planeUrl);
  await page.click('text=New route');
  await page.fill('#new-route-name', 'example-route');
  await page.fill('#new-route-paths', '/anything');
  const serviceId = await page.locator('#new-route-service option', { hasText: 'example-service' }).getAttribute('value');
  await page.selectOption('#new-route-service', serviceId);
  await submit('new-route');
  await page.waitForURL(planeUrl);
  await page.click('text=New oauth2-introspection plugin');
  await page.fill('#new-plugin-config-introspection_url', `${issuer}/introspect`);
  await page.fill('#new-plugin-config-authorization_value', `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`);
  await page.selectOption('#new-plugin-config-consumer_by', 'client_id');
  await page.fill('#new-plugin-config-custom_claims_forward', 'Claim');
  await check('new-plugin');
  await submit('new-plugin');
  await page.waitForURL(planeUrl);
  await page.locator('#plugins td:text-is("oauth2-introspection")').waitFor();
  await check('control-plane');

  // "Try it": a token for the client, decoded, and the introspection answer.
  await page.goto(`${serverUrl}/try`);
  await page.selectOption('#try-it-client_id', clientId);
  await page.fill('#try-it-client_secret', secret);
  await page.fill('#try-it-scope', 'my-scope');
  await submit('try-it');
  const access = await page.inputValue('#access-token');
  const claims = await page.locator('#token-claims').textContent();
  const introspection = await page.locator('#introspection').textContent();
  if (!claims.includes('"test-claim": "test"')) throw new Error(`claims: ${claims}`);
  if (!introspection.includes('"active": true')) throw new Error(`introspection: ${introspection}`);
  if ((await page.content()).includes(secret)) throw new Error('try-it echoes the secret');
  await check('try-it');

  // The proxied request: through with the token, refused without it.
  await page.goto(planeUrl);
  await page.click('#routes a:text-is("Test")');
  await page.fill('#test-route-authorization', `Bearer ${access}`);
  await submit('test-route');
  await expectText('The proxy answered 200');
  await check('route-with-token');
  await page.fill('#test-route-authorization', '');
  await submit('test-route');
  await expectText('The proxy answered 401');
  await check('route-without-token');

  // The same pages on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(serverUrl);
  await check('auth-server-phone');
  await page.goto(planeUrl);
  await check('control-plane-phone');

  // Keyboard: the skip link is the first stop and shows.
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.className);
  if (focused !== 'skip') throw new Error(`first Tab stop is ${focused}`);
} catch (e) {
  problems.push(`step after ${checked.at(-1) ?? 'start'} failed: ${e.stack || e}`);
  try {
    await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true });
  } catch {}
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`Browser suite: ${checked.length} pages walked, screenshots in ${shots}`);
