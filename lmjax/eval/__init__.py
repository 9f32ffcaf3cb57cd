"""Evaluation shared by training-time validation and `python -m lmjax.evaluate`: the metric
maths, one evaluator per kind of data (face crops, multi-face images, face/non-face), and the
reports (tables, CED and recall plots, JSON).
"""
