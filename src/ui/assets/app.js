// flow's dashboard behaviour: charts, live status of RUNNING runs, the log's tail,
// comparisons, model stage and alias changes, and the anomaly page's segment picker.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="flow-csrf"]') || {}).content || "";

  async function getJson(url) {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }

  // Charts: drawn at once, or when scrolled into view (data-lazy), or on a "curve" click.
  function setUpCharts() {
    const lazy = [];
    for (const box of document.querySelectorAll(".chart[data-series]")) {
      if (box.dataset.lazy) lazy.push(box); else FlowChart.load(box, null);
    }
    if (lazy.length && "IntersectionObserver" in window) {
      const observer = new IntersectionObserver((entries) => {
        for (const entry of entries) {
          if (entry.isIntersecting && !entry.target.dataset.state) {
            observer.unobserve(entry.target);
            FlowChart.load(entry.target, null);
          }
        }
      });
      lazy.forEach((box) => observer.observe(box));
    }
    for (const link of document.querySelectorAll(".draw-curve")) {
      link.addEventListener("click", () => {
        const box = document.querySelector(`#curve-${CSS.escape(link.dataset.key)} .chart`);
        if (box && !box.dataset.state) FlowChart.load(box, null);
      });
    }
  }

  // RUNNING badges follow their run until it ends.
  function followRunning() {
    const running = () => [...new Set([...document.querySelectorAll('.status[data-status="RUNNING"]')].map((b) => b.dataset.run))];
    const tick = async () => {
      const ids = running();
      if (!ids.length) return;
      try {
        const body = await getJson("/api/flow/runs/status?ids=" + ids.join(","));
        for (const run of body.runs) {
          for (const badge of document.querySelectorAll(`.status[data-run="${run.run_id}"]`)) {
            badge.dataset.status = run.status;
            badge.textContent = run.status;
            badge.className = "status status-" + run.status.toLowerCase();
          }
          for (const cell of document.querySelectorAll(`[data-duration="${run.run_id}"]`)) cell.textContent = run.duration;
          for (const bar of document.querySelectorAll(`.progress[data-progress="${run.run_id}"]`)) {
            if (run.status !== "RUNNING") { bar.remove(); continue; }
            const p = run.progress;
            if (p && p.total > 0) bar.firstChild.style.width = Math.min(100, (100 * p.done) / p.total).toFixed(1) + "%";
            if (p) bar.lastChild.textContent = `${p.label || ""} ${p.done}/${p.total} ${p.unit || ""}`.trim();
          }
        }
      } catch (error) {
        // The server may be restarting; the next tick tries again.
      }
      setTimeout(tick, 2000);
    };
    if (running().length) setTimeout(tick, 2000);
  }

  // The log of a RUNNING run grows at the bottom of the page.
  function followLog() {
    const log = document.getElementById("log");
    if (!log || log.dataset.running !== "true") return;
    const tick = async () => {
      try {
        const body = await getJson(`${log.dataset.log}?offset=${log.dataset.next}`);
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
        if (body.text) {
          if (log.textContent === "(no log)") log.textContent = "";
          log.appendChild(document.createTextNode(body.text));
        }
        log.dataset.next = String(body.next_offset);
        if (atBottom) log.scrollTop = log.scrollHeight;
        if (!body.running && body.next_offset >= body.size) { log.dataset.running = "false"; return; }
      } catch (error) {
        // Try again on the next tick.
      }
      setTimeout(tick, 1000);
    };
    setTimeout(tick, 1000);
  }

  function setUpCompare() {
    const form = document.getElementById("compare-form");
    if (!form) return;
    form.addEventListener("submit", (event) => {
      const picked = form.querySelectorAll('input[name="run"]:checked');
      if (picked.length < 2) {
        event.preventDefault();
        document.getElementById("count").textContent = "select at least two runs to compare";
      }
    });
  }

  async function send(method, url, body) {
    const response = await fetch(url, {
      method,
      headers: { "Content-Type": "application/json", "X-Flow-CSRF": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.message || response.statusText);
    return answer;
  }

  function setUpModels() {
    const result = document.getElementById("action-result");
    const act = async (work) => {
      try { await work(); location.reload(); } catch (error) { if (result) { result.textContent = error.message; result.className = "error"; } }
    };
    const path = (name) => "/api/flow/models/" + encodeURIComponent(name);
    for (const button of document.querySelectorAll(".set-stage")) {
      button.addEventListener("click", () => act(() => {
        const stage = button.closest("td").querySelector(".stage-select").value;
        return send("POST", `${path(button.dataset.model)}/versions/${button.dataset.version}/stage`, { stage });
      }));
    }
    for (const button of document.querySelectorAll(".set-alias")) {
      button.addEventListener("click", () => act(() => {
        const alias = button.closest("td").querySelector(".alias-input").value.trim();
        return send("POST", `${path(button.dataset.model)}/aliases`, { alias, version: Number(button.dataset.version) });
      }));
    }
    for (const button of document.querySelectorAll(".remove-alias")) {
      button.addEventListener("click", () => act(() => send("DELETE", `${path(button.dataset.model)}/aliases/${encodeURIComponent(button.dataset.alias)}`)));
    }
  }

  // The anomaly page: picking a segment zooms the score to it and draws its top features.
  function setUpSegments() {
    const picker = document.getElementById("segment-picker");
    if (!picker) return;
    const view = document.getElementById("segment-view");
    picker.addEventListener("change", async () => {
      view.innerHTML = "";
      if (picker.value === "") return;
      const option = picker.selectedOptions[0];
      const start = Number(option.dataset.start), end = Number(option.dataset.end);
      const margin = Math.max(50, end - start);
      const score = document.getElementById("score-chart");
      if (score) FlowChart.load(score, [Math.max(0, start - margin), end + margin]);
      try {
        const body = await getJson(`/api/flow/runs/${picker.dataset.run}/anomaly/segments/${picker.value}`);
        if (!body.features.length) {
          view.innerHTML = '<p class="empty" id="no-features">this evaluate run did not write <code>segment_features.csv</code> (written by newer flows): re-run evaluate to see forecasts and reconstructions here</p>';
          view.dataset.state = "drawn";
          return;
        }
        for (const feature of body.features) {
          const figure = document.createElement("figure");
          figure.className = "chart-box feature";
          const caption = document.createElement("figcaption");
          caption.textContent = `${feature.feature}: actual, forecast and reconstruction`;
          const box = document.createElement("div");
          box.className = "chart";
          figure.append(caption, box);
          view.appendChild(figure);
          const points = (values) => feature.rows.map((row, i) => [row, values[i]]);
          FlowChart.render(box, [
            { label: "actual", points: points(feature.actual), color: "#111827" },
            { label: "forecast", points: points(feature.forecast), color: "#2563eb" },
            { label: "reconstruction", points: points(feature.reconstruction), color: "#f97316" },
          ], { shaded: [[body.segment.start, body.segment.end - 1]], xLabel: "row" });
        }
        view.dataset.state = "drawn";
      } catch (error) {
        view.innerHTML = "";
        const message = document.createElement("p");
        message.className = "error";
        message.textContent = error.message;
        view.appendChild(message);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpCharts();
    followRunning();
    followLog();
    setUpCompare();
    setUpModels();
    setUpSegments();
  });
})();
