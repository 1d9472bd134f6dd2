"""Loads every Kubernetes YAML document under deploy/ with python3-yaml and
checks kinds, references between objects, and the probe and container ports
against the server's flags (its --helpfull output when --server is given)."""
import re
import subprocess
import unittest

import yaml

import deploy_testlib as lib

K8S = lib.ROOT / "deploy" / "k8s"
VARIANTS = ("cpu", "gpu")
API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}
# Files under deploy/ that are YAML but no Kubernetes object.
NOT_MANIFESTS = {"deploy/envoy/envoy.yaml"}
NOT_MANIFEST_DIRS = ("deploy/prometheus/",)
# The user the images run as (Dockerfile: USER 10001:10001).
IMAGE_UID = 10001


def manifest_files():
    files = []
    for path in sorted((lib.ROOT / "deploy").rglob("*")):
        name = lib.rel(path)
        if (path.suffix in (".yaml", ".yml") and name not in NOT_MANIFESTS
                and not name.startswith(NOT_MANIFEST_DIRS)):
            files.append(path)
    return files


def documents():
    for path in manifest_files():
        for doc in lib.load_yaml_documents(path):
            yield path, doc


def kustomize_resources(folder):
    """The objects a kustomization folder lists, following ../ bases."""
    spec = lib.load_yaml_documents(folder / "kustomization.yaml")[0]
    objects = []
    for resource in spec.get("resources", []):
        target = (folder / resource).resolve()
        if target.is_dir():
            objects += kustomize_resources(target)
        else:
            objects += lib.load_yaml_documents(target)
    return objects


def generated_config_maps(folder):
    spec = lib.load_yaml_documents(folder / "kustomization.yaml")[0]
    names = {g["name"]: g for g in spec.get("configMapGenerator", [])}
    for resource in spec.get("resources", []):
        target = (folder / resource).resolve()
        if target.is_dir():
            names.update(generated_config_maps(target))
    return names


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def effective_flags(container):
    """The server's flags as the container sets them, defaults filled in."""
    flags, _ = lib.server_flags()
    values = {k: v for k, v in flags.items() if v is not None}
    values.update(lib.flag_args(container.get("command", [])[1:] + container.get("args", [])))
    return values


def server_container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


class ManifestsParseTest(unittest.TestCase):
    def test_every_document_has_a_known_kind_and_api_version(self):
        files = manifest_files()
        self.assertGreater(len(files), 10)
        kinds = set()
        for path, doc in documents():
            where = lib.rel(path)
            self.assertIsInstance(doc, dict, where)
            kind = doc.get("kind")
            self.assertIn(kind, API_VERSIONS, f"{where}: kind {kind}")
            self.assertEqual(doc.get("apiVersion"), API_VERSIONS[kind], f"{where}: {kind}")
            if kind != "Kustomization":
                self.assertTrue(doc.get("metadata", {}).get("name"), f"{where}: no metadata.name")
            kinds.add(kind)
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                     "PrometheusRule", "PersistentVolumeClaim"):
            self.assertIn(kind, kinds)
        self.assertTrue(kinds & {"PodMonitor", "ServiceMonitor"}, "no PodMonitor/ServiceMonitor")

    def test_kustomizations_reference_existing_files(self):
        for path in sorted((lib.ROOT / "deploy").rglob("kustomization.yaml")):
            spec = lib.load_yaml_documents(path)[0]
            for resource in spec.get("resources", []):
                target = path.parent / resource
                self.assertTrue(target.is_file() or (target / "kustomization.yaml").is_file(),
                                f"{lib.rel(path)}: resource {resource} missing")
            for generator in spec.get("configMapGenerator", []):
                for entry in generator.get("files", []):
                    self.assertTrue((path.parent / entry.split("=")[-1]).is_file(),
                                    f"{lib.rel(path)}: configMapGenerator file {entry} missing")

    def test_every_manifest_is_in_a_kustomization_or_an_example(self):
        listed = set()
        for path in sorted((lib.ROOT / "deploy").rglob("kustomization.yaml")):
            for resource in lib.load_yaml_documents(path)[0].get("resources", []):
                listed.add((path.parent / resource).resolve())
        for path in manifest_files():
            if path.name == "kustomization.yaml" or ".example." in path.name:
                continue
            self.assertIn(path.resolve(), listed, f"{lib.rel(path)}: in no kustomization")


