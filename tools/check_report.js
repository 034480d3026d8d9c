#!/usr/bin/env node
// Renders a kvscope report.html in headless Chromium and checks that it reads offline:
// every <img> decoded (naturalWidth > 0), no console errors or page errors, and no request
// that leaves the file (only file: and data: URLs). Saves a full-page screenshot.
//
//   node tools/check_report.js REPORT.html SCREENSHOT.png
//
// Prints one JSON object ({"ok", "images", "broken", "errors", "requests", "screenshot",
// "height"}) and exits 0 when the page passed, 1 when it did not, 2 on usage or launch errors.
// Needs playwright-core (scripts/setup_report_deps.sh installs it into third_party/npm) and
// Chromium at /usr/bin/chromium (or $CHROMIUM).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const url = require('url');

function loadPlaywright() {
  const local = path.join(__dirname, '..', 'third_party', 'npm', 'node_modules', 'playwright-core');
  try {
    return require(local);
  } catch (e) {
    return require('playwright-core');  // NODE_PATH or a global install
  }
}

async function main() {
  const [html, shot] = process.argv.slice(2);
  if (!html || !shot) {
    console.error('usage: node tools/check_report.js REPORT.html SCREENSHOT.png');
    process.exit(2);
  }
  const { chromium } = loadPlaywright();
  // A fresh profile for every run: nothing cached or remembered from another report.
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'kvscope-chromium-'));
  const result = { ok: false, images: 0, broken: [], errors: [], requests: [], screenshot: shot, height: 0 };
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
             '--disable-sync', '--no-first-run'],
      viewport: { width: 1200, height: 900 },
    });
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') result.errors.push('console: ' + m.text()); });
    page.on('pageerror', (e) => result.errors.push('page: ' + e.message));
    page.on('requestfailed', (r) => result.errors.push('request failed: ' + r.url()));
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith('file:') && !u.startsWith('data:')) result.requests.push(u);
    });
    await page.goto(url.pathToFileURL(path.resolve(html)).href, { waitUntil: 'load', timeout: 60000 });
    const imgs = await page.evaluate(async () => {
      const all = Array.from(document.images);
      await Promise.all(all.map((img) => (img.complete ? null : new Promise((r) => { img.onload = img.onerror = r; }))));
      return all.map((img) => ({ alt: img.alt, w: img.naturalWidth, h: img.naturalHeight }));
    });
    result.images = imgs.length;
    result.broken = imgs.filter((i) => !(i.w > 0 && i.h > 0)).map((i) => i.alt);
    result.height = await page.evaluate(() => document.documentElement.scrollHeight);
    await page.screenshot({ path: shot, fullPage: true });
    result.ok = result.broken.length === 0 && result.errors.length === 0 && result.requests.length === 0;
  } catch (e) {
    result.errors.push('check_report: ' + (e && e.message ? e.message.split('\n')[0] : String(e)));
    console.log(JSON.stringify(result));
    process.exitCode = 2;
    return;
  } finally {
    if (context) await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
  process.exitCode = result.ok ? 0 : 1;
}

main();
