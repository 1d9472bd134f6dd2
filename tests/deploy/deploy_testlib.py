"""Shared helpers of the tests/deploy checks: repository paths, the server's
flags, the metric names of docs/design.md section 7, PromQL name extraction.

Every test script takes the same options (see parse_args) and then runs its
unittest cases; ctest passes them from tests/deploy/CMakeLists.txt.
"""
import argparse
import pathlib
import re
import subprocess
import sys
import unittest

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import embsum_unittest  # noqa: E402  (exits SKIP_RETURN_CODE when all skip)

# Server flags and defaults of docs/design.md section 6 (contract). Used only
# when neither the embsum-server binary nor its source is available; tests
# check that the binary or source agrees with them.
CONTRACT_FLAG_DEFAULTS = {
    "data_dir": "",
    "listen": "0.0.0.0:50051",
    "admin_listen": "127.0.0.1:50052",
    "metrics_listen": "0.0.0.0:9464",
    "demo": "false",
}
# Flags the manifests and the Dockerfile may pass when the binary is not
# available to say which flags exist (section 5 and 6 of docs/design.md).
CONTRACT_FLAGS = set(CONTRACT_FLAG_DEFAULTS) | {
    "backend", "max_candidates", "item_dtype", "tls_cert", "tls_key", "tls_client_ca",
}

# Metric names of docs/design.md section 7 (contract), with the series a
# histogram exposes, plus grpc_server_started_total, the hot-reload series
# (server/model_loader.h) and Prometheus's `up`.
HISTOGRAMS = ("grpc_server_handling_seconds", "embsum_rank_candidates",
               "embsum_scoring_seconds", "embsum_retrieve_shadow_recall")
_SCALARS = ("grpc_server_handled_total", "grpc_server_started_total",
            "embsum_unknown_items_total", "embsum_shed_total", "embsum_users",
            "embsum_items", "embsum_model_info", "process_resident_memory_bytes",
            "process_virtual_memory_bytes", "process_cpu_seconds_total",
            "process_start_time_seconds", "process_open_fds", "process_max_fds",
            "embsum_model_reloads_total", "embsum_model_reload_failing")
