// Auto Annotator: the annotation editor of the Annotate tab.
//
// Runs as the js_on_load of a gr.HTML component (annotator/ui/editor.py): `element` is the component,
// `props` its props (query, view, revision, film), `server` its Python functions (each takes one object
// and resolves to {ok, ...}, or to undefined when the app does not answer), `watch(name, fn)` runs fn when
// Python changes a prop.
//
// Boxes are kept in STORED-image pixels, exactly as the server sends and saves them; the view maps them to
// the stage with one scale and offset (stage = stored * s + t). Each box keeps the stored `id` it was
// loaded with; an edited box becomes a new object marked `changed` (a person's box from then on), so the
// undo history is a list of arrays that share their untouched boxes.
//
// Test hook: #aa-editor's data-image-id / data-version / data-dirty / data-ready attributes and
// window.aaEditor.boxes() / window.aaEditor.toScreen(x, y).

const root = element.querySelector('#aa-editor');
const stage = root.querySelector('.aa-stage');
const canvas = root.querySelector('.aa-canvas');
const g = canvas.getContext('2d');
const filmEl = root.querySelector('.aa-film');
const toolbar = root.querySelector('.aa-toolbar');
const emptyEl = root.querySelector('.aa-empty');
const noticeEl = root.querySelector('.aa-notice');
const msgEl = root.querySelector('.aa-msg');
const findEl = root.querySelector('.aa-findbar');
const pickerEl = root.querySelector('.aa-picker');
const pickInput = root.querySelector('.aa-pick-input');
const pickList = root.querySelector('.aa-pick-list');
const askEl = root.querySelector('.aa-ask');
const fileEl = root.querySelector('.aa-file');
const counterEl = root.querySelector('.aa-counter');
const zoomEl = root.querySelector('.aa-zoom');
const classBtn = root.querySelector('[data-act=picker]');

if (window.__aaEditorCleanup) window.__aaEditorCleanup();  // a re-mounted component: one set of listeners
const cleanups = [];
function on(target, type, fn, opts) {
  target.addEventListener(type, fn, opts);
  cleanups.push(() => target.removeEventListener(type, fn, opts));
}
window.__aaEditorCleanup = () => { cleanups.forEach((f) => f()); cleanups.length = 0; };

const MIN_SCALE = 0.1, MAX_SCALE = 8, HANDLE = 5, DRAG_PX = 3, MIN_BOX_PX = 4;
const PREFETCH = 3, KEEP_BEHIND = 2, PREFETCH_DELAY_MS = 250;
const FILM = Number(props.film) || 24;

const S = {
  query: null, project: null, classes: [], colours: [], rgb: [], counts: null,
  ids: [], pos: -1, cur: null, curClass: 0, selK: null, hoverK: null,
  view: { s: 1, tx: 0, ty: 0, fit: true },
  minConf: 0, hideAll: false, dropHidden: false,
  cache: new Map(),     // image id -> {data, img, promise}: prefetched pictures and boxes
  pending: new Map(),   // image id -> {promise}: a save or review finishing in the background
  restore: new Map(),   // image id -> {c, after}: edits brought back after a refused background save
  film: new Map(),      // image id -> filmstrip entry
  nav: 0, opSeq: 0, busy: 0, prefetchTimer: null, prefetchDue: 0, lastEdit: 0, dialog: null, drag: null, space: false, pointer: null,
  notice: null, stale: false, checking: false, recheck: false, pendingQuery: null,
  knownRev: null,       // the project revision this page has caught up with (its own writes included)
  timings: [], frames: [], shown: false, msgTimer: null,
  lastTrack: null,      // the tracked box just deleted on this image: T deletes its track in the following frames
};
let nextK = 1;
let imgEl = null;

