"""A typed gRPC client of the EmbSum service (docs/design.md section 5).

    from embsum.client import Ranker, Admin
    with Ranker("127.0.0.1:50051") as r:
        r.health()                                    # "SERVING"
        r.rank("u1", ["i1", "i2"], top_k=10)          # [(id, score, code)]
        r.retrieve("u1", k=10)
    with Admin("127.0.0.1:50052") as a:
        a.upsert_users(ids, upe, chunk_size=256)      # streamed, in chunks

Every call has a deadline (`timeout`, seconds). A call that fails with
UNAVAILABLE (server restarting, connection refused, a proxy without a
healthy backend) is retried with exponential backoff up to `retries` times
within the same overall deadline; every other status is raised at once as
RpcError (a subclass of grpc.RpcError's information: .code, .details).
Rank and Retrieve send the `x-user-id` header (docs/design.md section 9)
so a proxy routes sharded deployments; it is left out for ids that are not
printable ASCII, which gRPC metadata cannot carry as text.

TLS: pass tls=TLS(ca_cert="ca.pem", cert="client.pem", key="client.key",
server_name="...") (file paths; any may be None: ca_cert None uses the
system roots; cert and key give mTLS), or tls=True for system roots.

Upserts: each chunk is one UpsertUsers/UpsertItems stream, atomic on the
server (if a record of the chunk is invalid, none of it is applied, and the
INVALID_ARGUMENT names the record); chunks already acknowledged stay.
"""
import random
import time

import grpc

try:
    from embsum.v1 import ranking_pb2
    from embsum.v1 import ranking_pb2_grpc
except ImportError as _e:  # pragma: no cover - depends on the build
    raise ImportError(
        "embsum.client needs the gRPC stubs generated at build time "
        "(embsum/v1/ranking_pb2.py): build the embsum_python_stubs target "
        "(cmake --build build --target embsum_python_stubs) and either keep "
        "the default build directory build/ at the repository root, set "
        "EMBSUM_PYTHON_STUBS=<build>/tools/server/python, or put that "
        f"directory on PYTHONPATH ({_e})") from _e

_MAX_MESSAGE = 64 << 20
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING",
                  3: "SERVICE_UNKNOWN"}


class RpcError(Exception):
    """A failed call: .code (grpc.StatusCode), .details (str)."""

    def __init__(self, code, details, method):
        super().__init__(f"{method}: {code.name}: {details}")
        self.code = code
        self.details = details
        self.method = method


class TLS:
    """Client TLS settings: file paths (PEM); see the module docstring."""

    def __init__(self, ca_cert=None, cert=None, key=None, server_name=None):
        if (cert is None) != (key is None):
            raise ValueError("cert and key go together (mTLS)")
        self.ca_cert, self.cert, self.key = ca_cert, cert, key
        self.server_name = server_name

    def credentials(self):
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_cert),
            private_key=read(self.key), certificate_chain=read(self.cert))


def _header_safe(value):
    return bool(value) and all(0x20 <= ord(c) < 0x7F for c in value)


def _health_request(service):
    raw = service.encode("utf-8")
    if not raw:
        return b""
    return b"\x0a" + _varint(len(raw)) + raw


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _health_status(data):
    """The `status` field of a grpc.health.v1.HealthCheckResponse."""
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        value, shift = 0, 0
        while True:  # every field of this message is a varint
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if tag == 0x08:
            return _HEALTH_STATUS.get(value, str(value))
    return "UNKNOWN"


