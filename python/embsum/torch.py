"""The EmbSum scoring function (docs/design.md section 2) in PyTorch, the
learned item keys, and export of a trained head to a model artifact.

    score = PolyAttentionScore()
    scores, top_code = score(A, Q, B, G)   # A, Q [m, d]; B, G [c, n, d]

PolyAttentionScore computes exactly what the service computes:
    K = A·Bᵀ, L = Q·Gᵀ (m×n per candidate),
    w = softmax over all m·n entries of L,
    score = Σ_ij w_ij K_ij,
    top_user_code = argmax_i Σ_j w_ij K_ij.
It is differentiable in all four inputs and batched: A and Q may carry
leading batch dimensions [..., m, d] that broadcast against B and G's
[..., c, n, d] (see forward()). The service accumulates in fp32; for a
reference, pass float64 tensors.
"""
import torch
from torch import nn

from embsum import artifact as _artifact


class PolyAttentionScore(nn.Module):
    """score(u, c) and top_user_code(u, c) of docs/design.md section 2.

    forward(A, Q, B, G):
      A, Q: [..., m, d] (Q is A when the model has no separate queries;
            passing None for Q means Q = A);
      B, G: [..., c, n, d] (G = None means G = B);
    the leading dimensions broadcast (A [u, m, d] with B [u, c, n, d]
    scores each user against their own candidates; A [m, d] with B
    [c, n, d] one user against c candidates).
    Returns (scores [..., c], top_user_code [..., c] as int64). Ties in
    top_user_code go to the lowest code, as in the service.
    """

    def forward(self, A, Q, B, G):
        if Q is None:
            Q = A
        if G is None:
            G = B
        if A.shape[-2:] != Q.shape[-2:]:
            raise ValueError(f"A {tuple(A.shape)} and Q {tuple(Q.shape)} "
                             "differ in [m, d]")
        if B.shape[-2:] != G.shape[-2:]:
            raise ValueError(f"B {tuple(B.shape)} and G {tuple(G.shape)} "
                             "differ in [n, d]")
        if A.shape[-1] != B.shape[-1]:
            raise ValueError(f"A has d = {A.shape[-1]}, B has d = "
                             f"{B.shape[-1]}")
        # [..., 1, m, d] @ [..., c, d, n] -> [..., c, m, n]
        k = A.unsqueeze(-3) @ B.transpose(-1, -2)
        logits = Q.unsqueeze(-3) @ G.transpose(-1, -2)
        flat = logits.flatten(-2)
        w = torch.softmax(flat, dim=-1).view_as(logits)
        per_code = (w * k).sum(-1)  # [..., c, m]
        return per_code.sum(-1), per_code.argmax(-1)


def gelu(x):
    """The exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)), as F.gelu computes it
    (approximate="none"), written out: the fused GELU backward of Debian's
    python3-torch 1.13 returns NaN for some ordinary inputs on this
    project's CPUs (AVX-512 Xeons), seen as NaN gradients within a few
    dozen training steps; erf's own backward does not."""
    return 0.5 * x * (1.0 + torch.erf(x * 0.7071067811865476))


class ItemKeys(nn.Module):
    """The learned item keys G = gelu(B·W) (docs/design.md section 2), the
    part of the head the exporter precomputes. W is [d, d].

    forward(B): B [..., n, d] -> G [..., n, d].
    """

    def __init__(self, dim, init_std=None):
        super().__init__()
        std = dim ** -0.5 if init_std is None else init_std
        self.weight = nn.Parameter(torch.randn(dim, dim) * std)

    def forward(self, B):
        return gelu(B @ self.weight)


def _numpy(x):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return x


@torch.no_grad()
def export(model_dir, *, model_version, user_ids, upe, item_ids, cpe,
           queries=None, keys=None, item_keys=None, summaries=None,
           dtype="float32", chunk_rows=4096, overwrite=False):
    """Writes an artifact (docs/design.md section 3) from tensors.

    upe, queries: [U, m, d]; cpe, keys: [N, n, d] (tensors or arrays).
    item_keys: an ItemKeys module (or any callable B -> G); when given, the
    keys are computed from cpe chunk by chunk and written as keys.npy, so
    the service scores with G = gelu(B·W). keys and item_keys are
    exclusive. summaries: U strings or None. dtype: "float32" or "float16".
    Returns model_dir; the artifact is published atomically.
    """
    if keys is not None and item_keys is not None:
        raise ValueError("pass keys or item_keys, not both")
    dim = int(upe.shape[-1])
    with _artifact.ArtifactWriter(
            model_dir, dim=dim, user_codes=int(upe.shape[1]),
            item_codes=int(cpe.shape[1]), model_version=model_version,
            user_queries=queries is not None,
            item_keys=keys is not None or item_keys is not None,
            dtype=dtype, overwrite=overwrite) as w:
        user_ids = list(user_ids)
        item_ids = list(item_ids)
        for s in range(0, len(user_ids), chunk_rows):
            e = s + chunk_rows
            w.add_users(user_ids[s:e], _numpy(upe[s:e]),
                        queries=None if queries is None
                        else _numpy(queries[s:e]),
                        summaries=None if summaries is None
                        else list(summaries[s:e]))
        for s in range(0, len(item_ids), chunk_rows):
            e = s + chunk_rows
            b = cpe[s:e]
            if item_keys is not None:
                g = item_keys(torch.as_tensor(b, dtype=torch.float32))
            else:
                g = None if keys is None else keys[s:e]
            w.add_items(item_ids[s:e], _numpy(b), keys=_numpy(g))
    return model_dir
