"""Checks deploy/envoy: envoy.yaml parses, routes Ranker calls by a
consistent hash of x-user-id over the embsum headless Service's pods, health
checks them with grpc.health.v1, retries only what a draining pod causes; and
the Envoy Deployment, Service and PodMonitor match the config."""
import unittest

import deploy_testlib as lib

ENVOY = lib.ROOT / "deploy" / "envoy"
HCM = "envoy.filters.network.http_connection_manager"


def walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


class EnvoyConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        (cls.config,) = lib.load_yaml_documents(ENVOY / "envoy.yaml")
        resources = cls.config["static_resources"]
        cls.listeners = {l["name"]: l for l in resources["listeners"]}
        cls.clusters = {c["name"]: c for c in resources["clusters"]}

    def hcm(self, listener):
        filters = [f for chain in self.listeners[listener]["filter_chains"]
                   for f in chain["filters"] if f["name"] == HCM]
        self.assertEqual(len(filters), 1, listener)
        return filters[0]["typed_config"]

    def routes(self, listener):
        return [r for vh in self.hcm(listener)["route_config"]["virtual_hosts"]
                for r in vh["routes"]]

    def test_typed_configs_are_v3(self):
        for node in walk(self.config):
            if isinstance(node, dict) and "typed_config" in node:
                kind = node["typed_config"].get("@type", "")
                self.assertRegex(kind, r"^type\.googleapis\.com/envoy\..*\.v3\.[A-Za-z]+$")

    def test_ranker_calls_hash_on_x_user_id(self):
        ranker = [r for r in self.routes("grpc")
                  if r["match"].get("prefix") == "/embsum.v1.Ranker/"]
        self.assertEqual(len(ranker), 1, "one route for /embsum.v1.Ranker/")
        route = ranker[0]["route"]
        self.assertEqual(route["hash_policy"], [{"header": {"header_name": "x-user-id"}}])
        cluster = self.clusters[route["cluster"]]
        self.assertEqual(cluster["lb_policy"], "RING_HASH")
        self.assertGreaterEqual(cluster["ring_hash_lb_config"]["minimum_ring_size"], 1024)

    def test_ranker_route_comes_before_any_catch_all(self):
        for route in self.routes("grpc"):
            if route["match"].get("prefix") == "/embsum.v1.Ranker/":
                break
            self.assertNotEqual(route["match"].get("prefix"), "/", "catch-all before Ranker")

    def test_retries_only_what_a_draining_pod_causes(self):
        for route in self.routes("grpc"):
            policy = route["route"].get("retry_policy")
            if policy is None:
                continue
            retry_on = set(policy["retry_on"].split(","))
            self.assertLessEqual(retry_on, {"unavailable", "reset", "connect-failure",
                                            "refused-stream"})
            self.assertNotIn("resource-exhausted", retry_on, "retrying shed calls adds load")
            predicates = [p["name"] for p in policy["retry_host_predicate"]]
            self.assertIn("envoy.retry_host_predicates.previous_hosts", predicates)

    def test_upstream_is_the_headless_service_over_http2(self):
        cluster = self.clusters["embsum"]
        self.assertEqual(cluster["type"], "STRICT_DNS", "one host per pod address")
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        self.assertIn("http2_protocol_options", options["explicit_http_config"])
        (endpoints,) = cluster["load_assignment"]["endpoints"]
        (endpoint,) = endpoints["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]

        (service,) = lib.load_yaml_documents(lib.ROOT / "deploy/k8s/common/service.yaml")
        self.assertEqual(service["spec"]["clusterIP"], "None")
        # The bare Service name: resolved in Envoy's own namespace, so the
        # kustomization deploys to any namespace unedited.
        self.assertEqual(address["address"], service["metadata"]["name"])
        flags, source = lib.server_flags()
        grpc_port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
        self.assertEqual(address["port_value"], grpc_port)
        self.assertEqual(address["port_value"], lib.port_of(flags["listen"]), source)

    def test_health_checks_use_grpc_health(self):
        checks = self.clusters["embsum"]["health_checks"]
        self.assertEqual(len(checks), 1)
        self.assertEqual(checks[0]["grpc_health_check"].get("service_name", ""), "")
        self.assertIn("outlier_detection", self.clusters["embsum"])

    def test_admin_interface_stays_on_loopback(self):
        self.assertEqual(self.config["admin"]["address"]["socket_address"]["address"],
                         "127.0.0.1")
        paths = {r["match"].get("path") for r in self.routes("envoy_ops")}
        self.assertEqual(paths, {"/ready", "/stats/prometheus"})
        for route in self.routes("envoy_ops"):
            self.assertEqual(route["route"]["cluster"], "envoy_admin")
        admin = self.clusters["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        self.assertEqual(admin["endpoint"]["address"]["socket_address"],
                         self.config["admin"]["address"]["socket_address"])

    def test_kubernetes_objects_match_the_config(self):
        objects = {}
        for name in ("deployment.yaml", "service.yaml", "podmonitor.yaml"):
            for doc in lib.load_yaml_documents(ENVOY / name):
                objects[doc["kind"]] = doc
        (kustomization,) = lib.load_yaml_documents(ENVOY / "kustomization.yaml")
        (generator,) = kustomization["configMapGenerator"]
        self.assertEqual(generator["files"], ["envoy.yaml"])

        pod = objects["Deployment"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        args = container["args"]
        config_path = args[args.index("--config-path") + 1]
        mount = next(m for m in container["volumeMounts"]
                     if config_path == m["mountPath"] + "/envoy.yaml")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        self.assertEqual(volume["configMap"]["name"], generator["name"])

        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for name, listener in self.listeners.items():
            port = listener["address"]["socket_address"]["port_value"]
            self.assertIn(port, ports.values(), f"listener {name} port not exposed")
        self.assertEqual(ports["grpc"],
                         self.listeners["grpc"]["address"]["socket_address"]["port_value"])
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/ready")
        self.assertEqual(ports[container["readinessProbe"]["httpGet"]["port"]],
                         self.listeners["envoy_ops"]["address"]["socket_address"]["port_value"])

        service_ports = {p["name"]: p["targetPort"] for p in objects["Service"]["spec"]["ports"]}
        self.assertEqual(service_ports["grpc"], "grpc")
        (endpoint,) = objects["PodMonitor"]["spec"]["podMetricsEndpoints"]
        self.assertEqual(endpoint["port"], "ops")
        self.assertEqual(endpoint["path"], "/stats/prometheus")


if __name__ == "__main__":
    lib.main()
