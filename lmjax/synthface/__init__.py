"""Procedurally rendered faces with exact 68-point geometry (the embedded synthetic dataset).

A hand-designed 3D mean face (`shape`) is deformed by identity and expression, completed into a
head (`head`), rotated, projected and drawn with OpenCV (`render`, `features`) on cluttered
backgrounds with occluders and camera effects (`background`, `occluders`). The landmarks are
the projections of the same 3D points the features are drawn through, so they are exact.
Everything is deterministic from a seed.

Entry points (plain numpy, no tfds):
  * `render_face_example(seed, image_size=(128, 128), clean=False)`
  * `render_scene(seed, image_size=(240, 320), max_faces=5, clean=False)`
"""

from lmjax.synthface.scene import render_face_example, render_scene, tight_box

__all__ = ['render_face_example', 'render_scene', 'tight_box']
