"""The workflow's training jobs: one job trains one or several scan points (a chunk), measures
them and writes each point's files all or none.
"""
