"""Live events: what visitors see and click, recorded to a Redis stream and exported as CSV batches.

No Flask here (tests/test_layers.py): events, beacons, the export and the rollups run in a worker with no
app; the web side (the click redirect, the conversions API, the live panel, their commands) is in webapp/.
"""
