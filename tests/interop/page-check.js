// A page as a reader's browser shows it: Debian's Chromium, headless, driven by playwright-core.
// For each width (390 and 1280 px) and colour scheme (light, dark, and high contrast at 390 px):
// console errors, every request the page makes besides itself, axe-core's WCAG 2.1 A and AA
// violations, whether the verdict is visible without scrolling, whether the page scrolls
// sideways, and a screenshot of the first screen.
//
// Usage: node page-check.js PAGE.html OUT_DIR   (prints one JSON object)
'use strict';
const path = require('path');
const fs = require('fs');
const { chromium } = require('playwright-core');
const axe = require('axe-core');

const VIEWS = [
  { name: '390-light', width: 390, height: 844, colorScheme: 'light' },
  { name: '390-dark', width: 390, height: 844, colorScheme: 'dark' },
  { name: '390-contrast', width: 390, height: 844, colorScheme: 'light', contrast: 'more' },
  { name: '1280-light', width: 1280, height: 800, colorScheme: 'light' },
  { name: '1280-dark', width: 1280, height: 800, colorScheme: 'dark' },
];

async function main() {
  const [file, out] = process.argv.slice(2);
  fs.mkdirSync(out, { recursive: true });
  const url = 'file://' + path.resolve(file);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const result = { console: [], requests: [], views: {} };
  try {
    for (const v of VIEWS) {
      // bypassCSP lets axe's script in: the page's own policy forbids every script but its own.
      const context = await browser.newContext({ viewport: { width: v.width, height: v.height }, bypassCSP: true });
      const page = await context.newPage();
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') result.console.push(`${v.name}: ${m.text()}`); });
      page.on('pageerror', (e) => result.console.push(`${v.name}: ${e.message}`));
      page.on('request', (r) => { if (r.url() !== url) result.requests.push(r.url()); });
      await page.emulateMedia({ colorScheme: v.colorScheme, contrast: v.contrast || 'no-preference' });
      await page.goto(url, { waitUntil: 'load' });
      const verdict = await page.locator('#verdict').boundingBox();
      const sideways = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await page.screenshot({ path: path.join(out, `${v.name}.png`) });
      await page.addScriptTag({ content: axe.source });
      const axeResult = await page.evaluate(() => window.axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
      }));
      result.views[v.name] = {
        verdict_visible: !!verdict && verdict.y >= 0 && verdict.y + verdict.height <= v.height,
        sideways_px: sideways,
        violations: axeResult.violations.map((x) => ({
          id: x.id, impact: x.impact, nodes: x.nodes.length,
          example: x.nodes[0] && { target: x.nodes[0].target, html: x.nodes[0].html.slice(0, 200), why: x.nodes[0].failureSummary },
        })),
        passes: axeResult.passes.length,
        title: await page.title(),
        text: (await page.locator('#verdict').innerText()).trim(),
        stale: await page.evaluate(() => { const s = document.getElementById('stale'); return s ? s.innerText : null; }),
      };
      await context.close();
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
