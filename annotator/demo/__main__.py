"""``python -m annotator.demo ...``: the model-building tool (see build.py)."""

from .build import main

raise SystemExit(main())
