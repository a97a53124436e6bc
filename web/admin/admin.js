// echo-server's admin page: snapshots pushed by the server (/events, Server-Sent Events), and
// the faults through the Toxiproxy-compatible API on the same port (GET /proxies,
// POST /proxies/NAME/toxics, POST and DELETE /proxies/NAME/toxics/TOXIC).

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
  $(empty).hidden = entries.length > 0;
}

function render() {
  if (!snap) return;
  const now = Date.now() + skew;
  $('program').textContent = snap.program;
  document.title = `${snap.program} admin: ${snap.listen}`;
  const workers = snap.workers
    ? `, ${snap.workers.length} ${snap.mode === 'fork' ? 'children' : 'workers'}`
    : '';
  $('where').textContent =
    `listening on ${snap.listen} · mode ${snap.mode}${workers} · pid ${snap.pid} · up ${age(now - snap.startedAt)}`;
  $('open').textContent = String(snap.totals.active);
  $('served').textContent = String(snap.totals.connections);
  $('refused').textContent = String(snap.totals.refused);
  $('in').textContent = bytes(snap.totals.bytesIn);
  $('out').textContent = bytes(snap.totals.bytesOut);
  $('errors').textContent = String(sum(snap.errors));
  rows(
    $('conns').tBodies[0],
    snap.connections.map((c) =>
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
    'no-conns',
  );
  $('more').hidden = !snap.more;
  $('more').textContent = `and ${snap.more} more`;
  const kv = (o) =>
    Object.entries(o)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, String(v))));
  rows($('refusals').tBodies[0], kv(snap.refusedBy), 'no-refusals');
  rows($('errs').tBodies[0], kv(snap.errors), 'no-errs');
  $('workers-box').hidden = !snap.workers;
  if (snap.workers)
    $('workers').tBodies[0].replaceChildren(
      ...snap.workers.map((w) =>
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
