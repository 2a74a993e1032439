/*
 * ThreatBay situational-awareness page (issue 9): a client of the public API only.
 *
 * Every call is fetch() with "Authorization: Bearer <key>"; the key lives in
 * sessionStorage (this tab only). The live alert stream is read with fetch() and
 * a ReadableStream parser of text/event-stream, not EventSource (which cannot
 * send an Authorization header); it remembers the last event id and reconnects
 * with Last-Event-ID. All data is written with textContent, never as HTML.
 * Requests use credentials: 'omit': the key travels in the header only, and a 401
 * carrying a Basic challenge (TAXII 2.1 1.6.9) must not pop the browser's login dialog.
 */
(() => {
  'use strict';

  const KEY_STORE = 'threatbay.apiKey';
  const LANG_STORE = 'threatbay.lang';
  const LEVELS = ['RED', 'ORANGE', 'YELLOW', 'BLUE'];
  const LEVEL_RANK = { RED: 4, ORANGE: 3, YELLOW: 2, BLUE: 1 };
  const JURISDICTIONS = ['GD', 'HK', 'MO'];
  // DOMAIN.md "Early-warning levels": acknowledge within (minutes).
  const ACK_WITHIN_MIN = { RED: 30, ORANGE: 60, YELLOW: 240, BLUE: 1440 };
  // Language by jurisdiction: Simplified for Guangdong, Traditional for Hong Kong and Macao.
  const LANG_BY_JURISDICTION = { GD: 'zh-Hans', HK: 'zh-Hant', MO: 'zh-Hant' };
  const LOCALE = { en: 'en-GB', 'zh-Hans': 'zh-CN', 'zh-Hant': 'zh-HK' };
  const READ_ROLES = ['analyst', 'dashboard', 'admin'];
  const ACT_ROLES = ['analyst', 'admin'];
  const HOUR = 3600e3;
  const DAY = 24 * HOUR;
  const WINDOWS = {
    '24h': { span: DAY, bucket: HOUR },
    '7d': { span: 7 * DAY, bucket: DAY },
    '30d': { span: 30 * DAY, bucket: DAY },
  };
  const MAX_PAGES = 20; // 20 x 500 items per listing at most; the chart says when it stopped
  const PAGE = 500;
  const FRESH_MS = 15000;
  const PANELS_MIN_GAP_MS = 30000;
  const TIME_ZONE = 'Etc/GMT-8'; // UTC+8, the whole Greater Bay Area
  const UTC8 = 8 * HOUR;

  const state = {
    strings: {},
    lang: 'en',
    key: null,
    me: null,
    skewMs: 0,
    alerts: new Map(),
    freshUntil: new Map(),
    lastEventId: null,
    streamCtl: null,
    timers: [],
    refreshTimer: null,
    panelsAt: 0,
    trendSeq: 0,
    window: '24h',
    dim: 'jurisdiction',
    trend: null,
    top: null,
    stats: null,
    lookup: null,
    detail: null,
    updatedAt: null,
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ i18n

  function t(key, params) {
    const table = state.strings[state.lang] || {};
    let text = table[key];
    if (text === undefined) text = (state.strings.en || {})[key];
    if (text === undefined) text = key;
    if (params) {
      text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
    }
    return text;
  }

  function jurName(code) {
    const key = 'jur.' + code;
    const text = t(key);
    return text === key ? code : text;
  }

  function listSep() {
    return state.lang === 'en' ? ', ' : '、';
  }

  function typeName(type) {
    const key = 'type.' + type;
    const text = t(key);
    return text === key ? type : text;
  }

  function defaultLang() {
    const nav = (navigator.language || 'en').toLowerCase();
    if (nav.startsWith('zh-hk') || nav.startsWith('zh-mo') || nav.startsWith('zh-tw') ||
        nav.startsWith('zh-hant')) return 'zh-Hant';
    if (nav.startsWith('zh')) return 'zh-Hans';
    return 'en';
  }

  function setLang(lang, remember) {
    if (!state.strings[lang]) lang = 'en';
    state.lang = lang;
    if (remember) sessionStorage.setItem(LANG_STORE, lang);
    document.documentElement.lang = lang;
    $('lang').value = lang;
    document.title = t('app.title');
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-placeholder]')) {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    }
    renderAll();
  }

  // ----------------------------------------------------------- formatting

  function now() {
    return Date.now() + state.skewMs;
  }

  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(parseTs(iso));
    if (Number.isNaN(d.getTime())) return iso;
    return new Intl.DateTimeFormat(LOCALE[state.lang], {
      timeZone: TIME_ZONE, month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
      hour12: false,
    }).format(d);
  }

  function fmtDuration(ms) {
    const min = Math.max(0, Math.round(ms / 60000));
    if (min < 60) return t('dur.min', { m: min });
    const h = Math.floor(min / 60);
    if (h < 24) return t('dur.hmin', { h, m: min % 60 });
    return t('dur.dh', { d: Math.floor(h / 24), h: h % 24 });
  }

  function fmtScore(v) {
    return typeof v === 'number' ? v.toFixed(1) : '—';
  }

  function fmtNumber(n) {
    return new Intl.NumberFormat(LOCALE[state.lang]).format(n);
  }

  /** ms epoch of a STIX timestamp (any number of fraction digits); NaN when absent. */
  function parseTs(iso) {
    if (!iso) return NaN;
    return Date.parse(String(iso).replace(/(\.\d{3})\d+/, '$1'));
  }

  /** STIX timestamp (microseconds) for a ms epoch, so string ranges compare correctly. */
  function stixTime(ms) {
    return new Date(ms).toISOString().replace('Z', '000Z');
  }

  // ------------------------------------------------------------------ DOM

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  function levelBadge(level) {
    return h('span', { class: 'lvl lvl-' + level, dataset: { level } }, t('level.' + level));
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || 'HTTP ' + status);
      this.status = status;
    }
  }

  function authHeaders(extra) {
    return Object.assign({ Authorization: 'Bearer ' + state.key, Accept: 'application/json' },
      extra || {});
  }

  function noteClock(res) {
    const date = res.headers.get('Date');
    const at = date ? Date.parse(date) : NaN; // HTTP-date, not STIX
    // Only trust a clearly wrong local clock: the header has one-second resolution.
    if (!Number.isNaN(at)) {
      const skew = at - Date.now();
      state.skewMs = Math.abs(skew) > 5000 ? skew : 0;
    }
  }

  async function api(path, params, init) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === null || v === undefined || v === '') continue;
      for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one);
    }
    const res = await fetch(url, Object.assign({ cache: 'no-store', credentials: 'omit' }, init || {}, {
      headers: authHeaders(init && init.headers),
    }));
    noteClock(res);
    if (res.status === 401) {
      signOut(t('signin.session_ended'));
      throw new ApiError(401);
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) throw new ApiError(res.status, body && (body.detail || body.description));
    return body;
  }

  /** Every page of a listing (cursor in `next` or `next_cursor`); stop(item) ends early. */
  async function allPages(path, params, stop) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      const body = await api(path, Object.assign({}, params, { limit: PAGE, cursor }));
      for (const item of body.items || []) {
        if (stop && stop(item)) return { items, truncated: false };
        items.push(item);
      }
      cursor = body.next || body.next_cursor || null;
      if (!cursor) return { items, truncated: false };
    }
    return { items, truncated: true };
  }

  // ------------------------------------------------------------ sign-in

  function normaliseKey(raw) {
    return raw.trim().replace(/^bearer\s+/i, '');
  }

  async function signIn(key, fromStorage) {
    state.key = key;
    $('signin-error').textContent = '';
    let res;
    try {
      res = await fetch('/api/v1/me', { headers: authHeaders(), cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      $('signin-error').textContent = t('signin.unreachable');
      state.key = null;
      return;
    }
    if (!res.ok) {
      state.key = null;
      sessionStorage.removeItem(KEY_STORE);
      $('signin-error').textContent = res.status === 401 ? t('signin.bad_key')
        : t('error.request', { status: res.status });
      return;
    }
    noteClock(res);
    const me = await res.json();
    if (!me.roles.some((r) => READ_ROLES.includes(r))) {
      state.key = null;
      $('signin-error').textContent = t('signin.no_role');
      return;
    }
    state.me = me;
    sessionStorage.setItem(KEY_STORE, key);
    if (!sessionStorage.getItem(LANG_STORE)) {
      setLang(LANG_BY_JURISDICTION[me.agency.jurisdiction] || 'en', false);
    }
    $('apikey').value = '';
    $('signin').hidden = true;
    $('dashboard').hidden = false;
    $('signout').hidden = false;
    $('live').hidden = false;
    $('whoami').hidden = false;
    renderWho();
    startDashboard(fromStorage);
  }

  function signOut(message) {
    stopDashboard();
    state.key = null;
    state.me = null;
    sessionStorage.removeItem(KEY_STORE);
    state.alerts = new Map();
    state.freshUntil = new Map();
    state.lastEventId = null;
    state.trend = state.top = state.stats = state.lookup = state.detail = null;
    $('dashboard').hidden = true;
    $('signout').hidden = true;
    $('live').hidden = true;
    $('whoami').hidden = true;
    $('detail').hidden = true;
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
  }

  function renderWho() {
    if (!state.me) return;
    $('whoami').textContent = t('who.as', {
      name: state.me.agency.name, jurisdiction: jurName(state.me.agency.jurisdiction),
    });
  }

  // ---------------------------------------------------------- dashboard

  function startDashboard() {
    openStream();
    loadAll();
    state.timers.push(setInterval(() => { renderAlerts(); renderSummary(); }, 30000));
    state.timers.push(setInterval(loadPanels, 60000));
    state.timers.push(setInterval(loadAlerts, 300000)); // safety net behind the stream
  }

  function stopDashboard() {
    for (const id of state.timers) clearInterval(id);
    state.timers = [];
    clearTimeout(state.refreshTimer);
    state.refreshTimer = null;
    if (state.streamCtl) state.streamCtl.abort();
    state.streamCtl = null;
  }

  async function loadAll() {
    await Promise.allSettled([loadAlerts(), loadPanels()]);
  }

  async function loadPanels() {
    state.panelsAt = Date.now();
    await Promise.allSettled([loadStats(), loadTop(), loadTrend()]);
  }

  function touched() {
    state.updatedAt = new Date(now()).toISOString();
    $('updated-at').textContent = t('updated', { time: fmtTime(state.updatedAt) });
  }

  // --------------------------------------------------------------- alerts

  function upsertAlert(alert) {
    const current = state.alerts.get(alert.id);
    if (!current || (alert.updated || '') >= (current.updated || '')) {
      state.alerts.set(alert.id, alert);
      return true;
    }
    return false;
  }

  async function loadAlerts() {
    try {
      const { items } = await allPages('/api/v1/alerts', { status: 'open' });
      const listed = new Set(items.map((a) => a.id));
      for (const alert of items) upsertAlert(alert);
      // An alert closed while we were away is no longer listed as open.
      for (const [id, alert] of state.alerts) {
        if (!listed.has(id) && alert.status === 'open' && !state.freshUntil.has(id)) {
          state.alerts.delete(id);
        }
      }
      renderSummary();
      renderAlerts();
      touched();
    } catch (e) {
      if (e.status !== 401) console.warn('alerts', e);
    }
  }

  function openAlerts() {
    return [...state.alerts.values()].filter((a) => a.status === 'open');
  }

  /** A jurisdiction's acknowledgement state, with how late or how long left. */
  function ackState(alert, jurisdiction) {
    const st = (alert.jurisdiction_state || {})[jurisdiction] || {};
    if (st.status === 'acknowledged') return { kind: 'acked', by: st.acknowledged_by };
    const t0 = parseTs(st.notified_at || alert.created);
    if (Number.isNaN(t0)) return { kind: 'pending', left: 0 };
    const firstDeadline = t0 + (ACK_WITHIN_MIN[alert.level] || 0) * 60000;
    const deadline = parseTs(st.deadline || '') || firstDeadline;
    const at = now();
    if (st.overdue || at > firstDeadline) {
      return { kind: 'overdue', late: at - firstDeadline, renotified: st.renotified_count || 0 };
    }
    return { kind: 'pending', left: deadline - at };
  }

  function renderSummary() {
    const table = $('summary-table');
    if (!table || $('dashboard').hidden) return;
    const open = openAlerts();
    const cols = [...JURISDICTIONS];
    for (const a of open) for (const j of a.jurisdictions || []) if (!cols.includes(j)) cols.push(j);
    const counts = {};
    for (const lv of LEVELS) counts[lv] = { ALL: 0 };
    const pending = { ALL: 0 };
    const overdue = { ALL: 0 };
    for (const a of open) {
      if (!counts[a.level]) continue;
      counts[a.level].ALL += 1;
      let anyPending = false;
      let anyOverdue = false;
      for (const j of a.jurisdictions || []) {
        counts[a.level][j] = (counts[a.level][j] || 0) + 1;
        const ack = ackState(a, j);
        if (ack.kind !== 'acked') { pending[j] = (pending[j] || 0) + 1; anyPending = true; }
        if (ack.kind === 'overdue') { overdue[j] = (overdue[j] || 0) + 1; anyOverdue = true; }
      }
      if (anyPending) pending.ALL += 1;
      if (anyOverdue) overdue.ALL += 1;
    }
    const cell = (n, level, j) => h('td', {
      class: 'count' + (n ? '' : ' zero'), dataset: { level, jurisdiction: j },
    }, fmtNumber(n || 0));
    table.replaceChildren(
      h('thead', null, h('tr', null,
        h('th', { text: t('summary.level') }),
        cols.map((j) => h('th', { class: 'col', text: jurName(j) })),
        h('th', { class: 'col', text: t('summary.total') }))),
      h('tbody', null,
        LEVELS.map((lv) => h('tr', { class: 'lvl-row-' + lv },
          h('td', null, levelBadge(lv)),
          cols.map((j) => cell(counts[lv][j], lv, j)),
          cell(counts[lv].ALL, lv, 'ALL'))),
        h('tr', { class: 'sub first-sub pending-row' },
          h('td', { text: t('summary.pending') }),
          cols.map((j) => cell(pending[j], 'PENDING', j)), cell(pending.ALL, 'PENDING', 'ALL')),
        h('tr', { class: 'sub overdue-row' },
          h('td', { text: t('summary.overdue') }),
          cols.map((j) => cell(overdue[j], 'OVERDUE', j)), cell(overdue.ALL, 'OVERDUE', 'ALL'))));
  }

  function ackChip(alert, j) {
    const ack = ackState(alert, j);
    let text;
    if (ack.kind === 'acked') text = t('ack.done', { agency: ack.by || '?' });
    else if (ack.kind === 'overdue') {
      text = t('ack.overdue', { late: fmtDuration(ack.late) });
      if (ack.renotified) text += ' · ' + t('ack.renotified', { n: ack.renotified });
    } else text = t('ack.due', { left: fmtDuration(ack.left) });
    return h('span', { class: 'chip ' + ack.kind, dataset: { jurisdiction: j, ack: ack.kind } },
      jurName(j) + ': ' + text);
  }

  function renderAlerts() {
    const body = $('alerts-body');
    if (!body || $('dashboard').hidden) return;
    const at = Date.now();
    // Most severe first; within a level, whoever is overdue, then awaiting, then the newest.
    const attention = (a) => Math.max(0, ...(a.jurisdictions || []).map((j) =>
      ({ overdue: 2, pending: 1, acked: 0 })[ackState(a, j).kind]));
    const rows = openAlerts().sort((a, b) =>
      (LEVEL_RANK[b.level] - LEVEL_RANK[a.level]) || (attention(b) - attention(a)) ||
      String(b.updated).localeCompare(String(a.updated)));
    body.replaceChildren(...rows.map((a) => {
      const fresh = (state.freshUntil.get(a.id) || 0) > at;
      const count = a.indicator_keys ? a.indicator_keys.length : (a.indicators || []).length;
      return h('tr', {
        class: fresh ? 'fresh' : '', dataset: { alertId: a.id, level: a.level },
        onclick: () => openAlert(a.id),
      },
      h('td', null, levelBadge(a.level)),
      h('td', null,
        h('div', { class: 'alert-title' }, a.title || a.id,
          fresh ? h('span', { class: 'badge-new', text: t('alerts.new') }) : null),
        h('div', { class: 'alert-meta' },
          [a.category, t('alerts.indicators', { n: count })].filter(Boolean).join(' · '))),
      h('td', null, h('div', { class: 'chips' },
        (a.jurisdictions || []).map((j) => ackChip(a, j)))),
      h('td', { text: fmtTime(a.updated) }));
    }));
    $('alerts-empty').hidden = rows.length > 0;
  }

  // --------------------------------------------------------------- stream

  function setLive(mode) {
    const el = $('live');
    el.dataset.state = mode;
    $('live-text').textContent = t('live.' + mode);
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const id = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(id); resolve(); });
    });
  }

  /**
   * Parse a text/event-stream body (WHATWG HTML "Server-sent events" 9.2.6):
   * lines end in CRLF, LF or CR; a blank line dispatches; ":" starts a comment.
   */
  async function readEventStream(body, handlers) {
    const reader = body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buffer = '';
    let data = [];
    let type = '';
    let idBuffer = state.lastEventId;
    const line = (text) => {
      if (text === '') {
        if (data.length) {
          state.lastEventId = idBuffer;
          handlers.event({ id: idBuffer, type: type || 'message', data: data.join('\n') });
        }
        data = [];
        type = '';
        return;
      }
      if (text[0] === ':') { handlers.comment(text.slice(1).trim()); return; }
      const colon = text.indexOf(':');
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? '' : text.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') type = value;
      else if (field === 'id' && !value.includes('\0')) idBuffer = value;
      else if (field === 'retry' && /^\d+$/.test(value)) handlers.retry(Number(value));
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buffer);
        if (!m) break;
        // A lone CR at the end may be the first half of CRLF: wait for more.
        if (m[0] === '\r' && m.index === buffer.length - 1) break;
        const text = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        line(text);
      }
    }
  }

  async function openStream() {
    const ctl = new AbortController();
    state.streamCtl = ctl;
    let retryMs = 2000;
    let failures = 0;
    while (!ctl.signal.aborted) {
      setLive('connecting');
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
        const res = await fetch('/api/v1/stream', {
          headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit',
        });
        if (res.status === 401) { signOut(t('signin.session_ended')); return; }
        if (!res.ok || !res.body) throw new ApiError(res.status);
        await readEventStream(res.body, {
          comment: (text) => {
            if (text === 'connected') {
              setLive('on');
              failures = 0;
              // Catch up on anything that changed while disconnected.
              if (state.lastEventId === null) loadAlerts();
            }
          },
          retry: (ms) => { retryMs = ms; },
          event: onStreamEvent,
        });
      } catch (e) {
        if (ctl.signal.aborted) return;
        failures += 1;
      }
      if (ctl.signal.aborted) return;
      setLive('off');
      // Back off on repeated failures, up to 30 s.
      await sleep(Math.min(30000, retryMs * Math.max(1, 2 ** Math.min(failures, 4))), ctl.signal);
    }
  }

  function onStreamEvent(ev) {
    let payload;
    try { payload = JSON.parse(ev.data); } catch (e) { return; }
    const alert = payload && payload.alert;
    if (!alert || !alert.id) return;
    if (upsertAlert(alert) && (ev.type === 'opened' || ev.type === 'level_raised' ||
        ev.type === 'updated' || ev.type === 'renotified')) {
      state.freshUntil.set(alert.id, Date.now() + FRESH_MS);
      setTimeout(renderAlerts, FRESH_MS + 50);
    }
    renderSummary();
    renderAlerts();
    touched();
    if (state.detail && state.detail.kind === 'alert' && state.detail.id === alert.id) {
      openAlert(alert.id);
    }
    // New alerts usually mean new indicators: refresh the other panels soon, at most
    // once per PANELS_MIN_GAP_MS however busy the stream is.
    if (state.refreshTimer === null) {
      const wait = Math.max(3000, PANELS_MIN_GAP_MS - (Date.now() - state.panelsAt));
      state.refreshTimer = setTimeout(() => { state.refreshTimer = null; loadPanels(); }, wait);
    }
  }

  // ---------------------------------------------------------------- stats

  async function loadStats() {
    try {
      state.stats = await api('/api/v1/stats/indicators');
      renderStats();
    } catch (e) {
      if (e.status !== 401) console.warn('stats', e);
    }
  }

  function renderStats() {
    const box = $('stats-body');
    if (!box || !state.stats) return;
    const st = state.stats;
    const kpi = (label, value, key) => h('div', { class: 'kpi', dataset: { stat: key } },
      h('div', { class: 'v', text: fmtNumber(value || 0) }), h('div', { class: 'k', text: label }));
    const byJ = st.by_jurisdiction || {};
    const byS = st.by_state || {};
    box.replaceChildren(
      kpi(t('stats.total'), st.total, 'total'),
      kpi(t('stats.active'), byS.active, 'active'),
      ...JURISDICTIONS.map((j) => kpi(jurName(j), byJ[j], 'jur-' + j)),
      kpi(t('stats.expired') + ' / ' + t('stats.revoked'), (byS.expired || 0) + (byS.revoked || 0),
        'closed'));
  }

  // ------------------------------------------------------------------ top

  async function loadTop() {
    try {
      const body = await api('/api/v1/indicators', { sort: 'corroboration', limit: 10 });
      state.top = body.items || [];
      renderTop();
    } catch (e) {
      if (e.status !== 401) console.warn('top', e);
    }
  }

  function renderTop() {
    const body = $('top-body');
    if (!body || !state.top) return;
    body.replaceChildren(...state.top.map((r) => h('tr', {
      dataset: { key: r.key }, onclick: () => openIndicator(r.key),
    },
    h('td', { class: 'value', text: r.value || r.key }),
    h('td', { text: typeName(r.observable_type) }),
    h('td', { class: 'num', text: r.agency_count != null ? r.agency_count : (r.agencies || []).length }),
    h('td', { text: (r.jurisdictions || []).map(jurName).join(listSep()) }),
    h('td', { class: 'num score', text: fmtScore(r.score) }),
    h('td', { class: 'num', text: fmtScore(r.score_now) }))));
    $('top-empty').hidden = state.top.length > 0;
  }

  // ---------------------------------------------------------------- trend

  async function loadTrend() {
    const w = WINDOWS[state.window];
    // Buckets on whole hours / days of UTC+8, the last one holding "now".
    const end = Math.ceil((now() + UTC8) / w.bucket) * w.bucket - UTC8;
    const start = end - w.span;
    const since = stixTime(start);
    const seq = (state.trendSeq = (state.trendSeq || 0) + 1);
    try {
      const [ind, alerts] = await Promise.all([
        // Newest first by first_seen; `since` (on last_seen) is a superset that keeps pages small.
        allPages('/api/v1/indicators', { sort: 'first_seen', since },
          (r) => parseTs(r.first_seen) < start),
        allPages('/api/v1/alerts', { since }),
      ]);
      if (seq !== state.trendSeq) return; // a newer request (another period) is under way
      state.trend = {
        window: state.window, start, end,
        indicators: ind.items.filter((r) => parseTs(r.first_seen) >= start),
        alerts: alerts.items.filter((a) => parseTs(a.created) >= start),
        truncated: ind.truncated || alerts.truncated,
      };
      renderTrend();
    } catch (e) {
      if (e.status !== 401) console.warn('trend', e);
    }
  }

  function seriesOf(item, dim, isAlert) {
    if (dim === 'jurisdiction') return item.jurisdictions || [];
    if (isAlert) return [...new Set((item.indicators || []).map((i) => i.observable_type))];
    return [item.observable_type];
  }

  function seriesClass(dim, name, order) {
    if (dim === 'jurisdiction' && JURISDICTIONS.includes(name)) return 's-' + name;
    return 's-' + (order.indexOf(name) % 8);
  }

  function chart(container, title, items, timeOf, isAlert) {
    const tr = state.trend;
    const w = WINDOWS[tr.window];
    const n = Math.round(w.span / w.bucket);
    const dim = state.dim;
    const buckets = Array.from({ length: n }, () => ({}));
    const totals = {};
    for (const item of items) {
      const i = Math.min(n - 1, Math.floor((timeOf(item) - tr.start) / w.bucket));
      if (i < 0) continue;
      for (const name of seriesOf(item, dim, isAlert)) {
        if (!name) continue;
        buckets[i][name] = (buckets[i][name] || 0) + 1;
        totals[name] = (totals[name] || 0) + 1;
      }
    }
    const order = Object.keys(totals).sort((a, b) => {
      const ia = JURISDICTIONS.indexOf(a);
      const ib = JURISDICTIONS.indexOf(b);
      if (dim === 'jurisdiction' && ia >= 0 && ib >= 0) return ia - ib;
      return totals[b] - totals[a] || a.localeCompare(b);
    });
    const label = (name) => (dim === 'jurisdiction' ? jurName(name) : typeName(name));
    const W = 600;
    const H = 120;
    const padL = 28;
    const padB = 16;
    const max = Math.max(1, ...buckets.map((b) => Object.values(b).reduce((x, y) => x + y, 0)));
    const bw = (W - padL) / n;
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img',
      'aria-label': title });
    svg.append(s('line', { class: 'axis', x1: padL, y1: H - padB, x2: W, y2: H - padB }));
    svg.append(s('text', { x: padL - 4, y: 10, 'text-anchor': 'end' }, String(max)));
    svg.append(s('text', { x: padL - 4, y: H - padB, 'text-anchor': 'end' }, '0'));
    const tickEvery = n <= 7 ? 1 : n <= 24 ? 6 : 5;
    buckets.forEach((b, i) => {
      const x = padL + i * bw;
      let y = H - padB;
      const bucketStart = tr.start + i * w.bucket;
      for (const name of order) {
        const v = b[name] || 0;
        if (!v) continue;
        const hgt = ((H - padB - 12) * v) / max;
        y -= hgt;
        const rect = s('rect', { class: seriesClass(dim, name, order), x: x + 1, y,
          width: Math.max(1, bw - 2), height: hgt, 'data-series': name, 'data-count': v });
        rect.append(s('title', null, `${fmtTime(stixTime(bucketStart))} · ${label(name)}: ${v}`));
        svg.append(rect);
      }
      if (i % tickEvery === 0) {
        const stamp = fmtTime(stixTime(bucketStart));
        svg.append(s('text', { x: x + 1, y: H - 3 }, w.bucket === HOUR ? stamp.slice(-5) : stamp.slice(0, 5)));
      }
    });
    const total = items.length;
    container.replaceChildren(
      h('h3', { text: title.replace('{n}', fmtNumber(total)) }),
      svg,
      h('div', { class: 'legend' }, order.length ? order.map((name) => h('span', null,
        h('span', { class: 'sw ' + seriesClass(dim, name, order) }),
        `${label(name)} ${fmtNumber(totals[name])}`)) : h('span', { text: t('trend.empty') })));
    container.dataset.total = String(total);
    container.dataset.window = tr.window;
    container.dataset.dim = dim;
  }

  function renderTrend() {
    for (const b of document.querySelectorAll('#trend-window button')) {
      b.classList.toggle('on', b.dataset.window === state.window);
    }
    for (const b of document.querySelectorAll('#trend-dim button')) {
      b.classList.toggle('on', b.dataset.dim === state.dim);
    }
    const tr = state.trend;
    if (!tr || $('dashboard').hidden) return;
    chart($('trend-indicators'), t('trend.indicators', { n: '{n}' }), tr.indicators,
      (r) => parseTs(r.first_seen), false);
    chart($('trend-alerts'), t('trend.alerts', { n: '{n}' }), tr.alerts,
      (a) => parseTs(a.created), true);
    if (tr.truncated) {
      $('trend-alerts').append(h('p', { class: 'note', text: t('trend.truncated',
        { n: fmtNumber(MAX_PAGES * PAGE) }) }));
    }
  }

  // --------------------------------------------------------------- lookup

  async function runLookup(value) {
    const box = $('lookup-result');
    box.replaceChildren(h('span', { text: t('loading') }));
    try {
      state.lookup = await api('/api/v1/lookup', { value });
    } catch (e) {
      state.lookup = null;
      if (e.status !== 401) box.replaceChildren(h('span', { class: 'missing',
        text: t('error.request', { status: e.status || '?' }) }));
      return;
    }
    renderLookup();
  }

  function renderLookup() {
    const box = $('lookup-result');
    const res = state.lookup;
    if (!box || !res) return;
    const parts = [];
    if (!res.keys || !res.keys.length) {
      parts.push(h('div', { class: 'missing', text: t('lookup.unparsed') }));
    } else {
      parts.push(h('div', { class: 'keys', text: t('lookup.keys', { keys: res.keys.join(', ') }) }));
      parts.push(res.found
        ? h('div', { class: 'found', text: t('lookup.found', { n: res.records.length }) })
        : h('div', { class: 'missing', text: t('lookup.not_found') }));
      for (const r of res.records || []) {
        parts.push(h('div', { class: 'record', dataset: { key: r.key },
          onclick: () => openIndicator(r.key) },
        h('div', { class: 'value', text: r.value || r.key }),
        h('div', { class: 'alert-meta' }, [
          typeName(r.observable_type),
          t('top.col.score') + ' ' + fmtScore(r.score_now),
          (r.jurisdictions || []).map(jurName).join(listSep()),
          t('state.' + r.state),
        ].join(' · '))));
      }
    }
    box.replaceChildren(...parts);
  }

  // --------------------------------------------------------------- detail

  function showDetail(...children) {
    $('detail-body').replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
    $('detail').hidden = false;
  }

  function dl(pairs) {
    return h('dl', null, pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== '')
      .flatMap(([k, v]) => [h('dt', { text: k }), h('dd', null, v)]));
  }

  async function openIndicator(key) {
    state.detail = { kind: 'indicator', id: key };
    showDetail(h('p', { text: t('loading') }));
    try {
      state.detail.data = await api('/api/v1/indicators/' + encodeURIComponent(key));
    } catch (e) {
      if (e.status !== 401) showDetail(h('p', { class: 'error', text: t('error.request', { status: e.status }) }));
      return;
    }
    renderDetail();
  }

  async function openAlert(id) {
    const again = state.detail && state.detail.kind === 'alert' && state.detail.id === id;
    state.detail = { kind: 'alert', id };
    if (!again) showDetail(h('p', { text: t('loading') }));
    try {
      state.detail.data = await api('/api/v1/alerts/' + encodeURIComponent(id));
    } catch (e) {
      if (e.status !== 401) showDetail(h('p', { class: 'error', text: t('error.request', { status: e.status }) }));
      return;
    }
    renderDetail();
  }

  function renderDetail() {
    const d = state.detail;
    if (!d || !d.data || $('detail').hidden) return;
    if (d.kind === 'indicator') renderIndicatorDetail(d.data);
    else renderAlertDetail(d.data);
  }

  function renderIndicatorDetail(r) {
    const c = r.components || {};
    const per = Object.entries(c.per_agency || {}).sort((a, b) => b[1] - a[1]);
    showDetail(
      h('h2', { text: t('detail.indicator') }),
      h('p', { class: 'value', text: r.value || r.key }),
      dl([
        [t('top.col.type'), typeName(r.observable_type)],
        [t('detail.state'), t('state.' + r.state)],
        [t('detail.score'), `${fmtScore(r.score)} / ${fmtScore(r.score_now)}`],
        [t('detail.tlp'), (r.tlp || '').toUpperCase()],
        [t('top.col.jurisdictions'), (r.jurisdictions || []).map(jurName).join(listSep())],
        [t('detail.first_seen'), fmtTime(r.first_seen)],
        [t('detail.last_seen'), fmtTime(r.last_seen)],
      ]),
      h('h3', { text: t('detail.explanation') }),
      h('ul', { class: 'explanation', id: 'score-explanation' },
        (c.explanation || []).map((line) => h('li', { text: line }))),
      c.tau_days != null ? h('p', { class: 'note', text: t('detail.decay',
        { t: c.t_days, tau: c.tau_days, delta: c.delta }) }) : null,
      [].concat(c.capped_by || []).length ? h('p', { class: 'error', text: t('detail.capped',
        { cap: c.cap, by: [].concat(c.capped_by).join(', ') }) }) : null,
      per.length ? h('h3', { text: t('detail.per_agency') }) : null,
      per.length ? h('table', { class: 'list' }, h('tbody', null, per.map(([a, p]) =>
        h('tr', null, h('td', { text: a }), h('td', { class: 'num', text: p.toFixed(3) }))))) : null,
      h('h3', { text: t('detail.sources') }),
      h('table', { class: 'list' },
        h('thead', null, h('tr', null, ['agency', 'jurisdiction', 'confidence', 'tlp', 'modified']
          .map((k) => h('th', { text: t('detail.source.' + k) })))),
        h('tbody', null, (r.sources || []).map((src) => h('tr', null,
          h('td', { text: src.agency }), h('td', { text: jurName(src.jurisdiction) }),
          h('td', { class: 'num', text: src.confidence != null ? src.confidence : '—' }),
          h('td', { text: (src.tlp || '').toUpperCase() }),
          h('td', { text: fmtTime(src.modified) }))))));
  }

  function renderAlertDetail(a) {
    const mine = state.me && state.me.agency.jurisdiction;
    const st = mine && (a.jurisdiction_state || {})[mine];
    const canAck = a.status === 'open' && st && st.status !== 'acknowledged' &&
      state.me.roles.some((r) => ACT_ROLES.includes(r));
    const ackBox = h('div');
    if (canAck) {
      ackBox.append(h('button', { type: 'button', id: 'ack-button', onclick: async () => {
        try {
          const updated = await api('/api/v1/alerts/' + encodeURIComponent(a.id) + '/acknowledge',
            null, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
          upsertAlert(Object.assign({}, updated, { timeline: undefined }));
          renderSummary();
          renderAlerts();
          openAlert(a.id);
        } catch (e) {
          if (e.status !== 401) ackBox.append(h('p', { class: 'error',
            text: t('ack.failed', { reason: e.message }) }));
        }
      } }, t('ack.button', { jurisdiction: jurName(mine) })));
    }
    showDetail(
      h('h2', null, levelBadge(a.level), ' ', a.title || a.id),
      dl([
        [t('detail.category'), a.category],
        [t('detail.start'), fmtTime(a.start_time || a.created)],
        [t('detail.scope'), (a.jurisdictions || []).map(jurName).join(listSep())],
        [t('detail.authority'), a.issuing_authority],
        [t('detail.tlp'), (a.tlp || '').toUpperCase()],
      ]),
      h('h3', { text: t('alerts.col.ack') }),
      h('div', { class: 'chips' }, (a.jurisdictions || []).map((j) => ackChip(a, j))),
      ackBox,
      (a.measures || []).length ? h('h3', { text: t('detail.measures') }) : null,
      (a.measures || []).length ? h('ul', null, a.measures.map((m) => h('li', { text: m }))) : null,
      h('h3', { text: t('detail.indicators') }),
      ...(a.indicators || []).map((i) => h('div', { class: 'record', dataset: { key: i.key },
        onclick: () => openIndicator(i.key) },
      h('div', { class: 'value', text: i.value || i.key }),
      h('div', { class: 'alert-meta', text: `${typeName(i.observable_type)} · ${t('top.col.score')} ${fmtScore(i.score)}` }))),
      a.indicators_hidden ? h('p', { class: 'note', text: t('detail.hidden', { n: a.indicators_hidden }) }) : null,
      (a.timeline || []).length ? h('h3', { text: t('detail.timeline') }) : null,
      (a.timeline || []).length ? h('ul', null, a.timeline.slice(-12).reverse().map((e) => h('li', {
        text: [fmtTime(e.at), t('event.' + e.type), e.jurisdiction ? jurName(e.jurisdiction) : '',
          e.by || ''].filter(Boolean).join(' · '),
      }))) : null);
  }

  // ------------------------------------------------------------------ all

  function renderAll() {
    renderWho();
    if (state.me) setLive($('live').dataset.state || 'connecting');
    renderSummary();
    renderAlerts();
    renderStats();
    renderTop();
    renderTrend();
    renderLookup();
    renderDetail();
    if (state.updatedAt) $('updated-at').textContent = t('updated', { time: fmtTime(state.updatedAt) });
  }

  async function loadStrings() {
    try {
      const res = await fetch('i18n.json', { cache: 'no-cache' });
      state.strings = await res.json();
    } catch (e) {
      state.strings = {};
    }
    setLang(sessionStorage.getItem(LANG_STORE) || defaultLang(), false);
  }

  function boot() {
    // Handlers first, so nothing typed or clicked before the strings arrive is lost.
    const ready = loadStrings();
    const when = (fn) => (e) => { e.preventDefault(); ready.then(() => fn(e)); };
    $('lang').addEventListener('change', (e) => ready.then(() => setLang(e.target.value, true)));
    $('signin-form').addEventListener('submit', when(() => {
      const key = normaliseKey($('apikey').value);
      if (key) signIn(key, false);
    }));
    $('signout').addEventListener('click', () => signOut(''));
    $('lookup-form').addEventListener('submit', when(() => {
      const value = $('lookup-input').value.trim();
      if (value) runLookup(value);
    }));
    $('detail-close').addEventListener('click', () => { $('detail').hidden = true; state.detail = null; });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { $('detail').hidden = true; state.detail = null; }
    });
    for (const b of document.querySelectorAll('#trend-window button')) {
      b.addEventListener('click', () => { state.window = b.dataset.window; renderTrend(); loadTrend(); });
    }
    for (const b of document.querySelectorAll('#trend-dim button')) {
      b.addEventListener('click', () => { state.dim = b.dataset.dim; renderTrend(); });
    }
    ready.then(() => {
      renderTrend();
      document.body.dataset.ready = 'true';
      const saved = sessionStorage.getItem(KEY_STORE);
      if (saved) signIn(saved, true);
    });
  }

  boot();
})();
