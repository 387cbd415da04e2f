"""Training of scan points: the protocol around any engine (windows, validation, early
stopping, checkpoints), one scan point's setup, several points trained together,
checkpoints, and the engines.
"""
