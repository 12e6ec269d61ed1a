"""Cascade-CLIP's training, beside the generic trainer (``vocabseg.train.loop``) that runs it.

transforms (mmseg's augmentation: resize, crop, flip, photometric) -> data (dense per-class
targets with the zero-shot split: inductive or transductive) -> pseudo_labels (transductive
self-training of the unseen pixels) -> loss (sigmoid focal x100 + dice, the official SegLossPlus).
The model itself is ``vocabseg.models.cascade_clip``.
"""
