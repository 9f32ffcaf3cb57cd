"""The face/non-face CNN that re-scores BB-FCN face proposals (Net-12/24 style, paper §IV-F):
its training data, its resumable training and the jitted classifier of boxes in a photo; and
the training of the cascade scanner's face-window proposer (ProposalNet) on the same windows
(`proposer_data`, `proposer_train`).
"""
