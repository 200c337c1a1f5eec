/* app.js: the ops page (served by ternd on ops.listen, embedded at build time). It reads the
 * same JSON API as ternctl: /api/v1/allocations, /api/v1/allocations/{id} and .../timeline,
 * /healthz and /metrics. Everything that comes from the API is put in the page as text
 * (textContent, SVG attributes), never as markup. The ops token, when ternd has one, is kept in
 * sessionStorage (this tab only) and sent as "Authorization: Bearer". Hand-written, no library. */
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const SVGNS = 'http://www.w3.org/2000/svg';
  const TOKEN_KEY = 'tern.ops_token';
  const $ = (id) => document.getElementById(id);
  let selected = null; /* the allocation id shown in detail */
  let timer = null;

  /* ---- DOM helpers: text only ---- */

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function row(cells, numFrom, numTo) {
    const tr = document.createElement('tr');
    cells.forEach((c, i) => {
      const td = el('td', c);
      if (numFrom !== undefined && i >= numFrom && (numTo === undefined || i <= numTo)) td.className = 'num';
      tr.appendChild(td);
    });
    return tr;
  }

  /* ---- formatting (a missing value is "-", never 0) ---- */

  const isNum = (v) => typeof v === 'number' && isFinite(v);
  const pct = (r) => (isNum(r) ? (r * 100).toFixed(2) : '-');
  const ms = (s) => (isNum(s) ? (s * 1000).toFixed(s < 0.01 ? 2 : 1) : '-');
  const count = (v) => (isNum(v) ? String(v) : '-');
  function age(s) {
    if (!isNum(s)) return '-';
    s = Math.floor(s);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
  }
  const clock = (t) => (typeof t === 'string' && t.indexOf('T') > 0 ? t.slice(t.indexOf('T') + 1, t.indexOf('T') + 13) : '-');
  const get = (o, ...path) => path.reduce((v, k) => (v && typeof v === 'object' ? v[k] : undefined), o);

  /* ---- the API ---- */

  class AuthNeeded extends Error {}

  async function api(path, text) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const r = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
    if (r.status === 401) throw new AuthNeeded();
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return text ? r.text() : r.json();
  }

  function setStatus(text, cls) {
    const s = $('status');
    s.textContent = text;
    s.className = 'status ' + (cls || '');
  }

  function askToken() {
    $('tokenform').hidden = false;
    setStatus('token needed', 'bad');
  }

  /* ---- the node ---- */

  function metricsOf(text) {
    const m = {};
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const sp = line.lastIndexOf(' ');
      const v = Number(line.slice(sp + 1));
      const name = line.slice(0, sp);
      const base = name.split('{')[0];
      m[name] = v;
      m[base + ':sum'] = (m[base + ':sum'] || 0) + v;
    }
    return m;
  }

  async function refreshNode() {
    let health = 'unreachable';
    try {
      const r = await fetch('/healthz', { cache: 'no-store' });
      health = r.ok ? 'ok' : r.status === 503 ? 'draining' : 'HTTP ' + r.status;
    } catch (e) { /* stays unreachable */ }
    let m = {};
    try {
      m = metricsOf(await api('/metrics', true));
    } catch (e) { /* the metrics are open; a failure leaves the counters out */ }
    const items = [
      ['health', health],
      ['workers', m.tern_workers],
      ['allocations', m['tern_allocations_active:sum']],
      ['poor: client leg loss', m['tern_qos_poor_allocations{leg="client",reason="loss"}']],
      ['poor: client leg jitter', m['tern_qos_poor_allocations{leg="client",reason="jitter"}']],
      ['poor: client leg RTT', m['tern_qos_poor_allocations{leg="client",reason="rtt"}']],
      ['poor: peer leg loss', m['tern_qos_poor_allocations{leg="peer",reason="loss"}']],
      ['poor: peer leg jitter', m['tern_qos_poor_allocations{leg="peer",reason="jitter"}']],
      ['poor: peer leg RTT', m['tern_qos_poor_allocations{leg="peer",reason="rtt"}']],
      ['quality episodes', m['tern_qos_episodes_total:sum']],
      ['forward drops', m['tern_forward_drops_total:sum']],
      ['relayed packets', m['tern_qos_packets_total:sum']],
      ['ICMP from peers', m['tern_qos_icmp_total:sum']],
    ];
    if (m['tern_webhook_sent_total'] !== undefined) {
      items.push(['webhook sent', m.tern_webhook_sent_total]);
      items.push(['webhook dropped', m.tern_webhook_dropped_total]);
    }
    const dl = $('health');
    clear(dl);
    for (const [k, v] of items) {
      const d = document.createElement('div');
      d.appendChild(el('dt', k));
      const dd = el('dd', v === undefined ? '-' : v);
      dd.dataset.key = k;
      d.appendChild(dd);
      dl.appendChild(d);
    }
    setStatus(health === 'ok' ? 'node ok' : health, health === 'ok' ? 'ok' : 'bad');
  }

  /* ---- the list, worst quality first ---- */

  function badness(e) {
    const q = get(e, 'qos') || {};
    const poor = Array.isArray(q.poor) && q.poor.length ? 1 : 0;
    const ql = q.quality || {};
    return [poor, isNum(ql.loss_ratio) ? ql.loss_ratio : -1, isNum(ql.jitter_seconds) ? ql.jitter_seconds : -1,
      isNum(ql.rtt_seconds) ? ql.rtt_seconds : -1];
  }

  function worstFirst(a, b) {
    const x = badness(a), y = badness(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return y[i] - x[i];
    return String(a.id).localeCompare(String(b.id));
  }

  function poorText(poor) {
    if (!Array.isArray(poor) || !poor.length) return '';
    return poor.map((p) => p.leg + ' leg: ' + (p.reasons || []).join(', ')).join('; ');
  }

  async function refreshList() {
    const doc = await api('/api/v1/allocations');
    const all = (doc && doc.allocations) || [];
    const f = $('filter').value.trim().toLowerCase();
    const shown = all.filter((e) => !f || String(e.user).toLowerCase().includes(f)).sort(worstFirst);
    $('count').textContent = shown.length + ' of ' + all.length;
    const tb = $('allocs').tBodies[0];
    clear(tb);
    for (const e of shown) {
      const c = get(e, 'qos', 'client_leg') || {}, p = get(e, 'qos', 'peer_leg') || {};
      const poor = poorText(get(e, 'qos', 'poor'));
      const tr = row([poor ? 'POOR ' + poor : 'ok', e.id, e.user, e.transport, e.client, age(e.age_seconds),
        pct(get(c, 'rtp', 'loss_ratio')) + ' / ' + pct(get(p, 'rtp', 'loss_ratio')),
        ms(get(c, 'rtp', 'jitter_seconds')) + ' / ' + ms(get(p, 'rtp', 'jitter_seconds')),
        ms(get(c, 'rtt', 'last_seconds')) + ' / ' + ms(get(p, 'rtt', 'last_seconds'))], 5);
      tr.dataset.id = String(e.id);
      if (poor) tr.classList.add('poor');
      tr.addEventListener('click', () => { location.hash = 'alloc=' + encodeURIComponent(String(e.id)); });
      tb.appendChild(tr);
    }
  }

  /* ---- one allocation: charts over its timeline, streams, drops, ICMP ---- */

  const CHARTS = [
    { key: 'loss_ratio', reason: 'loss', title: 'RTP loss per interval (%)', scale: 100, thr: 'loss_ratio', min: 0.02 },
    { key: 'jitter_seconds', reason: 'jitter', title: 'Jitter (ms)', scale: 1000, thr: 'jitter_seconds', min: 0.04 },
    { key: 'rtt_seconds', reason: 'rtt', title: 'RTT relay \u2194 endpoint (ms)', scale: 1000, thr: 'rtt_seconds', min: 0.05 },
  ];

  function chart(spec, tl) {
    const W = 600, H = 170, L = 44, R = 8, T = 10, B = 22;
    const ivs = tl.intervals || [];
    const thr = get(tl, 'thresholds', spec.thr);
    let max = spec.min;
    for (const iv of ivs) for (const leg of ['client_leg', 'peer_leg']) {
      const v = get(iv, leg, spec.key);
      if (isNum(v) && v > max) max = v;
    }
    if (isNum(thr) && thr * 1.5 > max) max = thr * 1.5;
    max *= 1.1;
    const n = Math.max(ivs.length, 1);
    const xw = (W - L - R) / n;
    const x = (i) => L + xw * (i + 0.5);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img' });
    s.appendChild(svg('title', {}, spec.title));
    ivs.forEach((iv, i) => {
      const bad = ['client_leg', 'peer_leg'].filter((leg) => (get(iv, leg, 'poor') || []).includes(spec.reason));
      if (bad.length) {
        const r = svg('rect', { x: L + xw * i, y: T, width: xw, height: H - T - B, class: 'bad' });
        r.appendChild(svg('title', {}, clock(iv.start) + ': ' + bad.map((b) => b.replace('_leg', '')).join(' and ') + ' leg poor (' + spec.reason + ')'));
        r.dataset.seq = String(iv.seq);
        s.appendChild(r);
      }
    });
    s.appendChild(svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }));
    s.appendChild(svg('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }));
    s.appendChild(svg('text', { x: 2, y: T + 8 }, (max * spec.scale).toFixed(spec.scale === 100 ? 1 : 0)));
    s.appendChild(svg('text', { x: 2, y: H - B }, '0'));
    if (ivs.length) {
      s.appendChild(svg('text', { x: L, y: H - 6 }, clock(ivs[0].start)));
      s.appendChild(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, clock(ivs[ivs.length - 1].start)));
    }
    if (isNum(thr)) s.appendChild(svg('line', { x1: L, y1: y(thr), x2: W - R, y2: y(thr), class: 'thr' }));
    for (const leg of ['client_leg', 'peer_leg']) {
      const cls = leg === 'client_leg' ? 'client' : 'peer';
      let pts = [];
      const flush = () => {
        if (pts.length > 1) s.appendChild(svg('polyline', { points: pts.join(' '), class: cls }));
        pts = [];
      };
      ivs.forEach((iv, i) => {
        const v = get(iv, leg, spec.key);
        if (!isNum(v)) { flush(); return; } /* unknown: a gap, not a zero */
        pts.push(x(i).toFixed(1) + ',' + y(v).toFixed(1));
        const c = svg('circle', { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.2, class: cls });
        c.appendChild(svg('title', {}, clock(iv.start) + ' ' + cls + ' leg: ' + (v * spec.scale).toFixed(2)));
        s.appendChild(c);
      });
      flush();
    }
    const fig = el('figure');
    fig.appendChild(el('figcaption', spec.title));
    fig.appendChild(s);
    fig.dataset.chart = spec.reason;
    return fig;
  }

  const sumDrops = (leg) => Object.values(get(leg, 'drops') || {}).reduce((a, b) => a + (isNum(b) ? b : 0), 0);

  function renderTimeline(tl) {
    const charts = $('charts');
    clear(charts);
    for (const spec of CHARTS) charts.appendChild(chart(spec, tl));
    const tb = $('intervals').tBodies[0];
    clear(tb);
    for (const iv of tl.intervals || []) {
      const c = iv.client_leg || {}, p = iv.peer_leg || {};
      const tr = row([clock(iv.start),
        count(c.packets), pct(c.loss_ratio), ms(c.jitter_seconds), ms(c.rtt_seconds), count(c.ce), sumDrops(c),
        count(p.packets), pct(p.loss_ratio), ms(p.jitter_seconds), ms(p.rtt_seconds), count(p.ce), sumDrops(p),
        [['client', c], ['peer', p]].filter(([, l]) => (l.poor || []).length)
          .map(([n, l]) => n + ': ' + l.poor.join(', '))
          .concat(c.moves > 0 ? ['client moved (new address)'] : []).join('; ')], 1, 12);
      tr.dataset.seq = String(iv.seq);
      const mark = (col, leg, reason) => { if ((leg.poor || []).includes(reason)) tr.children[col].classList.add('over'); };
      mark(2, c, 'loss'); mark(3, c, 'jitter'); mark(4, c, 'rtt');
      mark(8, p, 'loss'); mark(9, p, 'jitter'); mark(10, p, 'rtt');
      tb.appendChild(tr);
    }
  }

  function renderDetail(d, tl) {
    $('d-id').textContent = String(d.id);
    $('d-who').textContent = 'user ' + d.user + ' \u00b7 ' + d.transport + ' from ' + d.client +
      ' \u00b7 relayed ' + (d.relayed || []).join(', ') + ' \u00b7 age ' + age(d.age_seconds) +
      ' \u00b7 peers ' + d.peers +
      (d.mobile ? ' \u00b7 mobile: moved ' + count(d.moves) + (d.moved_at ? ' times, last ' + clock(d.moved_at) : ' times') : '');
    const poor = poorText(get(d, 'qos', 'poor'));
    const dp = $('d-poor');
    dp.textContent = poor ? 'POOR now: ' + poor + ' (since ' + clock(get(d, 'qos', 'poor', 0, 'since')) + ')' : 'quality ok now';
    dp.className = poor ? 'poorbadge' : 'muted';
    if (tl) renderTimeline(tl);
    const st = $('streams').tBodies[0];
    clear(st);
    const ev = $('events').tBodies[0];
    clear(ev);
    const icmp = { unreachable: 0, ttl_exceeded: 0, packet_too_big: 0 };
    for (const pf of d.peers_detail || []) {
      for (const [dir, dj] of Object.entries(pf.directions || {})) {
        for (const s of dj.rtp_streams || []) {
          const loss = isNum(s.packets_expected) && s.packets_expected > 0 ? s.packets_lost_net / s.packets_expected : null;
          st.appendChild(row([pf.peer, dir.replace('_', ' '), s.ssrc, s.kind, count(s.packets_received),
            count(s.packets_lost), pct(loss), ms(s.jitter_seconds), s.state], 4, 7));
        }
      }
      for (const k of Object.keys(icmp)) icmp[k] += get(pf, 'icmp', k) || 0;
    }
    const drops = { permission: [0, 0], bandwidth: [0, 0], send: [0, 0], overflow: [0, 0] };
    for (const iv of (tl && tl.intervals) || []) {
      ['client_leg', 'peer_leg'].forEach((leg, i) => {
        for (const k of Object.keys(drops)) drops[k][i] += get(iv, leg, 'drops', k) || 0;
      });
    }
    for (const k of Object.keys(drops)) ev.appendChild(row(['dropped: ' + k + ' (in the timeline)', drops[k][0], drops[k][1]], 1));
    for (const k of Object.keys(icmp)) ev.appendChild(row(['ICMP from peers: ' + k.replace(/_/g, ' '), '-', icmp[k]], 1));
  }

  async function refreshDetail() {
    if (!selected) return;
    const id = encodeURIComponent(selected);
    const [d, t] = await Promise.all([api('/api/v1/allocations/' + id), api('/api/v1/allocations/' + id + '/timeline')]);
    if (!d) {
      $('d-poor').textContent = 'allocation ' + selected + ' has ended';
      return;
    }
    /* the detail's "peers" is the array of peer flows; their number is qos.peers */
    d.peers_detail = Array.isArray(d.peers) ? d.peers : [];
    d.peers = get(d, 'qos', 'peers');
    renderDetail(d, t && t.timeline);
  }

  /* ---- the loop ---- */

  async function refresh() {
    clearTimeout(timer);
    try {
      await refreshNode();
      await refreshList();
      await refreshDetail();
      $('tokenform').hidden = true;
      $('forget').hidden = !sessionStorage.getItem(TOKEN_KEY);
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    } catch (e) {
      if (e instanceof AuthNeeded) askToken();
      else setStatus(String(e.message || e), 'bad');
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function route() {
    const m = /^#alloc=([0-9]{1,20})$/.exec(location.hash);
    selected = m ? m[1] : null;
    $('detail').hidden = !selected;
    refresh();
  }

  $('tokenform').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    refresh();
  });
  $('forget').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); refresh(); });
  $('filter').addEventListener('input', () => refreshList().catch(() => {}));
  $('close').addEventListener('click', () => { location.hash = ''; });
  window.addEventListener('hashchange', route);
  route();
})();
