/* ThreatBay joint incident case page: a client of /api/v1/incidents with the user's own key.
 *
 * Lists the cases the key takes part in; a case shows its header, statutory clocks with a
 * live countdown, requests, tasks per jurisdiction, the merged timeline (live over SSE, read
 * with fetch() because EventSource cannot send the Authorization header), linked alerts and
 * records, and notes. Everything shown comes from the API, so it is exactly what the key may
 * see. The key is shared with the main page through sessionStorage (this tab only).
 */
(function () {
  'use strict';
  const KEY_STORE = 'threatbay.apiKey';
  const LANG_STORE = 'threatbay.lang';
  const JURISDICTIONS = ['GD', 'HK', 'MO'];
  const LOCALE = { en: 'en-GB', 'zh-Hans': 'zh-CN', 'zh-Hant': 'zh-HK' };
  const state = { key: null, lang: 'en', strings: {}, me: null, caseId: null, view: null,
                  timeline: [], stream: null, ticker: null };

  const $ = (id) => document.getElementById(id);
  function t(key, params) {
    const table = state.strings[state.lang] || {};
    let text = table[key] || (state.strings.en || {})[key] || key;
    for (const [k, v] of Object.entries(params || {})) text = text.split('{' + k + '}').join(String(v));
    return text;
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v; else if (k.startsWith('data-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function when(iso) {
    if (!iso) return t('inc.none');
    return new Intl.DateTimeFormat(LOCALE[state.lang], {
      timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', hour12: false,
    }).format(new Date(iso));
  }
  function duration(ms) {
    const m = Math.max(0, Math.floor(ms / 60000));
    if (m < 60) return t('dur.min', { m });
    const h = Math.floor(m / 60);
    if (h < 48) return t('dur.hmin', { h, m: m % 60 });
    return t('dur.dh', { d: Math.floor(h / 24), h: h % 24 });
  }
  async function api(path) {
    const r = await fetch('/api/v1/incidents' + path, { headers: { Authorization: 'Bearer ' + state.key } });
    if (r.status === 401) throw new Error('unauthorised');
    if (!r.ok) throw new Error('HTTP ' + r.status);
    return r.json();
  }
  function applyLang(lang) {
    state.lang = state.strings[lang] ? lang : 'en';
    document.documentElement.lang = state.lang;
    $('lang').value = state.lang;
    for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
    if (state.view) renderCase(); else if (state.key) loadList();
  }

  // ------------------------------------------------------------------ list
  async function loadList() {
    const data = await api('');
    const body = $('case-list');
    body.replaceChildren();
    for (const c of data.items) {
      const row = el('tr', { class: 'case-row', 'data-case': c.id },
        el('td', {}, el('span', { class: 'sev sev-' + c.severity }, c.severity)),
        el('td', {}, c.title),
        el('td', {}, t('inc.status.' + c.status)),
        el('td', {}, c.lead ? c.lead.agency : t('inc.none')),
        el('td', {}, when(c.updated)));
      row.addEventListener('click', () => openCase(c.id));
      body.append(row);
    }
    $('case-empty').hidden = data.items.length > 0;
    $('cases').hidden = false;
  }

  // ------------------------------------------------------------------ case
  async function openCase(id) {
    state.caseId = id;
    history.replaceState(null, '', '#' + id);
    await refreshCase();
    $('cases').hidden = true;
    $('case').hidden = false;
    startStream();
  }
  async function refreshCase() {
    const [view, timeline] = await Promise.all([
      api('/' + state.caseId), api('/' + state.caseId + '/timeline?limit=500')]);
    state.view = view;
    state.timeline = timeline.items;
    renderCase();
    document.body.dataset.case = 'ready';
  }
  function renderCase() {
    const v = state.view;
    const head = $('case-head');
    head.replaceChildren(
      el('h2', {}, el('span', { class: 'sev sev-' + v.severity }, v.severity), ' ', v.title, ' ',
         el('span', { class: 'tlp', id: 'case-tlp' }, 'TLP:' + v.tlp.toUpperCase())),
      el('p', { id: 'case-lead' }, t('inc.lead', { agency: v.lead ? v.lead.agency : t('inc.none') }),
         ' · ', t('inc.status.' + v.status), ' · ', t('inc.determination', { value: v.determination }),
         ' · ', t('inc.investigation', { value: v.investigation_status }), ' · ',
         t('inc.criticality', { n: v.criticality })),
      el('p', {}, t('inc.participants', { list: v.participants.map(
        (p) => p.agency + ' (' + t('jur.' + p.jurisdiction) + ')').join(', ') })));
    renderClocks();
    const reqs = $('case-requests');
    reqs.replaceChildren(...(v.requests.length ? v.requests.map((r) => el('p', { class: 'request' },
      t('inc.request.line', { type: t('inc.req.' + r.request_type), from: r.by, to: r.addressee,
                              status: t('inc.req.' + r.status) }),
      r.answer ? el('br') : '', r.answer ? r.answer.text : '')) : [el('p', { class: 'empty' }, t('inc.none'))]));
    const tasks = $('case-tasks');
    tasks.replaceChildren(...JURISDICTIONS.map((j) => {
      const mine = v.tasks.filter((x) => x.assignee_jurisdiction === j);
      return el('div', { 'data-jurisdiction': j }, el('h3', {}, t('jur.' + j)),
        ...(mine.length ? mine.map((x) => el('p', { class: 'task', 'data-status': x.status },
          x.title, ' — ', t('inc.task.status.' + x.status), ' · ', x.assignee,
          x.due ? ' · ' + t('inc.task.due', { time: when(x.due) }) : '',
          x.overdue ? el('span', { class: 'overdue' }, ' ' + t('inc.task.overdue')) : ''))
          : [el('p', { class: 'empty' }, t('inc.task.none'))]));
    }));
    const links = $('case-links');
    links.replaceChildren(
      ...v.alerts.map((a) => el('p', { class: 'link-alert' }, el('span', { class: 'sev sev-' + a.alert.level }, a.alert.level), ' ', a.alert.title)),
      ...v.records.map((r) => el('p', { class: 'link-record' }, r.record.value + ' (' + r.record.observable_type + ')')));
    $('case-notes').replaceChildren(...v.notes.map((n) => el('p', { class: 'note' },
      el('span', { class: 'tlp' }, 'TLP:' + n.tlp.toUpperCase()), ' ', n.by, ': ', n.text)));
    const list = $('case-timeline');
    list.replaceChildren(...state.timeline.map((e) => el('li', { 'data-type': e.type },
      el('time', {}, when(e.at)), (e.by || 'ThreatBay') + ' · ' + e.type.replace(/_/g, ' '))));
  }
  function renderClocks() {
    const v = state.view;
    const now = Date.now();
    $('case-clocks').replaceChildren(...(v.clocks.length ? v.clocks.map((c) => {
      let text;
      if (c.status === 'met') text = t('inc.clock.met', { by: c.met.by, ref: c.met.reference });
      else if (c.status === 'breached') text = t('inc.clock.breached') + ' · ' + t('inc.clock.overdue', { late: duration(now - Date.parse(c.due)) });
      else if (!c.due) text = t('inc.clock.nolimit');
      else if (Date.parse(c.due) > now) text = t('inc.clock.due_in', { left: duration(Date.parse(c.due) - now) });
      else text = t('inc.clock.overdue', { late: duration(now - Date.parse(c.due)) });
      return el('div', { class: 'clock', 'data-status': c.status, 'data-jurisdiction': c.jurisdiction },
        el('span', {}, t('jur.' + c.jurisdiction) + ' · ' + c.stage + ' · ' + c.report_to),
        el('span', {}, c.due ? t('inc.clock.due_at', { time: when(c.due) }) : ''),
        el('span', { class: 'countdown' }, text));
    }) : [el('p', { class: 'empty' }, t('inc.none'))]));
  }
  async function startStream() {
    if (state.stream) state.stream.abort();
    const ctrl = new AbortController();
    state.stream = ctrl;
    let last = null;
    while (!ctrl.signal.aborted) {
      try {
        const headers = { Authorization: 'Bearer ' + state.key };
        if (last) headers['Last-Event-ID'] = last;
        const r = await fetch('/api/v1/incidents/' + state.caseId + '/stream', { headers, signal: ctrl.signal });
        $('live').hidden = false; $('live').dataset.state = 'on'; $('live-text').textContent = t('inc.live.on');
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
            const id = block.split('\n').find((l) => l.startsWith('id: '));
            if (id) { last = id.slice(4); await refreshCase(); }
          }
        }
      } catch (err) {
        if (ctrl.signal.aborted) return;
      }
      $('live').dataset.state = 'off'; $('live-text').textContent = t('inc.live.off');
      await new Promise((res) => setTimeout(res, 2000));
    }
  }

  // ------------------------------------------------------------------ start
  async function signIn(key) {
    state.key = key;
    const r = await fetch('/api/v1/me', { headers: { Authorization: 'Bearer ' + key } });
    if (!r.ok) { $('signin-error').textContent = t('inc.bad_key'); state.key = null; return; }
    sessionStorage.setItem(KEY_STORE, key);
    state.me = await r.json();
    $('whoami').hidden = false;
    $('whoami').textContent = state.me.agency.name + ' · ' + t('jur.' + state.me.agency.jurisdiction);
    $('signin').hidden = true;
    if (!sessionStorage.getItem(LANG_STORE)) applyLang(state.me.agency.jurisdiction === 'GD' ? 'zh-Hans' : 'zh-Hant');
    const wanted = location.hash.slice(1);
    if (wanted) await openCase(wanted); else await loadList();
    document.body.dataset.ready = 'true';
  }
  document.addEventListener('DOMContentLoaded', async () => {
    state.strings = await (await fetch('incidents-i18n.json')).json();
    applyLang(sessionStorage.getItem(LANG_STORE) || 'en');
    $('lang').addEventListener('change', (e) => { sessionStorage.setItem(LANG_STORE, e.target.value); applyLang(e.target.value); });
    $('signin-form').addEventListener('submit', (e) => { e.preventDefault(); signIn($('apikey').value.trim()); });
    state.ticker = setInterval(() => { if (state.view) renderClocks(); }, 1000);
    document.body.dataset.loaded = 'true';
    const saved = sessionStorage.getItem(KEY_STORE);
    if (saved) await signIn(saved);
  });
})();
