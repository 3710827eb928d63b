"""A stored run written out in other tools' formats: OTLP/JSON (otlp.py) and Chrome
trace-event JSON (chrome.py), for the run page's download buttons and the API.

Both stream: steps are read in seq order a batch at a time (timing.py places them
on the run's clock), so a run of 100,000 steps never sits in memory whole.
"""

from . import chrome, otlp

EXPORTS = {"otlp": otlp, "chrome": chrome}

__all__ = ["EXPORTS", "chrome", "otlp"]
