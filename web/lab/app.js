// echo-lab's page: the scenario list, a scenario's live run (Server-Sent Events from
// /api/stream/NAME), its ladder and both endpoints' state diagrams with a step/play control.

import { connections, diagramState, ladderSvg, light, stateDiagram, statesAt } from './diagram.js';

const $ = (id) => document.getElementById(id);
const h = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

const page = {
  scenarios: [],
  current: undefined,
  result: undefined,
  conns: [],
  conn: 0,
  pos: 0,
  timer: undefined,
  source: undefined,
  running: false,
};
// for tests and the console: the state of the page and what the export buttons write
window.echoLab = {
  page,
  svgText: () => svgText(),
  /** draw a run's document (as /api/run/NAME serves it) without running it */
  showResult: (r) => showResult(r),
  lit: () => ({
    client: $('client-diagram').querySelector('g.lit')?.dataset.state,
    server: $('server-diagram').querySelector('g.lit')?.dataset.state,
  }),
};

const clientSvg = stateDiagram('client');
const serverSvg = stateDiagram('server');
$('client-diagram').append(clientSvg);
$('server-diagram').append(serverSvg);

async function loadList() {
  const res = await fetch('api/scenarios');
  page.scenarios = await res.json();
  const nav = $('list');
  nav.replaceChildren();
  const groups = new Map();
  for (const s of page.scenarios) {
    if (!groups.has(s.group)) groups.set(s.group, []);
    groups.get(s.group).push(s);
  }
  for (const [group, list] of groups) {
    const id = `g-${group.replace(/\W+/g, '-')}`;
    nav.append(h('h2', { id }, group));
    const ul = h('ul', { 'aria-labelledby': id });
    for (const s of list) {
      const a = h(
        'a',
        { href: `?scenario=${encodeURIComponent(s.name)}`, 'data-name': s.name },
        h('span', { class: 'n' }, s.name),
      );
      if (s.netns) a.append(h('span', { class: 'root' }, ' · root'));
      a.append(h('span', { class: 'c' }, s.summary));
      a.addEventListener('click', (ev) => {
        ev.preventDefault();
        history.pushState(null, '', `?scenario=${encodeURIComponent(s.name)}`);
        show(s.name, false);
        $('main').focus();
      });
      ul.append(h('li', {}, a));
    }
    nav.append(ul);
  }
}

function setStatus(text, cls = '') {
  const st = $('status');
  st.textContent = text;
  st.className = `status ${cls}`;
}

function show(name, run) {
  const s = page.scenarios.find((x) => x.name === name);
  stop();
  if (page.source) page.source.close();
  page.running = false;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.name === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!s) {
    $('intro').hidden = false;
    $('view').hidden = true;
    if (name) setStatus(`no scenario named ${name}`, 'bad');
    return;
  }
  page.current = s;
  page.result = undefined;
  page.conns = [];
  document.title = `echo-lab ${s.name}`;
  $('intro').hidden = true;
  $('view').hidden = false;
  $('title').textContent = s.name;
  $('summary').textContent = s.summary;
  $('said').textContent = s.tutorialSaid ?? 'the tutorials describe this case without a number to check';
  const notice = $('notice');
  const why = s.unavailable ?? s.noLadder;
  notice.hidden = !why;
  notice.textContent = s.unavailable
    ? `Needs root: this scenario makes two network namespaces, and cannot here — ${s.unavailable}.`
    : s.noLadder
      ? `The ladder cannot be drawn here — ${s.noLadder}; the scenario still runs.`
      : '';
  $('run').disabled = Boolean(s.unavailable);
  $('export-svg').disabled = true;
  $('export-json').disabled = true;
  for (const id of ['steps', 'did', 'states', 'kernel', 'notes']) $(id).replaceChildren();
  $('errors').replaceChildren(h('p', { class: 'muted' }, 'none yet'));
  $('ladder').replaceChildren(h('p', { class: 'muted' }, 'Run the scenario to capture its segments.'));
  $('conn-pick').replaceChildren();
  light(clientSvg, '');
  light(serverSvg, '');
  $('client-state').textContent = '';
  $('server-state').textContent = '';
  setStatus(
    s.unavailable ? 'not run: needs root (network namespaces)' : 'ready: Run runs it now, on this machine',
  );
  page.pos = 0;
  updatePlayer();
  if (run && !s.unavailable) start();
}

const fmtMs = (t) => `${t} ms`;

function addStep(step) {
  $('steps').append(h('li', {}, h('span', { class: 't' }, fmtMs(step.t)), step.text));
}

