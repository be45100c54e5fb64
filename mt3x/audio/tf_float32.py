"""float32 arithmetic as TensorFlow's CPU kernels do it, replayed in numpy.

tf.signal builds its windows and mel filterbanks in float32 with Eigen's vectorised `cos` and `log`
(polynomial approximations, 8 floats per AVX packet; the `n % 8` tail elements and scalars go
through the C library's `cosf` / `logf`). Those differ from correctly rounded results by up to a
few ulp, and for MT3's front end that matters: a 1-ulp difference in the Hann window leaks
~1e-7 of a frame's energy into every bin, enough to move the log of quiet mel bands of synthetic
audio by more than 1.0. Replaying the same operations makes our windows and filterbanks equal
TF's bit for bit (checked by the tests against TF 2.21 x86-64 wheels, which are built without
FMA). Everything here runs once, on the host, when a kernel is traced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

_F32 = np.float32
EIGEN_PACKET_FLOATS = 8  # AVX packet; element-wise ops vectorise all but the last n % 8 elements


def _horner(value: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """Eigen's pmadd chain without FMA: every product and sum rounded to float32."""
    result = np.full_like(value, _F32(coefficients[0]))
    for c in coefficients[1:]:
        result = result * value + _F32(c)
    return result


def eigen_log(x: np.ndarray) -> np.ndarray:
    """Eigen's `plog_float` (rational approximation on [sqrt(1/2) - 1, sqrt(2) - 1))."""
    x = np.asarray(x, _F32)
    mantissa, exponent = np.frexp(x)  # mantissa in [0.5, 1)
    mantissa = mantissa.astype(_F32)
    exponent = exponent.astype(_F32)
    below = mantissa < _F32(0.707106781186547524)
    shifted = np.where(below, mantissa, _F32(0))
    mantissa = mantissa - _F32(1)
    exponent = exponent - np.where(below, _F32(1), _F32(0))
    mantissa = mantissa + shifted
    numerator = mantissa * _horner(mantissa, (0.18256296349849254, 1.0000000190281063,
                                              1.0000000190281136))
    denominator = _horner(mantissa, (0.049616247954120038, 0.59923249590823520,
                                     1.4999999999999927, 1.0))
    return (exponent * _F32(np.log(2.0)) + numerator / denominator).astype(_F32)


def eigen_cos(x: np.ndarray) -> np.ndarray:
    """Eigen's `psincos_float<cos>` (non-FMA reduction), for |x| < 18838."""
    x_in = np.asarray(x, _F32)
    x = np.abs(x_in)
    if np.any(x >= _F32(18838.0)):
        raise ValueError("eigen_cos: arguments beyond 18838 use a reduction not replayed here")
    y = x * _F32(0.636619746685028076171875)
    y_round = y + _F32(12582912.0)
    y_int = y_round.view(np.int32)
    y = y_round - _F32(12582912.0)
    for c in (-1.5703125, -0.000483989715576171875, 1.62865035235881805419921875e-07,
              5.5644315544167710640977020375430583953857421875e-11):
        x = y * _F32(c) + x
    sign = ((y_int + 1).astype(np.uint32) << np.uint32(30)) & np.uint32(0x80000000)
    use_cos_poly = (y_int & 1) == 0
    x2 = x * x
    cos_poly = _horner(x2, (2.4372266125283204019069671630859375e-05,
                            -0.00138865201734006404876708984375,
                            0.041666619479656219482421875, -0.5, 1.0))
    sin_poly = _horner(x2, (-0.0001959234114083702898469196984621021329076029360294342041015625,
                            0.0083326873655616851693794799871284340042620897293090820312500000,
                            -0.1666666203982298255503735617821803316473960876464843750000000000))
    sin_poly = sin_poly * x2
    sin_poly = sin_poly * x + x
    result = np.where(use_cos_poly, cos_poly, sin_poly).astype(_F32)
    return (result.view(np.uint32) ^ sign).view(_F32)


@functools.lru_cache(maxsize=None)
def _libm_function(name: str):
    library = ctypes.util.find_library("m")
    try:
        function = getattr(ctypes.CDLL(library or "libm.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_float
    function.argtypes = [ctypes.c_float]
    return function


def libm_float32(name: str, x: np.ndarray) -> np.ndarray:
    """The C library's float function (`logf`, `cosf`) per element; float64 numpy as fallback."""
    x = np.asarray(x, _F32)
    function = _libm_function(name)
    if function is None:
        fallback = {"logf": np.log, "cosf": np.cos}[name]
        return fallback(x.astype(np.float64)).astype(_F32)
    return np.array([function(float(v)) for v in x.reshape(-1)], _F32).reshape(x.shape)


def tf_cpu_unary(x: np.ndarray, name: str) -> np.ndarray:
    """A TF CPU element-wise `Log`/`Cos` over a 1-D float32 array: packets, then a scalar tail."""
    x = np.asarray(x, _F32).reshape(-1)
    vectorised = len(x) - len(x) % EIGEN_PACKET_FLOATS
    packet_fn = {"log": eigen_log, "cos": eigen_cos}[name]
    return np.concatenate([packet_fn(x[:vectorised]),
                           libm_float32(name + "f", x[vectorised:])]).astype(_F32)


def tf_linspace(start: float, stop: float, num: int) -> np.ndarray:
    """tf.linspace in float32: `[start, start + delta * i for i in 1 .. num - 2, stop]`."""
    start, stop = _F32(start), _F32(stop)
    delta = (stop - start) / _F32(max(num - 1, 1))
    middle = start + delta * np.arange(1, max(num - 1, 1), dtype=_F32)
    return np.concatenate([[start], middle, [stop]]).astype(_F32)[:num]


def tf_hann_window(window_length: int, periodic: bool) -> np.ndarray:
    """`tf.signal.hann_window(window_length, periodic)` bit for bit: `0.5 - 0.5 cos(2 pi n / N)`,
    `N = window_length` (periodic) or `window_length - 1` (symmetric), all in float32."""
    if window_length == 1:
        return np.ones(1, _F32)
    even = 1 - window_length % 2
    denominator = _F32(window_length + int(periodic) * even - 1)
    count = np.arange(window_length, dtype=_F32)
    argument = _F32(2 * np.pi) * count / denominator
    return (_F32(0.5) - _F32(0.5) * tf_cpu_unary(argument, "cos")).astype(_F32)
