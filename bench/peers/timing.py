"""timing.py - the median-of-runs timer the bench/peers scripts share."""

import time


def median_time(fn, runs, gap_s):
    """Median of `runs` calls of fn after a warm-up call; each call starts
    after a pause of gap_s seconds, so that threads another library left
    spinning (torch's OpenMP pool) have gone idle (bench/peers/run_peers.py
    measured up to 1.5x slowdowns without it)."""
    fn()
    ts = []
    for _ in range(runs):
        time.sleep(gap_s)
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def alternating_medians(fns, runs, gap_s):
    """Medians of `runs` calls of each of fns, called in turn (fn0, fn1, ...,
    fn0, ...) after one warm-up call each, so that a machine whose speed
    drifts (a shared host, clocks) affects every fn alike."""
    for fn in fns:
        fn()
    ts = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            time.sleep(gap_s)
            t0 = time.perf_counter()
            fn()
            ts[i].append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] for t in ts]
