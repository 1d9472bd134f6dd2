"""Model artifacts (docs/design.md section 3): a streaming writer and a
validator that applies the rules embsum-ingest applies.

    with ArtifactWriter("model", dim=64, user_codes=8, item_codes=4,
                        model_version="v1", item_keys=True) as w:
        for ids, upe in user_chunks:
            w.add_users(ids, upe)              # [k, m, d]
        for ids, cpe, keys in item_chunks:
            w.add_items(ids, cpe, keys=keys)   # [k, n, d]
    validate("model")                          # raises ArtifactError

The writer keeps only the ids in memory (to refuse duplicates), never the
vectors, so a catalogue larger than memory is written chunk by chunk. It
writes into a temporary directory beside the target and renames it into
place on close(): the target is either absent, the old artifact or the
complete new one, never a mixture.

validate() names the file (relative to the model directory), the row (the
0-based record index: for ids.txt line L that is row L - 1) and the problem,
in the same order of checks as embsum-ingest, so both report the same file
and row for an artifact with one fault (tests/artifacts/ checks this).

Command line: python3 -m embsum.artifact check MODEL_DIR
"""
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np

FORMAT_VERSION = 1
MAX_DIM = 65536
MAX_CODES = 4096
MAX_ID_BYTES = 256
MAX_SUMMARY_BYTES = 64 * 1024
# docs/design.md section 10: the bound on |value| of every embedding value
# (store/embedding_rules.h kMaxEmbeddingMagnitude). With d <= 65536 and
# m, n <= 4096 every sum of products the scorer forms stays below ~1.1e24,
# far from the float32 limit 3.4e38, so every score is finite.
MAX_EMBEDDING_MAGNITUDE = 1e6

_FLOAT16_MAX = 65504.0
_DTYPES = {"float32": "<f4", "fp32": "<f4", "float16": "<f2", "fp16": "<f2"}


class ArtifactError(ValueError):
    """A violation of the artifact contract.

    file: the path relative to the model directory ("users/upe.npy"), or
        None when the problem is the directory itself.
    row: the 0-based record index in that file, or None.
    """

    def __init__(self, message, file=None, row=None):
        super().__init__(message)
        self.file = file
        self.row = row


def _quote(raw):
    """An id in a message, as embsum-ingest shows it (bytes in, str out):
    quoted, control characters, quotes and backslashes as \\xNN, cut at 64
    bytes."""
    out = bytearray(b'"')
    for c in raw[:64]:
        if c < 0x20 or c == 0x7F or c in (0x22, 0x5C):
            out += b"\\x%02x" % c
        else:
            out.append(c)
    if len(raw) > 64:
        out += b"..."
    out += b'"'
    return out.decode("utf-8", "replace")


def id_problem(raw):
    """None when `raw` (bytes) is a valid id, else what is wrong."""
    if not raw:
        return "empty id"
    if len(raw) > MAX_ID_BYTES:
        return f"id {_quote(raw)} is {len(raw)} bytes (at most {MAX_ID_BYTES})"
    for c in raw:
        if c < 0x20 or c == 0x7F:
            return "id %s contains control character 0x%02x" % (_quote(raw), c)
    try:
        raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return f"id {_quote(raw)} is not valid UTF-8"
    return None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _json_dump(v):
    return json.dumps(v, separators=(",", ":"))


