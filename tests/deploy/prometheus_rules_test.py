"""Checks deploy/prometheus beyond what promtool does: names exist in the
metrics contract, gRPC codes are spelled as the server writes them, every
alert has firing and quiet unit tests, and the Kubernetes PrometheusRule is
generated from the current files. (promtool check rules / test rules run as
their own ctest tests.)"""
import importlib.util
import math
import re
import unittest

import deploy_testlib as lib

PROM = lib.ROOT / "deploy" / "prometheus"
CODE_MATCHER = re.compile(r'grpc_code\s*(=~|!~|!=|=)\s*"([^"]*)"')


def rules():
    for path in lib.prometheus_rule_files():
        for group in lib.load_yaml_documents(path)[0]["groups"]:
            for rule in group["rules"]:
                yield path, rule


def unit_test_files():
    return sorted((PROM / "tests").glob("*.yml"))


class PrometheusRulesTest(unittest.TestCase):
    def test_rule_files_exist(self):
        names = {p.name for p in lib.prometheus_rule_files()}
        self.assertIn("embsum.rules.yml", names)
        self.assertIn("embsum.alerts.yml", names)

    def test_names_are_contract_metrics_or_recorded(self):
        known = (lib.CONTRACT_METRICS | lib.SCRAPE_METRICS
                 | lib.recorded_names(lib.prometheus_rule_files()))
        for path, rule in rules():
            unknown = lib.metric_names(rule["expr"]) - known
            self.assertFalse(unknown, f"{lib.rel(path)}: rule "
                             f"{rule.get('record') or rule.get('alert')}: unknown series {unknown}")

    def test_recording_rules_follow_level_metric_operation(self):
        for path, rule in rules():
            if "record" in rule:
                self.assertRegex(rule["record"], r"^[a-z_]+:[a-z_]+:[a-z0-9_]+$",
                                 f"{lib.rel(path)}: {rule['record']}")

    def test_contract_metrics_used_are_registered_by_the_server(self):
        source = lib.metric_names_in_source()
        if not source:
            self.skipTest("no server/ or metrics/ sources to compare with")
        bases = set()
        for _, rule in rules():
            for name in lib.metric_names(rule["expr"]) & lib.CONTRACT_METRICS:
                bases.add(lib.base_metric(name))
        for base in sorted(bases):
            if base.startswith("process_"):
                self.assertIn(base, source, f"{base}: not in server/ or metrics/ sources")
            else:
                self.assertIn(f'"{base}"', source, f"{base}: not registered in server/ or metrics/")

    def test_grpc_codes_spelled_as_the_server_writes_them(self):
        texts = [(lib.rel(p), p.read_text(encoding="utf-8"))
                 for p in lib.prometheus_rule_files() + unit_test_files()]
        seen = 0
        for name, text in texts:
            for _, value in CODE_MATCHER.findall(text):
                for code in value.split("|"):
                    seen += 1
                    self.assertIn(code, lib.GRPC_CODES, f"{name}: grpc_code '{code}'")
        self.assertGreater(seen, 0)

    def test_grpc_code_names_match_the_server(self):
        path = lib.ROOT / "server" / "status_util.cc"
        if not path.exists():
            self.skipTest("server/status_util.cc not there")
        text = path.read_text(encoding="utf-8")
        server_codes = set(re.findall(r'return "([A-Z_]+)";', text))
        self.assertEqual(server_codes, lib.GRPC_CODES,
                         "server/status_util.cc GrpcCodeName and the codes the rules use differ")

    def test_latency_slo_is_a_bucket_bound_of_the_server_histogram(self):
        alert = next(r for _, r in rules() if r.get("alert") == "EmbsumLatencyP99High")
        threshold = float(re.search(r'quantile="0\.99"\}\s*>\s*([0-9.e-]+)', alert["expr"]).group(1))
        path = lib.ROOT / "server" / "server_metrics.cc"
        if not path.exists():
            self.skipTest("server/server_metrics.cc not there")
        text = path.read_text(encoding="utf-8")
        match = re.search(r'"grpc_server_handling_seconds".*?DecadeBuckets\(([0-9.e-]+),\s*([0-9.e-]+)\)',
                          text, re.S)
        self.assertIsNotNone(match, "grpc_server_handling_seconds buckets not found")
        low, high = float(match.group(1)), float(match.group(2))
        # metrics::DecadeBuckets: 1, 2.5, 5 per decade from low to high.
        bounds, exponent = [], round(math.log10(low))
        while True:
            step = [float(f"{m * 10.0 ** exponent:.15g}") for m in (1, 2.5, 5)]
            bounds += [b for b in step if b <= high * (1 + 1e-12)]
            if step[-1] > high:
                break
            exponent += 1
        self.assertIn(threshold, bounds, "the p99 SLO is not a bucket bound: "
                      "histogram_quantile interpolates across it")

    def test_every_alert_has_firing_and_quiet_unit_tests(self):
        alerts = {rule["alert"] for _, rule in rules() if "alert" in rule}
        self.assertGreaterEqual(alerts, {"EmbsumLatencyP99High", "EmbsumErrorRatioHigh",
                                         "EmbsumShedding", "EmbsumTargetDown"})
        firing, quiet = set(), set()
        for path in unit_test_files():
            spec = lib.load_yaml_documents(path)[0]
            for case in spec["tests"]:
                for check in case.get("alert_rule_test", []):
                    (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
        self.assertEqual(alerts - firing, set(), "alerts without a test where they fire")
        self.assertEqual(alerts - quiet, set(), "alerts without a test where they stay quiet")

    def test_alerts_have_severity_summary_and_for(self):
        for path, rule in rules():
            if "alert" not in rule:
                continue
            where = f"{lib.rel(path)}: {rule['alert']}"
            self.assertIn(rule.get("labels", {}).get("severity"), ("page", "warning"), where)
            self.assertTrue(rule.get("annotations", {}).get("summary"), where)
            self.assertTrue(rule.get("annotations", {}).get("description"), where)
            self.assertIn("for", rule, f"{where}: no 'for' (fires on one bad evaluation)")

    def test_prometheusrule_is_generated_from_the_rule_files(self):
        spec = importlib.util.spec_from_file_location(
            "render_prometheusrule", PROM / "render_prometheusrule.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        current = module.OUTPUT.read_text(encoding="utf-8")
        self.assertEqual(current, module.render(),
                         f"{lib.rel(module.OUTPUT)} is stale: run "
                         "/usr/bin/python3 deploy/prometheus/render_prometheusrule.py")


if __name__ == "__main__":
    lib.main()
