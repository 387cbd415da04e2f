"""Maps of one scan point's active latents on the input grid or per sample, and their loadings
(docs/science.md §10).
"""