def parse_manifest(text, source="manifest.json"):
    """The manifest as a dict, checked as embsum-ingest checks it."""
    def bad(what):
        return ArtifactError(f"{source}: {what}", file=source)

    def field_error(field, problem):
        return bad(f'field "{field}": {problem}')

    try:
        j = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise bad("not valid JSON")
    if not isinstance(j, dict):
        raise bad("expected a JSON object")
    if "format_version" not in j:
        raise field_error("format_version", "missing")
    fv = j["format_version"]
    if not _is_int(fv) or fv != FORMAT_VERSION:
        raise field_error("format_version",
                          f"unsupported version {_json_dump(fv)} "
                          "(this build reads version 1)")
    if "model_version" not in j:
        raise field_error("model_version", "missing")
    mv = j["model_version"]
    if not isinstance(mv, str):
        raise field_error("model_version",
                          f"expected a string, got {_json_dump(mv)}")
    mvb = mv.encode("utf-8", "surrogatepass")
    if not 1 <= len(mvb) <= 256:
        raise field_error("model_version", "must be 1..256 bytes")
    if any(c < 0x20 or c == 0x7F for c in mvb):
        raise field_error("model_version", "contains a control character")
    out = {"format_version": 1, "model_version": mv}
    for field, top in (("dim", MAX_DIM), ("user_codes", MAX_CODES),
                       ("item_codes", MAX_CODES)):
        if field not in j:
            raise field_error(field, "missing")
        v = j[field]
        if not _is_int(v):
            raise field_error(field,
                              f"expected an integer, got {_json_dump(v)}")
        if not 1 <= v <= top:
            raise field_error(field, f"must be in [1, {top}], got {v}")
        out[field] = v
    for field in ("user_queries", "item_keys"):
        if field not in j:
            raise field_error(field, "missing")
        v = j[field]
        if not isinstance(v, bool):
            raise field_error(field,
                              f"expected true or false, got {_json_dump(v)}")
        out[field] = v
    return out


def _read_bytes(model_dir, rel):
    try:
        with open(os.path.join(model_dir, rel), "rb") as f:
            return f.read()
    except OSError as e:
        raise ArtifactError(f"{rel}: {e.strerror}", file=rel)


def parse_ids(data, name):
    """The ids of an ids.txt file's bytes, as a list of str."""
    ids = []
    first = {}
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    if not data:
        lines = []
    for i, raw in enumerate(lines):
        line = i + 1
        problem = id_problem(raw)
        if problem:
            raise ArtifactError(f"{name}: line {line}: {problem}",
                                file=name, row=i)
        if raw in first:
            raise ArtifactError(
                f"{name}: line {line}: duplicate id {_quote(raw)} "
                f"(first on line {first[raw]})", file=name, row=i)
        first[raw] = line
        ids.append(raw.decode("utf-8"))
    return ids


def parse_summaries(data, name):
    """[(user_id, summary)] of a summaries.jsonl file's bytes."""
    out = []
    first = {}
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    for i, raw in enumerate(lines):
        line = i + 1
        if not raw.strip(b" \t\r"):
            continue

        def error(what):
            return ArtifactError(f"{name}: line {line}: {what}",
                                 file=name, row=i)
        try:
            j = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            j = None
        if not isinstance(j, dict):
            raise error("not a JSON object")
        if not isinstance(j.get("user_id"), str):
            raise error('missing string field "user_id"')
        if not isinstance(j.get("summary"), str):
            raise error('missing string field "summary"')
        uid = j["user_id"].encode("utf-8", "surrogatepass")
        problem = id_problem(uid)
        if problem:
            raise error(problem)
        size = len(j["summary"].encode("utf-8", "surrogatepass"))
        if size > MAX_SUMMARY_BYTES:
            raise error(f"summary is {size} bytes (at most "
                        f"{MAX_SUMMARY_BYTES})")
        if uid in first:
            raise error(f"second summary for user {_quote(uid)} "
                        f"(first on line {first[uid]})")
        first[uid] = line
        out.append((j["user_id"], j["summary"]))
    return out


def _shape_string(shape):
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


