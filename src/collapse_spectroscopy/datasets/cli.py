"""`collapse-spectroscopy prepare` (being built: issue 3)."""


def register(sub):
    p = sub.add_parser("prepare", help="prepare a run's dataset (not yet implemented)")
    p.set_defaults(func=lambda args: 1)
