"""The whole-image pyramid scanner of BB-FCN: one jitted fixed-shape program per size bucket
(pyramid, candidates, NMS, branch refinement), face proposals and grouping, faces from a scan,
and the `lmjax-scan` command line.
"""
