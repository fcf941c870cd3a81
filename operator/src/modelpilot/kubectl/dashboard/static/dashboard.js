// The dashboard's pages: the list of ModelDeployments, one ModelDeployment's rollout, drift and training, and
// "try it" (predictions for an uploaded CSV). Routing is the URL's fragment: #/, #/md/NS/NAME, #/try/NS/NAME.
// Everything from the cluster or a file is put into the page as text (textContent), never as markup.
"use strict";

(function () {
  const REFRESH_MS = 10000;
  let timer = null;

  // h("td", {class: "number"}, "text", node, …): an element; strings and numbers become text nodes.
  function h(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function link(fragment, text) {
    return h("a", { href: "#" + fragment.split("/").map((part, i) => (i === 0 ? part : encodeURIComponent(part))).join("/") }, text);
  }

  function table(id, headers, rows, numeric) {
    return h("table", { id },
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
        h("td", { class: numeric && numeric.includes(i) ? "number" : null }, cell === null || cell === undefined ? "-" : cell))))));
  }

  function facts(pairs) {
    return h("dl", { class: "facts" }, pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
  }

  function state(text) {
    return h("span", { class: /^[A-Za-z]+$/.test(text || "") ? text : null }, text || "-");
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const document_ = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(document_.error || `${response.status} ${response.statusText}`);
    return document_;
  }

  function show(...nodes) {
    const page = document.getElementById("page");
    page.replaceChildren(...nodes);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  function failure(error) {
    return h("p", { class: "error", id: "page-error" }, String(error.message || error));
  }

  // -- the list ------------------------------------------------------------------------------------

  async function listPage() {
    const listing = await getJson("/api/modeldeployments");
    if (!listing.items.length) return show(h("h1", {}, "ModelDeployments"), h("p", { class: "note" }, "No ModelDeployments here."));
    const rows = listing.items.map((item) => [
      item.namespace,
      link(`/md/${item.namespace}/${item.name}`, item.name),
      item.model, item.stable, item.canary,
      item.weight === null ? null : `${item.weight}%`,
      item.step, state(item.rollout), state(item.phase), state(item.drift), state(item.training), item.age,
      link(`/try/${item.namespace}/${item.name}`, "try it"),
    ]);
    show(h("h1", {}, "ModelDeployments"),
      table("md-table", ["Namespace", "Name", "Model", "Stable", "Canary", "Weight", "Step", "Rollout", "Phase", "Drift", "Training", "Age", ""], rows));
  }

  // -- one ModelDeployment -------------------------------------------------------------------------

  function seconds(duration) {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(duration || ""));
    if (!match) return undefined;
    return Number(match[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[match[2]];
  }

  function limitOf(metric, analysis) {
    if (metric === "error_rate") return analysis.maxErrorRate;
    if (metric === "p99_latency_seconds") return seconds(analysis.maxP99Latency);
    if (metric === "request_count") return analysis.minRequests;
    const custom = (analysis.metrics || []).find((m) => m.name === metric);
    return custom ? (custom.max !== undefined ? custom.max : custom.min) : undefined;
  }

  function rolloutSection(view, spec) {
    const rollout = view.rollout;
    if (!rollout.state) return [h("h2", {}, "Rollout"), h("p", { class: "note" }, "No rollout yet.")];
    const analysis = spec.rollout.analysis || {};
    const nodes = [
      h("h2", {}, "Rollout"),
      facts([
        ["State", state(rollout.state)],
        ["Canary", rollout.version ? `version ${rollout.version} (stable ${rollout.stableVersion || "-"})` : null],
        ["Steps", rollout.steps.length ? rollout.steps.map((w) => `${w}%`).join(", ") : null],
        ["Weight", `${rollout.effectiveWeight}% now (the step asks ${rollout.weight}%)`],
        ["Analyses", `${rollout.failures} failed, ${rollout.inconclusive} inconclusive in a row`],
        ["Held by", rollout.heldBy], ["Reason", rollout.reason], ["Note", rollout.weightMessage],
      ]),
      h("div", { class: "charts" },
        h("div", { id: "weight-chart" }, Charts.timeChart(
          rollout.weights.map((p) => ({ time: p.time, value: p.weight })),
          { title: "Canary weight (%)", yMax: 100, step: true, unit: "%" })),
        rollout.metrics.map((metric) => h("div", { class: "metric-chart", "data-metric": metric }, Charts.timeChart(
          rollout.analyses.map((a) => ({ time: a.time, value: (a.values || {})[metric], cls: a.verdict, label: `${a.verdict}: ${a.reason}` })),
          { title: metric, threshold: limitOf(metric, analysis) })))),
    ];
    if (rollout.analyses.length) {
      nodes.push(h("h2", {}, "Analyses"), table("analysis-table",
        ["Time", "Step", "Weight", "Verdict", ...rollout.metrics, "Reason"],
        rollout.analyses.slice().reverse().map((a) => [a.time, a.step + 1, `${a.weight}%`, state(a.verdict),
          ...rollout.metrics.map((m) => Charts.format((a.values || {})[m])), a.reason]),
        [1, 2, ...rollout.metrics.map((_, i) => 4 + i)]));
    }
    return nodes;
  }

  function driftSection(drift) {
    if (!drift) return [h("h2", {}, "Drift"), h("p", { class: "note" }, "No drift evaluation (monitoring.drift is not set, or none ran yet).")];
    const bars = drift.featureScores.map((f) => ({ label: f.feature, value: f.score, over: f.over }));
    return [
      h("h2", {}, "Drift"),
      facts([
        ["State", state(drift.state)], ["Method", drift.method], ["Version", drift.version],
        ["Score", drift.score === undefined ? null : `${Charts.format(drift.score)} (threshold ${Charts.format(drift.threshold)})`],
        ["Inputs", drift.inputs], ["Since", drift.since], ["Evaluated", drift.evaluatedAt], ["Reason", drift.reason],
      ]),
      bars.length ? h("div", { id: "drift-chart" }, Charts.barChart(bars, { title: `${drift.method} per feature`, threshold: drift.threshold })) : null,
    ];
  }

  function trainingSection(training, hasSpec) {
    const latest = training.latest;
    const nodes = [h("h2", {}, "Training")];
    if (!latest && !training.history.length) {
      nodes.push(h("p", { class: "note" }, hasSpec ? "No training Job yet." : "The spec has no training section."));
      return nodes;
    }
    if (latest) {
      nodes.push(facts([["Job", latest.job], ["Result", state(latest.result)], ["Trigger", latest.trigger], ["MLflow run", latest.runId],
        ["Registered version", latest.version], ["Started", latest.startedAt], ["Finished", latest.finishedAt], ["Message", latest.message]]));
    }
    if (training.history.length) {
      nodes.push(table("training-table", ["Time", "Event", "Version", "By", "Message"],
        training.history.map((e) => [e.time, state(e.event), e.version, e.requestedBy, e.message])));
    }
    return nodes;
  }

  async function detailPage(namespace, name) {
    const view = await getJson(`/api/modeldeployments/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
    const summary = view.summary;
    const request = view.lastRequest;
    show(
      h("h1", {}, `${summary.name}`, h("span", { class: "note" }, ` in ${summary.namespace}`)),
      h("nav", { class: "tabs" }, link("/", "all"), link(`/try/${namespace}/${name}`, "try it")),
      facts([["Model", summary.model], ["Phase", state(summary.phase)], ["Stable", summary.stable], ["Canary", summary.canary],
        ["Last request", request ? `${request.action} by ${request.requestedBy || "unknown"}: ${request.outcome}, ${request.message}` : null]]),
      view.conditions.length ? table("conditions-table", ["Condition", "Status", "Reason", "Message", "Since"],
        view.conditions.map((c) => [c.type, c.status, c.reason, c.message, c.lastTransitionTime])) : null,
      ...rolloutSection(view, view.spec),
      ...driftSection(view.drift),
      ...trainingSection(view.training, view.spec.training),
      h("h2", {}, "History"),
      view.history.length ? table("history-table", ["Time", "Event", "Version", "By", "Why", "Message"],
        view.history.map((e) => [e.time, state(e.event), e.version, e.requestedBy, e.requestReason, e.message])) : h("p", { class: "note" }, "No history yet."),
      h("h2", {}, "Events"),
      view.events.length ? table("events-table", ["Time", "Type", "Reason", "Message", "Count"],
        view.events.map((e) => [e.time, e.type, e.reason, e.message, e.count]), [4]) : h("p", { class: "note" }, "No Events."),
    );
  }

  // -- try it --------------------------------------------------------------------------------------

  function predictionCell(value) {
    if (Array.isArray(value)) return value.map((v) => Charts.format(v)).join(", ");
    if (typeof value === "object" && value !== null) return JSON.stringify(value);
    return typeof value === "number" ? Charts.format(value) : value;
  }

  function results(answer) {
    const rows = answer.rows.map((cells, index) => [index + 1, ...cells,
      answer.classes ? answer.classes[index] : null, predictionCell(answer.predictions ? answer.predictions[index] : null)]);
    const nodes = [
      h("p", { id: "prediction-source" }, `${answer.model} version ${answer.version || "?"}, ${answer.track} track (service ${answer.service})`),
      h("div", { class: "scroll" }, table("predictions-table", ["#", ...answer.columns, "Class", "Prediction"], rows)),
    ];
    if (answer.gates) {
      nodes.push(h("h2", {}, "Gating weights per row"),
        h("div", { id: "gates-chart" }, Charts.stackedBars(answer.gates, { title: "Share of each expert per row" })));
    } else if (answer.gatesNote) {
      nodes.push(h("p", { class: "note", id: "gates-note" }, `No gating weights: ${answer.gatesNote}`));
    }
    return nodes;
  }

  function tryPage(namespace, name) {
    const file = h("input", { type: "file", id: "csv-file", accept: ".csv,text/csv" });
    const track = h("select", { id: "track" }, h("option", { value: "stable" }, "stable"), h("option", { value: "canary" }, "canary"));
    const button = h("button", { type: "submit", id: "predict-button" }, "Predict");
    const output = h("div", { id: "try-output" });
    const form = h("form", { class: "try" }, h("label", {}, "CSV with a header row ", file), h("label", {}, "track ", track), button);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!file.files.length) {
        output.replaceChildren(h("p", { class: "error", id: "try-error" }, "Choose a CSV file first."));
        return;
      }
      button.disabled = true;
      output.replaceChildren(h("p", { class: "note" }, "Predicting…"));
      try {
        const text = await file.files[0].text();
        const path = `/api/modeldeployments/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/predict?track=${encodeURIComponent(track.value)}`;
        const response = await fetch(path, { method: "POST", body: text, headers: { "Content-Type": "text/csv", "X-Modelpilot-Dashboard": "1" } });
        const answer = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
        if (!response.ok) throw new Error(answer.error || `${response.status}`);
        output.replaceChildren(...results(answer));
      } catch (error) {
        output.replaceChildren(h("p", { class: "error", id: "try-error" }, String(error.message || error)));
      } finally {
        button.disabled = false;
      }
    });
    show(
      h("h1", {}, `Try ${name}`, h("span", { class: "note" }, ` in ${namespace}`)),
      h("nav", { class: "tabs" }, link("/", "all"), link(`/md/${namespace}/${name}`, "rollout")),
      h("p", { class: "note" }, "Each row of the file is one prediction from the track's Service, reached through the API server. " +
        "The header names the features; for a tensor model the columns are taken in the file's order."),
      form, output);
  }

  // -- routing -------------------------------------------------------------------------------------

  async function route() {
    clearTimeout(timer);
    const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    try {
      if (parts[0] === "md" && parts.length === 3) {
        await detailPage(parts[1], parts[2]);
        timer = setTimeout(route, REFRESH_MS);
      } else if (parts[0] === "try" && parts.length === 3) {
        tryPage(parts[1], parts[2]);
      } else {
        await listPage();
        timer = setTimeout(route, REFRESH_MS);
      }
    } catch (error) {
      show(failure(error));
    }
  }

  async function start() {
    try {
      const context = await getJson("/api/context");
      document.getElementById("where").textContent = context.allNamespaces ? "all namespaces" : `namespace ${context.namespace}`;
    } catch (error) {
      show(failure(error));
      return;
    }
    window.addEventListener("hashchange", route);
    route();
  }

  start();
})();