function addError(e) {
  const box = $('errors');
  if (box.querySelector('.muted')) box.replaceChildren();
  const cut = e.line.indexOf(' — ');
  const what = cut < 0 ? e.line : e.line.slice(0, cut);
  const why = cut < 0 ? '' : e.line.slice(cut + 3);
  box.append(
    h(
      'div',
      { class: 'err' },
      h('span', { class: 'code' }, e.code),
      ' ',
      h('span', { class: 'mono' }, what),
      h('span', { class: 'why' }, why),
    ),
  );
}

function addCheck(c) {
  $('did').append(h('li', { class: c.ok ? 'ok' : 'bad' }, c.what));
}

function addStates(st) {
  const box = $('states');
  box.append(h('h4', {}, st.label));
  if (!st.available) return box.append(h('p', { class: 'muted' }, '/proc/net/tcp is not readable here'));
  if (!st.entries.length) return box.append(h('p', { class: 'muted' }, 'no sockets on these ports'));
  const t = h('table', {}, h('tr', {}, h('th', {}, 'local'), h('th', {}, 'remote'), h('th', {}, 'state')));
  for (const e of st.entries)
    t.append(
      h(
        'tr',
        {},
        h('td', { class: 'mono' }, `${e.local}:${e.localPort}`),
        h('td', { class: 'mono' }, `${e.remote}:${e.remotePort}`),
        h('td', { class: 'mono' }, e.state),
      ),
    );
  box.append(t);
}

function start() {
  const s = page.current;
  if (!s || page.running) return;
  show(s.name, false);
  page.running = true;
  $('run').disabled = true;
  setStatus('running on this machine…');
  const src = new EventSource(`api/stream/${encodeURIComponent(s.name)}`);
  page.source = src;
  src.addEventListener('step', (ev) => addStep(JSON.parse(ev.data).step));
  src.addEventListener('errno', (ev) => addError(JSON.parse(ev.data).error));
  src.addEventListener('error', () => {
    // the stream's own failure: closed, or EventSource would reconnect and run it again
    if (!page.running) return;
    src.close();
    finishRun();
    setStatus('the connection to echo-lab was lost before the run ended', 'bad');
  });
  src.addEventListener('states', (ev) => addStates(JSON.parse(ev.data).states));
  src.addEventListener('check', (ev) => addCheck(JSON.parse(ev.data).check));
  src.addEventListener('failure', (ev) => {
    src.close();
    finishRun();
    setStatus(`the run failed: ${JSON.parse(ev.data).line}`, 'bad');
  });
  src.addEventListener('result', (ev) => {
    // closed at once: EventSource would otherwise reconnect, and that would run it again
    src.close();
    finishRun();
    showResult(JSON.parse(ev.data));
  });
}

function finishRun() {
  page.running = false;
  page.source = undefined;
  $('run').disabled = Boolean(page.current?.unavailable);
}

function showResult(r) {
  page.result = r;
  // the live lists were filled as the run went; redraw them from the document itself
  for (const id of ['steps', 'did', 'states', 'kernel']) $(id).replaceChildren();
  $('errors').replaceChildren(h('p', { class: 'muted' }, r.errors.length ? '' : 'none'));
  for (const s of r.steps) addStep(s);
  for (const e of r.errors) addError(e);
  for (const c of r.checks) addCheck(c);
  for (const f of r.facts) $('did').append(h('li', { class: 'fact' }, f));
  for (const st of r.states) addStates(st);
  if (r.kernel.length) {
    const t = h(
      'table',
      {},
      h('tr', {}, h('th', {}, 'setting'), h('th', {}, 'value'), h('th', {}, 'what it does')),
    );
    for (const k of r.kernel)
      t.append(
        h(
          'tr',
          {},
          h('td', { class: 'mono' }, k.name),
          h('td', { class: 'mono' }, k.value),
          h('td', {}, k.meaning),
        ),
      );
    $('kernel').append(t);
  } else $('kernel').append(h('p', { class: 'muted' }, 'none that this scenario depends on'));
  if (r.skipped) setStatus(`skipped: ${r.skipped}`, 'bad');
  else
    setStatus(
      r.ok ? `reproduced as expected (${r.ms} ms)` : `NOT reproduced as expected (${r.ms} ms)`,
      r.ok ? 'ok' : 'bad',
    );
  $('export-json').disabled = false;
  page.conns = connections(r);
  page.conn = 0;
  const pick = $('conn-pick');
  pick.replaceChildren();
  if (page.conns.length > 1) {
    const sel = h('select', { 'aria-label': 'connection' });
    for (const [i, c] of page.conns.entries())
      sel.append(h('option', { value: String(i) }, `connection ${i + 1}: ${c.client} → ${c.server}`));
    sel.addEventListener('change', () => {
      page.conn = Number(sel.value);
      page.pos = page.conns[page.conn].segs.length;
      draw();
    });
    pick.append(sel);
  }
  if (!page.conns.length) {
    const why =
      r.trace && 'unavailable' in r.trace
        ? r.trace.unavailable
        : r.trace
          ? 'no segments of this scenario were captured'
          : 'no capture was made';
    $('ladder').replaceChildren(h('p', { class: 'muted' }, `Ladder not drawn: ${why}.`));
    light(clientSvg, '');
    light(serverSvg, '');
    $('client-state').textContent = '';
    $('server-state').textContent = '';
    updatePlayer();
    return;
  }
  $('export-svg').disabled = false;
  page.pos = page.conns[0].segs.length;
  draw();
}

