"""The result table: medians across rounds, ratios, and its text, Markdown and JSON forms."""

import json
import os
import statistics

import scenarios
from scenarios import HIGHER, LOWER

RATIOS = [("sluice", "nginx"), ("sluice", "haproxy")]

NOTES = [
    "Each cell is the median across rounds; `±x%` is half the range of the rounds (max-min) "
    "relative to the median, a quick view of the noise.",
    "Targets ran interleaved within each round (direct, sluice, nginx, haproxy, then again), "
    "so slow drift of the machine affects all alike.",
    "`direct` is the upstream nginx with no proxy in between: the ceiling for throughput and "
    "latency. In rows 5 and 6 it is the cost of the upstream nginx itself.",
    "Ratios are sluice / peer. For a *higher is better* row a ratio above 1 favours sluice; "
    "for a *lower is better* row a ratio below 1 does.",
    "nginx counts master + worker (CPU and RSS are summed over all processes of a target; "
    "pages shared by both are counted twice in RSS).",
    "Bytes per connection = (RSS with the idle connections - RSS idle) / connections opened.",
    "With 2 cores the load generator, the upstream and the proxy share the machine: the "
    "numbers compare the proxies with each other on this machine, they are not capacity "
    "figures.",
]


class Results:
    """samples[(scenario, target)] = list of sample dicts, one per round."""

    def __init__(self, targets_):
        self.targets = targets_
        self.samples = {}

    def add(self, scenario, target, sample):
        self.samples.setdefault((scenario, target), []).append(sample)

    def cells(self):
        """One row per metric whose scenario ran: values per target, ratios, errors."""
        rows = []
        errors = []  # (index shown in the table, text)
        error_index = {}
        for m in scenarios.METRICS:
            # CPU is measured during scenario 1's runs (its samples hold both).
            source = "keepalive" if m.scenario == "cpu" else m.scenario
            if not any((source, t) in self.samples for t in self.targets):
                continue
            row = {"scenario": m.scenario, "metric": m.key, "label": m.label, "unit": m.unit,
                   "better": m.better, "digits": m.digits, "values": {}}
            for t in self.targets:
                if m.targets is not None and t not in m.targets:
                    continue
                samples = self.samples.get((source, t))
                if not samples:
                    continue
                vals = [s[m.key] for s in samples if s.get(m.key) is not None]
                errs = [s["error"] for s in samples if s.get("error")]
                cell = {"samples": vals}
                if vals:
                    med = statistics.median(vals)
                    cell["median"] = med
                    if len(vals) > 1 and med:
                        cell["spread_pct"] = (max(vals) - min(vals)) / 2 / abs(med) * 100
                if errs:
                    key = (source, t, errs[0])
                    if key not in error_index:
                        error_index[key] = len(errors) + 1
                        errors.append((error_index[key], "%s, %s (%d of %d rounds): %s"
                                       % (source, t, len(errs), len(samples), errs[0])))
                    cell["error"] = errs[0]
                    cell["error_ref"] = error_index[key]
                    cell["skipped"] = all(s.get("skipped") for s in samples)
                    cell["na"] = all(s.get("na") for s in samples)
                row["values"][t] = cell
            row["ratios"] = {}
            for a, b in (RATIOS if m.better != scenarios.INFO else []):
                ca, cb = row["values"].get(a), row["values"].get(b)
                if (ca and cb and "error" not in ca and "error" not in cb
                        and ca.get("median") is not None and cb.get("median")):
                    row["ratios"]["%s/%s" % (a, b)] = ca["median"] / cb["median"]
            rows.append(row)
        return rows, errors


def _fmt_num(v, digits):
    if v is None:
        return "-"
    if digits == 0:
        return "{:,.0f}".format(v)
    return "{:,.{}f}".format(v, digits)


def _fmt_cell(cell, digits, spread=True):
    if cell is None:
        return "n/a"
    if "error" in cell:
        if cell.get("na"):
            return "n/a[%d]" % cell["error_ref"]
        return ("skipped[%d]" if cell.get("skipped") else "ERROR[%d]") % cell["error_ref"]
    text = _fmt_num(cell.get("median"), digits)
    if spread and cell.get("spread_pct") is not None:
        text += " ±%.0f%%" % cell["spread_pct"]
    return text