class _HeaderParser:
    """The Python-literal dictionary of a .npy header, parsed as strictly as
    embsum-ingest parses it (store/npy.cc)."""

    def __init__(self, text):
        self.t = text
        self.p = 0

    def error(self, what):
        return ValueError(f"header: {what} at offset {self.p}")

    def peek(self):
        return self.t[self.p] if self.p < len(self.t) else "\0"

    def consume(self, c):
        if self.peek() != c:
            return False
        self.p += 1
        return True

    def space(self):
        while self.p < len(self.t) and self.t[self.p] in " \n\t\r":
            self.p += 1

    def string(self):
        q = self.peek()
        if q not in "'\"":
            return None
        self.p += 1
        end = self.t.find(q, self.p)
        if end < 0:
            return None
        s = self.t[self.p:end]
        self.p = end + 1
        return s

    def tuple_(self):
        self.consume("(")
        out = []
        while True:
            self.space()
            if self.consume(")"):
                return out
            if not "0" <= self.peek() <= "9":
                raise self.error(
                    "shape must be a tuple of non-negative integers")
            v = 0
            while "0" <= self.peek() <= "9":
                v = v * 10 + ord(self.peek()) - 48
                if v >= 1 << 64:
                    raise self.error("shape dimension overflows 64 bits")
                self.p += 1
            self.consume("L")
            out.append(v)
            self.space()
            if self.consume(","):
                continue
            self.space()
            if self.consume(")"):
                return out
            raise self.error("expected ',' or ')' in shape")

    def parse(self):
        d = {}
        self.space()
        if not self.consume("{"):
            raise self.error("expected '{'")
        while True:
            self.space()
            if self.consume("}"):
                break
            key = self.string()
            if key is None:
                raise self.error("expected a quoted key")
            self.space()
            if not self.consume(":"):
                raise self.error("expected ':'")
            self.space()
            if self.peek() in "'\"":
                value = self.string()
                if value is None:
                    raise self.error("unterminated string")
            elif self.peek() == "(":
                value = tuple(self.tuple_())
            elif self.t.startswith("True", self.p):
                self.p += 4
                value = True
            elif self.t.startswith("False", self.p):
                self.p += 5
                value = False
            else:
                raise self.error(f"unsupported value for key '{key}'")
            if key in d:
                raise self.error(f"duplicate key '{key}'")
            d[key] = value
            self.space()
            if self.consume(","):
                continue
            self.space()
            if self.consume("}"):
                break
            raise self.error("expected ',' or '}'")
        self.space()
        if self.p != len(self.t):
            raise self.error("trailing characters after '}'")
        return d


class NpyInfo:
    """A checked .npy file: dtype ('<f4' or '<f2'), shape, data offset."""

    def __init__(self, path, name, descr, shape, offset):
        self.path, self.name = path, name
        self.descr, self.shape, self.offset = descr, shape, offset

    @property
    def rows(self):
        return self.shape[0] if self.shape else 1

    def check_shape(self, expected):
        if tuple(self.shape) != tuple(expected):
            raise ArtifactError(
                f"{self.name}: shape {_shape_string(self.shape)} does not "
                f"match the manifest: expected {_shape_string(expected)}",
                file=self.name)

    def memmap(self):
        """The data as a read-only array of `shape`."""
        return np.memmap(self.path, dtype=self.descr, mode="r",
                         offset=self.offset, shape=tuple(self.shape))


def read_npy_header(model_dir, rel):
    """Opens MODEL_DIR/rel and checks its header and size (store/npy.cc)."""
    path = os.path.join(model_dir, rel)

    def bad(what):
        return ArtifactError(f"{rel}: {what}", file=rel)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(min(size, 12 + (1 << 20)))
    except OSError as e:
        raise bad(e.strerror)
    if len(head) < 8 or head[:6] != b"\x93NUMPY":
        raise bad("not a .npy file (missing \\x93NUMPY magic)")
    major, minor = head[6], head[7]
    if major not in (1, 2, 3) or minor != 0:
        raise bad(f"unsupported .npy version {major}.{minor} "
                  "(need 1.0, 2.0 or 3.0)")
    len_size = 2 if major == 1 else 4
    prefix = 8 + len_size
    if size < prefix:
        raise bad("truncated header")
    header_len = int.from_bytes(head[8:prefix], "little")
    if size - prefix < header_len:
        raise bad(f"truncated header: needs {header_len} bytes, file has "
                  f"{size - prefix}")
    if prefix + header_len > len(head):
        with open(path, "rb") as f:
            head = f.read(prefix + header_len)
    raw = head[prefix:prefix + header_len]
    if major < 3 and any(c >= 0x80 for c in raw):
        raise bad("header: non-ASCII byte in a version 1/2 header")
    try:
        d = _HeaderParser(raw.decode("utf-8" if major == 3 else "latin-1")
                          ).parse()
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(str(e))
    for key in sorted(d):
        if key not in ("descr", "fortran_order", "shape"):
            raise bad(f"header: unexpected key '{key}'")
    if not isinstance(d.get("descr"), str):
        raise bad("header: missing 'descr' string")
    if d["descr"] not in ("<f4", "<f2"):
        raise bad(f"dtype '{d['descr']}' is not supported (need '<f4' or "
                  "'<f2')")
    if not isinstance(d.get("fortran_order"), bool):
        raise bad("header: missing 'fortran_order' boolean")
    if d["fortran_order"]:
        raise bad("fortran_order is True (need C order)")
    if not isinstance(d.get("shape"), tuple):
        raise bad("header: missing 'shape' tuple")
    shape = list(d["shape"])
    offset = prefix + header_len
    item = 2 if d["descr"] == "<f2" else 4
    if offset % item:
        raise bad(f"data starts at byte {offset}, not a multiple of the "
                  f"element size {item} (header not padded as NumPy pads it)")
    elements = 1
    for s in shape:
        if s != 0 and elements > ((1 << 64) - 1) // 8 // s:
            raise bad(f"shape {_shape_string(shape)} is too large")
        elements *= s
    need = elements * item
    have = size - offset
    if have < need:
        raise bad(f"truncated: shape {_shape_string(shape)} needs {need} "
                  f"bytes of data, file has {have}")
    if have > need:
        raise bad(f"{have - need} unexpected bytes after the data of shape "
                  f"{_shape_string(shape)}")
    return NpyInfo(path, rel, d["descr"], shape, offset)


