"""OVSeg's own training stages beyond the proposal generator (which the generic trainer runs).

(b) ``mine``: (masked crop, noun) pairs from images and captions (``vocabseg.train.ovseg.mining``);
(c) ``adapt``: CLIP fine-tuned on those pairs, text tower locked, contrastive loss;
(d) ``prompt``: mask prompt tuning, only ``visual.mask_embedding`` trains;
(e) ``assemble``: the adapted CLIP written into a segmenter checkpoint.
A preset names its stage in a top-level ``stage:`` key; ``vocabseg train --preset`` dispatches on it.
"""
