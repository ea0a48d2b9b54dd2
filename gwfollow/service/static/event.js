// The event page: Aladin Lite v3 (vendored, served by gwfollow) with the credible-region
// MOCs, the ranked galaxies and the selected fields' footprints, fetched from the REST API.
import A from "./vendor/aladin-lite/aladin.js";
import { sendAll } from "./samp.js";

const el = document.getElementById("aladin");
const layers = JSON.parse(el.dataset.layers);
const status = document.getElementById("aladin-status");
const details = document.getElementById("details");
const MOC_COLOURS = ["#e67e22", "#2980b9", "#8e44ad"];

async function json(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (r.status === 401) throw new Error("not signed in any more: reload the page and sign in with a read token");
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

/** A plan exposure's colour from its place in time (0 first .. 1 last): the ramp shown in the legend. */
function timeColour(f) {
  return `hsl(${Math.round(60 + 240 * f)}, 85%, 50%)`;
}

function showDetails(data) {
  details.hidden = false;
  const dl = document.createElement("dl");
  for (const [k, v] of Object.entries(data)) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = typeof v === "number" ? v.toPrecision(6) : String(v ?? "");
    dl.append(dt, dd);
  }
  details.replaceChildren(dl);
}

async function main() {
  await A.init;
  const aladin = A.aladin(el, {
    target: `${layers.ra} ${layers.dec}`, fov: layers.fov, projection: "SIN",
    survey: "P/DSS2/color", showCooGridControl: true, showSettingsControl: true, showLayersControl: true,
    showFrame: true, cooFrame: "ICRS",
  });
  window.aladin = aladin;
  const added = { mocs: [], catalogs: [], overlays: [], plans: [] };
  window.gwfollowLayers = added;
  const bigFirst = [...layers.mocs].sort((a, b) => b.level - a.level);
  for (const [i, m] of bigFirst.entries()) {
    const moc = A.MOCFromJSON(await json(m.url), {
      name: `${Math.round(m.level * 100)} % region`, color: MOC_COLOURS[i % MOC_COLOURS.length],
      opacity: 0.25, lineWidth: 2, fill: true, edge: true, adaptativeDisplay: false,
    });
    aladin.addMOC(moc);
    added.mocs.push(moc.name);
  }
  for (const c of layers.coverages) {
    try {
      const moc = A.MOCFromJSON(await json(c.url), {
        name: `coverage ${c.name}`, color: "#3498db", opacity: 0.15, lineWidth: 1, fill: true, edge: true,
      });
      aladin.addMOC(moc);
      added.mocs.push(moc.name);
    } catch (err) {
      console.warn(`coverage ${c.name} not drawn: ${err.message}`);
    }
  }
  for (const url of layers.galaxies) {
    const doc = await json(url);
    const name = `galaxies ${doc.provenance.catalog || ""}`.trim();
    const cat = A.catalog({ name, shape: "circle", sourceSize: 14, color: "#f1c40f", onClick: "showTable" });
    aladin.addCatalog(cat);
    cat.addSources(doc.rows.map((r) => A.source(r.ra, r.dec, {
      rank: r.rank, id: r.id, ra: r.ra, dec: r.dec, dist_mpc: r.dist_mpc,
      probdensity_3d: r.probdensity_3d, score: r.score, cumscore: r.cumscore,
    })));
    added.catalogs.push({ name, count: doc.rows.length });
  }
  for (const url of layers.fields) {
    const doc = await json(url);
    const name = `fields ${doc.provenance.telescope || ""}`.trim();
    const overlay = A.graphicOverlay({ name, color: "#e74c3c", lineWidth: 2 });  // red: outside the plans' time ramp
    aladin.addOverlay(overlay);
    let n = 0;
    for (const r of doc.rows) {
      if (!r.selected || !Array.isArray(r.s_region)) continue;
      const verts = [];
      for (let k = 0; k < r.s_region.length; k += 2) verts.push([r.s_region[k], r.s_region[k + 1]]);
      overlay.add(A.polygon(verts, { name: `field ${r.field_id}` }));
      n += 1;
    }
    added.overlays.push({ name, count: n });
  }
  for (const p of layers.plans) {
    const doc = await json(p.url);
    const overlay = A.graphicOverlay({ name: `plan ${p.name}`, color: "#e84393", lineWidth: 2 });
    aladin.addOverlay(overlay);
    const n = doc.rows.length;
    let drawn = 0;
    for (const [k, r] of doc.rows.entries()) {
      if (!Array.isArray(r.s_region)) continue;  // a plan stored before footprints were kept
      const verts = [];
      for (let j = 0; j < r.s_region.length; j += 2) verts.push([r.s_region[j], r.s_region[j + 1]]);
      overlay.add(A.polygon(verts, { name: `#${k + 1} field ${r.field_id} ${r.start_utc}`,
                                     color: timeColour(n > 1 ? k / (n - 1) : 0), lineWidth: 2 }));
      drawn += 1;
    }
    added.overlays.push({ name: overlay.name, count: drawn });
    added.plans.push({ name: p.name, exposures: n, footprints: drawn });
  }
  aladin.on("objectClicked", (obj) => { if (obj && obj.data) showDetails(obj.data); });
  status.textContent = `${added.mocs.length} MOC(s), ${added.catalogs.length} catalogue(s), `
    + `${added.overlays.length - added.plans.length} field layer(s), ${added.plans.length} plan(s). The survey background loads from CDS when reachable.`;
  document.body.dataset.ready = "true";
}

document.getElementById("samp-send").addEventListener("click", async () => {
  const out = document.getElementById("samp-status");
  out.textContent = "sending…";
  try {
    const r = await sendAll(layers.samp);
    out.textContent = `${r.sent} product(s) sent to the SAMP hub's clients, ${r.loaded} loaded`
      + (r.failed.length ? `; not loaded: ${r.failed.join("; ")}` : "");
  } catch (err) {
    out.textContent = "no SAMP hub with the Web Profile answered (start TOPCAT or Aladin): " + err.message;
  }
});

// Live updates: the event resource's ETag changes when the pipeline stores something new.
let etag = null;
async function watch() {
  try {
    const r = await fetch(layers.event, { headers: etag ? { "If-None-Match": etag } : {} });
    if (r.status === 200) {
      const tag = r.headers.get("ETag");
      if (etag !== null && tag !== etag) {
        status.textContent = "This event has new products: reload the page to see them.";
        status.className = "retracted";
      }
      etag = tag;
    }
  } catch (err) {
    /* the service is unreachable for now: try again at the next tick */
  }
}
setInterval(watch, 15000);
watch();

main().catch((err) => {
  status.textContent = "sky viewer failed: " + err.message;
  console.error(err);
  document.body.dataset.ready = "error";
});
