"""The workflow's configuration: the schema (the one home of every default) and its sections,
checks that name the offending key, the scan grid and its file labels, dataset paths, and
the runs a study derives.
"""
