#!/usr/bin/env python3
"""Generates the PyTorch fixtures under Tests/Fixtures (committed; CI only reads them).

Usage: python3 scripts/make_fixtures.py [family ...]
Needs: pip install torch safetensors (and torchvision for the ResNet key manifests).
Each module in scripts/fixtures/ with a `generate(out_dir)` function is one family.
"""
import importlib
import os
import pkgutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
OUT = os.path.join(os.path.dirname(HERE), "Tests", "Fixtures")


def main():
    import fixtures
    wanted = set(sys.argv[1:])
    os.makedirs(OUT, exist_ok=True)
    for info in sorted(pkgutil.iter_modules(fixtures.__path__), key=lambda m: m.name):
        if info.name == "common" or (wanted and info.name not in wanted):
            continue
        mod = importlib.import_module("fixtures." + info.name)
        if hasattr(mod, "generate"):
            print("generating", info.name)
            mod.generate(OUT)


if __name__ == "__main__":
    main()
