"""The embedded demo: ``scenes`` (seeded synthetic shape scenes and the demo model's path, used at runtime)
and ``build`` (the maintainer's tool that trained and checks the committed model: ``python -m annotator.demo``).

Nothing is imported here, so ``import annotator.demo.scenes`` stays light (no torch, no ultralytics).
"""
