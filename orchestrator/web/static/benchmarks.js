// Benchmark charts from the JSON the page embeds (#bench-data): every iteration per phone
// (a strip plot with each phone's median) and each phone's median across jobs.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("bench-data").textContent);
  var palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  function tagged(label, simulated) { return simulated ? label + " (simulated)" : label; }
  function median(values) {
    var s = values.slice().sort(function (a, b) { return a - b; });
    if (!s.length) { return null; }
    var m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  var phones = data.distribution.map(function (d) { return tagged(d.label, d.simulated); });
  var points = data.distribution.map(function (d, i) {
    return {
      label: phones[i],
      data: d.iterations_ms.map(function (y, k) {
        // Spread the points sideways so equal latencies stay visible (deterministic jitter).
        return { x: i + ((k * 0.618) % 1 - 0.5) * 0.5, y: y };
      }),
      backgroundColor: palette[i % palette.length] + "99",
      pointRadius: 3
    };
  });
  points.push({
    label: "median",
    data: data.distribution.map(function (d, i) { return { x: i, y: median(d.iterations_ms) }; }),
    pointStyle: "line", pointRadius: 18, borderWidth: 3, borderColor: "#111", backgroundColor: "#111"
  });
  new Chart(document.getElementById("distribution"), {
    type: "scatter",
    data: { datasets: points },
    options: {
      animation: false,
      scales: {
        x: { min: -0.6, max: phones.length - 0.4, ticks: { stepSize: 1, callback: function (v) { return phones[v] || ""; } } },
        y: { title: { display: true, text: "latency per iteration (ms)" }, beginAtZero: true }
      },
      plugins: { legend: { display: true } }
    }
  });

  new Chart(document.getElementById("over-time"), {
    type: "line",
    data: {
      labels: data.over_time.labels,
      datasets: data.over_time.series.map(function (s, i) {
        return {
          label: tagged(s.label, s.simulated), data: s.p50_ms, spanGaps: true,
          borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length],
          borderDash: s.simulated ? [6, 4] : []
        };
      })
    },
    options: {
      animation: false,
      scales: {
        x: { title: { display: true, text: "benchmark job (submitted, id)" } },
        y: { title: { display: true, text: "median latency (ms)" }, beginAtZero: true }
      }
    }
  });
})();
