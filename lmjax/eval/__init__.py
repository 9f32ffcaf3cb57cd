"""Evaluation shared by training-time validation and `python -m lmjax.evaluate`: the metric
maths (`metrics`, `multiface_metrics`), one evaluator per kind of data (`face_crop`: one face box
per example; `multiface`: whole images scanned for every face; `classification`: face / non-face
windows; `tracking`: a video tracker through annotated videos, with `video_metrics`), each
benchmark's own numbers (`protocols`: WFLW subsets, AFLW2000-3D yaw bins and
head-pose error, AFLW-19 frontal) and the reports (`reports`: tables, CED / recall / PR plots,
JSON). It imports only
core, data, models and train: the scanner, the predictors and the tracker are passed in by the
caller.
"""