def value_problem(values, dim):
    """None when every value of `values` (a flat float array) is finite and
    within MAX_EMBEDDING_MAGNITUDE; else what is wrong at the first bad one:
    "NaN at vector V, element E", "Inf ...", "3e+38 exceeds ..."."""
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    bad = ~(np.abs(v) <= MAX_EMBEDDING_MAGNITUDE)  # NaN compares false
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    x = float(v[i])
    where = f"vector {i // dim}, element {i % dim}"
    if math.isnan(x):
        return f"NaN at {where}"
    if math.isinf(x):
        return f"Inf at {where}"
    return (f"{x:g} at {where} exceeds the embedding bound "
            f"{MAX_EMBEDDING_MAGNITUDE:g} (docs/design.md section 10)")


def _check_rows(info, ids_name, ids):
    if info.rows != len(ids):
        raise ArtifactError(f"{info.name}: {info.rows} rows, but {ids_name} "
                            f"has {len(ids)} ids", file=info.name)


def _open_optional(model_dir, rel, wanted, flag):
    exists = os.path.exists(os.path.join(model_dir, rel))
    if wanted and not exists:
        raise ArtifactError(
            f"{rel}: missing, but manifest.json says {flag} is true", file=rel)
    if not wanted and exists:
        raise ArtifactError(
            f"{rel}: present, but manifest.json says {flag} is false (remove "
            "the file or set the flag)", file=rel)
    return read_npy_header(model_dir, rel) if wanted else None


def validate(model_dir, chunk_rows=4096):
    """None when MODEL_DIR is a valid artifact; else raises ArtifactError
    naming the file, the row and the problem (the first one embsum-ingest
    --check finds). Reads the arrays in chunks of `chunk_rows` rows."""
    if not os.path.isdir(model_dir):
        raise ArtifactError(f"{model_dir}: not a directory")
    m = parse_manifest(_read_bytes(model_dir, "manifest.json"))
    user_ids = parse_ids(_read_bytes(model_dir, "users/ids.txt"),
                         "users/ids.txt")
    upe = read_npy_header(model_dir, "users/upe.npy")
    user_shape = (len(user_ids), m["user_codes"], m["dim"])
    _check_rows(upe, "users/ids.txt", user_ids)
    upe.check_shape(user_shape)
    queries = _open_optional(model_dir, "users/queries.npy",
                             m["user_queries"], "user_queries")
    if queries:
        _check_rows(queries, "users/ids.txt", user_ids)
        queries.check_shape(user_shape)
    if os.path.exists(os.path.join(model_dir, "users/summaries.jsonl")):
        name = "users/summaries.jsonl"
        summaries = parse_summaries(_read_bytes(model_dir, name), name)
        known = set(user_ids)
        for i, (uid, _) in enumerate(summaries):
            if uid not in known:
                raise ArtifactError(
                    f'{name}: entry {i + 1}: user "{uid}" is not in '
                    "users/ids.txt", file=name, row=i)
    item_ids = parse_ids(_read_bytes(model_dir, "items/ids.txt"),
                         "items/ids.txt")
    cpe = read_npy_header(model_dir, "items/cpe.npy")
    item_shape = (len(item_ids), m["item_codes"], m["dim"])
    _check_rows(cpe, "items/ids.txt", item_ids)
    cpe.check_shape(item_shape)
    keys = _open_optional(model_dir, "items/keys.npy", m["item_keys"],
                          "item_keys")
    if keys:
        _check_rows(keys, "items/ids.txt", item_ids)
        keys.check_shape(item_shape)
    # Values, in embsum-ingest --check's order: users row by row (upe, then
    # queries), then items (cpe, then keys). Chunked, so the per-row order
    # across two files is kept by checking both before moving on.
    for start in range(0, len(user_ids), chunk_rows):
        _check_pair(upe, queries, user_ids, "user", m["dim"], start,
                    chunk_rows)
    for start in range(0, len(item_ids), chunk_rows):
        _check_pair(cpe, keys, item_ids, "item", m["dim"], start, chunk_rows)
    return None


