"""The face/non-face CNN that re-scores BB-FCN face proposals (Net-12/24 style, paper §IV-F):
its training data, its resumable training and the jitted classifier of boxes in a photo.
"""