class _Client:
    def __init__(self, target, *, tls=None, timeout=10.0, retries=3,
                 options=()):
        opts = [("grpc.max_send_message_length", _MAX_MESSAGE),
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                *options]
        if tls is True:
            tls = TLS()
        if tls is not None:
            if tls.server_name:
                opts.append(("grpc.ssl_target_name_override",
                             tls.server_name))
            self.channel = grpc.secure_channel(target, tls.credentials(),
                                               opts)
        else:
            self.channel = grpc.insecure_channel(target, opts)
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self._health = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check")

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _call(self, method, fn, request, timeout, metadata=(), **kw):
        """fn(request, timeout=, metadata=) with UNAVAILABLE retried until
        `retries` retries or the deadline are used up."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = 0.05
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                return fn(request() if callable(request) else request,
                          timeout=max(left, 0.001), metadata=metadata, **kw)
            except grpc.RpcError as e:
                code = e.code()
                left = deadline - time.monotonic()
                if (code != grpc.StatusCode.UNAVAILABLE or
                        attempt >= self.retries or left <= delay):
                    raise RpcError(code, e.details(), method) from None
            attempt += 1
            time.sleep(delay * (0.5 + random.random()))  # backoff, jittered
            delay *= 2

    def health(self, service="", *, timeout=None, wait_for_ready=False):
        """grpc.health.v1 status of `service` ("" = the server):
        "SERVING", "NOT_SERVING", ... wait_for_ready=True waits (up to the
        timeout) for the channel to connect instead of failing at once."""
        response = self._call(
            "Health/Check", self._health, _health_request(service), timeout,
            wait_for_ready=wait_for_ready)
        return _health_status(response)

    def wait_until_serving(self, timeout=60.0):
        """Blocks until health() is SERVING; raises TimeoutError after
        `timeout` seconds. Synchronises on the server, not on a sleep."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.target}: not SERVING after "
                                   f"{timeout}s (last: {last})")
            try:
                last = self.health(timeout=left, wait_for_ready=True)
                if last == "SERVING":
                    return
            except RpcError as e:
                last = f"{e.code.name}: {e.details}"
                if e.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue
            # NOT_SERVING while catching up: ask again shortly.
            time.sleep(min(0.05, max(left, 0)))


def _scored(items, with_code=True):
    return [(i.item_id, i.score, i.top_user_code if with_code else None)
            for i in items]


class Ranker(_Client):
    """The public service (embsum.v1.Ranker, on --listen).

    Ranker(target, *, tls=None, timeout=10.0, retries=3, route_header=True)
    route_header: send x-user-id with Rank and Retrieve (default on).
    """

    def __init__(self, target, *, tls=None, timeout=10.0, retries=3,
                 route_header=True, options=()):
        super().__init__(target, tls=tls, timeout=timeout, retries=retries,
                         options=options)
        self.route_header = route_header
        self.stub = ranking_pb2_grpc.RankerStub(self.channel)

    def _metadata(self, user_id):
        if self.route_header and _header_safe(user_id):
            return (("x-user-id", user_id),)
        return ()

    def rank_response(self, user_id, candidate_ids, top_k=0, *,
                      explain=True, include_summary=False, timeout=None):
        """The whole RankResponse (unknown_item_ids, user_summary,
        model_version besides the items)."""
        request = ranking_pb2.RankRequest(
            user_id=user_id, candidate_ids=list(candidate_ids), top_k=top_k,
            explain=explain, include_summary=include_summary)
        return self._call("Rank", self.stub.Rank, request, timeout,
                          self._metadata(user_id))

    def rank(self, user_id, candidate_ids, top_k=0, *, explain=True,
             timeout=None):
        """[(item_id, score, top_user_code)] in rank order (score
        descending, ties in candidate order); unknown candidates are left
        out (rank_response() lists them). top_k = 0: all. explain=False
        skips the top_user_code computation and returns None for it."""
        response = self.rank_response(user_id, candidate_ids, top_k,
                                      explain=explain, timeout=timeout)
        return _scored(response.items, explain)

    def retrieve_response(self, user_id, k, exact=False, *,
                          exclude_item_ids=(), timeout=None):
        request = ranking_pb2.RetrieveRequest(
            user_id=user_id, k=k, exact=exact,
            exclude_item_ids=list(exclude_item_ids))
        return self._call("Retrieve", self.stub.Retrieve, request, timeout,
                          self._metadata(user_id))

    def retrieve(self, user_id, k, exact=False, *, exclude_item_ids=(),
                 timeout=None):
        """The catalogue's top k for the user: [(item_id, score,
        top_user_code)] in rank order. exact=True scans every item."""
        response = self.retrieve_response(
            user_id, k, exact, exclude_item_ids=exclude_item_ids,
            timeout=timeout)
        return _scored(response.items)

    def info(self, *, timeout=None):
        """GetModelInfo as a dict: model_version, dim, user_codes,
        item_codes, users, items, backend."""
        r = self._call("GetModelInfo", self.stub.GetModelInfo,
                       ranking_pb2.GetModelInfoRequest(), timeout)
        return {"model_version": r.model_version, "dim": r.dim,
                "user_codes": r.user_codes, "item_codes": r.item_codes,
                "users": r.users, "items": r.items, "backend": r.backend}