def _first_bad_row(info, start, count):
    block = np.asarray(info.memmap()[start:start + count], dtype=np.float32)
    flat = block.reshape(block.shape[0], -1)
    rows = np.nonzero((~(np.abs(flat) <= MAX_EMBEDDING_MAGNITUDE)).any(axis=1))[0]
    if not rows.size:
        return None, None
    return start + int(rows[0]), flat[rows[0]]


def _check_pair(first, second, ids, kind, dim, start, count):
    r1, v1 = _first_bad_row(first, start, count)
    r2, v2 = (None, None) if second is None else \
        _first_bad_row(second, start, count)
    if r1 is None and r2 is None:
        return
    info, r, v = (first, r1, v1) if r2 is None or (
        r1 is not None and r1 <= r2) else (second, r2, v2)
    raise ArtifactError(
        f'{info.name}: row {r} ({kind} "{ids[r]}"): {value_problem(v, dim)}',
        file=info.name, row=r)


# ---------------------------------------------------------------------------
# Writer.

# Bytes reserved for a streamed .npy header: magic, version, length and the
# dictionary padded with spaces; the shape is filled in on close.
_HEADER_BYTES = 128


def _npy_header(descr, shape):
    d = ("{'descr': '%s', 'fortran_order': False, 'shape': %s, }"
         % (descr, _shape_string(shape)))
    pad = _HEADER_BYTES - 10 - len(d) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit the reserved header")
    return b"\x93NUMPY\x01\x00" + (_HEADER_BYTES - 10).to_bytes(2, "little") \
        + (d + " " * pad + "\n").encode("ascii")


