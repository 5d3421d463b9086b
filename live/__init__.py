"""Live events: what visitors see and click, recorded to a Redis stream and exported as CSV batches.

events.py and export.py are the job side (no Flask); clicks.py, panel.py and cli.py the web side.
"""