def _rows(values, k, what):
    """values [k, codes, d] (array, tensor or None) -> k flat float lists."""
    if values is None:
        return [None] * k
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    import numpy as np  # only the upserts need numpy
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim < 1 or arr.shape[0] != k:
        raise ValueError(f"{what}: {arr.shape[0] if arr.ndim else 0} rows "
                         f"for {k} ids")
    return arr.reshape(k, -1)


def _has_field(message_cls, name):
    return name in message_cls.DESCRIPTOR.fields_by_name


class Admin(_Client):
    """The write service (embsum.v1.RankerAdmin, on --admin_listen).

    upsert_users / upsert_items send `chunk_size` records per stream (one
    atomic RPC each) and return the number accepted; `progress(done,
    total)` is called after every chunk. model_version tags every record
    where the stubs have the field (empty: the served version).
    """

    def __init__(self, target, *, tls=None, timeout=60.0, retries=3,
                 options=()):
        super().__init__(target, tls=tls, timeout=timeout, retries=retries,
                         options=options)
        self.stub = ranking_pb2_grpc.RankerAdminStub(self.channel)

    def _stream(self, method, fn, total, make, chunk_size, timeout,
                progress):
        accepted = 0
        for start in range(0, total, chunk_size):
            chunk = make(start, min(start + chunk_size, total))
            # A retry re-sends the chunk: the request is a fresh iterator.
            response = self._call(method, fn, lambda: iter(chunk), timeout)
            accepted += response.accepted
            if progress:
                progress(min(start + chunk_size, total), total)
        return accepted

    def upsert_users(self, ids, upe, queries=None, summaries=None, *,
                     model_version="", chunk_size=256, timeout=None,
                     progress=None):
        """ids: k strings; upe, queries: [k, m, d]; summaries: k strings or
        None. Records are built a chunk at a time."""
        ids = list(ids)
        upe_rows = _rows(upe, len(ids), "upe")
        q_rows = _rows(queries, len(ids), "queries")
        tag = model_version and _has_field(ranking_pb2.UserRecord,
                                           "model_version")

        def make(start, end):
            records = []
            for i in range(start, end):
                r = ranking_pb2.UserRecord(user_id=ids[i],
                                           upe=upe_rows[i].tolist())
                if q_rows[i] is not None:
                    r.queries.extend(q_rows[i].tolist())
                if summaries is not None and summaries[i]:
                    r.summary = summaries[i]
                if tag:
                    r.model_version = model_version
                records.append(r)
            return records
        return self._stream("UpsertUsers", self.stub.UpsertUsers, len(ids),
                            make, chunk_size, timeout, progress)

    def upsert_items(self, ids, cpe, keys=None, *, model_version="",
                     chunk_size=256, timeout=None, progress=None):
        """ids: k strings; cpe, keys: [k, n, d]."""
        ids = list(ids)
        cpe_rows = _rows(cpe, len(ids), "cpe")
        k_rows = _rows(keys, len(ids), "keys")
        tag = model_version and _has_field(ranking_pb2.ItemRecord,
                                           "model_version")

        def make(start, end):
            records = []
            for i in range(start, end):
                r = ranking_pb2.ItemRecord(item_id=ids[i],
                                           cpe=cpe_rows[i].tolist())
                if k_rows[i] is not None:
                    r.keys.extend(k_rows[i].tolist())
                if tag:
                    r.model_version = model_version
                records.append(r)
            return records
        return self._stream("UpsertItems", self.stub.UpsertItems, len(ids),
                            make, chunk_size, timeout, progress)

    def delete_items(self, ids, *, timeout=None):
        """Deletes items; returns how many existed."""
        r = self._call("DeleteItems", self.stub.DeleteItems,
                       ranking_pb2.DeleteItemsRequest(item_ids=list(ids)),
                       timeout)
        return r.deleted
