"""OVSeg's training data: (masked region, noun) pairs mined from images and their captions.

nouns (a part-of-speech tagger picks caption nouns) -> captions (COCO-captions JSON, checked
against the image folder) -> miner (proposals of a segmenter, CLIP matching of each noun to
its best region) -> pairs (the resumable pair folder the CLIP stages train on).
"""
