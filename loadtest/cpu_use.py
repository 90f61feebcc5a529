"""CPU use over a run from (time, CPU seconds) samples: the average and the busiest window.

One function for the server (sampled by `python -m loadtest.run`) and for every Locust process.
"""

from __future__ import annotations

from collections.abc import Sequence


def cpu_use_pct(samples: Sequence[tuple[float, float]], window_s: float) -> tuple[float, float]:
    """(average %, busiest-window %) of one core over `samples`, (monotonic s, CPU s) in order.

    The busiest window is the highest rate over any stretch of at least `window_s` between two
    samples, or over the whole run when it is shorter. The candidates include a partition of the
    whole run into such stretches, and the largest part of a partition is at least the average,
    so the peak can never read below the average.
    """
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return 0.0, 0.0
    (t0, c0), (t_end, c_end) = samples[0], samples[-1]
    average = (c_end - c0) / (t_end - t0)
    peak = average
    last = len(samples) - 1
    for i, (ta, ca) in enumerate(samples):
        j = next((k for k in range(i + 1, len(samples)) if samples[k][0] - ta >= window_s), None)
        if j is None:
            break
        # The stretch that would be left after this window is too short to stand alone: a
        # partition's last part runs to the end, so it is a candidate too.
        for end in (j, last):
            tb, cb = samples[end]
            peak = max(peak, (cb - ca) / (tb - ta))
    return round(100 * average, 1), round(100 * peak, 1)
