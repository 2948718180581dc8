"""HTML/CSS/JS of the attention explorer page (see ``explorer.py`` for the data contract).

``PAGE_TEMPLATE`` has two fill-ins: ``__TITLE__`` (HTML-escaped text) and ``__DATA_JSON__`` (the JSON payload, with
every ``<`` written as ``\\u003c``). The script decodes the payload, then sets ``data-ready="1"`` on ``#heat`` (or
``data-ready="error"`` with the message in ``#error``).

Controls: click (or tap) the image to pick the query pixel; arrow keys on the focused image move the query by one
cell; ``[``/``]`` previous/next layer; ``,``/``.`` previous/next head (``mean of heads`` comes first); the opacity
slider and the ``blocky`` switch change only the display. For tests: ``#heat`` carries ``data-layer``,
``data-head`` (index or ``mean``), ``data-query`` (raster index of the query cell); ``window.explorerState()``.
"""

from __future__ import annotations

PAGE_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px; color: #1d1d1f;
         background: #f6f6f4; }
  h1 { font-size: 18px; margin: 0 0 10px; }
  #controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin-bottom: 10px; }
  #controls label { display: inline-flex; gap: 6px; align-items: center; }
  select, input { font: inherit; }
  #main { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
  #stage { position: relative; width: min(640px, 92vw); cursor: crosshair; outline: none; user-select: none;
           touch-action: manipulation; background: #000; }
  #stage:focus-visible { box-shadow: 0 0 0 3px #3b82f6; }
  #photo { display: block; width: 100%; height: 100%; }
  #heat { position: absolute; left: 0; top: 0; width: 100%; height: 100%; opacity: 0.6; pointer-events: none; }
  .blocky #heat, .blocky #photo, .tile canvas { image-rendering: pixelated; }
  #cell { position: absolute; box-sizing: border-box; border: 1px dashed #fff; pointer-events: none;
          box-shadow: 0 0 0 1px rgba(0, 0, 0, 0.5); }
  #marker { position: absolute; width: 14px; height: 14px; margin: -7px 0 0 -7px; box-sizing: border-box;
            border: 2px solid #fff; border-radius: 50%; box-shadow: 0 0 0 1.5px #000; pointer-events: none; }
  #side { max-width: 440px; }
  #info { margin: 8px 0; font-variant-numeric: tabular-nums; }
  #colorbar { display: flex; align-items: center; gap: 6px; font-size: 12px; }
  #bar { width: 200px; height: 12px; border: 1px solid #999; }
  #heads { display: grid; grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); gap: 6px; margin-top: 8px; }
  .tile { padding: 3px; border: 2px solid transparent; border-radius: 4px; background: #fff; cursor: pointer;
          font: inherit; font-size: 12px; text-align: center; }
  .tile[aria-pressed="true"] { border-color: #e5484d; }
  .tile:focus-visible { outline: 2px solid #3b82f6; }
  .tile canvas { display: block; width: 100%; margin-bottom: 2px; background: #000; }
  #help { color: #666; font-size: 12px; margin-top: 10px; }
  #error { color: #b00020; font-weight: 600; }
</style>
</head>
<body>
<h1 id="title">__TITLE__</h1>
<div id="controls">
  <label>layer <select id="layer" aria-label="layer"></select></label>
  <label>head <select id="head" aria-label="head"></select></label>
  <label>opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.6" aria-label="opacity">
  </label>
  <label><input id="blocky" type="checkbox"> blocky</label>
</div>
<div id="error" role="alert"></div>
<div id="main">
  <div id="stage" tabindex="0" role="application"
       aria-label="image: click a pixel (or use the arrow keys) to choose the query">
    <img id="photo" alt="input image" draggable="false">
    <canvas id="heat" data-ready="0"></canvas>
    <div id="cell"></div>
    <div id="marker"></div>
  </div>
  <div id="side">
    <div id="info" aria-live="polite"></div>
    <div id="colorbar"><span>0</span><canvas id="bar" width="256" height="1"></canvas><span id="barmax">max</span>
    </div>
    <div id="heads" role="group" aria-label="all heads of this layer"></div>
    <div id="help">Click the image to choose the query pixel; the overlay shows its attention over the keys, each
      map scaled to its own maximum. Keys on the image: arrows move the query one cell, <kbd>[</kbd> and
      <kbd>]</kbd> change layer, <kbd>,</kbd> and <kbd>.</kbd> change head. Data stored as 8-bit codes per row
      (error at most the row's maximum / 510).</div>
  </div>
</div>
<script type="application/json" id="explorer-data">__DATA_JSON__</script>
<script>
(() => {
  "use strict";
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const W = DATA.image.width, H = DATA.image.height;
  const $ = (id) => document.getElementById(id);
  const stage = $("stage"), heat = $("heat"), photo = $("photo"), marker = $("marker"), cellBox = $("cell");
  const layerSel = $("layer"), headSel = $("head"), opacity = $("opacity"), blocky = $("blocky");
  const layers = [];
  const state = { layer: 0, head: "mean", x: Math.floor(W / 2), y: Math.floor(H / 2), query: 0, cell: [0, 0],
                  values: new Float32Array(0), max: 0, ready: false };
  let LUT = null;

  function b64bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  function float32le(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Float32Array(bytes.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  const nq = (L) => L.qGrid[0] * L.qGrid[1];
  const nk = (L) => L.kvGrid[0] * L.kvGrid[1];

  // Pixel (x, y) lies in query cell (floor(y*hq/H), floor(x*wq/W)): the cells evenly cover the image.
  function queryCell(L, x, y) {
    const [hq, wq] = L.qGrid;
    return [Math.min(hq - 1, Math.floor((y * hq) / H)), Math.min(wq - 1, Math.floor((x * wq) / W))];
  }
  // The middle pixel of cell index c along an axis of `size` pixels split into n cells.
  function cellCentre(c, n, size) {
    const first = Math.floor((c * size + n - 1) / n), last = Math.floor(((c + 1) * size - 1) / n);
    return Math.floor((first + last) / 2);
  }
  function headRow(L, h, r) {
    const out = new Float32Array(nk(L));
    const row = h * nq(L) + r, scale = L.rowMax[row] / 255, off = row * nk(L);
    for (let k = 0; k < out.length; k++) out[k] = L.codes[off + k] * scale;
    return out;
  }
  function displayedMap(L, head, r) {
    if (head !== "mean") return headRow(L, head, r);
    const out = new Float32Array(nk(L));
    for (let h = 0; h < L.heads; h++) {
      const m = headRow(L, h, r);
      for (let k = 0; k < out.length; k++) out[k] += m[k];
    }
    for (let k = 0; k < out.length; k++) out[k] /= L.heads;
    return out;
  }
  // Paint values on a canvas of kv_grid size: colour index round(255 * v / max). Returns max.
  function paint(canvas, L, values) {
    const [hk, wk] = L.kvGrid;
    if (canvas.width !== wk) canvas.width = wk;
    if (canvas.height !== hk) canvas.height = hk;
    let mx = 0;
    for (let k = 0; k < values.length; k++) if (values[k] > mx) mx = values[k];
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(wk, hk);
    for (let k = 0; k < values.length; k++) {
      const c = mx > 0 ? Math.round((255 * values[k]) / mx) : 0;
      img.data[4 * k] = LUT[3 * c]; img.data[4 * k + 1] = LUT[3 * c + 1]; img.data[4 * k + 2] = LUT[3 * c + 2];
      img.data[4 * k + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return mx;
  }
  const headLabel = (h) => (h === "mean" ? "mean of heads" : "head " + h);

  function buildLayer() {
    const L = layers[state.layer];
    if (state.head !== "mean" && state.head >= L.heads) state.head = "mean";
    headSel.replaceChildren();
    const tiles = $("heads");
    tiles.replaceChildren();
    for (const h of ["mean", ...Array.from({ length: L.heads }, (_, i) => i)]) {
      headSel.add(new Option(headLabel(h), String(h)));
      const b = document.createElement("button");
      b.type = "button"; b.className = "tile"; b.dataset.head = String(h);
      b.title = "show " + headLabel(h);
      const c = document.createElement("canvas");
      c.style.aspectRatio = W + " / " + H;
      b.append(c, document.createTextNode(headLabel(h)));
      b.addEventListener("click", () => selectHead(h));
      tiles.append(b);
    }
    headSel.value = String(state.head);
    layerSel.value = String(state.layer);
  }

  function render() {
    const L = layers[state.layer];
    const [i, j] = queryCell(L, state.x, state.y);
    state.cell = [i, j];
    state.query = i * L.qGrid[1] + j;
    state.values = displayedMap(L, state.head, state.query);
    state.max = paint(heat, L, state.values);
    heat.dataset.layer = String(state.layer);
    heat.dataset.head = String(state.head);
    heat.dataset.query = String(state.query);
    marker.style.left = (100 * (state.x + 0.5)) / W + "%";
    marker.style.top = (100 * (state.y + 0.5)) / H + "%";
    const [hq, wq] = L.qGrid;
    cellBox.style.left = (100 * j) / wq + "%"; cellBox.style.top = (100 * i) / hq + "%";
    cellBox.style.width = 100 / wq + "%"; cellBox.style.height = 100 / hq + "%";
    for (const b of $("heads").children) {
      const h = b.dataset.head === "mean" ? "mean" : Number(b.dataset.head);
      paint(b.querySelector("canvas"), L, displayedMap(L, h, state.query));
      b.setAttribute("aria-pressed", String(h === state.head));
    }
    let best = 0;
    for (let k = 1; k < state.values.length; k++) if (state.values[k] > state.values[best]) best = k;
    const wk = L.kvGrid[1];
    $("info").textContent = `${L.name || "layer " + state.layer} · ${headLabel(state.head)} · query pixel ` +
      `(x ${state.x}, y ${state.y}) → cell (${i}, ${j}) of ${hq}×${wq} · peak key cell ` +
      `(${Math.floor(best / wk)}, ${best % wk}) of ${L.kvGrid[0]}×${wk} = ${state.max.toPrecision(3)}`;
    $("barmax").textContent = state.max.toPrecision(3);
  }

  function selectPixel(x, y) {
    state.x = Math.max(0, Math.min(W - 1, x)); state.y = Math.max(0, Math.min(H - 1, y));
    render();
  }
  function selectHead(h) { state.head = h; headSel.value = String(h); render(); }
  function selectLayer(l) { state.layer = l; buildLayer(); render(); }
  function stepHead(d) {
    const L = layers[state.layer];
    const order = ["mean", ...Array.from({ length: L.heads }, (_, i) => i)];
    const at = order.indexOf(state.head);
    selectHead(order[(at + d + order.length) % order.length]);
  }

  stage.addEventListener("click", (e) => {
    const rect = stage.getBoundingClientRect();
    selectPixel(Math.floor(((e.clientX - rect.left) * W) / rect.width),
                Math.floor(((e.clientY - rect.top) * H) / rect.height));
    stage.focus({ preventScroll: true });
  });
  stage.addEventListener("keydown", (e) => {
    if (!state.ready) return;
    const L = layers[state.layer];
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    if (e.key in moves) {
      const [hq, wq] = L.qGrid, [di, dj] = moves[e.key];
      const i = Math.max(0, Math.min(hq - 1, state.cell[0] + di));
      const j = Math.max(0, Math.min(wq - 1, state.cell[1] + dj));
      selectPixel(cellCentre(j, wq, W), cellCentre(i, hq, H));
    } else if (e.key === "[" || e.key === "]") {
      selectLayer((state.layer + (e.key === "]" ? 1 : layers.length - 1)) % layers.length);
    } else if (e.key === "," || e.key === ".") {
      stepHead(e.key === "." ? 1 : -1);
    } else {
      return;
    }
    e.preventDefault();
  });
  layerSel.addEventListener("change", () => selectLayer(Number(layerSel.value)));
  headSel.addEventListener("change", () => selectHead(headSel.value === "mean" ? "mean" : Number(headSel.value)));
  opacity.addEventListener("input", () => { heat.style.opacity = opacity.value; });
  blocky.addEventListener("change", () => document.body.classList.toggle("blocky", blocky.checked));

  window.explorerState = () => ({
    ready: state.ready, layer: state.layer, layerName: state.ready ? layers[state.layer].name : null,
    head: state.head, query: state.query, queryCell: state.cell.slice(), queryPixel: [state.x, state.y],
    qGrid: state.ready ? layers[state.layer].qGrid.slice() : null,
    kvGrid: state.ready ? layers[state.layer].kvGrid.slice() : null,
    values: Array.from(state.values), max: state.max, opacity: Number(opacity.value), image: [W, H],
  });

  async function init() {
    try {
      if (typeof DecompressionStream === "undefined") {
        throw new Error("this browser lacks DecompressionStream (needs Chrome 80+, Firefox 113+ or Safari 16.4+)");
      }
      LUT = b64bytes(DATA.colormap.rgb);
      for (const d of DATA.layers) {
        const L = { name: d.name, qGrid: d.q_grid, kvGrid: d.kv_grid, heads: d.heads,
                    codes: await inflate(b64bytes(d.codes)), rowMax: float32le(b64bytes(d.row_max)) };
        if (L.codes.length !== L.heads * nq(L) * nk(L) || L.rowMax.length !== L.heads * nq(L)) {
          throw new Error(`layer "${d.name}": data length does not match its grids`);
        }
        layers.push(L);
        layerSel.add(new Option(`${layers.length - 1}: ${d.name}`, String(layers.length - 1)));
      }
      const [hq0, wq0] = layers[0].qGrid;  // start at the middle pixel of the middle query cell of layer 0
      state.x = cellCentre(Math.floor(wq0 / 2), wq0, W); state.y = cellCentre(Math.floor(hq0 / 2), hq0, H);
      stage.style.aspectRatio = W + " / " + H;
      $("bar").getContext("2d").putImageData(new ImageData(
        Uint8ClampedArray.from({ length: 1024 }, (_, k) => (k % 4 === 3 ? 255 : LUT[3 * (k >> 2) + (k % 4)])), 256, 1),
        0, 0);
      photo.src = "data:image/png;base64," + DATA.image.png;
      await photo.decode();
      buildLayer();
      render();
      state.ready = true;
      heat.dataset.ready = "1";
    } catch (err) {
      $("error").textContent = "explorer: " + err.message;
      heat.dataset.ready = "error";
    }
  }
  init();
})();
</script>
</body>
</html>
"""
