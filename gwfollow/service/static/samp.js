// A minimal SAMP Web Profile client (IVOA SAMP 1.3, section 5): XML-RPC over HTTP to the
// hub on localhost:21012. Registers, sends each product to each subscribed client with
// callAndWait (the reply says whether the client loaded the file; a notification could be
// dropped by the hub once the sender has unregistered), unregisters. A MOC goes to Aladin as
// image.load.fits (Aladin 12.0 does not subscribe to coverage.load.moc.fits).
const HUB = "http://localhost:21012/";

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function value(v) {
  if (Array.isArray(v)) return "<value><array><data>" + v.map(value).join("") + "</data></array></value>";
  if (v !== null && typeof v === "object") {
    return "<value><struct>" + Object.entries(v).map(([k, x]) =>
      `<member><name>${esc(k)}</name>${value(x)}</member>`).join("") + "</struct></value>";
  }
  return `<value><string>${esc(v)}</string></value>`;
}

function parse(node) {
  const child = [...node.children][0];
  if (!child) return node.textContent;
  switch (child.tagName) {
    case "struct": {
      const out = {};
      for (const m of child.children) out[m.querySelector("name").textContent] = parse(m.querySelector("value"));
      return out;
    }
    case "array": return [...child.querySelector("data").children].map(parse);
    default: return child.textContent;
  }
}

async function call(method, params) {
  const xml = `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>`
    + params.map((p) => `<param>${value(p)}</param>`).join("") + "</params></methodCall>";
  const r = await fetch(HUB, { method: "POST", headers: { "Content-Type": "text/xml" }, body: xml });
  const doc = new DOMParser().parseFromString(await r.text(), "text/xml");
  const fault = doc.querySelector("fault");
  if (fault) throw new Error("SAMP hub: " + JSON.stringify(parse(fault.querySelector("value"))));
  return parse(doc.querySelector("params param value"));
}

/** Send [{mtype, url, name}] to every subscribed client.
 *  Returns {sent: messages sent, loaded: replies "samp.ok", failed: ["client: error", ...]}. */
export async function sendAll(items, timeoutSeconds = 30) {
  const reg = await call("samp.webhub.register", [{ "samp.name": "gwfollow" }]);
  const key = reg["samp.private-key"];
  const out = { sent: 0, loaded: 0, failed: [] };
  try {
    await call("samp.webhub.declareMetadata", [key, { "samp.name": "gwfollow",
      "samp.description.text": "gravitational-wave follow-up products" }]);
    for (const it of items) {
      const url = new URL(it.url, window.location.href).href;
      const msg = { "samp.mtype": it.mtype, "samp.params": { url, name: it.name } };
      const clients = Object.keys(await call("samp.webhub.getSubscribedClients", [key, it.mtype]));
      const calls = clients.map((id) => [id, msg]);
      if (it.mtype === "coverage.load.moc.fits") {
        // Aladin Desktop 12.0 does not subscribe to coverage.load.moc.fits, yet draws a MOC FITS
        // file sent as image.load.fits.
        for (const id of Object.keys(await call("samp.webhub.getSubscribedClients", [key, "image.load.fits"]))) {
          if (clients.includes(id)) continue;
          const meta = await call("samp.webhub.getMetadata", [key, id]);
          if (String(meta["samp.name"] || "").toLowerCase() === "aladin") {
            calls.push([id, { ...msg, "samp.mtype": "image.load.fits" }]);
          }
        }
      }
      out.sent += 1;
      for (const [id, m] of calls) {
        try {
          const r = await call("samp.webhub.callAndWait", [key, id, m, String(timeoutSeconds)]);
          if (r["samp.status"] === "samp.ok") out.loaded += 1;
          else out.failed.push(`${id}: ${(r["samp.error"] || {})["samp.errortxt"] || r["samp.status"]}`);
        } catch (err) {
          out.failed.push(`${id}: ${err.message}`);
        }
      }
    }
  } finally {
    await call("samp.webhub.unregister", [key]);
  }
  return out;
}
