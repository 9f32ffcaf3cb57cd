"""Training machinery shared by every experiment: the resumable stage loop, the staged-run
runner, optimisers, parameter surgery, checkpoints and model folders, and the metric writer.
"""
