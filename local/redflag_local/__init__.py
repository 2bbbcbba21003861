"""Red Flag on your laptop: the real template deployed into moto, the real handlers, a movable clock.

Used by the ``redflag`` CLI (demo, serve) and by the tests, so all three run the same stack.
"""
