"""Functions of a range vector: each takes one series' points in a window (at least one)
and returns a value or None (no sample at that step), as Prometheus 2.42's functions.go
computes them: the rate family's extrapolation, Kahan sums, the regression of deriv."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from metrics_ingest.promql.values import ExecutionError


@dataclass(frozen=True, slots=True)
class Window:
    """One step's window over one series: points in [start, end] (ms); `now` is the
    step's evaluation time; `args` the step's scalar arguments, in call order."""

    times: Sequence[int]
    values: Sequence[float]
    start: int
    end: int
    now: int
    args: Sequence[float]


RangeFunction = Callable[[Window], float | None]


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def extrapolated(w: Window, counter: bool, per_second: bool) -> float | None:
    times, values = w.times, w.values
    if len(values) < 2:
        return None
    result = values[-1] - values[0]
    if counter:
        previous = values[0]
        for value in values[1:]:
            if value < previous:
                result += previous
            previous = value
    to_start = (times[0] - w.start) / 1000
    to_end = (w.end - times[-1]) / 1000
    sampled = (times[-1] - times[0]) / 1000
    average = sampled / (len(values) - 1)
    if counter and result > 0 and values[0] >= 0:
        # A counter cannot go below zero: extrapolate at most to where it would be zero.
        to_zero = sampled * (values[0] / result)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    factor = interval / sampled
    if per_second:
        factor /= (w.end - w.start) / 1000
    return result * factor


def instant_value(w: Window, per_second: bool) -> float | None:
    if len(w.values) < 2:
        return None
    last, previous = w.values[-1], w.values[-2]
    result = last if per_second and last < previous else last - previous
    interval = w.times[-1] - w.times[-2]
    if interval == 0:
        return None
    return result / (interval / 1000) if per_second else result


def linear_regression(times: Sequence[int], values: Sequence[float], intercept_time: int
                      ) -> tuple[float, float]:
    n = 0.0
    sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    constant = all(value == values[0] for value in values)
    for t, y in zip(times, values, strict=True):
        n += 1.0
        x = (t - intercept_time) / 1e3
        sum_x, c_x = kahan_inc(x, sum_x, c_x)
        sum_y, c_y = kahan_inc(y, sum_y, c_y)
        sum_xy, c_xy = kahan_inc(x * y, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_inc(x * x, sum_x2, c_x2)
    if constant:
        return (math.nan, math.nan) if math.isinf(values[0]) else (0.0, values[0])
    sum_x += c_x
    sum_y += c_y
    sum_xy += c_xy
    sum_x2 += c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = cov_xy / var_x if var_x else math.copysign(math.inf, cov_xy) if cov_xy else math.nan
    return slope, sum_y / n - slope * sum_x / n


def deriv(w: Window) -> float | None:
    if len(w.values) < 2:
        return None
    return linear_regression(w.times, w.values, w.times[0])[0]


def predict_linear(w: Window) -> float | None:
    if len(w.values) < 2:
        return None
    slope, intercept = linear_regression(w.times, w.values, w.now)
    return slope * w.args[0] + intercept


def avg_over_time(w: Window) -> float:
    mean = c = count = 0.0
    for value in w.values:
        count += 1
        if math.isinf(mean):
            if math.isinf(value) and (mean > 0) == (value > 0):
                continue
            if not math.isinf(value) and not math.isnan(value):
                continue
        mean, c = kahan_inc(value / count - mean / count, mean, c)
    return mean if math.isinf(mean) else mean + c


def sum_over_time(w: Window) -> float:
    total = c = 0.0
    for value in w.values:
        total, c = kahan_inc(value, total, c)
    return total if math.isinf(total) else total + c


def variance(values: Sequence[float]) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for value in values:
        count += 1
        delta = value - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (value - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def max_over_time(w: Window) -> float:
    best = w.values[0]
    for value in w.values:
        if value > best or math.isnan(best):
            best = value
    return best


def min_over_time(w: Window) -> float:
    best = w.values[0]
    for value in w.values:
        if value < best or math.isnan(best):
            best = value
    return best


def quantile(q: float, values: Sequence[float]) -> float:
    """The q-quantile of values, interpolated between the two nearest (Prometheus's)."""
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=nan_first)
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def nan_first(value: float) -> tuple[int, float]:
    """Sort key: NaN below everything, as Prometheus's value heaps order it."""
    return (0, 0.0) if math.isnan(value) else (1, value)


def changes(w: Window) -> float:
    count = 0
    previous = w.values[0]
    for value in w.values[1:]:
        if value != previous and not (math.isnan(value) and math.isnan(previous)):
            count += 1
        previous = value
    return float(count)


def resets(w: Window) -> float:
    count = 0
    previous = w.values[0]
    for value in w.values[1:]:
        if value < previous:
            count += 1
        previous = value
    return float(count)


def holt_winters(w: Window) -> float | None:
    sf, tf = w.args
    if not 0 < sf < 1:
        raise ExecutionError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:f}")
    if not 0 < tf < 1:
        raise ExecutionError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf:f}")
    values = w.values
    if len(values) < 2:
        return None
    s0 = 0.0
    s1 = values[0]
    b = values[1] - values[0]
    for i in range(1, len(values)):
        x = sf * values[i]
        b = b if i - 1 == 0 else tf * (s1 - s0) + (1 - tf) * b
        y = (1 - sf) * (s1 + b)
        s0, s1 = s1, x + y
    return s1


RANGE_FUNCTIONS: dict[str, RangeFunction] = {
    "rate": lambda w: extrapolated(w, True, True),
    "increase": lambda w: extrapolated(w, True, False),
    "delta": lambda w: extrapolated(w, False, False),
    "irate": lambda w: instant_value(w, True),
    "idelta": lambda w: instant_value(w, False),
    "deriv": deriv,
    "predict_linear": predict_linear,
    "changes": changes,
    "resets": resets,
    "avg_over_time": avg_over_time,
    "sum_over_time": sum_over_time,
    "min_over_time": min_over_time,
    "max_over_time": max_over_time,
    "count_over_time": lambda w: float(len(w.values)),
    "last_over_time": lambda w: w.values[-1],
    "present_over_time": lambda w: 1.0,
    "stddev_over_time": lambda w: math.sqrt(variance(w.values)),
    "stdvar_over_time": lambda w: variance(w.values),
    "quantile_over_time": lambda w: quantile(w.args[0], w.values),
    "holt_winters": holt_winters,
}
# Where each function's range argument is (the others are scalars, in order).
RANGE_ARGUMENT = {"quantile_over_time": 1}
