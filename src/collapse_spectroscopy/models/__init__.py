"""The VAE families: the linear VAE (the paper's model), the MLP VAE, and the registry that
builds either from a model spec.
"""