CONTRACT_METRICS = set(_SCALARS) | {
    h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
SCRAPE_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

# gRPC status code names as the server writes them in grpc_code (upper case,
# as grpc::StatusCode); checked against server/status_util.cc when present.
GRPC_CODES = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

OPTIONS = argparse.Namespace(server=None, promtool="promtool", kubectl=None, build_dir=None)


def parse_args():
    """Reads --server, --promtool, --kubectl and --build_dir; leaves the rest to unittest."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--server", help="embsum-server binary (for its flags)")
    parser.add_argument("--promtool", default="promtool")
    parser.add_argument("--kubectl")
    parser.add_argument("--build_dir", help="a CMake build tree with embsum-server and -ingest")
    known, rest = parser.parse_known_args()
    for key, value in vars(known).items():
        setattr(OPTIONS, key, value)
    return [sys.argv[0]] + rest


def main():
    argv = parse_args()
    embsum_unittest.main(argv=argv)


def load_yaml_documents(path):
    """Every document of a YAML file, None documents dropped."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def rel(path):
    return str(pathlib.Path(path).resolve().relative_to(ROOT))


# --- server flags -----------------------------------------------------------

_HELP_FLAG = re.compile(r"--([A-Za-z0-9_]+) \((.*?)\);\s*default:\s*(\"(?:[^\"\\]|\\.)*\"|[^;]*);",
                        re.S)


def parse_absl_help(text):
    """{flag: default} from absl's --helpfull output."""
    flags = {}
    for name, _, default in _HELP_FLAG.findall(text):
        default = default.strip()
        if default.startswith('"') and default.endswith('"'):
            default = default[1:-1]
        flags[name] = default
    return flags


_SOURCE_FLAG = re.compile(r"ABSL_FLAG\(\s*([\w:<>]+)\s*,\s*(\w+)\s*,\s*(.+?)\s*,\s*\"", re.S)
SERVER_MAIN = ROOT / "tools" / "server" / "main.cc"


def parse_absl_flag_source(text):
    """{flag: default} of the ABSL_FLAG definitions of a C++ file, defaults
    written as --helpfull would print them ("30s" for absl::Seconds(30))."""
    flags = {}
    for _, name, default in _SOURCE_FLAG.findall(text):
        if default.startswith('"') and default.endswith('"'):
            default = default[1:-1]
        elif default == "absl::ZeroDuration()":
            default = "0"
        else:
            match = re.fullmatch(r"absl::(Seconds|Minutes|Milliseconds)\((\d+)\)", default)
            if match:
                default = match.group(2) + {"Seconds": "s", "Minutes": "m",
                                            "Milliseconds": "ms"}[match.group(1)]
        flags[name] = default
    return flags


_server_flags = None


def server_flags():
    """(flags {name: default}, where they come from): the binary's --helpfull
    when --server is given, else the ABSL_FLAGs of tools/server/main.cc, else
    the contract of docs/design.md section 6."""
    global _server_flags
    if _server_flags is None:
        if OPTIONS.server:
            result = subprocess.run([OPTIONS.server, "--helpfull"], capture_output=True,
                                    text=True, timeout=60)
            flags = parse_absl_help(result.stdout + result.stderr)
            if "listen" not in flags:
                raise AssertionError(
                    f"{OPTIONS.server} --helpfull: no --listen flag in its output "
                    f"(exit {result.returncode}):\n{(result.stdout + result.stderr)[:2000]}")
            _server_flags = (flags, f"{OPTIONS.server} --helpfull")
        elif SERVER_MAIN.exists():
            flags = parse_absl_flag_source(SERVER_MAIN.read_text(encoding="utf-8"))
            if "listen" not in flags:
                raise AssertionError(f"{rel(SERVER_MAIN)}: no ABSL_FLAG listen found")
            _server_flags = (flags, rel(SERVER_MAIN))
        else:
            flags = dict(CONTRACT_FLAG_DEFAULTS)
            for name in CONTRACT_FLAGS:
                flags.setdefault(name, None)
            _server_flags = (flags, "docs/design.md section 6 (no server binary or source)")
    return _server_flags


def port_of(address):
    """50051 for "0.0.0.0:50051" or "[::]:50051"."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise AssertionError(f"'{address}' is not HOST:PORT")
    return int(port)


def host_of(address):
    return address.rpartition(":")[0].strip("[]")


def flag_args(args):
    """{flag: value} of "--flag=value" / "--flag" arguments."""
    out = {}
    for arg in args:
        if not arg.startswith("--"):
            raise AssertionError(f"argument '{arg}' is not a --flag")
        name, eq, value = arg[2:].partition("=")
        out[name] = value if eq else "true"
    return out


# --- PromQL -----------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr):
    """Names in a PromQL expression that look like series of this service
    (grpc_server_*, embsum_*, process_*, recorded level:metric:op names, up).
    Label names and functions do not match these shapes."""
    expr = _STRING.sub('""', expr)
    names = set()
    for token in _IDENT.findall(expr):
        if (":" in token or token.startswith(("grpc_server_", "embsum_", "process_"))
                or token in SCRAPE_METRICS):
            names.add(token)
    return names


def base_metric(name):
    """The histogram a _bucket/_sum/_count series belongs to, else name."""
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return base if base in HISTOGRAMS else name


def recorded_names(rule_files):
    names = set()
    for path in rule_files:
        for group in load_yaml_documents(path)[0]["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    names.add(rule["record"])
    return names


def prometheus_rule_files():
    return sorted((ROOT / "deploy" / "prometheus").glob("*.yml"))


def metric_names_in_source():
    """Quoted metric names in the server and metrics sources ("" when those
    sources are not there yet), to check the contract names are real."""
    text = ""
    for folder in ("server", "metrics"):
        for path in sorted((ROOT / folder).glob("*.cc")):
            text += path.read_text(encoding="utf-8", errors="replace")
    return text
