# ===- batch_cases.py - check_gpu.py's ragged and paged batches ------------===#
#
# attn_cuda_run_batch (runtime.h, ABI 9) on the device: a batch of sequences
# of different lengths (packed q with cu_seqlens_q or dense q; packed k, v
# with cu_seqlens_k or page pools with a block table) in one decode launch
# and one merge launch (every sequence of at most 16 queries), or one launch
# of the batch prefill kernel (a longer one), each sequence checked against
# the float64 oracle of that sequence alone. For the artifacts with the
# variants the case needs whose spec has no aux input and no N = M
# constraint (the oracle's per-sequence problem is then the spec on that
# sequence's lengths). The simulator runs the same kernels in
# test/Integration/gpusim/decode-batch.test and batch-prefill.test; this is
# the device.
# ===----------------------------------------------------------------------===#

import os

import attnc_cuda as ac


class BatchCase:
    def __init__(self, name, qlens, klens, q="ragged", kv="ragged", Hq=8,
                 Hkv=2, D=128):
        self.name, self.qlens, self.klens = name, qlens, klens
        self.q, self.kv, self.Hq, self.Hkv, self.D = q, kv, Hq, Hkv, D


BATCH_CASES = [
    # vLLM's decode batch: ragged q (a sequence without queries, one with
    # nine: G * N = 36 rows, three chunks), paged keys (pages of 16,
    # shuffled; one sequence without keys), GQA 4.
    BatchCase("batch-paged16", [1, 3, 0, 2, 9], [130, 0, 64, 7, 1000],
              kv="paged:16"),
    # N = 1 per sequence (dense q), packed keys of very different lengths,
    # GQA 32/8: the splits follow max_seqlen_k.
    BatchCase("batch-ragged-k-n1", [1, 1, 1, 1], [4133, 1, 77, 300], q="dense",
              Hq=32, Hkv=8),
    # A page size that is not a power of two and splits every kv tile, D = 64.
    BatchCase("batch-paged3-d64", [2, 1], [65, 200], kv="paged:3", Hq=4, Hkv=1,
              D=64),
    # Prefill (the batch prefill kernel: a sequence of more than 16
    # queries): chunked prefill beside decode steps, paged keys, a sequence
    # whose bottom-right causal rows see no key (70 queries, 64 keys).
    BatchCase("batch-prefill-paged16", [17, 1, 70, 0, 300],
              [130, 2000, 64, 5, 300], kv="paged:16"),
    # Packed q and k (FlashAttention's varlen), D = 64, GQA 32/8.
    BatchCase("batch-prefill-ragged-d64", [1000, 33, 129], [1000, 4000, 129],
              Hq=32, Hkv=8, D=64),
]


def eligible(entry, var, case):
    """Whether `case` runs on the artifact: its spec has no aux input and
    no N = M constraint, and it has the variants the case takes."""
    prefill = max(case.qlens) > entry.get("decode_max_n", 16)
    need = "batch_variants" if prefill else "decode_variants"
    return bool(entry.get(need)) and not var.aux and \
        not var.square and var.extents is None


