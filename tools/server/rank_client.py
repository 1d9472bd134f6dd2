#!/usr/bin/env python3
"""Calls embsum.v1.Ranker/Rank and prints the ranking.

Needs python3-grpcio and the stubs generated at build time:
  PYTHONPATH=build/tools/server/python /usr/bin/python3 \
      tools/server/rank_client.py --target=127.0.0.1:50051 \
      --user=USER --candidates=ITEM1,ITEM2 [--top_k=10] [--explain]
TLS: --ca=ca.pem [--cert=client.pem --key=client.key].
"""
import argparse
import json
import sys

import grpc

from embsum.v1 import ranking_pb2
from embsum.v1 import ranking_pb2_grpc


def make_channel(args):
    if not args.ca:
        return grpc.insecure_channel(args.target)
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key) if args.key else None,
        certificate_chain=read(args.cert) if args.cert else None)
    return grpc.secure_channel(args.target, creds)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--user", required=True)
    p.add_argument("--candidates", required=True,
                   help="comma-separated item ids")
    p.add_argument("--top_k", type=int, default=0)
    p.add_argument("--explain", action="store_true")
    p.add_argument("--summary", action="store_true")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    args = p.parse_args()

    with make_channel(args) as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        request = ranking_pb2.RankRequest(
            user_id=args.user, candidate_ids=args.candidates.split(","),
            top_k=args.top_k, explain=args.explain,
            include_summary=args.summary)
        try:
            response = stub.Rank(request, timeout=args.timeout)
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    print(json.dumps({
        "model_version": response.model_version,
        "items": [{"item_id": i.item_id, "score": i.score,
                   "top_user_code": i.top_user_code}
                  for i in response.items],
        "unknown_item_ids": list(response.unknown_item_ids),
        "user_summary": response.user_summary,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
