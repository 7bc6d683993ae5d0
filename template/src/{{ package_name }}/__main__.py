"""``python -m <package>``: the same CLI as the console script."""

from .cli import app
from .constants import MODULE_NAME

if __name__ == "__main__":
    app(prog=MODULE_NAME)
