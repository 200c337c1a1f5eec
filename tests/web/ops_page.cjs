// ops_page.cjs: the ops page in a real browser (Debian's chromium, driven by playwright-core).
//
//   node ops_page.cjs   with PW_DIR (where `npm ci` put node_modules), OPS_BASE, OPS_TOKEN,
//                       BAD_ID (the allocation that went bad), XSS_ID, XSS_USER, OUT (the
//                       numbers the page shows, as JSON), SHOT (the screenshot's path)
//
// Loads http://OPS_BASE/, gives the token when the page asks for it, and checks: the list
// sorted worst first (the bad call on top), the user filter, a hostile user name shown as
// text (no element made from it, no dialog), no CSP violation; opens the bad call and reads
// what its intervals table and loss chart show, compares them with the API's timeline, and
// writes them to OUT for the generator-truth check (timelinecheck.py --page). Exit 1 on a
// failure, with "FAIL:" lines; "ok:" lines otherwise.
'use strict';
const path = require('path');
const fs = require('fs');
const { chromium } = require(path.join(process.env.PW_DIR, 'node_modules', 'playwright-core'));

const base = process.env.OPS_BASE, token = process.env.OPS_TOKEN;
let fails = 0;
const ok = (m) => console.log('ok: ' + m);
const fail = (m) => { fails++; console.log('FAIL: ' + m); };

async function api(p) {
  const r = await fetch(base + p, { headers: { Authorization: 'Bearer ' + token } });
  if (!r.ok) throw new Error(p + ': ' + r.status);
  return r.json();
}

