"""Run-time building blocks shared by every stage: transforms, codec, person boxes, detector, predictor, drawing.

Nothing here imports torch (a runtime-only install uses it).
"""