class _StreamNpy:
    """A .npy file appended row block by row block; the header's first
    dimension is written when the file is finished."""

    def __init__(self, path, descr, row_shape):
        self.path, self.descr, self.row_shape = path, descr, tuple(row_shape)
        self.rows = 0
        self.f = open(path, "wb")
        self.f.write(_npy_header(descr, (0,) + self.row_shape))

    def append(self, block):
        arr = np.ascontiguousarray(block, dtype=self.descr)
        self.f.write(arr.tobytes(order="C"))
        self.rows += arr.shape[0]

    def finish(self):
        self.f.flush()
        self.f.seek(0)
        self.f.write(_npy_header(self.descr, (self.rows,) + self.row_shape))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()

    def abort(self):
        self.f.close()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactWriter:
    """Writes a model artifact chunk by chunk and publishes it atomically.

    ArtifactWriter(model_dir, *, dim, user_codes, item_codes, model_version,
                   user_queries=False, item_keys=False, dtype="float32",
                   overwrite=False)

    add_users(ids, upe, queries=None, summaries=None) and
    add_items(ids, cpe, keys=None) take arrays shaped [k, m, d] / [k, n, d]
    (numpy arrays or anything np.asarray accepts, torch tensors included)
    and may be called any number of times. Every record is checked as the
    service checks it (ids, shapes, finite values within the bound) before
    anything of the call is written; a bad call raises ValueError and
    leaves the writer usable. close() publishes MODEL_DIR; leaving the
    `with` block by an exception discards everything (abort()).

    An existing MODEL_DIR is an error unless overwrite=True, in which case
    it is replaced only once the new artifact is complete. dtype "float16"
    rounds values to '<f2' (values beyond the float16 range are refused,
    which the bound already ensures). Not thread-safe.
    """

    def __init__(self, model_dir, *, dim, user_codes, item_codes,
                 model_version, user_queries=False, item_keys=False,
                 dtype="float32", overwrite=False):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: want float32 or float16")
        self.manifest = parse_manifest(json.dumps({
            "format_version": FORMAT_VERSION, "model_version": model_version,
            "dim": dim, "user_codes": user_codes, "item_codes": item_codes,
            "user_queries": bool(user_queries),
            "item_keys": bool(item_keys)}), "manifest")
        self.model_dir = os.path.abspath(model_dir)
        if os.path.exists(self.model_dir) and not overwrite:
            raise FileExistsError(
                f"{model_dir}: already exists (pass overwrite=True to replace "
                "it once the new artifact is complete)")
        self.descr = _DTYPES[dtype]
        parent = os.path.dirname(self.model_dir)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(
            prefix=f".{os.path.basename(self.model_dir)}.writing-", dir=parent)
        os.mkdir(os.path.join(self.tmp, "users"))
        os.mkdir(os.path.join(self.tmp, "items"))
        m = self.manifest
        u_row = (m["user_codes"], m["dim"])
        i_row = (m["item_codes"], m["dim"])
        j = lambda rel: os.path.join(self.tmp, rel)
        self._upe = _StreamNpy(j("users/upe.npy"), self.descr, u_row)
        self._queries = (_StreamNpy(j("users/queries.npy"), self.descr, u_row)
                         if m["user_queries"] else None)
        self._cpe = _StreamNpy(j("items/cpe.npy"), self.descr, i_row)
        self._keys = (_StreamNpy(j("items/keys.npy"), self.descr, i_row)
                      if m["item_keys"] else None)
        self._user_ids_f = open(j("users/ids.txt"), "wb")
        self._item_ids_f = open(j("items/ids.txt"), "wb")
        self._summaries_f = None
        self._user_ids = set()
        self._item_ids = set()
        self.closed = False

    # -- checks ------------------------------------------------------------
    def _ids(self, ids, seen, what):
        out = []
        batch = set()
        for i, raw_id in enumerate(ids):
            raw = raw_id.encode("utf-8") if isinstance(raw_id, str) \
                else bytes(raw_id)
            problem = id_problem(raw)
            if problem:
                raise ValueError(f"{what} {i} of this call: {problem}")
            if raw in seen or raw in batch:
                raise ValueError(f"{what} {i} of this call: duplicate id "
                                 f"{_quote(raw)}")
            batch.add(raw)
            out.append(raw)
        return out, batch

    def _array(self, values, k, codes, field, ids, flag_on, flag):
        if values is None:
            if flag_on:
                raise ValueError(f"{field} missing; the manifest says {flag} "
                                 "is true")
            return None
        if not flag_on:
            raise ValueError(f"{field} given, but the writer was created "
                             f"with {flag}=False")
        if hasattr(values, "detach"):  # a torch tensor
            values = values.detach().cpu().numpy()
        arr = np.asarray(values, dtype=np.float32)
        want = (k, codes, self.manifest["dim"])
        if arr.shape != want:
            raise ValueError(f"{field} has shape {arr.shape}; want {want} "
                             "(records, codes, dim)")
        flat = arr.reshape(k, -1)
        bad = np.nonzero((~(np.abs(flat) <= MAX_EMBEDDING_MAGNITUDE)).any(
            axis=1))[0]
        if bad.size:
            r = int(bad[0])
            raise ValueError(
                f"{field}[{r}] (id {_quote(ids[r])}): "
                f"{value_problem(flat[r], self.manifest['dim'])}")
        if self.descr == "<f2":
            big = np.nonzero((np.abs(flat) > _FLOAT16_MAX).any(axis=1))[0]
            if big.size:
                r = int(big[0])
                i = int(np.argmax(np.abs(flat[r]) > _FLOAT16_MAX))
                raise ValueError(
                    f"{field}[{r}] (id {_quote(ids[r])}): {flat[r][i]:g} at "
                    f"vector {i // self.manifest['dim']}, element "
                    f"{i % self.manifest['dim']} does not fit float16 "
                    f"(at most {_FLOAT16_MAX:g}); write float32")
        return arr

    def _check_open(self):
        if self.closed:
            raise ValueError("the writer is closed")

    # -- records -----------------------------------------------------------
    def add_users(self, ids, upe, queries=None, summaries=None):
        """Appends users: ids (k strings), upe [k, m, d], queries [k, m, d]
        when user_queries, summaries: k strings or None (empty or None: no
        summary for that user)."""
        self._check_open()
        m = self.manifest
        raw_ids, batch = self._ids(ids, self._user_ids, "user")
        k = len(raw_ids)
        a = self._array(upe, k, m["user_codes"], "upe", raw_ids, True,
                        "upe")
        q = self._array(queries, k, m["user_codes"], "queries", raw_ids,
                        m["user_queries"], "user_queries")
        lines = []
        if summaries is not None:
            summaries = list(summaries)
            if len(summaries) != k:
                raise ValueError(f"{len(summaries)} summaries for {k} users")
            for raw, s in zip(raw_ids, summaries):
                if not s:
                    continue
                if len(s.encode("utf-8")) > MAX_SUMMARY_BYTES:
                    raise ValueError(f"summary of user {_quote(raw)} is over "
                                     f"{MAX_SUMMARY_BYTES} bytes")
                lines.append(json.dumps({"user_id": raw.decode("utf-8"),
                                         "summary": s},
                                        ensure_ascii=False) + "\n")
        self._upe.append(a)
        if self._queries:
            self._queries.append(q)
        self._user_ids_f.write(b"".join(r + b"\n" for r in raw_ids))
        if lines:
            if self._summaries_f is None:
                self._summaries_f = open(
                    os.path.join(self.tmp, "users/summaries.jsonl"), "wb")
            self._summaries_f.write("".join(lines).encode("utf-8"))
        self._user_ids |= batch

    def add_items(self, ids, cpe, keys=None):
        """Appends items: ids (k strings), cpe [k, n, d], keys [k, n, d]
        when item_keys."""
        self._check_open()
        m = self.manifest
        raw_ids, batch = self._ids(ids, self._item_ids, "item")
        k = len(raw_ids)
        b = self._array(cpe, k, m["item_codes"], "cpe", raw_ids, True, "cpe")
        g = self._array(keys, k, m["item_codes"], "keys", raw_ids,
                        m["item_keys"], "item_keys")
        self._cpe.append(b)
        if self._keys:
            self._keys.append(g)
        self._item_ids_f.write(b"".join(r + b"\n" for r in raw_ids))
        self._item_ids |= batch

    # -- publishing --------------------------------------------------------
    def _files(self):
        return [f for f in (self._upe, self._queries, self._cpe, self._keys)
                if f is not None]

    def close(self):
        """Finishes every file, fsyncs, and renames the temporary directory
        to MODEL_DIR (replacing an old one only now, with overwrite=True)."""
        if self.closed:
            return
        for f in self._files():
            f.finish()
        for f in (self._user_ids_f, self._item_ids_f, self._summaries_f):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
                f.close()
        with open(os.path.join(self.tmp, "manifest.json"), "w") as f:
            json.dump(self.manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        for sub in ("users", "items", ""):
            _fsync_dir(os.path.join(self.tmp, sub))
        self.closed = True
        parent = os.path.dirname(self.model_dir)
        old = None
        if os.path.exists(self.model_dir):
            old = tempfile.mkdtemp(
                prefix=f".{os.path.basename(self.model_dir)}.old-", dir=parent)
            os.rename(self.model_dir, os.path.join(old, "artifact"))
        os.rename(self.tmp, self.model_dir)
        _fsync_dir(parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self):
        """Discards everything written; MODEL_DIR is left as it was."""
        if self.closed:
            return
        for f in self._files():
            f.abort()
        for f in (self._user_ids_f, self._item_ids_f, self._summaries_f):
            if f is not None:
                f.close()
        self.closed = True
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "check":
        print("usage: python3 -m embsum.artifact check MODEL_DIR",
              file=sys.stderr)
        return 2
    try:
        validate(argv[1])
    except ArtifactError as e:
        print(f"embsum.artifact: {e}", file=sys.stderr)
        return 1
    print(f"embsum.artifact: {argv[1]}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