const pct = (r) => (typeof r === 'number' ? (r * 100).toFixed(2) : '-');
const ms = (s) => (typeof s === 'number' ? (s * 1000).toFixed(s < 0.01 ? 2 : 1) : '-');

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  const dialogs = [], problems = [];
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));

  const resp = await page.goto(base + '/');
  const csp = resp.headers()['content-security-policy'] || '';
  if (csp.includes("default-src 'none'") && csp.includes("script-src 'self'") && !csp.includes('unsafe'))
    ok('page served with CSP: ' + csp);
  else fail('CSP header: ' + csp);

  // No token yet: the API answers 401 and the page asks for one.
  await page.waitForSelector('#tokenform:not([hidden])', { timeout: 10000 });
  ok('the page asks for the ops token');
  await page.fill('#token', token);
  await page.click('#tokenform button');
  await page.waitForFunction(() => document.querySelectorAll('#allocs tbody tr').length >= 2, null, { timeout: 10000 });
  const stored = await page.evaluate(() => [sessionStorage.getItem('tern.ops_token'), localStorage.length, document.cookie]);
  if (stored[0] === token && stored[1] === 0 && stored[2] === '') ok('token kept in sessionStorage only');
  else fail('token storage: ' + JSON.stringify(stored));

  // The list: worst first, the hostile name as text.
  const rows = await page.$$eval('#allocs tbody tr', (trs) => trs.map((tr) => ({
    id: tr.dataset.id, cells: Array.from(tr.children).map((td) => td.textContent) })));
  if (rows[0].id === process.env.BAD_ID) ok('the bad call is listed first: ' + rows[0].cells.join(' | '));
  else fail('first row is ' + rows[0].id + ', not the bad call ' + process.env.BAD_ID);
  const xss = rows.find((r) => r.id === process.env.XSS_ID);
  if (xss && xss.cells[2] === process.env.XSS_USER) ok('user ' + JSON.stringify(xss.cells[2]) + ' shown as text');
  else fail('hostile user row: ' + JSON.stringify(xss));
  const imgs = await page.$$eval('img', (l) => l.length);
  if (imgs === 0) ok('no element was made from the user name'); else fail(imgs + ' img elements in the page');

  await page.fill('#filter', 'img');
  await page.waitForFunction(() => document.querySelectorAll('#allocs tbody tr').length === 1, null, { timeout: 5000 })
    .then(() => ok('the user filter keeps one row for "img"'), () => fail('filter: not one row'));
  await page.fill('#filter', '');
  await page.waitForFunction(() => document.querySelectorAll('#allocs tbody tr').length >= 2, null, { timeout: 5000 });

  const node = await page.$$eval('#health dd', (l) => Object.fromEntries(l.map((d) => [d.dataset.key, d.textContent])));
  if (node.health === 'ok' && Number(node.allocations) >= 2) ok('node: health ' + node.health + ', ' + node.allocations + ' allocations');
  else fail('node panel: ' + JSON.stringify(node));

  // The bad call: its timeline as the page shows it.
  await page.click('#allocs tbody tr[data-id="' + process.env.BAD_ID + '"]');
  await page.waitForFunction(() => document.querySelectorAll('#intervals tbody tr').length >= 4 &&
    document.querySelectorAll('#streams tbody tr').length >= 2, null, { timeout: 10000 });
  await page.waitForTimeout(300);
  const shown = await page.$$eval('#intervals tbody tr', (trs) => trs.map((tr) => ({
    seq: Number(tr.dataset.seq), cells: Array.from(tr.children).map((td) => td.textContent),
    over: Array.from(tr.children).map((td) => td.classList.contains('over')) })));
  const shaded = await page.$$eval('figure[data-chart="loss"] rect.bad', (l) => l.map((r) => Number(r.dataset.seq)));
  const points = await page.$$eval('figure[data-chart="loss"] circle.client', (l) => l.length);
  const tl = (await api('/api/v1/allocations/' + process.env.BAD_ID + '/timeline')).timeline;
  const bySeq = new Map(tl.intervals.map((iv) => [iv.seq, iv]));
  let same = 0, withJitter = 0, withRtt = 0;
  for (const r of shown) {
    const iv = bySeq.get(r.seq);
    if (!iv) continue; // the page's copy may be a refresh older or newer at the edges
    const want = [pct(iv.client_leg.loss_ratio), pct(iv.peer_leg.loss_ratio)];
    if (r.cells[2] !== want[0] || r.cells[8] !== want[1]) {
      fail('interval ' + r.seq + ': page shows loss ' + r.cells[2] + ' / ' + r.cells[8] + ', API ' + want.join(' / '));
      continue;
    }
    // Jitter and RTT per leg (columns 3, 4 and 9, 10), as the API's values in ms.
    const legs = [[iv.client_leg, 3], [iv.peer_leg, 9]];
    const bad = legs.filter(([l, c]) => r.cells[c] !== ms(l.jitter_seconds) || r.cells[c + 1] !== ms(l.rtt_seconds));
    if (bad.length) {
      fail('interval ' + r.seq + ': page shows jitter/RTT ' + [r.cells[3], r.cells[4], r.cells[9], r.cells[10]].join(' ') +
        ', API ' + legs.map(([l]) => ms(l.jitter_seconds) + ' ' + ms(l.rtt_seconds)).join(' '));
      continue;
    }
    withJitter += legs.filter(([l]) => typeof l.jitter_seconds === 'number').length;
    withRtt += legs.filter(([l]) => typeof l.rtt_seconds === 'number').length;
    const poorApi = iv.client_leg.poor.includes('loss');
    if (poorApi !== r.over[2] || poorApi !== shaded.includes(r.seq)) {
      fail('interval ' + r.seq + ': poor in the API ' + poorApi + ', marked ' + r.over[2] + ', shaded ' + shaded.includes(r.seq));
      continue;
    }
    same++;
  }
  if (same >= 4 && shaded.length >= 2) ok(same + ' intervals on the page equal the API (loss, jitter, RTT per leg); the loss chart shades ' + shaded.length + ' (seq ' + shaded.join(', ') + ') and plots ' + points + ' client points');
  else fail('only ' + same + ' intervals compared, ' + shaded.length + ' shaded');
  if (withJitter >= 4) ok(withJitter + ' leg-intervals with a jitter value, ' + withRtt + ' with an RTT, each as the API says');
  else fail('only ' + withJitter + ' leg-intervals had a jitter value to compare');
  const poorLine = await page.textContent('#d-poor');
  if (/^POOR now: client leg: loss/.test(poorLine)) ok('detail says: ' + poorLine);
  else fail('detail says: ' + poorLine + ' (the episode is still open)');
  const listed = await page.textContent('#allocs tbody tr[data-id="' + process.env.BAD_ID + '"] td');
  if (/^POOR client leg: loss/.test(listed)) ok('the list marks it: ' + listed); else fail('list quality cell: ' + listed);
  fs.writeFileSync(process.env.OUT, JSON.stringify({ intervals: shown.map((r) => ({
    seq: r.seq, start_clock: r.cells[0], client_loss_pct: r.cells[2], peer_loss_pct: r.cells[8],
    client_marked: r.over[2], peer_marked: r.over[8] })) }, null, 1));

  await page.screenshot({ path: process.env.SHOT, fullPage: true });
  ok('screenshot ' + process.env.SHOT);

  const foreign = requests.filter((u) => !u.startsWith(base + '/'));
  if (foreign.length === 0) ok(requests.length + ' requests, all to the ops listener'); else fail('requests elsewhere: ' + foreign.join(' '));
  if (dialogs.length === 0) ok('no dialog fired'); else fail('dialogs: ' + dialogs.join(' | '));
  const bad = problems.filter((p) => !/401/.test(p)); // the first, tokenless call answers 401
  if (bad.length === 0) ok('no script error or CSP violation'); else fail('console: ' + bad.join(' | '));
  await browser.close();
  process.exit(fails ? 1 : 0);
})().catch((e) => { console.log('FAIL: ' + (e.stack || e)); process.exit(1); });
