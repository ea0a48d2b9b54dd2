// The event list: refreshed from the REST API every 10 s (newest first).
const body = document.querySelector("#events tbody");
const stamp = document.getElementById("refreshed");

function cell(text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.append(a);
  } else {
    td.textContent = text;
  }
  return td;
}

async function refresh() {
  try {
    const r = await fetch("/api/v1/events?limit=1000", { headers: { Accept: "application/json" } });
    if (r.status === 401) throw new Error("not signed in any more: reload the page and sign in with a read token");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const doc = await r.json();
    const events = doc.events.slice().sort((a, b) =>
      a.updated_at === b.updated_at ? b.superevent_id.localeCompare(a.superevent_id)
                                    : b.updated_at.localeCompare(a.updated_at));
    const rows = events.map((e) => {
      const tr = document.createElement("tr");
      tr.className = e.state;
      const sig = e.significant === null ? "" : e.significant ? "yes" : "no";
      tr.append(cell(e.superevent_id, "/events/" + encodeURIComponent(e.superevent_id)), cell(e.state),
                cell(e.grp || ""), cell(sig), cell(e.n_alerts ?? ""), cell(e.updated_at));
      return tr;
    });
    if (rows.length) body.replaceChildren(...rows);
    stamp.textContent = "refreshed " + new Date().toISOString().slice(11, 19) + " UTC";
  } catch (err) {
    stamp.textContent = "refresh failed: " + err.message;
  }
}

setInterval(refresh, 10000);
refresh();
