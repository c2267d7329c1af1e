"""`python -m jaxrec.bench NAME [flags]` runs `jaxrec.bench.NAME.main(flags)`."""

import importlib
import pkgutil
import sys

import jaxrec.bench


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(jaxrec.bench.__path__) if m.name[0] != "_")
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print(f"usage: python -m jaxrec.bench {{{','.join(names)}}} [flags]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"jaxrec.bench.{sys.argv[1]}")
    return int(module.main(sys.argv[2:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