class ServerFlagsTest(unittest.TestCase):
    """The flags the manifests are checked against are the contract's."""

    def test_server_keeps_the_contract_flags_and_defaults(self):
        flags, source = lib.server_flags()
        for name, default in lib.CONTRACT_FLAG_DEFAULTS.items():
            self.assertIn(name, flags, f"{source}: no --{name}")
            self.assertEqual(flags[name], default, f"{source}: --{name} default")
        self.assertLessEqual(lib.CONTRACT_FLAGS, set(flags), source)

    def test_help_parser_reads_absl_output(self):
        text = """  Flags from tools/server/main.cc:
    --listen (HOST:PORT of the Ranker service (port 0 picks a free one).);
      default: "0.0.0.0:50051";
    --demo (Generate a synthetic model into a temporary data directory and
      serve it (ignores --data_dir).); default: false;
    --shutdown_grace (Then wait this long.); default: 30s;
    --tls_cert (PEM server certificate (enables TLS).); default: "";
"""
        self.assertEqual(lib.parse_absl_help(text),
                         {"listen": "0.0.0.0:50051", "demo": "false", "shutdown_grace": "30s",
                          "tls_cert": ""})

    def test_source_parser_reads_absl_flag_definitions(self):
        text = """ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "HOST:PORT of the Ranker service (port 0 picks a free one).");
ABSL_FLAG(bool, demo, false, "Generate, then serve.");
ABSL_FLAG(absl::Duration, shutdown_delay, absl::ZeroDuration(), "After SIGTERM, wait.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(30), "Then wait.");
"""
        self.assertEqual(lib.parse_absl_flag_source(text),
                         {"listen": "0.0.0.0:50051", "demo": "false", "shutdown_delay": "0",
                          "shutdown_grace": "30s"})