function draw() {
  const conn = page.conns[page.conn];
  if (!conn) return updatePlayer();
  const svg = ladderSvg(conn, `echo-lab ${page.current.name}: packets on lo`, page.pos);
  const box = $('ladder');
  box.replaceChildren(svg);
  const cur = svg.querySelector('rect.cur');
  if (cur) {
    const y = Number(cur.getAttribute('y')) * (box.clientWidth / 720);
    if (y < box.scrollTop || y > box.scrollTop + box.clientHeight - 40) box.scrollTop = Math.max(0, y - 60);
  }
  const notes = conn.segs.flatMap(({ row }, j) =>
    Array.isArray(row.notes) ? row.notes.map((n) => h('li', {}, `segment ${j + 1}: ${n}`)) : [],
  );
  $('notes').replaceChildren(...notes);
  const st = statesAt(conn, page.pos);
  light(clientSvg, st.client);
  light(serverSvg, st.server);
  $('client-state').textContent = diagramState(st.client);
  $('server-state').textContent = diagramState(st.server);
  updatePlayer();
}

function updatePlayer() {
  const n = page.conns[page.conn]?.segs.length ?? 0;
  for (const id of ['first', 'back']) $(id).disabled = n === 0 || page.pos === 0;
  for (const id of ['step', 'last']) $(id).disabled = n === 0 || page.pos >= n;
  $('play').disabled = n === 0;
  $('position').textContent = n ? `segment ${page.pos} of ${n}` : '';
  const playing = page.timer !== undefined;
  $('play').textContent = playing ? '⏸ Pause' : '▶ Play';
  $('play').setAttribute('aria-label', playing ? 'Pause' : 'Play');
}

function go(pos) {
  const n = page.conns[page.conn]?.segs.length ?? 0;
  page.pos = Math.max(0, Math.min(n, pos));
  draw();
}

function stop() {
  clearInterval(page.timer);
  page.timer = undefined;
}

function playPause() {
  const n = page.conns[page.conn]?.segs.length ?? 0;
  if (!n) return;
  if (page.timer !== undefined) {
    stop();
    return updatePlayer();
  }
  if (page.pos >= n) page.pos = 0;
  page.timer = setInterval(() => {
    if (page.pos >= n) {
      stop();
      return updatePlayer();
    }
    go(page.pos + 1);
  }, 800);
  go(page.pos);
}

function download(name, type, text) {
  const a = h('a', { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 1000);
}

/** The whole ladder (every segment drawn) as an SVG document. */
function svgText() {
  const conn = page.conns[page.conn];
  if (!conn) return '';
  const svg = ladderSvg(conn, `echo-lab ${page.current.name}: packets on lo`);
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(svg)}\n`;
}

$('run').addEventListener('click', start);
$('first').addEventListener('click', () => go(0));
$('back').addEventListener('click', () => go(page.pos - 1));
$('step').addEventListener('click', () => go(page.pos + 1));
$('last').addEventListener('click', () => go(Infinity));
$('play').addEventListener('click', playPause);
$('player').addEventListener('keydown', (ev) => {
  const keys = {
    ArrowLeft: () => go(page.pos - 1),
    ArrowRight: () => go(page.pos + 1),
    Home: () => go(0),
    End: () => go(Infinity),
  };
  if (keys[ev.key]) {
    ev.preventDefault();
    keys[ev.key]();
  }
});
$('export-svg').addEventListener('click', () =>
  download(`echo-lab-${page.current.name}.svg`, 'image/svg+xml', svgText()),
);
$('export-json').addEventListener('click', () =>
  download(
    `echo-lab-${page.current.name}.json`,
    'application/json',
    `${JSON.stringify(page.result, null, 2)}\n`,
  ),
);
window.addEventListener('popstate', () => route());

function route() {
  const q = new URLSearchParams(location.search);
  show(q.get('scenario') ?? '', q.get('run') === '1');
}

loadList().then(route, (err) => {
  $('list').replaceChildren(h('p', { class: 'muted' }, `could not load the scenarios: ${err.message}`));
});
