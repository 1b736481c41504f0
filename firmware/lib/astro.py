"""Sunrise and sunset on the device: the light's astronomical clock.

The sun's position is the low-precision solar model of the NOAA Solar Calculator
(gml.noaa.gov/grad/solcalc, "General Solar Position Calculations"; J. Meeus,
*Astronomical Algorithms*, 2nd ed., ch. 25 and 28): mean longitude and anomaly,
equation of centre, apparent longitude, obliquity, declination and the equation of
time. Sunrise and sunset are the moments the sun's upper limb touches the horizon,
a true altitude of -0.833 degrees (34' of standard refraction plus the 16' semi-diameter),
as KASI and NOAA publish them for sea level.

Unlike the NOAA spreadsheet, which takes the sun's position at noon, each event is
solved at its own time (three fixed-point passes), which removes the up-to-a-minute
error of the noon shortcut at Seoul's latitude.

Single-precision floats
-----------------------
ESP32 and RP2040 MicroPython use 32-bit floats (``MICROPY_FLOAT_IMPL_FLOAT``: about
seven significant digits), the WebAssembly port and CPython 64-bit ones. Written the
usual way -- Julian day ~2.46e6 as a float -- the date alone would carry a 0.25-day
error in 32 bits. Here nothing large ever becomes a float:

* the date is an integer day count from J2000.0 (2000-01-01), the time of day a
  separate fraction, so the time argument ``d`` (about 9000 days) keeps ~1 ms;
* mean longitude and anomaly are reduced modulo 360 from ``deg_per_day * d`` while
  the product is below 10^4 degrees: 32-bit rounding there is ~5e-4 degrees, 0.1 s
  of time;
* times are minutes within one UT day (< 2000), resolved to 1e-4 minutes.

The tests run this module in CPython with every float rounded to 32 bits and compare
it with the 64-bit result and with almanac values (tests/unit/test_astro.py).

Only `math` is used, and no allocation beyond float objects (which MicroPython boxes on
the heap anyway); sunrise and sunset are computed once a day.
"""

import math

from compat import const

# `float` by name, so the tests can run the same arithmetic on emulated 32-bit floats.
_float = float

_J2000_DAYS = const(10957)  # days from 1970-01-01 to 2000-01-01
SECONDS_PER_DAY = const(86400)
_PASSES = const(3)  # fixed-point passes per event; the third moves it < 1 s
_H0 = -0.833  # degrees: sunrise/sunset altitude of the sun's centre (refraction + radius)

RISE = const(-1)  # hour-angle sign of sunrise (before local noon)
SET = const(1)


def days_from_civil(y, m, d):
    """Days from 1970-01-01 to the proleptic Gregorian date ``y-m-d`` (integers only).

    H. Hinnant's ``days_from_civil`` (chrono-compatible low-level date algorithms).
    """
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12  # March = 0
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """``(year, month, day)`` of day ``z`` counted from 1970-01-01 (inverse of the above)."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def _mod360(x):
    x = math.fmod(x, 360.0)
    return x + 360.0 if x < 0.0 else x


def sun(day, minute_ut):
    """``(declination_deg, equation_of_time_min)`` on ``day`` (days from 1970-01-01)
    at ``minute_ut`` minutes after 00:00 UT.
    """
    rad = math.pi / 180.0
    # Days from J2000.0 (2000-01-01 12:00): the integer part stays an int until here.
    d = _float(day - _J2000_DAYS) + (minute_ut - 720.0) / 1440.0
    t = d / 36525.0  # Julian centuries
    # Mean longitude and mean anomaly (Meeus 25.2, 25.3), per day rather than per
    # century so each product is reduced while still small.
    l0 = _mod360(280.46646 + _mod360(0.98564736 * d) + 0.0003032 * t * t)
    m = _mod360(357.52911 + _mod360(0.98560028 * d) - 0.0001537 * t * t) * rad
    e = 0.016708634 - 0.000042037 * t  # orbit eccentricity (25.4)
    c = (
        (1.914602 - 0.004817 * t) * math.sin(m)
        + (0.019993 - 0.000101 * t) * math.sin(2.0 * m)
        + 0.000289 * math.sin(3.0 * m)
    )  # equation of centre, degrees
    omega = (125.04 - _mod360(0.05295376 * d)) * rad  # Moon's node (1934.136 deg/century)
    lam = (l0 + c - 0.00569 - 0.00478 * math.sin(omega)) * rad  # apparent longitude
    eps = (
        23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
    ) + 0.00256 * math.cos(omega)  # obliquity corrected for nutation (22.2, 25.8)
    eps *= rad
    decl = math.asin(math.sin(eps) * math.sin(lam))
    y = math.tan(eps / 2.0)
    y *= y
    l0r = l0 * rad
    eqt = (
        y * math.sin(2.0 * l0r)
        - 2.0 * e * math.sin(m)
        + 4.0 * e * y * math.sin(m) * math.cos(2.0 * l0r)
        - 0.5 * y * y * math.sin(4.0 * l0r)
        - 1.25 * e * e * math.sin(2.0 * m)
    )  # equation of time, radians (Meeus 28.3)
    return decl / rad, 4.0 * eqt / rad


def event_minute(day, lat, lon, which, altitude=_H0):
    """Minutes after 00:00 UT of ``day`` when the sun's centre crosses ``altitude``.

    ``which`` is RISE or SET; ``lat``/``lon`` in degrees, north and east positive.
    Returns None when the sun stays above or below that altitude all day (polar day
    or night). The result may fall outside 0..1440 far from Greenwich; callers add
    their UTC offset and take the local day they need.
    """
    rad = math.pi / 180.0
    phi = lat * rad
    sin_h0 = math.sin(altitude * rad)
    minute = 720.0 - 4.0 * lon + which * 360.0  # first guess: noon -/+ 6 h
    for _ in range(_PASSES):
        decl, eqt = sun(day, minute)
        dr = decl * rad
        cos_h = (sin_h0 - math.sin(phi) * math.sin(dr)) / (math.cos(phi) * math.cos(dr))
        if cos_h > 1.0 or cos_h < -1.0:
            return None
        h = math.acos(cos_h) / rad  # hour angle, degrees
        minute = 720.0 - 4.0 * lon - eqt + which * 4.0 * h
    return minute


def sun_times(day, lat, lon, utc_offset_min):
    """``(sunrise, sunset)`` in seconds after local midnight of local date ``day``.

    ``day`` counts local days from 1970-01-01 (`days_from_civil`), ``utc_offset_min``
    is the local time's offset east of UTC (Korea: 540). Returns None when the sun
    does not rise or does not set that day; the light then follows its photocell.
    """
    # The local day starts utc_offset_min before 00:00 UT of the same date.
    rise = event_minute(day, lat, lon, RISE)
    sset = event_minute(day, lat, lon, SET)
    if rise is None or sset is None:
        return None
    return _to_seconds(rise + utc_offset_min), _to_seconds(sset + utc_offset_min)


def _to_seconds(minute):
    return int(minute * 60.0 + 0.5) if minute >= 0.0 else -int(-minute * 60.0 + 0.5)


def clock(seconds):
    """``"HH:MM:SS"`` of a second count within a day (for logs and tests)."""
    s = seconds % SECONDS_PER_DAY
    return "%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)