class VariantTest(unittest.TestCase):
    """Checks each of deploy/k8s/cpu and deploy/k8s/gpu as kustomize would
    assemble it."""

    def objects(self, variant):
        return kustomize_resources(K8S / variant)

    def deployment(self, variant):
        deployments = by_kind(self.objects(variant), "Deployment")
        self.assertEqual(len(deployments), 1, variant)
        return deployments[0]

    def test_flags_exist_and_probes_use_the_listen_port(self):
        flags, source = lib.server_flags()
        for variant in VARIANTS:
            container = server_container(self.deployment(variant))
            where = f"{variant}/deployment.yaml (flags from {source})"
            for name in lib.flag_args(container.get("args", [])):
                self.assertIn(name, flags, f"{where}: embsum-server has no --{name}")
            values = effective_flags(container)
            listen = lib.port_of(values["listen"])
            metrics = lib.port_of(values["metrics_listen"])
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            self.assertEqual(ports.get("grpc"), listen, where)
            self.assertEqual(ports.get("metrics"), metrics, where)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                self.assertIn(probe, container, f"{where}: no {probe}")
                spec = container[probe]
                self.assertIn("grpc", spec, f"{where}: {probe} is not a native gRPC probe")
                self.assertEqual(spec["grpc"]["port"], listen, f"{where}: {probe} port")
                # "" is the server's overall health, which SIGTERM turns NOT_SERVING.
                self.assertEqual(spec["grpc"].get("service", ""), "", f"{where}: {probe}")

    def test_admin_port_stays_inside_the_pod(self):
        for variant in VARIANTS:
            container = server_container(self.deployment(variant))
            values = effective_flags(container)
            self.assertIn(lib.host_of(values["admin_listen"]), ("127.0.0.1", "::1", "localhost"),
                          f"{variant}: RankerAdmin must not listen beyond the pod")
            exposed = {p["containerPort"] for p in container["ports"]}
            self.assertNotIn(lib.port_of(values["admin_listen"]), exposed, variant)

    def test_termination_covers_the_drain(self):
        for variant in VARIANTS:
            pod = self.deployment(variant)["spec"]["template"]["spec"]
            container = server_container(self.deployment(variant))
            pre_stop = 0
            if "lifecycle" in container:
                command = container["lifecycle"]["preStop"]["exec"]["command"]
                self.assertEqual(command[0], "/bin/sleep", variant)
                pre_stop = int(command[1])
            values = effective_flags(container)
            delay = parse_seconds(values.get("shutdown_delay", "0s"))
            grace = parse_seconds(values.get("shutdown_grace", "30s"))
            # Endpoints, DNS and Envoy need a few seconds to drop a pod.
            self.assertGreaterEqual(pre_stop + delay, 5,
                                    f"{variant}: the server stops serving before clients notice")
            budget = pod["terminationGracePeriodSeconds"]
            self.assertGreaterEqual(budget, pre_stop + delay + grace + 5,
                                    f"{variant}: terminationGracePeriodSeconds {budget} < preStop "
                                    f"{pre_stop} + shutdown_delay {delay} + shutdown_grace {grace} + 5")
            live = container["livenessProbe"]
            self.assertGreaterEqual(live["periodSeconds"] * live["failureThreshold"], budget,
                                    f"{variant}: liveness would kill a draining server")

    def test_resources_rollout_and_security(self):
        for variant in VARIANTS:
            deployment = self.deployment(variant)
            spec = deployment["spec"]
            self.assertNotIn("replicas", spec, f"{variant}: the HPA owns replicas")
            self.assertEqual(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0, variant)
            pod = spec["template"]["spec"]
            self.assertTrue(pod["securityContext"]["runAsNonRoot"], variant)
            self.assertEqual(pod["securityContext"]["runAsUser"], IMAGE_UID, variant)
            for container in pod["containers"] + pod.get("initContainers", []):
                where = f"{variant}: container {container['name']}"
                for part in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        self.assertIn(resource, container["resources"].get(part, {}),
                                      f"{where}: no {part}.{resource}")
                self.assertFalse(container["securityContext"]["allowPrivilegeEscalation"], where)
                self.assertEqual(container["image"], f"embsum:{variant}", where)

    def test_data_dir_comes_from_the_ingest_init_container(self):
        for variant in VARIANTS:
            deployment = self.deployment(variant)
            pod = deployment["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            container = server_container(deployment)
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            data_dir = lib.flag_args(container["args"])["data_dir"]
            volume = next((n for n, p in mounts.items() if data_dir.startswith(p + "/")), None)
            self.assertIsNotNone(volume, f"{variant}: --data_dir={data_dir} on no volume")
            self.assertIn("emptyDir", volumes[volume], variant)
            init = next(c for c in pod["initContainers"] if c["name"] == "ingest")
            init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
            self.assertEqual(init_mounts.get(volume), mounts[volume], variant)
            script = " ".join(init["command"])
            self.assertIn("embsum-ingest --model_dir=", script, variant)
            # The init container's final folder is the server's --data_dir.
            normal = re.sub(r"\$[({]([A-Z_]+)[)}]", r"<\1>", data_dir)
            self.assertIn('dir="' + normal.replace("<MODEL_VERSION>", "${MODEL_VERSION}") + '"',
                          script, variant)
            self.assertIn('--data_dir="${dir}"', script, variant)
            ingest_main = lib.ROOT / "tools" / "ingest" / "main.cc"
            if ingest_main.exists():
                ingest_flags = lib.parse_absl_flag_source(ingest_main.read_text())
                used = re.findall(r"--(\w+)=", script.split("embsum-ingest", 1)[1])
                for name in used:
                    self.assertIn(name, ingest_flags, f"{variant}: embsum-ingest has no --{name}")
            self.assertIn("models", volumes, variant)
            self.assertTrue(volumes["models"]["persistentVolumeClaim"]["readOnly"], variant)
            self.assertTrue(all(m.get("readOnly") for m in init["volumeMounts"]
                                if m["name"] == "models"), variant)
            # MODEL_VERSION comes from the generated ConfigMap in both containers.
            generators = generated_config_maps(K8S / variant)
            for c in (container, init):
                env = {e["name"]: e for e in c["env"]}
                ref = env["MODEL_VERSION"]["valueFrom"]["configMapKeyRef"]
                self.assertIn(ref["name"], generators, f"{variant}: {c['name']}")
                literals = dict(s.split("=", 1) for s in generators[ref["name"]]["literals"])
                self.assertIn(ref["key"], literals, variant)

    def test_cpu_and_gpu_differ_only_where_they_should(self):
        def normalise(deployment):
            pod = deployment["spec"]["template"]["spec"]
            pod.pop("tolerations", None)
            pod.pop("nodeSelector", None)
            for c in pod["containers"] + pod["initContainers"]:
                c.pop("image")
                if c["name"] == "server":
                    c.pop("resources")
                    c["args"] = [a for a in c["args"] if not a.startswith(("--backend=",
                                                                             "--item_dtype="))]
            return deployment

        cpu, gpu = self.deployment("cpu"), self.deployment("gpu")
        self.assertIn("--backend=cpu", server_container(cpu)["args"])
        self.assertIn("--backend=cuda", server_container(gpu)["args"])
        gpu_limits = server_container(gpu)["resources"]["limits"]
        self.assertEqual(gpu_limits.get("nvidia.com/gpu"), 1)
        self.assertNotIn("nvidia.com/gpu", server_container(cpu)["resources"]["limits"])
        self.assertTrue(any(t["key"] == "nvidia.com/gpu"
                            for t in gpu["spec"]["template"]["spec"]["tolerations"]))
        self.maxDiff = None
        self.assertEqual(yaml.safe_dump(normalise(cpu)), yaml.safe_dump(normalise(gpu)),
                         "cpu/ and gpu/deployment.yaml differ beyond image, backend, "
                         "server resources and GPU scheduling")

    def test_service_hpa_pdb_and_monitor_select_the_pods(self):
        for variant in VARIANTS:
            objects = self.objects(variant)
            deployment = self.deployment(variant)
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            self.assertTrue(selects(deployment["spec"]["selector"], labels), variant)
            container = server_container(deployment)
            port_names = {p["name"]: p["containerPort"] for p in container["ports"]}

            (service,) = by_kind(objects, "Service")
            self.assertEqual(service["spec"]["clusterIP"], "None", "Service must be headless")
            self.assertTrue(selects({"matchLabels": service["spec"]["selector"]}, labels))
            for port in service["spec"]["ports"]:
                self.assertIn(port["targetPort"], port_names, f"Service port {port['name']}")
                self.assertEqual(port["port"], port_names[port["targetPort"]], port["name"])

            (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
            self.assertEqual(hpa["spec"]["scaleTargetRef"],
                             {"apiVersion": "apps/v1", "kind": "Deployment",
                              "name": deployment["metadata"]["name"]})
            self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
            self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)

            (pdb,) = by_kind(objects, "PodDisruptionBudget")
            self.assertTrue(selects(pdb["spec"]["selector"], labels))

            (monitor,) = by_kind(objects, "PodMonitor")
            self.assertTrue(selects(monitor["spec"]["selector"], labels))
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                self.assertEqual(endpoint["port"], "metrics")
                self.assertEqual(endpoint["path"], "/metrics")
            # The alerts select job="embsum": the job label comes from this pod label.
            job = labels[monitor["spec"]["jobLabel"]]
            alerts = (lib.ROOT / "deploy" / "prometheus" / "embsum.alerts.yml").read_text()
            for selected in re.findall(r'up\{job="([^"]+)"\}', alerts):
                self.assertEqual(selected, job, "alerts and PodMonitor disagree on the job")

            (rule,) = by_kind(objects, "PrometheusRule")
            groups = [g["name"] for g in rule["spec"]["groups"]]
            self.assertEqual(groups, ["embsum.rules", "embsum.alerts"])


def parse_seconds(value):
    """Seconds of an absl duration flag value ("30s", "1m", "1m30s", "500ms")."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|us|ns|h|m|s)", value):
        total += float(number) * units[unit]
    if not re.fullmatch(r"(?:[0-9.]+(?:ms|us|ns|h|m|s))+|0", value):
        raise AssertionError(f"'{value}' is not a duration")
    return total


class KustomizeBuildTest(unittest.TestCase):
    """Renders each kustomization with `kubectl kustomize` when kubectl is
    installed (it is not in tools/setup.sh: skipped, loudly, without it)."""

    def test_kustomize_renders(self):
        if not lib.OPTIONS.kubectl:
            self.skipTest("kubectl not installed")
        for path in sorted((lib.ROOT / "deploy").rglob("kustomization.yaml")):
            folder = path.parent
            if folder == K8S / "common":
                continue
            result = subprocess.run([lib.OPTIONS.kubectl, "kustomize", str(folder)],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, f"{lib.rel(folder)}: {result.stderr}")
            self.assertIn("kind:", result.stdout)


if __name__ == "__main__":
    lib.main()
