"""Views of a ``ReplayResult``: a JSON summary, Markdown, and a self-contained HTML page.

The HTML page has no external resource of any kind (no script, stylesheet, font or
image URL): its charts are SVG generated here and inlined. Everything taken from
the traffic or the policies (message ids, flows, finding texts) is escaped, since
a capture is untrusted input.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard.replay import VERDICTS, Change, ReplayResult

__all__ = ["group_findings", "html_page", "markdown", "scenario_table", "summary", "svg_bars",
           "write_report"]

COLORS = {"release": "#2e7d32", "redact": "#9ccc65", "quarantine": "#f9a825",
          "block": "#c62828"}
MAX_LISTED_FINDINGS = 6


def _verdict_flows(counts: Any) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for (flow, dest, v), n in counts.items():
        rows.setdefault((flow, dest), dict.fromkeys(VERDICTS, 0))[v] = n
    return [{"flow": f, "destination": d, **vs} for (f, d), vs in sorted(rows.items())]


def summary(r: ReplayResult, *, with_changes: bool = False) -> dict[str, Any]:
    """The JSON summary (keys ``messages``, ``changed``, ``by_verdict_before``,
    ``by_verdict_after``, ``msgs_per_s`` and more). Without a baseline the
    ``before`` keys and ``changed`` are null."""
    base = r.baseline is not None
    out: dict[str, Any] = {
        "capture": r.capture,
        "messages": r.messages,
        "bytes": r.bytes,
        "changed": len(r.changes) if base else None,
        "by_verdict_before": r.by_verdict(False) if base else None,
        "by_verdict_after": r.by_verdict(True),
        "msgs_per_s": round(r.msgs_per_s),
        "seconds": round(r.seconds, 3),
        "workers": r.workers,
        "policy_new": {"path": r.new.path, "sha256": r.new.sha256, "flow": r.new.flow,
                       "destination": r.new.destination},
        "policy_baseline": None if not base else {
            "path": r.baseline.path, "sha256": r.baseline.sha256,  # type: ignore[union-attr]
            "flow": r.baseline.flow, "destination": r.baseline.destination},  # type: ignore[union-attr]
        "by_flow_before": _verdict_flows(r.counts_before) if base else None,
        "by_flow_after": _verdict_flows(r.counts_after),
        "released_bytes_before": dict(r.released_bytes_before) if base else None,
        "released_bytes_after": dict(r.released_bytes_after),
        "sharing_gained": r.sharing_gained() if base else None,
        "risk_added": r.risk_added() if base else None,
        "torn_capture": r.torn,
    }
    if with_changes and base:
        out["changed_messages"] = [_change_dict(c) for c in r.changes]
    return out


def group_findings(fs: Sequence[tuple[str, str, int, int]]) -> list[dict[str, Any]]:
    """Findings with the same rule and text merged, their spans listed (a 64 KB report
    can hold a hundred identical "portion withheld" findings)."""
    out: dict[tuple[str, str], list[list[int]]] = {}
    for rule, msg, a, b in fs:
        out.setdefault((rule, msg), []).append([a, b])
    return [{"rule": r, "message": m, "spans": sp} for (r, m), sp in out.items()]


def _change_dict(c: Change) -> dict[str, Any]:
    def side(s: Any) -> dict[str, Any]:
        return {"verdict": s.verdict, "released_bytes": s.out_bytes,
                "findings": group_findings(s.findings)}

    return {"index": c.index, "message_id": c.message_id, "flow": c.flow, "size": c.size,
            "before": side(c.before), "after": side(c.after)}


# ---------------------------------------------------------------------------- Markdown

def _md(s: object) -> str:
    """A Markdown table cell: pipes, backticks and newlines neutralised, HTML escaped."""
    return html.escape(str(s)).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return out


def _pct(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.1f}%)" if total else str(n)


def scenario_table(r: ReplayResult) -> list[str]:
    """The before/after table per verdict (plus released bytes), as Markdown lines."""
    before = r.by_verdict(False) if r.baseline else None
    after = r.by_verdict(True)
    head = ["verdict", f"before ({_name(r.baseline.path)})" if r.baseline else "",
            f"after ({_name(r.new.path)})", "change"]
    rows = []
    for v in VERDICTS:
        b = before[v] if before else 0
        rows.append([v, _pct(b, r.messages), _pct(after[v], r.messages), f"{after[v] - b:+d}"])
    rb, ra = sum(r.released_bytes_before.values()), sum(r.released_bytes_after.values())
    rel_b = (before["release"] + before["redact"]) if before else 0
    rel_a = after["release"] + after["redact"]
    rows.append(["**released (release + redact)**", _pct(rel_b, r.messages),
                 _pct(rel_a, r.messages), f"{rel_a - rel_b:+d}"])
    rows.append(["bytes released", f"{rb:,}", f"{ra:,}", f"{ra - rb:+,}"])
    if not r.baseline:
        head, rows = [head[0], head[2]], [[x[0], x[2]] for x in rows]
    return _table(head, rows)


def _name(path: str) -> str:
    return Path(path).name


def markdown(r: ReplayResult, *, max_changes: int | None = None) -> str:
    """The whole report as Markdown (the changed messages cut at ``max_changes``)."""
    s = summary(r)
    base = r.baseline is not None
    L = [f"# Replay of `{_md(_name(r.capture))}`", ""]
    L.append(f"{r.messages:,} messages ({r.bytes:,} bytes) decided in {r.seconds:.2f} s on "
             f"{r.workers} worker(s): {s['msgs_per_s']:,} messages/s"
             + (" (each decided under both policies)." if base else "."))
    L.append("")
    L.append(f"- new policy: `{_md(r.new.path)}` (sha256 `{r.new.sha256[:16]}…`), "
             f"destination {_md(r.new.destination)}")
    if base:
        L.append(f"- baseline: `{_md(r.baseline.path)}` "  # type: ignore[union-attr]
                 f"(sha256 `{r.baseline.sha256[:16]}…`)")  # type: ignore[union-attr]
    if r.torn:
        L.append(f"- WARNING: the capture's tail was damaged: {_md(r.torn)}")
    L += ["", "## Verdicts", "", *scenario_table(r)]
    L += ["", "## Per flow and destination", ""]
    for label, rows in (("before", s["by_flow_before"]), ("after", s["by_flow_after"])):
        if rows is None:
            continue
        L += [f"### {label}", ""]
        L += _table(["flow", "destination", *VERDICTS],
                    [[x["flow"], x["destination"], *(x[v] for v in VERDICTS)] for x in rows])
        L.append("")
    if not base:
        return "\n".join(L) + "\n"
    L += ["## Sharing gained", ""]
    L += _table(["partner", "members", "messages newly released", "bytes",
                 "more bytes in messages released under both", "messages withdrawn"],
                [[d, ", ".join(g["members"]), g["messages"], f"{g['bytes']:,}",
                  f"{g['more_bytes_in_released']:,}", g["messages_withdrawn"]]
                 for d, g in s["sharing_gained"].items()])
    L += ["", "## Risk added", "",
          "Messages released under the new policy that the baseline withheld, grouped by the "
          "finding the baseline had (a message with several rules counts once per rule).", ""]
    risk = s["risk_added"]
    if risk:
        L += _table(["baseline finding", "messages", "bytes now released", "commonest reasons"],
                    [[rule, g["messages"], f"{g['bytes']:,}",
                      "; ".join(f"{x['reason']} ({x['messages']})" for x in g["reasons"][:3])]
                     for rule, g in risk.items()])
    else:
        L.append("None: the new policy releases nothing the baseline withheld.")
    L += ["", f"## Changed messages ({len(r.changes)})", ""]
    if r.changes:
        shown = r.changes if max_changes is None else r.changes[:max_changes]
        L += _table(["#", "message id", "flow", "bytes", "before", "after",
                     "findings before", "findings after"],
                    [[c.index, c.message_id, c.flow, c.size, c.before.verdict, c.after.verdict,
                      _findings_text(c.before.findings), _findings_text(c.after.findings)]
                     for c in shown])
        if len(shown) < len(r.changes):
            L += ["", f"... and {len(r.changes) - len(shown)} more (write the whole report "
                  "with --report DIR)."]
    else:
        L.append("No message changed.")
    return "\n".join(L) + "\n"


def _findings_text(fs: Sequence[tuple[str, str, int, int]]) -> str:
    groups = group_findings(fs)
    parts = []
    for g in groups[:MAX_LISTED_FINDINGS]:
        spans = g["spans"]
        where = (f"[{spans[0][0]}:{spans[0][1]}]" if len(spans) == 1
                 else f"[{len(spans)} places]")
        parts.append(f"{g['rule']} {where}: {g['message']}")
    if len(groups) > MAX_LISTED_FINDINGS:
        parts.append(f"... and {len(groups) - MAX_LISTED_FINDINGS} more")
    return "; ".join(parts) or "-"


# ---------------------------------------------------------------------------- HTML / SVG

def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def svg_bars(title: str, groups: Sequence[tuple[str, dict[str, int]]],
             colors: dict[str, str] | None = None, width: int = 760) -> str:
    """A horizontal stacked bar chart: one bar per group, one segment per key."""
    colors = colors or {}
    keys: list[str] = []
    for _, d in groups:
        keys += [k for k in d if k not in keys]
    palette = ["#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037", "#546e7a"]
    col = {k: colors.get(k, palette[i % len(palette)]) for i, k in enumerate(keys)}
    label_w, bar_h, gap, top = 250, 26, 12, 30
    height = top + len(groups) * (bar_h + gap) + 40
    scale_max = max([sum(d.values()) for _, d in groups] + [1])
    span = width - label_w - 20
    # no xmlns: inline SVG in HTML needs none, and the page must not hold a single URL
    out = [f'<svg role="img" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
           f'font-size="12"><title>{_e(title)}</title>',
           f'<text x="0" y="16" font-weight="bold">{_e(title)}</text>']
    y = top
    for name, d in groups:
        out.append(f'<text x="0" y="{y + bar_h * 0.7:.0f}">{_e(name)}</text>')
        x = float(label_w)
        for k in keys:
            n = d.get(k, 0)
            if not n:
                continue
            w = span * n / scale_max
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" '
                       f'height="{bar_h}" fill="{col[k]}"><title>{_e(k)}: {n}</title></rect>')
            if w > 34:
                out.append(f'<text x="{x + 3:.1f}" y="{y + bar_h * 0.7:.0f}" '
                           f'fill="#fff">{n}</text>')
            x += w
        y += bar_h + gap
    x = 0
    for k in keys:  # legend
        out.append(f'<rect x="{x}" y="{y + 4}" width="12" height="12" fill="{col[k]}"/>'
                   f'<text x="{x + 16}" y="{y + 14}">{_e(k)}</text>')
        x += 24 + 7 * len(k)
    out.append("</svg>")
    return "".join(out)


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee}code{background:#f4f4f4}.warn{color:#c62828}
details{margin:.3em 0}td.f{max-width:380px;font-size:12px}"""


