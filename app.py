"""Start Auto Annotator: ``python app.py [--host H] [--port P] [--share]``.

Settings come from the environment (see README); this file only hands the command line to the CLI's
``serve`` command, which opens the store, builds the UI and launches Gradio.
"""

import sys

from annotator.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve", *sys.argv[1:]]))
