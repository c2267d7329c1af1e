"""CLI command groups; each module exposes `add_parser(subparsers)`."""
