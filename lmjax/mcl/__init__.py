"""Multi-Center Learning (Shao et al.): Algorithm 1 as one resumable run (pre-training,
weighting fine-tuning, multi-center fine-tuning, model assembling) and the face-crop predictor.
"""