// ---- small helpers --------------------------------------------------------------------------------------
const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const r2 = (v) => Math.round(v * 100) / 100;
function when(iso) {
  if (!iso) return '';
  const d = new Date(/Z|[+-]\d\d:\d\d$/.test(iso) ? iso : iso + 'Z');  // the store keeps UTC
  return isNaN(d) ? iso : d.toLocaleTimeString();
}
// On screen: kept by the ResizeObserver below (asking the layout on every key would cost a reflow).
function visible() { return S.shown; }
function typing(el) {
  if (!el) return false;
  if (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
  return el.tagName === 'INPUT' && !['checkbox', 'radio', 'range', 'button', 'submit', 'reset', 'color', 'file'].includes(el.type);
}
function msg(text, kind) {
  msgEl.textContent = text || '';
  msgEl.className = 'aa-msg' + (kind ? ' aa-' + kind : '');
  clearTimeout(S.msgTimer);
  if (text && kind !== 'error') S.msgTimer = setTimeout(() => { msgEl.textContent = ''; }, 4000);
}
async function call(name, req) {
  const t0 = performance.now();
  let r;
  try { r = await server[name](req); } catch (e) { r = undefined; }
  if (name === 'aa_save' || name === 'aa_review') {
    S.timings.push({ op: name.slice(3), ms: performance.now() - t0, at: t0 });
    // A write answers with the project's revision after it: when that is the very next one, nothing but
    // this write happened since the page caught up, and its answer already says what changed.
    if (r && r.ok && r.project === S.project && S.knownRev !== null && r.revision === S.knownRev + 1) S.knownRev = r.revision;
  }
  if (S.timings.length > 1000) S.timings.splice(0, 500);
  if (!r || typeof r !== 'object') return { ok: false, error: 'The app did not answer (is it still running?). Nothing was saved.' };
  return r;
}

// ---- boxes ----------------------------------------------------------------------------------------------
function mkBox(d) {
  return { k: nextK++, id: d.id ?? null, class_idx: d.class_idx | 0, x1: +d.x1, y1: +d.y1, x2: +d.x2, y2: +d.y2,
           source: d.source || 'human', confidence: d.confidence ?? null, changed: !!d.changed,
           job_id: d.job_id ?? null, track_id: d.track_id ?? null };
}
function edited(b, patch) {  // a changed copy: a person's box from now on (the server decides by class and corners)
  return { ...b, ...patch, source: 'human', confidence: null, changed: true };
}
function shownBox(b) {
  if (S.hideAll) return false;
  return !(b.source === 'model' && b.confidence != null && b.confidence < S.minConf);
}
function sig(list) {
  return list.map((b) => `${b.id}|${b.class_idx}|${b.x1}|${b.y1}|${b.x2}|${b.y2}`).sort().join(';');
}
function isDirty(c) { return !!c && c.boxes !== c.base && sig(c.boxes) !== c.baseSig; }
function payload(list) {
  return list.map((b) => ({ id: b.id, class_idx: b.class_idx, x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 }));
}
function working(data, img) {
  const boxes = data.boxes.map(mkBox);
  return { id: data.id, data, base: boxes, baseSig: sig(boxes), boxes, undo: [], redo: [], img, orig: null,
           chain: Promise.resolve() };
}
function rebase(c, data) {  // the server's state of the image is now the baseline
  const sel = c.boxes.find((b) => b.k === S.selK);
  c.data = data;
  const boxes = data.boxes.map(mkBox);
  c.base = boxes; c.baseSig = sig(boxes); c.boxes = boxes;
  if (sel && S.cur === c) {  // keep the selection on the same box
    const same = boxes.find((b) => (sel.id != null && b.id === sel.id) ||
      (b.class_idx === sel.class_idx && Math.abs(b.x1 - sel.x1) < 1e-6 && Math.abs(b.y1 - sel.y1) < 1e-6 &&
       Math.abs(b.x2 - sel.x2) < 1e-6 && Math.abs(b.y2 - sel.y2) < 1e-6));
    S.selK = same ? same.k : null;
  }
}
function commit(list) {
  S.lastEdit = performance.now();
  const c = S.cur;
  c.undo.push(c.boxes);
  if (c.undo.length > 1000) c.undo.shift();
  c.redo = [];
  c.boxes = list;
  changed();
}
function changed() { markDirty(); paint(); info(); }
function markDirty() { root.dataset.dirty = isDirty(S.cur) ? '1' : '0'; }
function selected() { return S.cur ? S.cur.boxes.find((b) => b.k === S.selK && shownBox(b)) : null; }
function hovered() { return S.cur ? S.cur.boxes.find((b) => b.k === S.hoverK && shownBox(b)) : null; }
function replaceBox(k, nb) { return S.cur.boxes.map((b) => (b.k === k ? nb : b)); }

// ---- view -----------------------------------------------------------------------------------------------
function size() { const d = S.cur && S.cur.data; return d ? [d.width, d.height] : [1, 1]; }
function fitScale() {
  const [W, H] = size();
  return Math.min(stage.clientWidth / W, stage.clientHeight / H) || 1;
}
function fitView() {
  const [W, H] = size();
  const s = fitScale();
  S.view = { s, tx: (stage.clientWidth - W * s) / 2, ty: (stage.clientHeight - H * s) / 2, fit: true };
  applyView();
}
function zoomAt(px, py, s2) {
  const v = S.view;
  s2 = clamp(s2, Math.min(MIN_SCALE, fitScale()), MAX_SCALE);
  v.tx = px - (px - v.tx) * (s2 / v.s);
  v.ty = py - (py - v.ty) * (s2 / v.s);
  v.s = s2; v.fit = false;
  applyView();
}
function toStage(x, y) { return [x * S.view.s + S.view.tx, y * S.view.s + S.view.ty]; }
function fromStage(px, py) { return [(px - S.view.tx) / S.view.s, (py - S.view.ty) / S.view.s]; }
function applyView() {
  const v = S.view;
  if (imgEl) {
    imgEl.style.transform = `translate(${v.tx}px, ${v.ty}px) scale(${v.s})`;
    imgEl.classList.toggle('aa-pixels', v.s >= 3);
  }
  zoomEl.textContent = Math.round(v.s * 100) + '%';
  maybeOriginal();
  paint();
}
function layout() {
  // The editor fills the window: stage height = window height - toolbar - filmstrip (the page scrolls to it).
  const h = Math.max(220, window.innerHeight - toolbar.offsetHeight - filmEl.offsetHeight - 6);
  stage.style.height = h + 'px';
  const dpr = window.devicePixelRatio || 1;
  const w = stage.clientWidth;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  canvas.style.width = w + 'px'; canvas.style.height = h + 'px';
  if (S.cur && S.view.fit) fitView(); else paint();
}
function scrollToEditor() {
  const r = root.getBoundingClientRect();
  if (Math.abs(r.top) > 2) window.scrollBy({ top: r.top, behavior: 'instant' });
}
function maybeOriginal() {
  // Large images are shown from their display copy; zoomed past its resolution, the original is loaded.
  const c = S.cur;
  if (!c || c.orig || !c.data || c.data.display.width >= c.data.width) return;
  if (S.view.s * c.data.width / c.data.display.width <= 1.05) return;
  const im = new Image();
  c.orig = im;
  im.src = c.data.url;
  im.decode().then(() => {
    if (S.cur !== c) return;
    im.className = 'aa-img';
    im.style.width = c.data.width + 'px'; im.style.height = c.data.height + 'px';
    im.alt = '';
    stage.replaceChild(im, imgEl);
    imgEl = im; c.img = im;
    applyView();
  }).catch(() => { c.orig = null; });
}

// ---- drawing --------------------------------------------------------------------------------------------
const measure = new Map();
function textWidth(t) {
  let w = measure.get(t);
  if (w === undefined) { w = g.measureText(t).width; measure.set(t, w); if (measure.size > 2000) measure.clear(); }
  return w;
}
function label(b) {
  const name = (S.classes[b.class_idx] ?? `class ${b.class_idx}`) + (b.track_id != null ? ` #${trackNo(b)}` : '');
  return b.source === 'model' && b.confidence != null ? `${name} ${b.confidence.toFixed(2)}` : name;
}
function trackNo(b) { return b.track_id % 1000000; }  // the job's try is in the millions (jobs/annotate.py)
function rgba(i, a) { const c = S.rgb[i % Math.max(1, S.rgb.length)] || [200, 200, 200]; return `rgba(${c[0]},${c[1]},${c[2]},${a})`; }
function textColour(i) { const c = S.rgb[i % Math.max(1, S.rgb.length)] || [200, 200, 200]; return (c[0] * 299 + c[1] * 587 + c[2] * 114) / 1000 > 140 ? '#000' : '#fff'; }
function handles(x1, y1, x2, y2) {
  const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
  return { nw: [x1, y1], n: [mx, y1], ne: [x2, y1], e: [x2, my], se: [x2, y2], s: [mx, y2], sw: [x1, y2], w: [x1, my] };
}
function paint() {
  const dpr = window.devicePixelRatio || 1;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, canvas.width, canvas.height);
  const c = S.cur;
  if (!c) return;
  const list = c.boxes.filter(shownBox);
  const sel = selected(), hov = hovered();
  g.font = '12px system-ui, -apple-system, "Segoe UI", sans-serif';
  g.textBaseline = 'top';
  const order = list.filter((b) => b !== sel && b !== hov);
  if (hov && hov !== sel) order.push(hov);
  if (sel) order.push(sel);
  for (const b of order) {
    const [x1, y1] = toStage(b.x1, b.y1), [x2, y2] = toStage(b.x2, b.y2);
    const strong = b === sel || b === hov;
    g.fillStyle = rgba(b.class_idx, strong ? 0.2 : 0.06);
    g.fillRect(x1, y1, x2 - x1, y2 - y1);
    g.setLineDash(b.source === 'model' ? [6, 4] : []);  // machine boxes dashed, a person's / imported solid
    g.lineWidth = strong ? 2.5 : 1.75;
    g.strokeStyle = rgba(b.class_idx, 1);
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (b === sel) {  // focus ring: white and black, visible on any picture
      g.setLineDash([]);
      g.lineWidth = 1;
      g.strokeStyle = '#fff'; g.strokeRect(x1 - 3.5, y1 - 3.5, x2 - x1 + 7, y2 - y1 + 7);
      g.strokeStyle = '#000'; g.strokeRect(x1 - 4.5, y1 - 4.5, x2 - x1 + 9, y2 - y1 + 9);
      for (const [hx, hy] of Object.values(handles(x1, y1, x2, y2))) {
        g.fillStyle = '#fff'; g.fillRect(hx - HANDLE, hy - HANDLE, 2 * HANDLE, 2 * HANDLE);
        g.strokeStyle = '#111'; g.strokeRect(hx - HANDLE + 0.5, hy - HANDLE + 0.5, 2 * HANDLE - 1, 2 * HANDLE - 1);
      }
    }
  }
  g.setLineDash([]);
  const d = S.drag;
  if (d && d.mode === 'draw' && d.active) {
    const [x1, y1] = toStage(Math.min(d.x0, d.x), Math.min(d.y0, d.y));
    const [x2, y2] = toStage(Math.max(d.x0, d.x), Math.max(d.y0, d.y));
    g.lineWidth = 2; g.strokeStyle = rgba(S.curClass, 1); g.fillStyle = rgba(S.curClass, 0.15);
    g.fillRect(x1, y1, x2 - x1, y2 - y1); g.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
  paintLabels(list, sel, hov);
  paintFinding();
}
function paintLabels(list, sel, hov) {
  // Labels stay inside the view (inside the box when it touches the top) and never cover another label:
  // the selected and hovered boxes place theirs first; a label with no free place is left out.
  const W = stage.clientWidth, H = stage.clientHeight, h = 16, placed = [];
  const first = [sel, hov].filter(Boolean);
  const rest = list.filter((b) => b !== sel && b !== hov).sort((a, b) => a.y1 - b.y1 || a.x1 - b.x1);
  for (const b of [...new Set([...first, ...rest])]) {
    const t = label(b), w = textWidth(t) + 8;
    const [x1, y1] = toStage(b.x1, b.y1), [x2, y2] = toStage(b.x2, b.y2);
    if (x2 < 0 || y2 < 0 || x1 > W || y1 > H) continue;
    const x = clamp(x1, 0, Math.max(0, W - w));
    const cands = [];
    if (y1 - h >= 0) cands.push([x, y1 - h]);
    cands.push([x, clamp(y1, 0, H - h)]);
    if (y2 + h <= H) cands.push([x, y2]);
    cands.push([x, clamp(y2 - h, 0, H - h)]);
    let pos = cands.find(([cx, cy]) => !placed.some((p) => cx < p[0] + p[2] && cx + w > p[0] && cy < p[1] + p[3] && cy + h > p[1]));
    if (!pos) { if (first.includes(b)) pos = cands[0]; else continue; }
    placed.push([pos[0], pos[1], w, h]);
    g.fillStyle = rgba(b.class_idx, b === sel ? 1 : 0.88);
    g.fillRect(pos[0], pos[1], w, h);
    g.fillStyle = textColour(b.class_idx);
    g.fillText(t, pos[0] + 4, pos[1] + 2);
  }
}

// ---- toolbar, info, filmstrip ---------------------------------------------------------------------------
function info() {
  const c = S.cur;
  const n = S.ids.length;
  const counts = S.counts;
  const total = counts ? counts.unreviewed + counts.approved + counts.rejected : 0;
  counterEl.innerHTML = !counts ? '' :
    `<b>approved ${counts.approved} / total ${total}</b> · rejected ${counts.rejected} · unreviewed ${counts.unreviewed}` +
    (n ? ` · image <b>${S.pos + 1}</b> of ${n}` : '') +
    (S.busy > 0 ? ' · <span class="aa-saving" role="status">saving…</span>' : '');
  const i = S.curClass;
  classBtn.innerHTML = S.classes.length
    ? `Class: <span class="aa-swatch" style="background:${S.colours[i % S.colours.length]}"></span><b>${esc(S.classes[i])}</b>` +
      (i < 9 ? ` <kbd>${i + 1}</kbd>` : '') + ' <kbd>Q</kbd>'
    : 'Class';
  if (!c) { fileEl.textContent = ''; findEl.hidden = true; findEl.textContent = ''; return; }
  const d = c.data;
  const machine = c.boxes.filter((b) => b.source === 'model').length;
  const hidden = c.boxes.filter((b) => !shownBox(b)).length;
  const who = d.reviewed_by ? ` by ${d.reviewed_by} at ${when(d.reviewed_at)}` : '';
  fileEl.innerHTML = `<b>${esc(d.rel_path)}</b> (${esc(d.dataset)})` +
    (d.frame ? ` · <b class="aa-frame">${esc(d.frame)}</b>` : '') + ` · ${d.width}×${d.height} · ` +
    `<span class="aa-st-${d.status}">${d.status}</span>${esc(who)} · ${c.boxes.length} box(es): ${machine} machine, ` +
    `${c.boxes.length - machine} person/import` + (hidden ? ` · ${hidden} hidden` : '') +
    (isDirty(c) ? ' · <b class="aa-unsaved">unsaved edits</b>' : '');
  const f = finding();
  findEl.hidden = !f;
  if (!f) findEl.textContent = '';
  else {
    const more = c.data.findings.length > 1 ? ` (1 of ${c.data.findings.length})` : '';
    findEl.innerHTML = `<span class="aa-finding">⚑ Likely label error${more}: ${esc(f.message)} — ` +
      '<kbd>Y</kbd> apply the suggestion · <kbd>N</kbd> dismiss</span>';
  }
}
const filmEls = new Map();  // image id -> its filmstrip button, kept so thumbnails are not loaded again
function filmItem(id, pos) {
  let el = filmEls.get(id);
  if (!el) {
    el = document.createElement('button');
    el.type = 'button'; el.tabIndex = -1;
    el.innerHTML = '<img alt="" loading="lazy"><span class="aa-badge"></span><span class="aa-meta"></span>';
    filmEls.set(id, el);
  }
  el.dataset.pos = String(pos);
  el.dataset.id = String(id);
  const it = S.film.get(id);
  if (it) {
    const im = el.firstChild;
    if (im.getAttribute('src') !== it.thumb) im.setAttribute('src', it.thumb);
    const conf = it.min_conf != null ? ` · ${it.min_conf.toFixed(2)}` : '';
    el.className = `aa-film-item aa-${it.status}`;
    el.children[1].textContent = { unreviewed: '•', approved: '✓', rejected: '✗' }[it.status] || '•';
    el.children[2].textContent = `${it.boxes}${conf}`;
    el.title = `${pos + 1}. ${it.rel_path} — ${it.status}, ${it.boxes} box(es)${conf}`;
  } else el.className = 'aa-film-item';
  el.classList.toggle('aa-current', pos === S.pos);
  return el;
}
function renderFilm() {
  const n = S.ids.length;
  if (!n) { filmEl.replaceChildren(); return; }
  const start = clamp(S.pos - Math.floor(FILM / 3), 0, Math.max(0, n - FILM));
  const ids = S.ids.slice(start, start + FILM);
  const missing = ids.filter((id) => !S.film.has(id));
  if (missing.length) fetchThumbs(missing);
  const els = ids.map((id, j) => filmItem(id, start + j));
  const kids = filmEl.children;
  if (els.length !== kids.length || els.some((el, i) => kids[i] !== el)) filmEl.replaceChildren(...els);
  if (filmEls.size > 4 * FILM) for (const [id, el] of filmEls) if (!el.isConnected) filmEls.delete(id);
}
async function fetchThumbs(ids) {
  const ask = ids.filter((id) => !S.film.has(id));
  if (!ask.length) return;
  for (const id of ask) S.film.set(id, null);  // asked once
  const project = S.project;
  const r = await call('aa_thumbs', { project, ids: ask });
  if (project !== S.project) return;
  if (!r.ok) { for (const id of ask) S.film.delete(id); return; }
  for (const it of r.items) S.film.set(it.id, it);
  for (const id of ask) if (S.film.get(id) === null) S.film.delete(id);
  renderFilm();
}

// ---- loading and showing images -------------------------------------------------------------------------
function entry(id, ahead) {
  let e = S.cache.get(id);
  if (e) return e;
  const project = S.project;
  e = { id, data: null, img: null, promise: null };
  e.promise = (async () => {
    const req = ahead && ahead.length ? { project, id, ahead } : { project, id };  // ahead: warm those copies
    let r = await call('aa_load', req);
    if (!r.ok && !r.conflict && /did not answer/.test(r.error)) r = await call('aa_load', { project, id });  // once more
    if (!r.ok) throw new Error(r.error);
    e.data = r.image;
    e.img = await picture(r.image.display.url, r.image.rel_path);
    return e;
  })();
  e.promise.catch(() => { if (S.cache.get(id) === e) S.cache.delete(id); });
  S.cache.set(id, e);
  return e;
}
async function picture(url, name) {
  // A decoded picture, ready to show at once. decode() can fail spuriously (a busy or hidden page): then
  // wait for the load itself, and try the URL once more before giving up.
  for (let attempt = 0; attempt < 2; attempt++) {
    const im = new Image();
    im.decoding = 'async';
    const loaded = new Promise((res, rej) => { im.onload = res; im.onerror = rej; });
    im.src = url;
    try { await im.decode(); return im; } catch (err) { /* fall back to the load event */ }
    try { await loaded; return im; } catch (err) { /* try again */ }
  }
  throw new Error(`The picture of ${name} could not be loaded`);
}
function schedulePrefetch() {
  // The next images are fetched and decoded a moment after this one is shown, and not while the reviewer
  // edits or a save / review waits for the server (on a small machine they slow each other down); at most
  // ~1.2 s after they were first wanted.
  if (!S.prefetchDue) S.prefetchDue = performance.now();
  clearTimeout(S.prefetchTimer);
  const tick = () => {
    const now = performance.now();
    if ((S.busy > 0 || now - S.lastEdit < 400) && now - S.prefetchDue < 1200) { S.prefetchTimer = setTimeout(tick, 100); return; }
    S.prefetchDue = 0;
    prefetch();
  };
  S.prefetchTimer = setTimeout(tick, PREFETCH_DELAY_MS);
}
function prefetch() {
  const keep = new Set();
  for (let p = S.pos - KEEP_BEHIND; p <= S.pos + PREFETCH; p++) if (p >= 0 && p < S.ids.length) keep.add(S.ids[p]);
  for (const id of [...S.cache.keys()]) if (!keep.has(id)) S.cache.delete(id);
  const ahead = S.ids.slice(S.pos + PREFETCH + 1, S.pos + PREFETCH + 9);
  for (let p = S.pos + 1; p <= S.pos + PREFETCH && p < S.ids.length; p++) {
    const id = S.ids[p];
    if (!S.pending.has(id) && !S.restore.has(id) && !S.cache.has(id)) entry(id, p === S.pos + PREFETCH ? ahead : null);
  }
}
function setLoading(on) { stage.classList.toggle('aa-loading', on); }
function showEmpty(text) {
  S.cur = null; S.selK = null;
  emptyEl.textContent = text; emptyEl.hidden = false;
  if (imgEl) { imgEl.remove(); imgEl = null; }
  root.dataset.imageId = ''; root.dataset.version = ''; root.dataset.dirty = '0'; root.dataset.ready = '0';
  noticeEl.hidden = true;
  paint(); info(); renderFilm();
}
async function show(pos) {
  const n = S.ids.length;
  if (!n) { showEmpty('No images in this queue. Change the filters (status "All" shows everything) or upload images.'); return; }
  pos = clamp(pos, 0, n - 1);
  const my = ++S.nav;
  S.pos = pos;
  const id = S.ids[pos];
  root.dataset.ready = '0';
  let e = S.cache.get(id);
  if (S.pending.has(id) || S.restore.has(id) || !(e && e.img)) {
    S.cur = null; setLoading(true); paint(); info(); renderFilm();
    if (S.pending.has(id)) {
      try { await S.pending.get(id).promise; } catch (err) { /* reported by the background save */ }
      if (my !== S.nav) return;
    }
  }
  const back = S.restore.get(id);
  let c;
  if (back) {
    S.restore.delete(id);
    c = back.c;
  } else {
    e = entry(id);
    if (!e.img) {
      try { await e.promise; } catch (err) {
        if (my === S.nav) { setLoading(false); msg(err.message, 'error'); }
        return;
      }
      if (my !== S.nav) return;
    }
    c = working(e.data, e.img);
  }
  mount(c);
  if (back && back.after) back.after();
}
function mount(c) {
  S.cur = c; S.selK = null; S.hoverK = null; S.drag = null;
  emptyEl.hidden = true;
  setLoading(false);
  if (imgEl !== c.img) {
    const im = c.img;
    im.className = 'aa-img'; im.alt = '';
    im.style.width = c.data.width + 'px'; im.style.height = c.data.height + 'px';
    if (imgEl) stage.replaceChild(im, imgEl); else stage.insertBefore(im, canvas);
    imgEl = im;
  }
  noticeEl.hidden = true; S.notice = null;
  fitView();
  info();
  renderFilm();
  root.dataset.imageId = String(c.id);
  root.dataset.version = String(c.data.version);
  markDirty();
  const my = S.nav, t0 = performance.now();
  // "Drawn": after the frame that shows the new picture and its boxes.
  requestAnimationFrame(() => {
    const t1 = performance.now();
    setTimeout(() => {
      if (my !== S.nav || S.cur !== c) return;
      root.dataset.ready = '1';
      S.frames.push({ frame: t1 - t0, ready: performance.now() - t0 });
      if (S.frames.length > 500) S.frames.splice(0, 250);
      schedulePrefetch();  // after this image is on screen: decoding the next ones must not delay its frame
    }, 0);
  });
  applyPendingQuery();
}
async function reloadCurrent(text) {
  const c = S.cur;
  if (!c) return;
  const r = await call('aa_load', { project: S.project, id: c.id });
  if (!r.ok) { msg(r.error, 'error'); return; }
  if (S.cur !== c) return;
  S.cache.delete(c.id);
  const fresh = working(r.image, c.img);
  fresh.orig = c.orig;
  if (r.image.display.url !== c.data.display.url) {  // another copy: load it before showing
    try { fresh.img = await picture(r.image.display.url, r.image.rel_path); } catch (err) { msg(err.message, 'error'); return; }
    fresh.orig = null;
    if (S.cur !== c) return;
  }
  const view = { ...S.view };
  const nav = ++S.nav;
  root.dataset.ready = '0';
  mount(fresh);
  if (!view.fit) { S.view = view; applyView(); }
  if (nav === S.nav) msg(text || 'Reloaded: showing the image as stored now', 'ok');
}

// ---- saving and reviewing -------------------------------------------------------------------------------
// Every write of one image goes through its chain (a second Ctrl+S waits for the first and uses the
// version it returned). Moving on starts the write in the background; a refusal brings the user back.
function request(c, op, force) {
  const req = { project: S.project, id: c.id, version: op.version ?? c.data.version };
  const dirty = force || isDirty(c);
  if (op.kind === 'save') return dirty ? { fn: 'aa_save', req: { ...req, boxes: payload(c.boxes) } } : null;
  return { fn: 'aa_review', req: { ...req, status: op.status, stay: !op.advance, boxes: dirty ? payload(c.boxes) : null,
    drop_below: op.status === 'approved' && S.dropHidden && S.minConf > 0 ? S.minConf : null } };
}
function runOp(c, op, force) {
  const run = c.chain.then(async () => {
    const built = request(c, op, force);
    if (!built) return { ok: true, nothing: true };
    S.opSeq++;
    S.busy++;
    info();  // "saving…" beside the counters while a write is under way
    const sentBoxes = c.boxes;
    const r = await call(built.fn, built.req).finally(() => { S.busy--; info(); });
    S.opSeq++;
    r.sentBoxes = sentBoxes;
    return r;
  });
  c.chain = run.catch(() => {});
  return run;
}
function applyResult(c, r) {
  if (r.counts) S.counts = r.counts;
  // a save answers with the new version and the boxes as stored (ids, provenance); Shift+R with the image
  const img = r.image || (r.boxes ? { ...c.data, version: r.version, boxes: r.boxes, edited_by: r.by, changed_by: r.by } : null);
  const cached = S.cache.get(c.id);  // a later visit must not show the version before this write
  if (cached && img) cached.data = img; else S.cache.delete(c.id);
  const it = S.film.get(c.id);
  if (it && r.status) it.status = r.status;
  if (img) {
    if (c.boxes === r.sentBoxes) rebase(c, img);  // no edit meanwhile: show what is stored now
    else { c.data = img; const base = img.boxes.map(mkBox); c.base = base; c.baseSig = sig(base); }
  } else if (r.version != null) {
    c.data = { ...c.data, version: r.version, status: r.status || c.data.status };
  }
  if (S.cur === c) {
    root.dataset.version = String(c.data.version);
    markDirty(); paint(); info(); renderFilm();
    if (r.saved && r.saved.dropped && r.saved.dropped.length) msg('Not saved: ' + r.saved.dropped.join('; '), 'error');
  }
}
async function save() {
  const c = S.cur;
  if (!c) return false;
  if (!isDirty(c)) { msg('Nothing to save: no edits since the image was loaded'); return true; }
  const r = await runOp(c, { kind: 'save' });
  if (r.nothing) return true;
  if (!r.ok) { failed(c, r, { kind: 'save' }); return false; }
  applyResult(c, r);
  if (S.cur === c && !(r.saved.dropped || []).length) msg(`Saved (${r.saved.boxes} box(es))`, 'ok');
  applyPendingQuery();
  return true;
}
function background(c, op) {
  // The user is on the next image already; this finishes the previous one.
  const project = S.project;
  const promise = runOp(c, op).then((r) => {
    S.pending.delete(c.id);
    if (!r.ok) {
      if (project !== S.project) { msg(`Image ${c.id} of ${project} was NOT saved: ${r.error}`, 'error'); return r; }
      S.restore.set(c.id, { c, after: () => failed(c, r, op) });
      if (S.dialog || (S.cur && isDirty(S.cur))) {  // busy here: keep both; the way back opens the choice
        msg(`${c.data.rel_path} was NOT saved (${r.conflict ? `changed by ${r.conflict.changed_by || 'someone'}` : r.error}): ` +
            'go back to it to decide; its edits are kept', 'error');
        return r;
      }
      let pos = S.ids.indexOf(c.id);
      if (pos < 0) { S.ids.splice(S.pos, 0, c.id); pos = S.pos; }
      show(pos);
      return r;
    }
    if (!r.nothing) {
      S.cache.delete(c.id);  // its version moved: a later visit loads it again
      if (r.counts) S.counts = r.counts;
      const it = S.film.get(c.id);
      if (it && r.status) it.status = r.status;
      if (it && r.saved) it.boxes = r.saved.boxes;
      info(); renderFilm();
    }
    return r;
  });
  S.pending.set(c.id, { promise });
}
function leave() {
  const c = S.cur;
  if (c && isDirty(c)) background(c, { kind: 'save' });
}
function go(delta) {
  const n = S.ids.length;
  if (!n) return;
  const to = S.pos + delta;
  if (to < 0) { msg('This is the first image of the queue'); return; }
  if (to >= n) { msg('That was the last image of this queue'); if (isDirty(S.cur)) save(); return; }
  leave();
  show(to);
}
function jump(pos) {
  if (pos === S.pos || pos < 0 || pos >= S.ids.length) return;
  leave();
  show(pos);
}
async function review(status, advance) {
  const c = S.cur;
  if (!c) return;
  const op = { kind: 'review', status, advance };
  if (advance && S.pos + 1 < S.ids.length) {
    background(c, op);
    show(S.pos + 1);
    return;
  }
  const r = await runOp(c, { ...op, advance: false });
  if (!r.ok) { failed(c, r, op); return; }
  applyResult(c, r);
  if (S.cur === c) msg(`${status === 'approved' ? 'Approved' : status === 'rejected' ? 'Rejected' : 'Reset'}` +
    (advance ? ': that was the last image of this queue' : ''), 'ok');
}
function failed(c, r, op) {
  if (S.cur !== c) { msg(`Image ${c.id} was NOT saved: ${r.error}`, 'error'); return; }
  if (r.conflict) { conflictDialog(c, r.conflict, op); return; }
  msg(r.error, 'error');
}

// ---- dialogs --------------------------------------------------------------------------------------------
function ask(title, text, buttons, kind) {
  askEl.querySelector('.aa-ask-title').textContent = title;
  askEl.querySelector('.aa-ask-text').textContent = text;
  const box = askEl.querySelector('.aa-ask-buttons');
  box.innerHTML = buttons.map((b, i) => `<button type="button" tabindex="-1" data-i="${i}" class="${b.primary ? 'aa-primary' : ''}">${esc(b.label)} <kbd>${esc(b.keyLabel)}</kbd></button>`).join('');
  S.dialog = { kind, buttons };
  askEl.dataset.kind = kind;
  askEl.hidden = false;
  if (typing(document.activeElement)) document.activeElement.blur();
}
function closeAsk() { askEl.hidden = true; S.dialog = null; applyPendingQuery(); }
function conflictDialog(c, conflict, op) {
  const who = conflict.changed_by || 'someone';
  const at = conflict.changed_at ? ` at ${when(conflict.changed_at)}` : '';
  const what = op.kind === 'review' ? `Your ${op.status === 'approved' ? 'approval' : op.status === 'rejected' ? 'rejection' : 'reset'}` +
    (isDirty(c) ? ' and your edits were' : ' was') : 'Your edits were';
  ask('This image changed after you opened it',
    `Changed by ${who}${at} (version ${conflict.version}, you had ${c.data.version}). ${what} NOT saved; ` +
    'your boxes are still here. Reload theirs, keep yours (overwrites theirs), or stay and decide later.',
    [{ label: 'Reload theirs (drop mine)', keyLabel: 'T', keys: ['t'], run: () => { closeAsk(); reloadCurrent('Reloaded: showing their version; your edits were dropped'); } },
     { label: 'Keep mine and overwrite…', keyLabel: 'M', keys: ['m'], run: () => confirmOverwrite(c, conflict, op) },
     { label: 'Stay', keyLabel: 'Esc', keys: ['escape'], primary: true, run: () => { closeAsk(); msg('Not saved: this image has unsaved edits', 'error'); } }],
    'conflict');
}
function confirmOverwrite(c, conflict, op) {
  const who = conflict.changed_by || 'someone';
  ask('Overwrite their change?',
    `Save your version of this image over the one by ${who}? What they changed will be replaced by what you see now.`,
    [{ label: 'Overwrite', keyLabel: 'Y', keys: ['y', 'enter'], primary: true, run: async () => {
        closeAsk();
        if (S.cur !== c) return;
        const r = await runOp(c, { ...op, advance: false, version: conflict.version }, true);
        if (!r.ok) { failed(c, r, op); return; }
        applyResult(c, r);
        msg(`Saved over ${who}'s change`, 'ok');
        if (op.advance && S.cur === c && S.pos + 1 < S.ids.length) show(S.pos + 1);
      } },
     { label: 'Cancel', keyLabel: 'Esc', keys: ['escape', 'n'], run: () => conflictDialog(c, conflict, op) }],
    'overwrite');
}
function discard() {
  const c = S.cur;
  if (!c) return;
  if (!isDirty(c)) {
    if (S.notice) reloadCurrent(); else msg('No unsaved edits on this image');
    return;
  }
  ask('Discard your edits?', 'Drop the unsaved edits on this image and show it as stored now?',
    [{ label: 'Discard', keyLabel: 'Y', keys: ['y', 'enter'], primary: true, run: () => { closeAsk(); reloadCurrent('Edits discarded: showing the image as stored'); } },
     { label: 'Keep editing', keyLabel: 'Esc', keys: ['escape', 'n'], run: closeAsk }], 'discard');
}
function dialogKey(ev) {
  if (S.dialog.kind === 'picker') return;  // the picker's input has its own keys
  const key = ev.key.toLowerCase();
  const b = S.dialog.buttons.find((x) => x.keys.includes(key));
  ev.preventDefault(); ev.stopPropagation();
  if (b && !ev.repeat) b.run();
}
on(askEl, 'click', (ev) => {
  const el = ev.target.closest('button[data-i]');
  if (el && S.dialog && S.dialog.buttons) S.dialog.buttons[Number(el.dataset.i)].run();
});

// ---- classes and the picker -----------------------------------------------------------------------------
function setClass(idx) {
  if (idx < 0 || idx >= S.classes.length) { msg(`This project has ${S.classes.length} classes: Q or / lists them all`); return; }
  const b = selected() || hovered();
  if (b) {
    if (b.class_idx !== idx) commit(replaceBox(b.k, edited(b, { class_idx: idx })));
    msg(`Box: ${S.classes[idx]}`, 'ok');
    return;
  }
  S.curClass = idx;
  info();
  msg(`New boxes: ${S.classes[idx]}`, 'ok');
}
function openPicker() {
  if (!S.classes.length) return;
  const b = selected() || hovered();
  S.dialog = { kind: 'picker', target: b ? b.k : null, items: [], hi: 0 };
  pickerEl.querySelector('.aa-hint').textContent = (b ? `Class of the ${b === selected() ? 'selected' : 'hovered'} box` : 'Class for new boxes') +
    ' · ↑/↓ move · Enter picks · Esc closes · only the project\u2019s classes';
  pickInput.value = '';
  pickerEl.hidden = false;
  renderPicker();
  pickInput.focus();
}
function renderPicker() {
  const q = pickInput.value.trim().toLowerCase();
  const all = S.classes.map((name, i) => ({ name, i }));
  const items = !q ? all : all.filter((x) => x.name.toLowerCase().includes(q))
    .sort((a, b) => (b.name.toLowerCase().startsWith(q) - a.name.toLowerCase().startsWith(q)) || a.i - b.i);
  S.dialog.items = items;
  S.dialog.hi = clamp(S.dialog.hi, 0, Math.max(0, items.length - 1));
  pickList.innerHTML = items.length ? items.map((x, j) =>
    `<li role="option" data-i="${x.i}" class="${j === S.dialog.hi ? 'aa-hi' : ''}" aria-selected="${j === S.dialog.hi}">` +
    `<span class="aa-swatch" style="background:${S.colours[x.i % S.colours.length]}"></span>${x.i < 9 ? `<kbd>${x.i + 1}</kbd> ` : ''}${esc(x.name)}</li>`).join('')
    : `<li class="aa-none">No class matches "${esc(pickInput.value)}": only the project's classes can be used</li>`;
  const hi = pickList.querySelector('.aa-hi');
  if (hi) hi.scrollIntoView({ block: 'nearest' });
}
function closePicker() {
  pickerEl.hidden = true;
  S.dialog = null;
  pickInput.blur();
  applyPendingQuery();
}
function pick(i) {
  const target = S.dialog.target;
  closePicker();
  const b = S.cur && S.cur.boxes.find((x) => x.k === target);
  if (b) {
    if (b.class_idx !== i) commit(replaceBox(b.k, edited(b, { class_idx: i })));
    msg(`Box: ${S.classes[i]}`, 'ok');
  } else { S.curClass = i; info(); msg(`New boxes: ${S.classes[i]}`, 'ok'); }
}
on(pickInput, 'input', () => { S.dialog.hi = 0; renderPicker(); });
on(pickInput, 'keydown', (ev) => {
  ev.stopPropagation();
  const d = S.dialog;
  if (ev.key === 'ArrowDown') { ev.preventDefault(); d.hi = Math.min(d.hi + 1, d.items.length - 1); renderPicker(); }
  else if (ev.key === 'ArrowUp') { ev.preventDefault(); d.hi = Math.max(d.hi - 1, 0); renderPicker(); }
  else if (ev.key === 'Enter') { ev.preventDefault(); if (d.items.length) pick(d.items[d.hi].i); }  // never free text
  else if (ev.key === 'Escape') { ev.preventDefault(); closePicker(); }
});
on(pickList, 'mousedown', (ev) => {
  const li = ev.target.closest('li[data-i]');
  ev.preventDefault();
  if (li) pick(Number(li.dataset.i));
});
on(pickInput, 'blur', () => { if (S.dialog && S.dialog.kind === 'picker') setTimeout(() => { if (S.dialog && S.dialog.kind === 'picker' && document.activeElement !== pickInput) closePicker(); }, 150); });

// ---- editing --------------------------------------------------------------------------------------------
function deleteSelected() {
  const b = selected();
  if (!b) { msg('Select a box first (click it)'); return; }
  S.selK = null;
  commit(S.cur.boxes.filter((x) => x.k !== b.k));
  // A tracked machine box on a video's frame: offer its track in the following frames too.
  S.lastTrack = b.track_id != null && b.job_id != null && S.cur.data.frame ? { image: S.cur.id, job: b.job_id, track: b.track_id, no: trackNo(b) } : null;
  if (S.lastTrack) msg(`Deleted ${label(b)}. T: also delete track #${S.lastTrack.no} in the following frames`, 'ok');
}
async function deleteTrack() {
  const c = S.cur, t = S.lastTrack;
  if (!c || !t || t.image !== c.id) { msg('Delete a tracked box first (a machine box with #id on a video frame), then T'); return; }
  S.lastTrack = null;
  const r = await call('aa_track', { project: S.project, id: c.id, job: t.job, track: t.track });
  if (!r.ok) { msg(r.error, 'error'); return; }
  for (const id of S.ids.slice(S.pos + 1)) S.cache.delete(id);  // the following frames load again
  const kept = r.track.protected ? ` · ${r.track.protected} frame(s) a person saved or approved left alone` : '';
  msg(`Deleted track #${t.no} in ${r.track.images} following frame(s): ${r.track.deleted} box(es)${kept}`, 'ok');
}
function nudge(dx, dy) {
  const b = selected();
  if (!b) return;
  const [W, H] = size();
  const mx = clamp(dx, -b.x1, W - b.x2), my = clamp(dy, -b.y1, H - b.y2);
  if (!mx && !my) return;
  commit(replaceBox(b.k, edited(b, { x1: b.x1 + mx, x2: b.x2 + mx, y1: b.y1 + my, y2: b.y2 + my })));
}
function undo() { stepHistory(true); }
function redo() { stepHistory(false); }
function stepHistory(back) {  // undo (back) or redo: one step between the image's two stacks of box lists
  const c = S.cur;
  const from = c && (back ? c.undo : c.redo), to = c && (back ? c.redo : c.undo);
  if (!c || !from.length) { msg(back ? 'Nothing to undo' : 'Nothing to redo'); return; }
  to.push(c.boxes); c.boxes = from.pop();
  if (!c.boxes.some((b) => b.k === S.selK)) S.selK = null;
  changed();
}
async function copyPrevious() {
  const c = S.cur;
  if (!c) return;
  if (S.pos < 1) { msg('This is the first image of the queue: there is no previous one to copy from'); return; }
  const r = await call('aa_copy', { project: S.project, from: S.ids[S.pos - 1], to: c.id });
  if (!r.ok) { msg(r.error, 'error'); return; }
  if (S.cur !== c) return;
  if (!r.boxes.length) { msg('The previous image has no boxes'); return; }
  commit(c.boxes.concat(r.boxes.map((b) => mkBox({ ...b, id: null, source: 'human', confidence: null, changed: true }))));
  msg(`Copied ${r.boxes.length} box(es) from the previous image: Ctrl+S or moving on saves them`, 'ok');
}

// ---- likely label errors (a label check's findings: services/quality.py) ---------------------------------
function finding() { const c = S.cur; return (c && (c.data.findings || [])[0]) || null; }
function findingTarget(c, f) { return f.box_id != null ? c.boxes.find((b) => b.id === f.box_id) || null : null; }
function paintFinding() {  // the box in question ringed, the model's box (to add, or the tighter corners) dashed
  const c = S.cur, f = finding();
  if (!c || !f) return;
  g.save();
  g.strokeStyle = '#d946ef'; g.lineWidth = 2.5;
  const b = findingTarget(c, f);
  if (b) {
    const [x1, y1] = toStage(b.x1, b.y1), [x2, y2] = toStage(b.x2, b.y2);
    g.setLineDash([3, 3]); g.strokeRect(x1 - 6, y1 - 6, x2 - x1 + 12, y2 - y1 + 12);
  }
  if ((f.kind === 'missed' || f.kind === 'loose') && f.x1 != null) {
    const [x1, y1] = toStage(f.x1, f.y1), [x2, y2] = toStage(f.x2, f.y2);
    g.setLineDash([10, 5]); g.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
  g.restore();
}
async function resolveFinding(accept) {
  // Y: the model's suggestion becomes a person's edit and is saved, then the finding is marked accepted;
  // N: dismissed, the label stays. Either way the next finding of this image (if any) is shown.
  const c = S.cur, f = finding();
  if (!c || !f) { msg('No likely label error on this image (order the queue by "Likely label errors")'); return; }
  if (accept) {
    const b = findingTarget(c, f);
    if (f.kind !== 'missed' && !b) { msg('The box this finding is about was changed since the check: N dismisses it', 'error'); return; }
    let list;
    if (f.kind === 'missed') {
      list = c.boxes.concat([mkBox({ class_idx: f.suggestion_class, x1: f.x1, y1: f.y1, x2: f.x2, y2: f.y2,
                                     source: 'human', changed: true })]);
    } else if (f.kind === 'spurious') list = c.boxes.filter((x) => x.k !== b.k);
    else if (f.kind === 'wrong_class') list = replaceBox(b.k, edited(b, { class_idx: f.suggestion_class }));
    else list = replaceBox(b.k, edited(b, { x1: f.x1, y1: f.y1, x2: f.x2, y2: f.y2 }));
    commit(list);
    if (!(await save())) return;  // the save said why; the finding stays open
  }
  const r = await call('aa_finding', { project: S.project, id: f.id, status: accept ? 'accepted' : 'dismissed' });
  if (!r.ok) { msg(r.error, 'error'); return; }
  c.data.findings = (c.data.findings || []).filter((x) => x.id !== f.id);
  const cached = S.cache.get(c.id);
  if (cached && cached.data !== c.data) cached.data.findings = c.data.findings;
  if (S.cur === c) { paint(); info(); }
  msg(accept ? `Applied the model's suggestion: ${f.message}` : 'Dismissed: the label stays as it is', 'ok');
}

// ---- pointer --------------------------------------------------------------------------------------------
function stagePoint(ev) { const r = stage.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
function handleAt(px, py) {
  const b = selected();
  if (!b) return null;
  const [x1, y1] = toStage(b.x1, b.y1), [x2, y2] = toStage(b.x2, b.y2);
  for (const [name, [hx, hy]] of Object.entries(handles(x1, y1, x2, y2))) {
    if (Math.abs(px - hx) <= HANDLE + 2 && Math.abs(py - hy) <= HANDLE + 2) return name;
  }
  return null;
}
function boxAt(px, py) {
  // The smallest shown box under the pointer (so a small box inside a big one can be reached).
  let best = null, area = Infinity;
  for (const b of S.cur.boxes) {
    if (!shownBox(b)) continue;
    const [x1, y1] = toStage(b.x1, b.y1), [x2, y2] = toStage(b.x2, b.y2);
    if (px >= x1 - 2 && px <= x2 + 2 && py >= y1 - 2 && py <= y2 + 2) {
      const a = (x2 - x1) * (y2 - y1);
      if (a < area) { best = b; area = a; }
    }
  }
  return best;
}
const CURSORS = { nw: 'nwse-resize', se: 'nwse-resize', ne: 'nesw-resize', sw: 'nesw-resize', n: 'ns-resize', s: 'ns-resize', e: 'ew-resize', w: 'ew-resize' };
function imagePoint(px, py) {
  const [W, H] = size();
  const [x, y] = fromStage(px, py);
  return [clamp(x, 0, W), clamp(y, 0, H)];
}
on(canvas, 'pointerdown', (ev) => {
  if (!S.cur || S.dialog) return;
  S.lastEdit = performance.now();
  const [px, py] = stagePoint(ev);
  if (ev.button === 1 || (ev.button === 0 && S.space)) {
    ev.preventDefault();
    S.drag = { mode: 'pan', sx: ev.clientX, sy: ev.clientY, tx: S.view.tx, ty: S.view.ty };
  } else if (ev.button === 0) {
    const h = !ev.shiftKey && handleAt(px, py);
    const b = !h && !ev.shiftKey && boxAt(px, py);
    const [x, y] = imagePoint(px, py);
    if (h) S.drag = { mode: 'resize', h, k: S.selK, sx: px, sy: py, x0: x, y0: y, active: false };
    else if (b) { S.selK = b.k; S.drag = { mode: 'move', k: b.k, sx: px, sy: py, x0: x, y0: y, active: false }; paint(); }
    else S.drag = { mode: 'draw', sx: px, sy: py, x0: x, y0: y, x, y, active: false };
  } else return;
  canvas.setPointerCapture(ev.pointerId);
  if (typing(document.activeElement)) document.activeElement.blur();
});
on(canvas, 'pointermove', (ev) => {
  if (!S.cur) return;
  const [px, py] = stagePoint(ev);
  S.pointer = [px, py];
  const d = S.drag;
  if (!d) {
    const h = handleAt(px, py);
    const b = h ? selected() : boxAt(px, py);
    const k = b ? b.k : null;
    canvas.style.cursor = S.space ? 'grab' : h ? CURSORS[h] : b ? 'move' : 'crosshair';
    if (k !== S.hoverK) { S.hoverK = k; paint(); }
    return;
  }
  if (d.mode === 'pan') {
    S.view.tx = d.tx + ev.clientX - d.sx; S.view.ty = d.ty + ev.clientY - d.sy; S.view.fit = false;
    applyView();
    return;
  }
  if (!d.active && Math.hypot(px - d.sx, py - d.sy) < DRAG_PX) return;
  const [x, y] = imagePoint(px, py);
  const c = S.cur;
  if (d.mode === 'draw') { d.active = true; d.x = x; d.y = y; paint(); return; }
  const [W, H] = size();
  if (!d.active) {  // the first real movement: one undo step for the whole drag
    const b = c.boxes.find((z) => z.k === d.k);
    if (!b) { S.drag = null; return; }
    d.active = true; d.orig = b;
    d.copy = edited(b, {});
    c.undo.push(c.boxes); c.redo = [];
    c.boxes = replaceBox(b.k, d.copy);
  }
  const o = d.orig, cp = d.copy;
  if (d.mode === 'move') {
    const dx = clamp(x - d.x0, -o.x1, W - o.x2), dy = clamp(y - d.y0, -o.y1, H - o.y2);
    cp.x1 = r2(o.x1 + dx); cp.x2 = r2(o.x2 + dx); cp.y1 = r2(o.y1 + dy); cp.y2 = r2(o.y2 + dy);
  } else {
    let { x1, y1, x2, y2 } = o;
    if (d.h.includes('w')) x1 = x; if (d.h.includes('e')) x2 = x;
    if (d.h.includes('n')) y1 = y; if (d.h.includes('s')) y2 = y;
    cp.x1 = r2(Math.min(x1, x2)); cp.x2 = r2(Math.max(x1, x2)); cp.y1 = r2(Math.min(y1, y2)); cp.y2 = r2(Math.max(y1, y2));
  }
  paint();
});
function endDrag(ev) {
  const d = S.drag;
  if (!d) return;
  S.drag = null;
  try { canvas.releasePointerCapture(ev.pointerId); } catch (e) { /* not captured */ }
  const c = S.cur;
  if (!c) return;
  if (d.mode === 'draw') {
    const x1 = Math.min(d.x0, d.x), x2 = Math.max(d.x0, d.x), y1 = Math.min(d.y0, d.y), y2 = Math.max(d.y0, d.y);
    if (d.active && (x2 - x1) * S.view.s >= MIN_BOX_PX && (y2 - y1) * S.view.s >= MIN_BOX_PX && x2 - x1 >= 1 && y2 - y1 >= 1) {
      const b = mkBox({ id: null, class_idx: S.curClass, x1: r2(x1), y1: r2(y1), x2: r2(x2), y2: r2(y2), source: 'human', confidence: null, changed: true });
      S.selK = b.k;
      commit(c.boxes.concat([b]));
    } else {
      if (S.selK !== null) { S.selK = null; paint(); }
    }
    paint();
    return;
  }
  if (d.mode === 'resize' || d.mode === 'move') {
    if (d.active) {
      const cp = d.copy;
      if (cp.x2 - cp.x1 < 1 || cp.y2 - cp.y1 < 1) {  // resized to nothing: as it was
        c.boxes = c.undo.pop();
      } else if (cp.x1 === d.orig.x1 && cp.y1 === d.orig.y1 && cp.x2 === d.orig.x2 && cp.y2 === d.orig.y2) {
        c.boxes = c.undo.pop();  // moved back where it was: no edit
      }
      changed();
    }
  }
}
on(canvas, 'pointerup', endDrag);
on(canvas, 'pointercancel', endDrag);
on(canvas, 'pointerleave', () => { if (!S.drag && S.hoverK !== null) { S.hoverK = null; paint(); } });
on(canvas, 'auxclick', (ev) => { if (ev.button === 1) ev.preventDefault(); });
on(canvas, 'wheel', (ev) => {
  if (!S.cur) return;
  ev.preventDefault();
  const [px, py] = stagePoint(ev);
  const unit = ev.deltaMode === 1 ? 33 : ev.deltaMode === 2 ? 400 : 1;
  zoomAt(px, py, S.view.s * Math.exp(-ev.deltaY * unit * 0.0015));
}, { passive: false });

// ---- toolbar and filmstrip clicks -----------------------------------------------------------------------
const ACTIONS = {
  prev: () => go(-1), next: () => go(1), save: () => save(),
  approve: () => review('approved', true), reject: () => review('rejected', true),
  picker: () => openPicker(), undo: () => undo(), redo: () => redo(), discard: () => discard(),
  copy: () => copyPrevious(), fit: () => { if (S.cur) fitView(); },
  one: () => { if (S.cur) zoomAt(stage.clientWidth / 2, stage.clientHeight / 2, 1); },
  'zoom-in': () => { if (S.cur) zoomAt(stage.clientWidth / 2, stage.clientHeight / 2, S.view.s * 1.25); },
  'zoom-out': () => { if (S.cur) zoomAt(stage.clientWidth / 2, stage.clientHeight / 2, S.view.s / 1.25); },
  reload: () => reloadCurrent(),
};
on(root, 'mousedown', (ev) => { if (ev.target.closest('.aa-toolbar button, .aa-film-item, .aa-notice button')) ev.preventDefault(); });  // keep the keys here
on(root, 'click', (ev) => {
  const b = ev.target.closest('[data-act]');
  if (b && !S.dialog && ACTIONS[b.dataset.act]) { ACTIONS[b.dataset.act](); return; }
  const f = ev.target.closest('.aa-film-item');
  if (f && !S.dialog) jump(Number(f.dataset.pos));
});

// ---- keys -----------------------------------------------------------------------------------------------
function onKey(ev) {
  if (!visible() || !S.query) return;
  if (S.dialog) { dialogKey(ev); return; }
  const t = ev.target;
  if (typing(t)) return;
  const key = ev.key;
  if (t && t.type === 'range' && key.startsWith('Arrow')) return;  // a focused slider moves
  if (t && !root.contains(t) && ((['checkbox', 'radio'].includes(t.type) && key === ' ') ||
      (['checkbox', 'radio', 'button', 'submit'].includes(t.type) && key === 'Enter'))) return;  // a focused control's own key
  const ctrl = ev.ctrlKey || ev.metaKey;
  const lower = key.length === 1 ? key.toLowerCase() : key;
  if (ctrl && !ev.altKey) {
    if (lower === 's') { ev.preventDefault(); if (!ev.repeat) save(); }
    else if (lower === 'z') { ev.preventDefault(); if (ev.shiftKey) redo(); else undo(); }
    else if (lower === 'y') { ev.preventDefault(); redo(); }
    return;  // the browser's own shortcuts stay
  }
  if (ev.altKey) {
    const step = ev.shiftKey ? 10 : 1;
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[key];
    if (d) { ev.preventDefault(); nudge(d[0], d[1]); }
    return;
  }
  const once = !ev.repeat;
  switch (lower) {
    case 'ArrowLeft': ev.preventDefault(); go(-1); break;
    case 'ArrowRight': ev.preventDefault(); go(1); break;
    case 'a': ev.preventDefault(); if (once) review('approved', true); break;
    case 'r': ev.preventDefault(); if (once) review('rejected', !ev.shiftKey); break;
    case 'Delete': case 'Backspace': ev.preventDefault(); if (once) deleteSelected(); break;
    case 'Escape': if (S.selK !== null) { S.selK = null; paint(); } msg(''); break;
    case 'x': ev.preventDefault(); if (once) discard(); break;
    case 'q': case '/': ev.preventDefault(); if (once) openPicker(); break;
    case 'f': ev.preventDefault(); if (S.cur) fitView(); break;
    case 'y': ev.preventDefault(); if (once) resolveFinding(true); break;
    case 'n': ev.preventDefault(); if (once) resolveFinding(false); break;
    case 't': ev.preventDefault(); if (once) deleteTrack(); break;
    case ' ': ev.preventDefault(); if (!S.space) { S.space = true; canvas.style.cursor = 'grab'; } break;
    default:
      if (/^[1-9]$/.test(key) && once) { ev.preventDefault(); setClass(Number(key) - 1); }
  }
}
on(document, 'keydown', onKey, true);
on(document, 'keyup', (ev) => { if (ev.key === ' ') { S.space = false; canvas.style.cursor = 'crosshair'; } }, true);
on(window, 'blur', () => { S.space = false; });
on(window, 'beforeunload', (ev) => {
  // Armed while anything is unsaved: edits on the open image, a save still running, or edits brought
  // back after a refused save. Only a successful save (or a discard / reload) disarms it.
  if ((S.cur && isDirty(S.cur)) || S.pending.size || S.restore.size) { ev.preventDefault(); ev.returnValue = ''; }
});

// ---- the queue, props from Python, live changes ---------------------------------------------------------
function countTotal(c) { return c ? c.unreviewed + c.approved + c.rejected : null; }
function sameQuery(a, b) { return JSON.stringify(a || null) === JSON.stringify(b || null); }
function applyPendingQuery() {
  if (!S.pendingQuery || S.dialog || (S.cur && isDirty(S.cur))) return;
  const q = S.pendingQuery;
  S.pendingQuery = null;
  openQueue(q);
}
async function openQueue(q) {
  if (S.cur && isDirty(S.cur)) {  // the open image (maybe of another project) is saved first; a good save opens q
    S.pendingQuery = q;
    if (!(await save())) msg('The queue was not changed: this image has edits that could not be saved', 'error');
    return;
  }
  S.query = q;
  if (!q || !q.project) { S.project = null; S.ids = []; S.counts = null; showEmpty('Pick a project at the top.'); return; }
  const r = await call('aa_open', q);
  if (!sameQuery(S.query, q)) return;  // another query came meanwhile
  if (!r.ok) { showEmpty(r.error); msg(r.error, 'error'); return; }
  if (r.project !== S.project) { S.curClass = 0; S.film.clear(); filmEls.clear(); }
  S.project = r.project;
  setClasses(r.classes, r.colours);
  S.ids = r.ids; S.counts = r.counts; S.queueTotal = countTotal(r.counts); S.cache.clear();
  S.knownRev = Number.isInteger(r.revision) ? r.revision : null;
  S.pos = -1;
  if (visible()) scrollToEditor();
  show(0);
}
function setClasses(classes, colours) {
  S.classes = classes; S.colours = colours;
  S.rgb = colours.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  if (S.curClass >= classes.length) S.curClass = 0;
}
async function checkChanges() {
  if (!S.project) return;
  if (!visible()) { S.stale = true; return; }
  if (S.checking) { S.recheck = true; return; }
  S.checking = true;
  const seq = S.opSeq, project = S.project, c = S.cur, query = S.query;
  const ids = [...new Set([...(c ? [c.id] : []), ...S.cache.keys()])];
  const start = clamp(S.pos - Math.floor(FILM / 3), 0, Math.max(0, S.ids.length - FILM));
  const film = S.ids.slice(start, start + FILM);
  try {
    // the project's image count when the queue was last read: the server sends the queue again if it grew
    const r = await call('aa_changes', { project, ids, film, query: S.query, total: S.queueTotal });
    if (!r.ok || project !== S.project) return;
    if (Number.isInteger(r.revision) && (S.knownRev === null || r.revision > S.knownRev)) S.knownRev = r.revision;
    S.counts = r.counts;
    if (JSON.stringify(r.classes) !== JSON.stringify(S.classes)) setClasses(r.classes, r.colours);
    for (const it of r.film) S.film.set(it.id, it);
    if (r.ids && sameQuery(query, S.query)) S.queueTotal = countTotal(r.counts);
    const have = new Set(S.ids);
    const add = sameQuery(query, S.query) ? (r.ids || []).filter((i) => !have.has(i)) : [];
    if (add.length) {  // new images (an upload, an import) join the end of the queue; nothing moves
      const wasEmpty = !S.ids.length;
      S.ids = S.ids.concat(add);
      if (wasEmpty) { show(0); return; }
    }
    for (const [id, e] of [...S.cache]) {
      const now = r.images[String(id)];
      if (e.data && now && now.version !== e.data.version) S.cache.delete(id);  // the open image keeps its own copy
    }
    const now = c && r.images[String(c.id)];
    if (c && S.cur === c && now && now.version !== c.data.version) {
      if (seq !== S.opSeq || S.pending.has(c.id)) S.recheck = true;  // our own write was under way: look again
      else {
        S.notice = now;
        noticeEl.querySelector('.aa-notice-text').textContent = `Changed by ${now.changed_by || 'someone'}` +
          (now.changed_at ? ` at ${when(now.changed_at)}` : '') + (isDirty(c) ? ' — Reload drops your edits' : ' —');
        noticeEl.hidden = false;
      }
    }
    info(); renderFilm(); schedulePrefetch();
  } finally {
    S.checking = false;
    if (S.recheck) { S.recheck = false; setTimeout(checkChanges, 300); }
  }
}
watch('query', () => {
  const q = props.query;
  if (sameQuery(q, S.query)) return;
  if (S.dialog) { S.pendingQuery = q; return; }
  openQueue(q);
});
watch('view', () => {
  const v = props.view || {};
  S.minConf = Number(v.min_conf) || 0; S.hideAll = !!v.hide_all; S.dropHidden = !!v.drop_hidden;
  if (S.selK !== null && !selected()) S.selK = null;
  paint(); info();
});
watch('revision', () => { checkChanges(); });  // (the app passes revisions in the page: aaEditor.revisionChanged)

// ---- visibility and size --------------------------------------------------------------------------------
new ResizeObserver(() => {
  const now = root.getClientRects().length > 0 && root.offsetWidth > 0;
  if (now && !S.shown) {  // the tab was opened: fill the window with the editor
    S.shown = true;
    layout();
    if (S.cur || S.project) scrollToEditor();
    S.stale = false;
    checkChanges();  // what changed while another tab was on screen (its revision box only moves here)
  } else if (!now) S.shown = false;
  else layout();
}).observe(root);
on(window, 'resize', () => { if (visible()) layout(); });

// ---- test hook ------------------------------------------------------------------------------------------
window.aaEditor = {
  boxes: () => (S.cur ? S.cur.boxes.map((b) => ({ id: b.id, class_idx: b.class_idx, x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2,
                                                   source: b.source, confidence: b.confidence, hidden: !shownBox(b),
                                                   track_id: b.track_id })) : []),
  toScreen: (x, y) => { const r = stage.getBoundingClientRect(); const [px, py] = toStage(x, y); return { x: r.left + px, y: r.top + py }; },
  image: () => (S.cur ? { id: S.cur.id, version: S.cur.data.version, width: S.cur.data.width, height: S.cur.data.height,
                          status: S.cur.data.status, dirty: isDirty(S.cur) } : null),
  currentClass: () => S.curClass,
  classes: () => S.classes.slice(),
  zoom: () => S.view.s,
  queue: () => ({ ids: S.ids.slice(), pos: S.pos, counts: S.counts }),
  timings: () => S.timings.slice(),
  frames: () => S.frames.slice(),
  pending: () => S.pending.size,
  revisionChanged: (key) => {
    S.revision = key;
    // "project:revision" from the app's timer: a revision this page caused itself needs no round trip
    const at = String(key || '').lastIndexOf(':');
    const rev = Number(String(key).slice(at + 1));
    if (at > 0 && String(key).slice(0, at) === S.project && S.knownRev !== null && rev === S.knownRev) return;
    checkChanges();
  },
  revision: () => S.revision,
};

// ---- start ----------------------------------------------------------------------------------------------
(() => {
  const v = props.view || {};
  S.minConf = Number(v.min_conf) || 0; S.hideAll = !!v.hide_all; S.dropHidden = !!v.drop_hidden;
  layout();
  info();
  if (props.query && props.query.project) openQueue(props.query);
})();
