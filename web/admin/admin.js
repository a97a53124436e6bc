// The admin page of echo-server (one server) and echo-proxy (a section a proxy): snapshots
// pushed by the server (/events, Server-Sent Events), and the faults through the
// Toxiproxy-compatible API on the same port (GET /proxies, POST /proxies/NAME/toxics, POST and
// DELETE /proxies/NAME/toxics/TOXIC).

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

const bytes = (n) =>
  n < 1024
    ? `${n} B`
    : n < 1024 ** 2
      ? `${(n / 1024).toFixed(1)} KiB`
      : n < 1024 ** 3
        ? `${(n / 1024 ** 2).toFixed(1)} MiB`
        : `${(n / 1024 ** 3).toFixed(2)} GiB`;
const age = (ms) => {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s < 60
    ? `${s} s`
    : s < 3600
      ? `${Math.floor(s / 60)} m ${s % 60} s`
      : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
};
const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);

// the latest snapshot, and the difference between the server's clock and ours
let snap;
let skew = 0;
window.echoAdmin = { snapshot: () => snap };

function rows(tbody, entries, empty) {
  tbody.replaceChildren(...entries);
  empty.hidden = entries.length > 0;
}

/** Draw one server's section: `q(key)` is its element of that id in the page's #server markup. */
function renderSection(q, sec, now) {
  q('open').textContent = String(sec.totals.active);
  q('served').textContent = String(sec.totals.connections);
  q('refused').textContent = String(sec.totals.refused);
  q('in').textContent = bytes(sec.totals.bytesIn);
  q('out').textContent = bytes(sec.totals.bytesOut);
  q('errors').textContent = String(sum(sec.errors));
  rows(
    q('conns').tBodies[0],
    sec.connections.map((c) =>
      h(
        'tr',
        { 'data-peer': c.peer },
        h('td', {}, c.peer),
        h('td', {}, c.since !== undefined ? age(now - c.since) : '–'),
        h('td', { class: 'num' }, String(c.bytesIn)),
        h('td', { class: 'num' }, String(c.bytesOut)),
        h('td', {}, c.state ?? '–', c.reading ? '' : ' (paused)'),
        h('td', { class: 'num' }, c.rttUs !== undefined ? `${(c.rttUs / 1000).toFixed(2)} ms` : '–'),
        h('td', {}, c.pid !== undefined ? `pid ${c.pid}` : 'this process'),
      ),
    ),
    q('no-conns'),
  );
  q('more').hidden = !sec.more;
  q('more').textContent = `and ${sec.more} more`;
  const kv = (o) =>
    Object.entries(o)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, String(v))));
  rows(q('refusals').tBodies[0], kv(sec.refusedBy), q('no-refusals'));
  rows(q('errs').tBodies[0], kv(sec.errors), q('no-errs'));
  q('workers-box').hidden = !sec.workers;
  if (sec.workers)
    q('workers').tBodies[0].replaceChildren(
      ...sec.workers.map((w) =>
        h(
          'tr',
          {},
          h('td', {}, String(w.pid)),
          h('td', { class: 'num' }, String(w.connections)),
          h('td', { class: 'num' }, bytes(w.bytesIn)),
          h('td', { class: 'num' }, bytes(w.bytesOut)),
        ),
      ),
    );
}

// echo-proxy: a section a proxy, each a copy of the #server markup (its ids become data-k)
const sections = new Map();
// the proxies and toxics the fault table was last loaded for
let faultsKey;

function proxySection(name) {
  let sec = sections.get(name);
  if (sec) return sec;
  const body = $('server').cloneNode(true);
  body.removeAttribute('id');
  body.hidden = false;
  for (const e of body.querySelectorAll('[id]')) {
    e.dataset.k = e.id;
    e.removeAttribute('id');
  }
  const title = h('h2', { class: 'proxy-title' });
  const toxics = h('p', { class: 'muted proxy-toxics' });
  const root = h(
    'section',
    { class: 'proxy', 'data-proxy': name, 'aria-label': `proxy ${name}` },
    title,
    toxics,
    body,
  );
  const q = (k) => body.querySelector(`[data-k="${k}"]`);
  q('in-k').textContent = 'from clients';
  q('out-k').textContent = 'to clients';
  const add = h('button', { type: 'button', 'aria-label': `add a fault to ${name}` }, 'Add a fault');
  add.addEventListener('click', () => {
    $('f-proxy').value = name;
    $('f-name').focus();
  });
  sec = { root, q, title, toxics, add };
  sections.set(name, sec);
  return sec;
}

