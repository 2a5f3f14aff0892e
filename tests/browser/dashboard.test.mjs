// Headless Chromium drives the admin dashboard: sign in with a token, see the pools, drain a
// server with a click and see its state change, then undrain it. Saves a screenshot.
//
// Run by tests/integration/test_dashboard.py, which starts the proxy and passes:
//   DASHBOARD_URL   http[s]://127.0.0.1:PORT/
//   ADMIN_TOKEN     a read-write token
//   POOL, SERVER    the server to drain (pool name, address)
//   SCREENSHOT      where to save the PNG
//   CHROMIUM        the browser (default /usr/bin/chromium)
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const url = env("DASHBOARD_URL");
const token = env("ADMIN_TOKEN");
const pool = env("POOL");
const server = env("SERVER");
const screenshot = env("SCREENSHOT");

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run"],
});
let failed = false;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const consoleErrors = [];
  // The browser reports the deliberate wrong-token attempt (401) as a console error: expected.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 401/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  await page.goto(url);
  // A wrong token is refused on the page.
  await page.fill("#token", "not-the-token-0123456789");
  await page.click("#login-button");
  await page.waitForSelector("#login-error:text('not valid')", { timeout: 10000 });

  await page.fill("#token", token);
  await page.click("#login-button");
  const row = page.locator(`tr[data-pool="${pool}"][data-server="${server}"]`);
  await row.waitFor({ timeout: 15000 });
  await page.waitForSelector("#live.on", { timeout: 10000 });
  check((await page.locator(`.pool[data-pool="${pool}"]`).count()) === 1, "pool card missing");
  const before = await row.locator(".state").textContent();
  check(before === "up", `server state before drain: ${before}`);

  await row.locator("button[data-action=drain]").click();
  await row.locator(".state:text-is('drain')").waitFor({ timeout: 10000 });
  check((await row.locator("button[data-action=drain]").textContent()) === "Undrain", "button label");
  // The change is also what the API says (read back through the page's own origin).
  const apiState = await page.evaluate(async ([p, s, t]) => {
    const r = await fetch(`/api/v1/pools/${p}/servers/${s}`, { headers: { Authorization: "Bearer " + t } });
    return (await r.json()).state;
  }, [pool, server, token]);
  check(apiState === "drain", `API state after the click: ${apiState}`);
  // The event list shows the change, made with the token's name.
  await page.waitForSelector("#events li:has-text('drain=true')", { timeout: 10000 });
  // The charts have been drawn.
  await page.waitForSelector("#chart-requests polyline", { timeout: 10000 });
  await page.screenshot({ path: screenshot, fullPage: true });

  await row.locator("button[data-action=drain]").click();
  await row.locator(".state:text-is('up')").waitFor({ timeout: 10000 });
  check(consoleErrors.length === 0, "console errors: " + consoleErrors.join("; "));
  console.log(`dashboard test passed; screenshot: ${screenshot}`);
} catch (e) {
  failed = true;
  console.error("dashboard test failed:", e.stack || e);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