def make_batch(np, case, dtype, seed, round_to):
    """Per-sequence q, k, v (rounded to dtype) and the host arrays the call
    takes: {name: (host array, dl dtype)} with the tables."""
    rng = np.random.default_rng(seed)
    H, Hkv, D = case.Hq, case.Hkv, case.D
    seqs = []
    for n, m in zip(case.qlens, case.klens):
        s = {}
        for name, shape in (("q", (n, H, D)), ("k", (m, Hkv, D)), ("v", (m, Hkv, D))):
            vals, bits = round_to(np, rng.standard_normal(shape).astype(np.float32), dtype)
            s[name] = (vals, bits)
        seqs.append(s)
    host = {}
    if case.q == "ragged":
        host["q"] = (np.concatenate([s["q"][1] for s in seqs]), dtype)
        host["cu_seqlens_q"] = (np.concatenate([[0], np.cumsum(case.qlens)]).astype(np.int32), "i32")
    else:
        host["q"] = (np.stack([s["q"][1].transpose(1, 0, 2) for s in seqs]), dtype)
    if case.kv == "ragged":
        for name in ("k", "v"):
            host[name] = (np.concatenate([s[name][1] for s in seqs]), dtype)
        host["cu_seqlens_k"] = (np.concatenate([[0], np.cumsum(case.klens)]).astype(np.int32), "i32")
    else:
        P = int(case.kv.split(":")[1])
        used = [-(-m // P) for m in case.klens]
        pages = sum(used) + 2
        order = rng.permutation(pages)
        table = np.full((len(seqs), max(used) + 1), -1, np.int32)
        pool = {n: np.zeros((pages, P, Hkv, D), seqs[0]["k"][1].dtype) for n in ("k", "v")}
        nxt = 0
        for b, s in enumerate(seqs):
            for j in range(used[b]):
                table[b, j] = order[nxt]
                lo, hi = j * P, min((j + 1) * P, case.klens[b])
                for n in ("k", "v"):
                    pool[n][order[nxt], :hi - lo] = s[n][1][lo:hi]
                nxt += 1
        host.update({"k": (pool["k"], dtype), "v": (pool["v"], dtype),
                     "block_table": (table, "i32"),
                     "kv_lens": (np.array(case.klens, np.int32), "i32")})
    return seqs, host


def reference(np, oracle, var, entry, case, seqs):
    """The oracle per sequence, its rows concatenated: o [1, Hq, R, D], lse
    [1, Hq, R], visible-key counts [1, Hq, R]."""
    os_, ls, cs = [], [], []
    for n, m, s in zip(case.qlens, case.klens, seqs):
        if n == 0:
            continue
        if m == 0:
            os_.append(np.zeros((1, case.Hq, n, case.D)))
            ls.append(np.full((1, case.Hq, n), -np.inf))
            cs.append(np.zeros((1, case.Hq, n), np.int64))
            continue
        dims = {"B": 1, "Hq": case.Hq, "Hkv": case.Hkv, "N": n, "M": m,
                "Dqk": case.D, "Dv": case.D}
        params = oracle.resolve_params(var, dims, entry["params"])
        tau = var.scale(dims, params) if var.scale else None
        q, k, v = (s[x][0].transpose(1, 0, 2)[None].astype(np.float64) for x in ("q", "k", "v"))
        o, lse = oracle.dense(q, k, v, var.mask, var.score, var.norm, tau, dims, params, {})
        os_.append(o)
        ls.append(lse)
        cs.append(oracle.visible_counts(var.mask, dims, params, {}))
    return np.concatenate(os_, 2), np.concatenate(ls, 2), np.concatenate(cs, 2)


def gather(np, case, o, lse):
    """The kernel's o and lse rows in reference()'s order."""
    os_, ls = [], []
    start = 0
    for b, n in enumerate(case.qlens):
        if case.q == "ragged":
            ob, lb = o[start:start + n].transpose(1, 0, 2), lse[:, start:start + n]
            start += n
        else:
            ob, lb = o[b], lse[b]
        if n:
            os_.append(ob[None])
            ls.append(lb[None])
    return np.concatenate(os_, 2), np.concatenate(ls, 2)


def scatter(np, case, ref_o, ref_lse):
    """gather()'s inverse: rows in reference() order into the kernel's o
    and lse layout (NaN elsewhere)."""
    oshape, lshape = out_shapes(case)
    o, lse = np.full(oshape, np.nan), np.full(lshape, np.nan)
    start, r = 0, 0
    for b, n in enumerate(case.qlens):
        rows_o, rows_l = ref_o[0, :, r:r + n], ref_lse[0, :, r:r + n]
        r += n
        if case.q == "ragged":
            o[start:start + n] = rows_o.transpose(1, 0, 2)
            lse[:, start:start + n] = rows_l
            start += n
        else:
            o[b], lse[b] = rows_o, rows_l
    return o, lse


def check_layout(np, case, seqs, host):
    """Each sequence's q, k, v read back through the tables, as the kernels
    read them: the harness's packing is right. Returns the problems."""
    problems = []
    cu_q = host.get("cu_seqlens_q", (None,))[0]
    cu_k = host.get("cu_seqlens_k", (None,))[0]
    for b, s in enumerate(seqs):
        if cu_q is not None:
            q = host["q"][0][cu_q[b]:cu_q[b + 1]]
        else:
            q = host["q"][0][b].transpose(1, 0, 2)
        got = {"q": q}
        for n in ("k", "v"):
            if cu_k is not None:
                got[n] = host[n][0][cu_k[b]:cu_k[b + 1]]
            elif "block_table" in host:
                pool, table = host[n][0], host["block_table"][0]
                P, m = pool.shape[1], case.klens[b]
                rows = [pool[table[b, j // P], j % P] for j in range(m)]
                got[n] = np.stack(rows) if rows else pool[:0, 0]
            else:
                got[n] = host[n][0][b].transpose(1, 0, 2)
        for n in ("q", "k", "v"):
            if not np.array_equal(got[n], s[n][1]):
                problems.append("%s: sequence %d's %s differs through the tables" % (case.name, b, n))
    return problems


def out_shapes(case):
    B, N = len(case.qlens), max(case.qlens)
    if case.q == "ragged":
        T = sum(case.qlens)
        return (T, case.Hq, case.D), (case.Hq, T)
    return (B, case.Hq, N, case.D), (B, case.Hq, N)


def lengths(case):
    return max(case.qlens), max(case.klens)


def run_gpu(np, oracle, torch, kern, entry, var, case, seed, round_to, compare, tol):
    """Two runs on the device (determinism), compared with the oracle:
    (ok, o_err, lse_err, det, message). The second reads the tables back and
    checks them first (ATTN_GPU_CHECK_TABLES=1: a copy and a stream
    synchronize through the real driver) and must give the same bits."""
    seqs, host = make_batch(np, case, entry["dtype"], seed, round_to)
    tdt = {"bf16": torch.bfloat16, "f16": torch.float16, "i32": torch.int32}
    tens = {}
    for name, (arr, dt) in host.items():
        if dt == "bf16":
            t = torch.from_numpy(np.ascontiguousarray(arr).view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(tdt[dt])
        tens[name] = t.contiguous().cuda()
    oshape, lshape = out_shapes(case)
    o = torch.empty(oshape, dtype=torch.float32, device="cuda")
    lse = torch.empty(lshape, dtype=torch.float32, device="cuda")
    tables = {n: ac.dl_from_torch(t) for n, t in tens.items() if n not in ("q", "k", "v")}
    call = kern.prepare_batch({n: ac.dl_from_torch(tens[n]) for n in ("q", "k", "v")}, tables,
                              *lengths(case), ac.dl_from_torch(o), ac.dl_from_torch(lse))
    outs = []
    for i in range(2):
        o.fill_(float("nan"))
        lse.fill_(float("nan"))
        os.environ["ATTN_GPU_CHECK_TABLES"] = "1" if i == 1 else "0"
        st = call(torch.cuda.current_stream().cuda_stream)
        os.environ.pop("ATTN_GPU_CHECK_TABLES", None)
        if st != ac.ATTN_OK:
            raise RuntimeError("attn_cuda_run_batch: %s: %s" % (kern.status_name(st), kern.error()))
        torch.cuda.synchronize()
        outs.append((o.cpu().numpy().copy(), lse.cpu().numpy().copy()))
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(outs[0], outs[1]))
    ref_o, ref_lse, counts = reference(np, oracle, var, entry, case, seqs)
    got_o, got_lse = gather(np, case, *outs[0])
    ok, o_err, lse_err, msg = compare(np, got_o, got_lse, ref_o, ref_lse, counts, tol)
    if not same:
        ok, msg = False, (msg + "; " if msg else "") + "second run differs (race?)"
    return ok, o_err, lse_err, "yes" if same else "NO", msg


def run_dry(np, oracle, var, kern, entry, case, seed, round_to, compare, tol, avail, expect,
            fails):
    """Without a GPU: the harness itself (the tables read back give every
    sequence's q, k, v; the oracle's rows put in the kernel's layout and
    gathered back pass compare(), a perturbed row fails it); then host
    tensors are refused with DEVICE, tensors claiming CUDA memory pass the
    whole validation and stop at the driver (DRIVER), a host table under
    CUDA tensors is refused (DEVICE). Returns the statuses."""
    seqs, host = make_batch(np, case, entry["dtype"], seed, round_to)
    fails += check_layout(np, case, seqs, host)
    ref_o, ref_lse, counts = reference(np, oracle, var, entry, case, seqs)
    o_full, l_full = scatter(np, case, ref_o, ref_lse)
    got_o, got_l = gather(np, case, o_full, l_full)
    ok, _, _, msg = compare(np, got_o, got_l, ref_o, ref_lse, counts, tol)
    if not ok:
        fails.append("%s: the oracle's rows through scatter/gather fail compare(): %s" % (case.name, msg))
    fin = np.argwhere(counts[0] > 0)
    if len(fin):
        h, r = fin[-1]
        bad = got_o.copy()
        bad[0, h, r] += 0.5 * (np.abs(ref_o).max() or 1.0)
        if compare(np, bad, got_l, ref_o, ref_lse, counts, tol)[0]:
            fails.append("%s: a perturbed row passes compare()" % case.name)
    arrays = {}
    for name, (arr, dt) in host.items():
        a = ac.aligned_empty(arr.shape, arr.dtype)
        a[...] = arr
        arrays[name] = (a, dt)
    oshape, lshape = out_shapes(case)
    o = ac.aligned_empty(oshape, np.float32)
    lse = ac.aligned_empty(lshape, np.float32)

    def attempt(device, table_device=None):
        ts = {n: ac.dl_from_numpy(a, dt, device) for n, (a, dt) in arrays.items()}
        for n in ts:
            if n not in ("q", "k", "v") and table_device is not None:
                ts[n] = ac.dl_from_numpy(arrays[n][0], "i32", table_device)
        tables = {n: t for n, t in ts.items() if n not in ("q", "k", "v")}
        call = kern.prepare_batch({n: ts[n] for n in ("q", "k", "v")}, tables, *lengths(case),
                                  ac.dl_from_numpy(o, "f32", device),
                                  ac.dl_from_numpy(lse, "f32", device))
        return call(), kern.error()

    r1 = expect(kern, attempt(ac.kDLCPU), "ATTN_ERROR_DEVICE", case.name + " (kDLCPU)", fails)
    r2 = ("skipped",)
    if not avail:
        r2 = expect(kern, attempt(ac.kDLCUDA), "ATTN_ERROR_DRIVER", case.name + " (kDLCUDA, no driver)",
                    fails)
        expect(kern, attempt(ac.kDLCUDA, ac.kDLCPU), "ATTN_ERROR_DEVICE",
               case.name + " (host tables)", fails)
    return r1[1], r2[1] if len(r2) > 1 else r2[0]
