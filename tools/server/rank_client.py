#!/usr/bin/env python3
"""Command line for the EmbSum service, over embsum.client (python/embsum).

  rank_client.py [--target=HOST:PORT] rank --user=U --candidates=I1,I2 \\
      [--top_k=10] [--summary]
  rank_client.py retrieve --user=U --k=10 [--exact]
  rank_client.py health            # exit 0 when SERVING
  rank_client.py info
  rank_client.py --target=127.0.0.1:50052 upsert users --model_dir=MODEL
  rank_client.py --target=127.0.0.1:50052 upsert items --ids=ids.txt \\
      --cpe=cpe.npy [--keys=keys.npy] [--chunk_size=256]

rank and retrieve send the x-user-id header (the user id) that a proxy in
front of sharded replicas routes by; --no_route_header leaves it out.
upsert reads an artifact-format directory (docs/design.md section 3:
users/ or items/ of --model_dir) or separate files (--ids, and --upe
[--queries] [--summaries] or --cpe [--keys]), memory-mapped, and sends
--chunk_size records per atomic RPC with a progress line on stderr. It
talks to the admin listener (--admin_listen, loopback by default).

Output is JSON on stdout; errors go to stderr as "CODE: details" with exit
status 1. TLS: --ca=ca.pem [--cert=client.pem --key=client.key]
[--server_name=NAME].

Runs with Debian's python3, python3-grpcio and python3-numpy. The package
is found relative to this file (python/ in the repository); the generated
stubs as embsum/__init__.py describes (the default build/ directory, or
EMBSUM_PYTHON_STUBS, or PYTHONPATH).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "python"))

from embsum import client  # noqa: E402


def _tls(args):
    if not (args.ca or args.cert or args.server_name or args.tls):
        return None
    return client.TLS(ca_cert=args.ca, cert=args.cert, key=args.key,
                      server_name=args.server_name)


def _print(obj):
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _items(scored):
    return [{"item_id": i, "score": s, "top_user_code": c}
            for i, s, c in scored]


def cmd_rank(args):
    with client.Ranker(args.target, tls=_tls(args), timeout=args.timeout,
                       route_header=not args.no_route_header) as r:
        resp = r.rank_response(args.user, args.candidates.split(","),
                               args.top_k, explain=True,
                               include_summary=args.summary)
    _print({"model_version": resp.model_version,
            "items": _items((i.item_id, i.score, i.top_user_code)
                            for i in resp.items),
            "unknown_item_ids": list(resp.unknown_item_ids),
            "user_summary": resp.user_summary})


def cmd_retrieve(args):
    with client.Ranker(args.target, tls=_tls(args), timeout=args.timeout,
                       route_header=not args.no_route_header) as r:
        resp = r.retrieve_response(args.user, args.k, args.exact)
    _print({"model_version": resp.model_version,
            "items": _items((i.item_id, i.score, i.top_user_code)
                            for i in resp.items),
            "scored_items": resp.scored_items,
            "certified_exact": resp.certified_exact})


def cmd_health(args):
    with client.Ranker(args.target, tls=_tls(args),
                       timeout=args.timeout) as r:
        status = r.health(args.service, wait_for_ready=args.wait)
    _print({"status": status})
    return 0 if status == "SERVING" else 1


def cmd_info(args):
    with client.Ranker(args.target, tls=_tls(args),
                       timeout=args.timeout) as r:
        _print(r.info())


def _load(path):
    import numpy as np
    return np.load(path, mmap_mode="r")


def _read_ids(path):
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().split("\n") if line]


def cmd_upsert(args):
    kind = args.kind
    d = os.path.join(args.model_dir, kind) if args.model_dir else None

    def pick(flag, name):
        if flag:
            return flag
        if d and os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
        return None
    ids_path = pick(args.ids, "ids.txt")
    if not ids_path:
        print("upsert: give --model_dir or --ids", file=sys.stderr)
        return 2
    ids = _read_ids(ids_path)
    if args.model_dir and not args.no_check:
        from embsum import artifact  # the same rules as the server's
        artifact.validate(args.model_dir)

    def progress(done, total):
        print(f"\rupsert {kind}: {done}/{total} ({100.0 * done / total:.0f}%)",
              end="" if done < total else "\n", file=sys.stderr, flush=True)
    with client.Admin(args.target, tls=_tls(args),
                      timeout=args.timeout) as a:
        if kind == "users":
            upe = pick(args.upe, "upe.npy")
            queries = pick(args.queries, "queries.npy")
            summaries_path = pick(args.summaries, "summaries.jsonl")
            summaries = None
            if summaries_path:
                by_id = {}
                with open(summaries_path, encoding="utf-8") as f:
                    for line in f:
                        if line.strip():
                            j = json.loads(line)
                            by_id[j["user_id"]] = j["summary"]
                summaries = [by_id.get(u) for u in ids]
            accepted = a.upsert_users(
                ids, _load(upe), _load(queries) if queries else None,
                summaries, model_version=args.model_version,
                chunk_size=args.chunk_size, progress=progress)
        else:
            cpe = pick(args.cpe, "cpe.npy")
            keys = pick(args.keys, "keys.npy")
            accepted = a.upsert_items(
                ids, _load(cpe), _load(keys) if keys else None,
                model_version=args.model_version,
                chunk_size=args.chunk_size, progress=progress)
    _print({"accepted": accepted})


COMMANDS = ("rank", "retrieve", "health", "info", "upsert")


def _common(p):
    """Connection options, accepted before or after the subcommand."""
    p.add_argument("--target", default="127.0.0.1:50051",
                   help="HOST:PORT (upsert: the admin listener)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="deadline per call, seconds")
    p.add_argument("--tls", action="store_true",
                   help="TLS with the system's roots")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--server_name")


def _subcommand_first(argv):
    """Moves the subcommand to the front, so connection options may come
    before it; without one, `rank` (the first version's command line:
    --user=U --candidates=A,B)."""
    for i, a in enumerate(argv):
        if a in COMMANDS:
            return [a] + argv[:i] + argv[i + 1:]
        if a in ("-h", "--help"):
            return argv
    return ["rank"] + argv


def main(argv=None):
    argv = _subcommand_first(list(sys.argv[1:] if argv is None else argv))
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("rank", help="Rank candidates for a user")
    r.add_argument("--explain", action="store_true",
                   help="accepted for compatibility: top_user_code is "
                        "always asked for")
    r.add_argument("--user", required=True)
    r.add_argument("--candidates", required=True,
                   help="comma-separated item ids")
    r.add_argument("--top_k", type=int, default=0)
    r.add_argument("--summary", action="store_true")
    r.add_argument("--no_route_header", action="store_true",
                   help="do not send x-user-id")
    r.set_defaults(fn=cmd_rank)

    r = sub.add_parser("retrieve", help="Top k of the catalogue for a user")
    r.add_argument("--user", required=True)
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--exact", action="store_true")
    r.add_argument("--no_route_header", action="store_true")
    r.set_defaults(fn=cmd_retrieve)

    r = sub.add_parser("health", help="grpc.health.v1 check")
    r.add_argument("--service", default="")
    r.add_argument("--wait", action="store_true",
                   help="wait (up to --timeout) for the server to come up")
    r.set_defaults(fn=cmd_health)

    r = sub.add_parser("info", help="GetModelInfo")
    r.set_defaults(fn=cmd_info)

    r = sub.add_parser("upsert", help="UpsertUsers / UpsertItems in chunks")
    r.add_argument("kind", choices=["users", "items"])
    r.add_argument("--model_dir", help="artifact-format directory")
    r.add_argument("--ids", help="ids.txt (one id per line)")
    r.add_argument("--upe")
    r.add_argument("--queries")
    r.add_argument("--summaries", help="summaries.jsonl")
    r.add_argument("--cpe")
    r.add_argument("--keys")
    r.add_argument("--chunk_size", type=int, default=256)
    r.add_argument("--model_version", default="",
                   help="the version the vectors belong to (empty: served)")
    r.add_argument("--no_check", action="store_true",
                   help="skip validating --model_dir first")
    r.set_defaults(fn=cmd_upsert)

    for r in sub.choices.values():
        _common(r)
    args = p.parse_args(argv)
    try:
        return args.fn(args) or 0
    except client.RpcError as e:
        print(f"{e.code.name}: {e.details}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"{p.prog}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
