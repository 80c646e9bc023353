"""fraudops: the whole life of fraud-detection models, from raw events to real-time decisions.

Layers (bottom up; a layer imports only layers below it): ``core`` → ``events`` →
``features`` → ``models`` → ``release`` → ``serving`` → ``monitoring`` → ``pipelines`` →
``ui``/``cli``. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
