#!/usr/bin/env python3
"""Checks the Grafana dashboard as Grafana needs it, and that every nfm metric the
dashboard and the Prometheus rules use is one nfm serves.

  check_dashboard.py DASHBOARD RULES (--source EXPORTER.cpp | --metrics SCRAPE)

--source: the metric names the exporter's code writes; --metrics: a live /metrics
scrape (the package test's). Prints each problem and exits 1 if there is any."""
import argparse
import json
import re
import sys

PANEL_TYPES = {"stat", "timeseries", "table", "gauge", "bargauge", "text", "row"}


def problems_of(dashboard, rules_text, served):
    problems = []
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dashboard:
            problems.append(f"dashboard: no '{key}'")
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 30:
        problems.append("dashboard: schemaVersion must be an integer >= 30")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    ids, cells, used = set(), set(), set()
    for panel in dashboard.get("panels", []):
        name = f"panel {panel.get('id')} '{panel.get('title')}'"
        if panel.get("id") in ids:
            problems.append(f"{name}: id used twice")
        ids.add(panel.get("id"))
        if panel.get("type") not in PANEL_TYPES:
            problems.append(f"{name}: unknown type {panel.get('type')!r}")
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "xywh"):
            problems.append(f"{name}: gridPos needs integers x, y, w, h")
            continue
        if grid["x"] < 0 or grid["w"] < 1 or grid["x"] + grid["w"] > 24:
            problems.append(f"{name}: outside the 24-column grid")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problems.append(f"{name}: overlaps another panel at ({x}, {y})")
                    break
                cells.add((x, y))
        targets = panel.get("targets", [])
        if panel.get("type") != "text" and not targets:
            problems.append(f"{name}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{name}: refId used twice")
        for t in targets:
            expr = t.get("expr", "")
            if not expr:
                problems.append(f"{name}: a query without expr")
            for var in re.findall(r"\$\{?(\w+)", expr + json.dumps(t.get("datasource", ""))):
                if var not in variables and var not in ("__interval", "__rate_interval"):
                    problems.append(f"{name}: ${var} is not a dashboard variable")
            used.update(re.findall(r"\bnfm_[a-z0-9_]+", expr))
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        used.update(re.findall(r"\bnfm_[a-z0-9_]+", json.dumps(q)))
    used.update(re.findall(r"\bnfm_[a-z0-9_]+", rules_text))
    # Grafana/PromQL names only: "nfm_crawl" in an alert text is not a metric.
    used = {m for m in used if not m.endswith("_")}
    for metric in sorted(used - served):
        problems.append(f"{metric}: used, but nfm does not serve it")
    if not used:
        problems.append("no nfm metric used at all")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dashboard")
    parser.add_argument("rules")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--source")
    group.add_argument("--metrics")
    args = parser.parse_args()
    with open(args.dashboard) as f:
        dashboard = json.load(f)
    with open(args.rules) as f:
        rules_text = f.read()
    if args.source:
        with open(args.source) as f:
            served = set(re.findall(r'"(nfm_[a-z0-9_]+)"', f.read()))
    else:
        with open(args.metrics) as f:
            served = set(re.findall(r"^(nfm_[a-z0-9_]+)[{ ]", f.read(), re.M))
    problems = problems_of(dashboard, rules_text, served)
    for p in problems:
        print(p)
    print(f"{len(dashboard.get('panels', []))} panels, {len(served)} metrics served, "
          f"{len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