def _arrow(better):
    return {HIGHER: "higher", LOWER: "lower"}.get(better, "")


def table_rows(rows, targets_):
    header = ["scenario / metric", "unit", "better"] + targets_ + [
        "%s/%s" % r for r in RATIOS if r[1] in targets_ and r[0] in targets_]
    out = [header]
    for row in rows:
        line = [row["label"], row["unit"], _arrow(row["better"])]
        for t in targets_:
            line.append(_fmt_cell(row["values"].get(t), row["digits"]))
        for a, b in RATIOS:
            if a in targets_ and b in targets_:
                r = row["ratios"].get("%s/%s" % (a, b))
                line.append("%.2f" % r if r is not None else "-")
        out.append(line)
    return out


def text_table(rows, targets_):
    data = table_rows(rows, targets_)
    widths = [max(len(r[i]) for r in data) for i in range(len(data[0]))]
    lines = []
    for n, r in enumerate(data):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2])]
        cells += [c.rjust(w) for c, w in zip(r[3:], widths[3:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows, targets_):
    data = table_rows(rows, targets_)
    lines = ["| " + " | ".join(data[0]) + " |",
             "| " + " | ".join(["---"] * 3 + ["---:"] * (len(data[0]) - 3)) + " |"]
    for r in data[1:]:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def markdown(meta, rows, errors, targets_):
    m = meta
    out = ["# Sluice benchmark: %s, commit %s" % (m["date"], m["commit"]), ""]
    out.append("- Machine: %d CPUs, %s, %s MiB RAM, Linux %s; load average at start %s, at end %s"
               % (m["machine"]["nproc"], m["machine"]["cpu_model"], m["machine"]["mem_mib"],
                  m["machine"]["kernel"], m["machine"]["loadavg_start"],
                  m["machine"].get("loadavg_end", "?")))
    out.append("- Mode: %s: %d rounds (scenarios 6 and 8: %d), %d s per wrk run, loadgen %g s "
               "(+%g s warm-up), %s idle connections; pinning %s; took %s"
               % (m["mode"], m["rounds"], m["fresh_rounds"], m["duration_s"], m["fixed_duration_s"],
                  m["fixed_warmup_s"], "{:,}".format(m["idle_conns"]),
                  "on (server under test on CPU 0, load generators and upstream on CPU 1)"
                  if m["pin"] else "off", m.get("elapsed", "?")))
    out.append("- Versions: " + "; ".join("%s: `%s`" % kv for kv in m["versions"].items()))
    out.append("- Scenarios: %s; targets: %s" % (", ".join(m["scenarios"]), ", ".join(targets_)))
    out.append("- Command: `%s`" % m["command"])
    if m.get("warning"):
        out.append("- **Warning: %s**" % m["warning"])
    out.append("")
    out.append(markdown_table(rows, targets_))
    out.append("")
    if errors:
        out.append("Errors and skips:")
        out.append("")
        for i, text in errors:
            out.append("%d. %s" % (i, text.replace("\n", " / ")))
        out.append("")
    out.append("Notes:")
    out.append("")
    for n in NOTES:
        out.append("- " + n)
    out.append("")
    return "\n".join(out)


def write(results_dir, basename, meta, results, rows, errors):
    """Writes <basename>.json/.md and latest.json/.md; returns the paths written."""
    os.makedirs(results_dir, exist_ok=True)
    doc = {"meta": meta, "table": rows, "errors": [{"ref": i, "text": t} for i, t in errors],
           "samples": [{"scenario": s, "target": t, "rounds": v}
                       for (s, t), v in sorted(results.samples.items())]}
    md = markdown(meta, rows, errors, results.targets)
    paths = []
    for name in (basename, "latest"):
        for ext, text in ((".json", json.dumps(doc, indent=1, default=str) + "\n"), (".md", md)):
            p = os.path.join(results_dir, name + ext)
            with open(p, "w") as f:
                f.write(text)
            paths.append(p)
    return paths, md