function renderProxies(now) {
  const list = snap.proxies;
  $('server').hidden = true;
  $('proxies').hidden = false;
  $('no-proxies').hidden = list.length > 0;
  const names = new Set(list.map((p) => p.name));
  for (const [name, sec] of sections)
    if (!names.has(name)) {
      sec.root.remove();
      sections.delete(name);
    }
  const order = [];
  for (const p of list) {
    const sec = proxySection(p.name);
    sec.title.replaceChildren(
      h('span', { class: 'name' }, p.name),
      h('span', { class: 'route' }, `${p.listen} → ${p.upstream}${p.datagrams ? ' (udp)' : ''}`),
      h('span', { class: p.enabled ? 'live on' : 'live off' }, p.enabled ? 'enabled' : 'disabled'),
      sec.add,
    );
    sec.toxics.textContent = p.toxics.length
      ? `toxics: ${p.toxics.map((t) => `${t.name} (${t.type} ${t.stream}, toxicity ${t.toxicity})`).join('; ')}`
      : 'no toxics';
    renderSection(sec.q, p, now);
    order.push(sec.root);
  }
  // moved only when the list changed (a moved node loses the focus within it)
  const box = $('proxies');
  if (order.length !== box.children.length || order.some((e, i) => box.children[i] !== e))
    box.replaceChildren(...order);
  // the fault form follows the proxies and toxics the snapshot shows
  const key = JSON.stringify(list.map((p) => [p.name, p.toxics]));
  if (key !== faultsKey) {
    faultsKey = key;
    loadFaults();
  }
}

function render() {
  if (!snap) return;
  const now = Date.now() + skew;
  $('program').textContent = snap.program;
  document.title = `${snap.program} admin: ${snap.listen}`;
  if (snap.proxies) {
    $('where').textContent =
      `API on ${snap.listen} · ${snap.proxies.length} ${snap.proxies.length === 1 ? 'proxy' : 'proxies'} · pid ${snap.pid} · up ${age(now - snap.startedAt)}`;
    renderProxies(now);
    return;
  }
  const workers = snap.workers
    ? `, ${snap.workers.length} ${snap.mode === 'fork' ? 'children' : 'workers'}`
    : '';
  $('where').textContent =
    `listening on ${snap.listen} · mode ${snap.mode}${workers} · pid ${snap.pid} · up ${age(now - snap.startedAt)}`;
  renderSection($, snap, now);
}

function listen() {
  const src = new EventSource('events');
  src.addEventListener('state', (ev) => {
    snap = JSON.parse(ev.data);
    skew = snap.now - Date.now();
    $('live').textContent = 'live';
    $('live').className = 'live on';
    render();
  });
  src.addEventListener('open', () => {
    $('live').textContent = 'live';
    $('live').className = 'live on';
  });
  src.addEventListener('error', () => {
    $('live').textContent = 'disconnected: retrying';
    $('live').className = 'live off';
  });
}

// --- faults ------------------------------------------------------------------------------

const DEFAULTS = {
  latency: { latency: 200, jitter: 0 },
  bandwidth: { rate: 64 },
  slow_close: { delay: 1000 },
  timeout: { timeout: 0 },
  reset_peer: { timeout: 0 },
  slicer: { average_size: 16, size_variation: 8, delay: 1000 },
  limit_data: { bytes: 1024 },
};
let editing;
let proxies = {};

function faultStatus(text, bad = false) {
  $('faults-status').textContent = text;
  $('faults-status').className = bad ? 'bad' : 'muted';
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    ...(body ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) throw new Error(data?.error ?? `HTTP ${res.status}`);
  return data;
}

