// A small SVG line chart for rolling time series: drawn by hand, no library.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A round step so that 4 steps cover `value`: 1, 2 or 5 times a power of ten. */
function niceStep(value) {
  const raw = value > 0 ? value / 4 : 0.25;
  const exp = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * exp + 1e-12) return m * exp;
  return 10 * exp;
}

/**
 * Draw `series` ([{label, cls, points: [[t, v], ...]}]) into the <svg> `el`, over the
 * last `windowS` seconds up to `now` (Unix seconds). `format` labels the y axis.
 */
export function drawChart(el, series, { windowS, now, format, minMax = 0, cap = Infinity }) {
  const width = Math.max(240, Math.round(el.clientWidth || el.parentElement.clientWidth || 480));
  const height = Math.max(120, Math.round(el.clientHeight || 160));
  const pad = { left: 46, right: 10, top: 10, bottom: 22 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  el.setAttribute("viewBox", `0 0 ${width} ${height}`);
  el.replaceChildren();

  const start = now - windowS;
  let top = minMax;
  for (const s of series) for (const [, v] of s.points) if (v > top) top = v;
  const step = niceStep(Math.min(top, cap));
  top = step * 4;
  const x = (t) => pad.left + ((t - start) / windowS) * plotW;
  const y = (v) => pad.top + plotH - (v / top) * plotH;

  for (let i = 0; i <= 4; i++) {
    const v = step * i;
    const yy = y(v);
    el.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, class: "grid" }));
    el.append(svg("text", { x: pad.left - 6, y: yy + 4, class: "axis", "text-anchor": "end" },
      format(v)));
  }
  const ticks = plotW >= 420 ? [windowS, windowS * 0.75, windowS / 2, windowS / 4, 0] : [windowS, windowS / 2, 0];
  for (const ago of ticks) {
    const label = ago === 0 ? "now" : `−${Math.round(ago / 60)} min`;
    const anchor = ago === windowS ? "start" : ago === 0 ? "end" : "middle";
    el.append(svg("text", { x: x(now - ago), y: height - 6, class: "axis", "text-anchor": anchor }, label));
  }

  for (const s of series) {
    const pts = s.points.filter(([t]) => t >= start - 5);
    if (pts.length === 0) continue;
    const coords = pts.map(([t, v]) => `${x(Math.max(t, start)).toFixed(1)},${y(v).toFixed(1)}`);
    if (pts.length > 1) {
      const area = `M${x(Math.max(pts[0][0], start)).toFixed(1)},${y(0)} L${coords.join(" L")} ` +
        `L${x(pts[pts.length - 1][0]).toFixed(1)},${y(0)} Z`;
      el.append(svg("path", { d: area, class: `area ${s.cls}` }));
      el.append(svg("path", { d: `M${coords.join(" L")}`, class: `line ${s.cls}` }));
    }
    const [lt, lv] = pts[pts.length - 1];
    el.append(svg("circle", { cx: x(lt), cy: y(lv), r: 3, class: `dot ${s.cls}` }));
  }
  if (series.every((s) => s.points.length < 2)) {
    el.append(svg("text", { x: pad.left + plotW / 2, y: pad.top + plotH / 2, class: "axis", "text-anchor": "middle" },
      "collecting samples…"));
  }
}
