"""Checks deploy/grafana/embsum-dashboard.json: every PromQL expression parses
(written as recording rules and checked with `promtool check rules`), names
only contract metrics or recording rules of deploy/prometheus, and the
dashboard shows what the operations docs promise."""
import json
import re
import subprocess
import tempfile
import unittest

import yaml

import deploy_testlib as lib

DASHBOARD = lib.ROOT / "deploy" / "grafana" / "embsum-dashboard.json"
# Grafana's built-in variables and a value of the right type for each.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
                     "__range_s": "3600", "__interval_ms": "60000"}
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$")


def load_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def all_panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard):
    """(where, PromQL) for every panel target and query variable."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel '{panel['title']}' target {target.get('refId')}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        query = query.get("query") if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(query.strip())
        if match:  # Grafana's label_values(metric, label): check the metric part.
            if match.group(1):
                yield f"variable '{variable['name']}'", match.group(1)
        else:
            yield f"variable '{variable['name']}'", query


class GrafanaDashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dashboard = load_dashboard()
        cls.variables = {v["name"] for v in cls.dashboard["templating"]["list"]}
        cls.queries = list(queries(cls.dashboard))

    def substitute(self, where, expr):
        def value(match):
            name = match.group(1) or match.group(2) or match.group(3)
            if name in BUILTIN_VARIABLES:
                return BUILTIN_VARIABLES[name]
            self.assertIn(name, self.variables, f"{where}: ${name} is not a dashboard variable")
            return "embsum"
        return _VARIABLE.sub(value, expr)

    def test_every_expression_parses(self):
        self.assertGreater(len(self.queries), 10)
        rules = [{"record": f"dashboard:expr:{i}", "expr": self.substitute(where, expr)}
                 for i, (where, expr) in enumerate(self.queries)]
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            f.flush()
            result = subprocess.run([lib.OPTIONS.promtool, "check", "rules", f.name],
                                    capture_output=True, text=True, timeout=60)
        where = "\n".join(f"dashboard:expr:{i} = {where}" for i, (where, _) in enumerate(self.queries))
        self.assertEqual(result.returncode, 0,
                         f"promtool check rules:\n{result.stdout}{result.stderr}\n{where}")

    def test_names_are_contract_metrics_or_recorded(self):
        known = (lib.CONTRACT_METRICS | lib.SCRAPE_METRICS
                 | lib.recorded_names(lib.prometheus_rule_files()))
        for where, expr in self.queries:
            unknown = lib.metric_names(expr) - known
            self.assertFalse(unknown, f"{where}: unknown series {unknown}")

    def test_queries_filter_on_the_job_variable(self):
        for where, expr in self.queries:
            if "variable" in where:
                continue
            for selector in re.findall(r"\b([a-z_:]+)\{([^}]*)\}", expr):
                self.assertIn('job=~"$job"', selector[1], f"{where}: {selector[0]} ignores $job")
            bare = [n for n in lib.metric_names(expr) if not re.search(re.escape(n) + r"\{", expr)]
            self.assertFalse(bare, f"{where}: {bare} without a job selector")

    def test_shows_what_the_operations_docs_promise(self):
        text = " ".join(expr for _, expr in self.queries)
        wanted = {
            "latency percentiles": "job_method:grpc_server_handling_seconds:quantile1m",
            "QPS by method and code": "job_method_code:grpc_server_handled:rate1m",
            "error ratio": "job_method:grpc_server_errors:ratio_rate5m",
            "shed rate": "embsum_shed",
            "scoring time by backend": "job_backend:embsum_scoring_seconds:quantile1m",
            "candidates per request": "embsum_rank_candidates",
            "users": "embsum_users",
            "items": "embsum_items",
            "model version": "embsum_model_info",
            "RSS": "process_resident_memory_bytes",
            "CPU": "process_cpu_seconds_total",
        }
        for what, name in wanted.items():
            self.assertIn(name, text, f"no panel shows {what} ({name})")

    def test_panels_are_well_formed(self):
        ids = [p["id"] for p in all_panels(self.dashboard)]
        self.assertEqual(len(ids), len(set(ids)), "duplicate panel ids")
        for panel in all_panels(self.dashboard):
            self.assertTrue(panel.get("title"), f"panel {panel['id']}: no title")
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, f"panel '{panel['title']}' overflows")
            if panel["type"] == "row":
                continue
            self.assertEqual(panel["datasource"]["uid"], "${datasource}",
                             f"panel '{panel['title']}': fixed data source")
            ref_ids = [t["refId"] for t in panel["targets"]]
            self.assertEqual(len(ref_ids), len(set(ref_ids)), f"panel '{panel['title']}'")
            if panel["type"] == "timeseries":
                self.assertTrue(panel["fieldConfig"]["defaults"].get("unit"),
                                f"panel '{panel['title']}': no unit")

    def test_dashboard_identity(self):
        self.assertEqual(self.dashboard["uid"], "embsum-overview")
        self.assertIn("datasource", self.variables)
        self.assertIn("job", self.variables)


if __name__ == "__main__":
    lib.main()
