"""The whole-image pyramid scanner of BB-FCN: the pyramid packed into fixed-size tiles, two
jitted fixed-shape programs for every image size (candidates per tile; NMS, branch refinement
and faces per image), face proposals and grouping, faces from a scan, and the `lmjax-scan`
command line.
"""
