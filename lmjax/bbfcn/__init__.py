"""BB-FCN (Liu et al., Facial Landmark Machines): backbone and branch training with the
selective loss and hard negative mining, the constrained (face-crop) inference, and the
predictor of BB-FCN model folders.
"""
