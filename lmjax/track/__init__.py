"""Face tracking in videos: `tracker.VideoTracker` scans key frames and otherwise predicts each
face from its previous landmarks, with losses re-detected, and smooths the landmarks over time
with the One Euro filter (`one_euro`). It works with any landmarker object (duck-typed
`lmjax.inference.Landmarker`), so it imports only `core`.
"""