async function loadFaults() {
  try {
    proxies = (await api('GET', 'proxies')) ?? {};
  } catch (err) {
    proxies = {};
    $('toxics').tBodies[0].replaceChildren();
    $('fault-form').querySelector('fieldset').disabled = true;
    $('toxics').hidden = true;
    faultStatus(`no fault API on this port: GET /proxies answered ${err.message}`);
    return;
  }
  $('fault-form').querySelector('fieldset').disabled = false;
  $('toxics').hidden = false;
  const sel = $('f-proxy');
  const chosen = sel.value;
  sel.replaceChildren(...Object.keys(proxies).map((n) => h('option', {}, n)));
  if (chosen && proxies[chosen]) sel.value = chosen;
  const trs = [];
  for (const [pname, p] of Object.entries(proxies))
    for (const t of p.toxics ?? []) {
      const change = h('button', { type: 'button', 'aria-label': `change ${t.name}` }, 'Change');
      change.addEventListener('click', () => edit(pname, t));
      const remove = h('button', { type: 'button', 'aria-label': `remove ${t.name}` }, 'Remove');
      remove.addEventListener('click', () => removeToxic(pname, t.name));
      trs.push(
        h(
          'tr',
          { 'data-toxic': t.name },
          h('td', {}, pname),
          h('td', {}, t.name),
          h('td', {}, t.type),
          h('td', {}, t.stream),
          h('td', { class: 'num' }, String(t.toxicity)),
          h('td', {}, JSON.stringify(t.attributes ?? {})),
          h('td', {}, change, ' ', remove),
        ),
      );
    }
  $('toxics').tBodies[0].replaceChildren(...trs);
  faultStatus(trs.length ? `${trs.length} active` : 'none active');
}

function resetForm() {
  editing = undefined;
  $('form-title').textContent = 'Add a fault';
  $('f-submit').textContent = 'Add';
  $('f-cancel').hidden = true;
  $('f-name').readOnly = false;
  $('f-name').value = '';
  $('f-toxicity').value = '1';
  $('f-attributes').value = JSON.stringify(DEFAULTS[$('f-type').value] ?? {});
}

function edit(pname, t) {
  editing = { proxy: pname, name: t.name };
  $('form-title').textContent = `Change ${t.name}`;
  $('f-submit').textContent = 'Save';
  $('f-cancel').hidden = false;
  $('f-proxy').value = pname;
  $('f-name').value = t.name;
  $('f-name').readOnly = true;
  $('f-type').value = t.type;
  $('f-stream').value = t.stream;
  $('f-toxicity').value = String(t.toxicity);
  $('f-attributes').value = JSON.stringify(t.attributes ?? {});
  $('f-attributes').focus();
}

async function removeToxic(pname, name) {
  try {
    await api('DELETE', `proxies/${encodeURIComponent(pname)}/toxics/${encodeURIComponent(name)}`);
    if (editing?.name === name) resetForm();
  } catch (err) {
    faultStatus(err.message, true);
    return;
  }
  await loadFaults();
}

$('f-type').addEventListener('change', () => {
  if (!editing) $('f-attributes').value = JSON.stringify(DEFAULTS[$('f-type').value] ?? {});
});
$('f-cancel').addEventListener('click', resetForm);
$('faults-refresh').addEventListener('click', loadFaults);
$('fault-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  let attributes;
  try {
    attributes = JSON.parse($('f-attributes').value || '{}');
    if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes))
      throw new Error('not an object');
  } catch (err) {
    faultStatus(`attributes: a JSON object is needed (${err.message})`, true);
    return;
  }
  const toxic = {
    name: $('f-name').value,
    type: $('f-type').value,
    stream: $('f-stream').value,
    toxicity: Number($('f-toxicity').value),
    attributes,
  };
  const pname = $('f-proxy').value;
  try {
    if (editing)
      await api(
        'POST',
        `proxies/${encodeURIComponent(editing.proxy)}/toxics/${encodeURIComponent(editing.name)}`,
        toxic,
      );
    else await api('POST', `proxies/${encodeURIComponent(pname)}/toxics`, toxic);
  } catch (err) {
    faultStatus(err.message, true);
    return;
  }
  resetForm();
  await loadFaults();
});

resetForm();
listen();
loadFaults();
setInterval(render, 1000);
