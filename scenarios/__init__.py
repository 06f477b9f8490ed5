"""Self-contained scenario programs: they need only pyzmq and the standard library.

Run one with `python -m scenarios --pattern pubsub --transport tcp ...`; it prints one JSON
report (lab/schemas/run.schema.json). Python 3.9+ and any pyzmq from 17 on, because the same
files run unchanged inside every pinned image.
"""