def _html_table(head: Sequence[str], rows: Sequence[Sequence[object]],
                cls: dict[int, str] | None = None) -> str:
    cls = cls or {}
    h = "".join(f"<th>{_e(x)}</th>" for x in head)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=" + chr(34) + cls[i] + chr(34) if i in cls else ""}>'
                         f"{_e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def html_page(r: ReplayResult) -> str:
    """The report as one self-contained HTML page with inline SVG charts."""
    s = summary(r)
    base = r.baseline is not None
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>Replay of {_e(_name(r.capture))}</title><style>{_CSS}</style></head><body>",
             f"<h1>Replay of <code>{_e(_name(r.capture))}</code></h1>",
             f"<p>{r.messages:,} messages ({r.bytes:,} bytes) decided in {r.seconds:.2f} s on "
             f"{r.workers} worker(s): {s['msgs_per_s']:,} messages/s.</p><ul>",
             f"<li>new policy: <code>{_e(r.new.path)}</code> (sha256 "
             f"<code>{_e(r.new.sha256)}</code>), destination {_e(r.new.destination)}</li>"]
    if base:
        parts.append(f"<li>baseline: <code>{_e(r.baseline.path)}</code> "  # type: ignore[union-attr]
                     f"(sha256 <code>{_e(r.baseline.sha256)}</code>)</li>")  # type: ignore[union-attr]
    parts.append("</ul>")
    if r.torn:
        parts.append(f'<p class="warn">The capture\'s tail was damaged: {_e(r.torn)}</p>')
    groups = []
    if base:
        groups.append((f"before: {_name(r.baseline.path)}", r.by_verdict(False)))  # type: ignore[union-attr]
    groups.append((f"after: {_name(r.new.path)}", r.by_verdict(True)))
    parts.append("<h2>Verdicts</h2>")
    parts.append(svg_bars("Messages per verdict", [(n[:40], d) for n, d in groups], COLORS))
    before = r.by_verdict(False) if base else dict.fromkeys(VERDICTS, 0)
    after = r.by_verdict(True)
    rows = [[v, before[v], after[v], f"{after[v] - before[v]:+d}"] for v in VERDICTS]
    parts.append(_html_table(["verdict", "before", "after", "change"] if base
                             else ["verdict", "after"],
                             rows if base else [[x[0], x[2]] for x in rows]))
    parts.append("<h2>Per flow and destination</h2>")
    for label, fl in (("before", s["by_flow_before"]), ("after", s["by_flow_after"])):
        if fl is None:
            continue
        parts.append(f"<h3>{label}</h3>")
        parts.append(_html_table(["flow", "destination", *VERDICTS],
                                 [[x["flow"], x["destination"], *(x[v] for v in VERDICTS)]
                                  for x in fl]))
    if base:
        gained = s["sharing_gained"]
        parts.append("<h2>Sharing gained</h2>")
        parts.append(svg_bars("Messages newly released per partner",
                              [(d, {"newly released": g["messages"],
                                    "withdrawn": g["messages_withdrawn"]})
                               for d, g in gained.items()],
                              {"newly released": "#2e7d32", "withdrawn": "#c62828"}))
        parts.append(_html_table(
            ["partner", "members", "messages newly released", "bytes",
             "more bytes in messages released under both", "messages withdrawn"],
            [[d, ", ".join(g["members"]), g["messages"], f"{g['bytes']:,}",
              f"{g['more_bytes_in_released']:,}", g["messages_withdrawn"]]
             for d, g in gained.items()]))
        risk = s["risk_added"]
        parts.append("<h2>Risk added</h2><p>Messages released under the new policy that the "
                     "baseline withheld, grouped by the finding the baseline had.</p>")
        if risk:
            parts.append(svg_bars("Newly released messages by baseline finding",
                                  [(rule[:40], {"messages": g["messages"]})
                                   for rule, g in risk.items()], {"messages": "#ef6c00"}))
            parts.append(_html_table(
                ["baseline finding", "messages", "bytes now released", "commonest reasons"],
                [[rule, g["messages"], f"{g['bytes']:,}",
                  "; ".join(f"{x['reason']} ({x['messages']})" for x in g["reasons"][:3])]
                 for rule, g in risk.items()], {3: "f"}))
        else:
            parts.append("<p>None: the new policy releases nothing the baseline withheld.</p>")
        parts.append(f"<h2>Changed messages ({len(r.changes)})</h2>")
        parts.append(_html_table(
            ["#", "message id", "flow", "bytes", "before", "after", "findings before",
             "findings after"],
            [[c.index, c.message_id, c.flow, c.size, c.before.verdict, c.after.verdict,
              _findings_text(c.before.findings), _findings_text(c.after.findings)]
             for c in r.changes], {6: "f", 7: "f"}) if r.changes else "<p>No message "
            "changed.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(r: ReplayResult, directory: str | Path) -> dict[str, Path]:
    """Write report.md, report.html and summary.json (with every change) into
    ``directory``; returns their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": d / "report.md", "html": d / "report.html",
             "json": d / "summary.json"}
    paths["markdown"].write_text(markdown(r), encoding="utf-8")
    paths["html"].write_text(html_page(r), encoding="utf-8")
    paths["json"].write_text(json.dumps(summary(r, with_changes=True), indent=1) + "\n",
                             encoding="utf-8")
    return paths
