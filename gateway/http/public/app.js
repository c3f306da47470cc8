// gridedge dashboard (SPEC §8): plain ES module, no framework, no build step. The token lives in
// sessionStorage only; the API gets it as a Bearer header, the event stream (EventSource cannot
// set headers) as ?access_token= on /api/stream alone.

const KEY = 'gridedge.token';
const OPEN = ['open', 'acknowledged', 'dispatched'];
const RANK = { critical: 0, major: 1, minor: 2, info: 3 };
const STATUS = { open: '待处理', acknowledged: '已确认', dispatched: '已派单', resolved: '已解决', closed: '已关闭', cancelled: '已取消' };
const SEVERITY = { critical: '紧急', major: '重要', minor: '一般', info: '提示' };
const ACTIONS = [
  { action: 'ack', label: '确认', from: ['open'] },
  { action: 'dispatch', label: '派单', from: ['open', 'acknowledged'] },
  { action: 'resolve', label: '解决', from: ['acknowledged', 'dispatched'] },
];
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
const state = { site: null, incidents: new Map(), devices: new Map(), stream: null, chartDevice: '' };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const token = () => sessionStorage.getItem(KEY);

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token()}` } });
  if (res.status === 401) {
    logout('令牌无效或已过期');
    throw new Error('unauthorized');
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error?.message ?? `HTTP ${res.status}`);
  return body;
}

const time = (ms) => (ms ? new Date(ms).toLocaleString('zh-CN', { hour12: false }) : '—');
const gridName = (code) => state.site?.grids.find((g) => g.code === code)?.name ?? code;

// ---- rendering ---------------------------------------------------------------------------

function renderGrids() {
  const worst = new Map();
  const count = new Map();
  for (const i of state.incidents.values()) {
    if (!OPEN.includes(i.status)) continue;
    count.set(i.grid, (count.get(i.grid) ?? 0) + 1);
    const w = worst.get(i.grid);
    if (w === undefined || RANK[i.severity] < RANK[w]) worst.set(i.grid, i.severity);
  }
  const tiles = state.site.grids.map((g) => {
    const sev = worst.get(g.code);
    const n = count.get(g.code);
    return el(
      'div',
      { class: `tile sev-${sev ?? 'none'}`, 'data-grid': g.code, 'data-severity': sev ?? 'none', title: `${g.community ?? ''} ${g.name} ${g.code}` },
      ...(n ? [el('span', { class: 'n' }, n)] : []),
      el('b', {}, g.name),
      g.community ?? '',
    );
  });
  $('grids').replaceChildren(...tiles);
}

function renderFeed() {
  const list = [...state.incidents.values()].sort((a, b) => Number(OPEN.includes(b.status)) - Number(OPEN.includes(a.status)) || b.openedAt - a.openedAt);
  const open = list.filter((i) => OPEN.includes(i.status)).length;
  $('feed-count').textContent = `(${open} 未结 / ${list.length})`;
  const items = list.slice(0, 100).map((i) => {
    const place = [gridName(i.grid), i.place?.building && `${i.place.building}号楼`, i.place?.room].filter(Boolean).join(' · ');
    const buttons = ACTIONS.filter((a) => a.from.includes(i.status)).map((a) => {
      const b = el('button', { type: 'button', class: a.action === 'ack' ? 'primary' : '', 'data-action': a.action }, a.label);
      b.addEventListener('click', () => void act(i.id, a.action, b));
      return b;
    });
    return el(
      'li',
      { class: `incident ${i.severity}${OPEN.includes(i.status) ? '' : ' done'}`, 'data-id': i.id, 'data-status': i.status },
      el('div', {}, el('span', { class: 'status' }, `[${STATUS[i.status] ?? i.status}] `), `${SEVERITY[i.severity] ?? i.severity} · ${i.type}`, i.count > 1 ? ` ×${i.count}` : ''),
      el('div', { class: 'meta' }, `${place} · ${time(i.openedAt)}`),
      ...(i.summary ? [el('div', { class: 'meta' }, i.summary)] : []),
      ...(buttons.length ? [el('div', { class: 'actions' }, ...buttons)] : []),
    );
  });
  $('feed').replaceChildren(...(items.length ? items : [el('li', { class: 'muted' }, '暂无事件')]));
}

function renderDevices() {
  const rows = [...state.devices.values()].map((d) => {
    const pct = d.battery?.pct;
    const tr = el(
      'tr',
      { 'data-device': d.id, class: d.id === state.chartDevice ? 'selected' : '' },
      el('td', {}, d.id),
      el('td', {}, d.model),
      el('td', {}, `${gridName(d.place.grid)} ${d.place.building}-${d.place.room}`),
      el('td', { class: d.online ? 'on-yes' : 'on-no' }, d.online ? '在线' : '离线'),
      el('td', { class: d.battery?.low ? 'low' : '' }, pct === null || pct === undefined ? '—' : `${pct}%`),
      el('td', {}, time(d.lastSeen)),
    );
    tr.addEventListener('click', () => void chooseDevice(d.id));
    return tr;
  });
  $('devices').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 6, class: 'muted' }, '暂无设备'))]));
  const select = $('chart-device');
  const current = state.chartDevice;
  select.replaceChildren(...[...state.devices.keys()].map((id) => el('option', { value: id, selected: id === current }, id)));
}

// ---- chart: a small inline SVG line --------------------------------------------------------

let chartReadings = [];

async function chooseDevice(id) {
  state.chartDevice = id;
  renderDevices();
  try {
    const body = await api(`/api/readings?device=${encodeURIComponent(id)}&from=${Date.now() - 86_400_000}`);
    chartReadings = body.readings.slice(-500);
  } catch (err) {
    chartReadings = [];
    $('chart').replaceChildren(el('p', { class: 'error' }, err.message));
    return;
  }
  const metrics = [...new Set(chartReadings.flatMap((r) => Object.keys(r.metrics ?? {})))];
  const select = $('chart-metric');
  const prev = select.value;
  const preferred = [prev, 't1_c', 'residual_ma', 'smoke_db_m', 'battery_pct'].find((m) => metrics.includes(m)) ?? metrics[0] ?? '';
  select.replaceChildren(...metrics.map((m) => el('option', { value: m, selected: m === preferred }, m)));
  drawChart(preferred);
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(metric) {
  const points = chartReadings.filter((r) => typeof r.metrics?.[metric] === 'number').map((r) => [r.ts, r.metrics[metric]]);
  if (points.length === 0) {
    $('chart').replaceChildren(el('p', { class: 'muted' }, state.chartDevice ? '最近 24 小时没有读数' : '在设备表中选择一个设备'));
    return;
  }
  const W = 600, H = 220, L = 44, R = 10, T = 10, B = 24;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${state.chartDevice} ${metric}` });
  root.append(
    svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    svg('text', { x: L - 4, y: T + 10, 'text-anchor': 'end' }, fmt(y1)),
    svg('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, fmt(y0)),
    svg('text', { x: L, y: H - 6 }, new Date(x0).toLocaleTimeString('zh-CN', { hour12: false })),
    svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, new Date(x1).toLocaleTimeString('zh-CN', { hour12: false })),
    svg('polyline', { class: 'line', points: points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ') }),
  );
  if (points.length === 1) root.append(svg('circle', { cx: sx(points[0][0]), cy: sy(points[0][1]), r: 3, fill: '#1570ef' }));
  $('chart').replaceChildren(root);
}

const fmt = (n) => (Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(1));

// ---- actions, stream, session ---------------------------------------------------------------

async function act(id, action, button) {
  button.disabled = true;
  $('action-error').textContent = '';
  try {
    const { incident } = await api(`/api/incidents/${encodeURIComponent(id)}/${action}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    upsertIncident(incident);
  } catch (err) {
    $('action-error').textContent = `操作失败: ${err.message}`;
    button.disabled = false;
  }
}

function upsertIncident(i) {
  const known = state.incidents.get(i.id);
  if (known && known.version > i.version) return;
  state.incidents.set(i.id, i);
  renderGrids();
  renderFeed();
}

async function loadAll() {
  const [site, incidents, devices] = await Promise.all([api('/api/site'), api('/api/incidents?limit=200'), api('/api/devices')]);
  state.site = site;
  $('street').textContent = site.street.name;
  $('gateway').textContent = site.gateway;
  $('who').textContent = `${site.user.name} (${site.user.role})`;
  document.title = `${site.street.name} · gridedge`;
  state.incidents = new Map(incidents.incidents.map((i) => [i.id, i]));
  state.devices = new Map(devices.devices.map((d) => [d.id, d]));
  if (!state.chartDevice && state.devices.size > 0) state.chartDevice = [...state.devices.keys()][0];
  renderGrids();
  renderFeed();
  renderDevices();
  if (state.chartDevice) await chooseDevice(state.chartDevice);
}

function connectStream() {
  state.stream?.close();
  const es = new EventSource(`/api/stream?access_token=${encodeURIComponent(token())}`);
  state.stream = es;
  es.addEventListener('open', () => $('live').className = 'live on');
  es.addEventListener('error', () => $('live').className = 'live off');
  es.addEventListener('incident', (e) => upsertIncident(JSON.parse(e.data)));
  es.addEventListener('device', (e) => {
    const d = JSON.parse(e.data);
    const known = state.devices.get(d.deviceId);
    if (!known) return;
    known.online = d.online;
    known.lastSeen = Math.max(known.lastSeen ?? 0, d.at);
    renderDevices();
  });
  es.addEventListener('resync', () => void loadAll().catch(showError));
}

function showError(err) {
  $('action-error').textContent = err.message;
}

function logout(message = '') {
  sessionStorage.removeItem(KEY);
  state.stream?.close();
  state.stream = null;
  $('app').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('live').className = 'live off';
}

async function start() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  try {
    await loadAll();
    connectStream();
  } catch (err) {
    if (token()) showError(err);
  }
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $('token').value.trim());
  $('token').value = '';
  void start();
});
$('logout').addEventListener('click', () => logout());
$('chart-device').addEventListener('change', (e) => void chooseDevice(e.target.value));
$('chart-metric').addEventListener('change', (e) => drawChart(e.target.value));

if (token()) void start();
else logout();
